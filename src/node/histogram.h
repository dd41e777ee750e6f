/*
 * histogram.h - gs_histogram: a log-linear histogram of non-negative integer
 * values (gsched bench records microseconds).
 *
 * Buckets: values below 2^GS_HIST_SUB_BITS each have a bucket of their own
 * (exact); above, every power-of-two range [2^e, 2^(e+1)) is split into
 * 2^GS_HIST_SUB_BITS equal buckets.  A percentile is reported as its bucket's
 * midpoint, so the relative error is at most 2^-(GS_HIST_SUB_BITS+1)
 * (0.39% with 7 bits) for every value up to 2^64-1: well inside the 1% asked
 * for from 1 us to 60 s.  min, max, count and sum are exact.
 *
 * Owns: nothing outside the struct; recording never allocates (the buckets
 * are inline: about 58 KiB, so put it on the heap or in a larger struct).
 *
 * Thread-safety: none; give each thread its own histogram and merge them.
 * Errors: GS_EINVAL (NULL, p out of 0..100), GS_EEMPTY (no values).
 */
#ifndef GS_HISTOGRAM_H
#define GS_HISTOGRAM_H

#include <stdint.h>

#include "gs_error.h"

#define GS_HIST_SUB_BITS 7
#define GS_HIST_SUB      (1u << GS_HIST_SUB_BITS)
/* Block 0 holds 0..SUB-1; block b >= 1 holds [2^(b+SUB_BITS-1), 2^(b+SUB_BITS)). */
#define GS_HIST_BUCKETS ((64u - GS_HIST_SUB_BITS + 1u) * GS_HIST_SUB)

typedef struct gs_histogram {
	uint64_t count;
	uint64_t sum; /* saturates at UINT64_MAX */
	uint64_t min; /* UINT64_MAX while empty */
	uint64_t max;
	uint64_t buckets[GS_HIST_BUCKETS];
} gs_histogram;

/* Empties h. */
int gs_histogram_init(gs_histogram *h);
/* Adds one value (n times for _n). */
int gs_histogram_record(gs_histogram *h, uint64_t v);
int gs_histogram_record_n(gs_histogram *h, uint64_t v, uint64_t n);
/* Adds every value of src to dst. */
int gs_histogram_merge(gs_histogram *dst, const gs_histogram *src);
/* The p-th percentile (0 <= p <= 100, nearest rank: the smallest value with
 * at least p% of the values at or below it), within the relative error
 * above and clamped to [min, max]; p = 100 is max exactly. */
int gs_histogram_percentile(const gs_histogram *h, double p, uint64_t *out);
/* Like gs_histogram_percentile, 0 when empty or on bad arguments. */
uint64_t gs_histogram_value_at(const gs_histogram *h, double p);
/* The mean (0 when empty). */
double gs_histogram_mean(const gs_histogram *h);

/* The bucket of v and the range [*lo, *hi] of a bucket (for tests). */
unsigned gs_histogram_bucket_of(uint64_t v);
void gs_histogram_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi);

#endif /* GS_HISTOGRAM_H */
