/* fuzz_common.h - the input reader the fuzz targets share. */
#ifndef GS_FUZZ_COMMON_H
#define GS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fuzzer's input read as a program: bytes past the end read as 0. */
struct fz_in {
	const uint8_t *p;
	size_t n, i;
};

static inline int fz_more(const struct fz_in *in)
{
	return in->i < in->n;
}

static inline uint8_t fz_u8(struct fz_in *in)
{
	return in->i < in->n ? in->p[in->i++] : 0;
}

static inline uint16_t fz_u16(struct fz_in *in)
{
	uint16_t v = fz_u8(in);
	return (uint16_t)(v | (uint16_t)fz_u8(in) << 8);
}

static inline uint32_t fz_u32(struct fz_in *in)
{
	uint32_t v = fz_u16(in);
	return v | (uint32_t)fz_u16(in) << 16;
}

static inline uint64_t fz_u64(struct fz_in *in)
{
	uint64_t v = fz_u32(in);
	return v | (uint64_t)fz_u32(in) << 32;
}

/* Up to max bytes (the count is read first); *len how many were left. */
static inline const uint8_t *fz_bytes(struct fz_in *in, size_t max, size_t *len)
{
	size_t want = max ? fz_u16(in) % (max + 1) : 0;
	size_t left = in->n - in->i;
	if (want > left)
		want = left;
	const uint8_t *p = in->p + in->i;
	in->i += want;
	*len = want;
	return p;
}

#define FZ_CHECK(cond, ...)                                                                        \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__,    \
			        #cond);                                                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, "\n");                                                     \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
