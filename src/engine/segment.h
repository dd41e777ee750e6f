/*
 * segment.h - the shared-memory segment that holds the whole engine.
 *
 * Owns: one mapping, either a named POSIX shared-memory object (shm_open +
 * mmap, shared by every process that attaches it) or an anonymous mapping
 * (tests, the embedded default).  The segment starts with a header (magic,
 * layout version, geometry, region offsets, owner pid, epoch) followed by the
 * regions of the task table, task heap, worker heap, payload arena and
 * idempotency keys and the roles' meeting place (roles.h) (layout version 7;
 * 6 had no roles region, 5 no keys).  Inside
 * the segment there are only indices and offsets, never pointers, so every
 * process may map it at a different address.
 *
 * Thread-safety: create/attach/detach are called by one thread per handle.
 * The header's atomic fields (owner, epoch) may be read by any process.
 *
 * Errors: GS_EINVAL (bad geometry or name), GS_EIO (shm_open/ftruncate/mmap
 * failed, errno kept), GS_ELAYOUT (attaching a segment of another magic,
 * version or geometry), GS_ENOTFOUND (attach: no such segment).
 */
#ifndef GS_SEGMENT_H
#define GS_SEGMENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GS_SEG_MAGIC   0x3130444548435347ULL /* "GSCHED01" little-endian */
#define GS_SEG_VERSION 7u

#define GS_MAX_QUEUES  64u               /* named queues per segment */
#define GS_PRIORITIES  256u              /* priority levels per queue, 255 runs first */
#define GS_MAX_WORKERS ((1u << 20) - 2u) /* worker index must fit 20 bits */
#define GS_MAX_TASKS   (1u << 30)
#define GS_CACHELINE   64u

/* The sizes a segment is built for; all fixed at creation. */
typedef struct gs_geom {
	uint32_t max_tasks;   /* task slots (default 1,048,576) */
	uint32_t max_workers; /* worker slots (default 4,096) */
	uint32_t max_payload; /* largest payload or result in bytes (default 1 MiB) */
	/* idempotency keys kept at once: a power of two, 16..2^24 (default
	 * max_tasks / 128 rounded up, within 1024..65536: 8192 for the
	 * default max_tasks; 256 B each, in pages touched only when used) */
	uint32_t max_keys;
	uint64_t arena_bytes; /* payload arena, a multiple of the page size (default 64 MiB) */
} gs_geom;

/* Fills unset (zero) fields of *g with the defaults above. */
void gs_geom_defaults(gs_geom *g);

/* Checks a geometry's ranges; GS_OK or GS_EINVAL. */
int gs_geom_check(const gs_geom *g);

/* Offsets of each region from the segment's base, derived from a geometry. */
typedef struct gs_layout {
	uint64_t tasks, nodes, levels, queues, workers, wheap, dirty, pages, arena, keys, roles;
	uint64_t total;
} gs_layout;

/* Computes the layout of a segment of geometry *g. */
void gs_layout_compute(const gs_geom *g, gs_layout *out);

struct gs_seg_header {
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;
	gs_geom geom;
	gs_layout layout;
	_Atomic int32_t owner_pid;   /* the process that serves this segment */
	_Atomic uint32_t ready;      /* 1 once formatted: attachers wait for it */
	_Atomic uint64_t epoch;      /* +1 on every ownership takeover */
	_Atomic uint64_t recoveries; /* completed recoveries */
	_Atomic uint64_t created_us; /* wall-clock creation time */
};

typedef struct gs_seg {
	struct gs_seg_header *hdr; /* == base */
	uint8_t *base;
	size_t size;
	bool named;
	char name[64];
	/* A named segment's descriptor, open until detach (has_fd): the very
	 * object mapped, for locks on it (roles.h).  Owned. */
	bool has_fd;
	int fd;
} gs_seg;

/*
 * Creates a segment of geometry *g.  name: NULL for an anonymous mapping
 * (shared with children forked later), else a POSIX shm name ("/gsched-x");
 * an existing object of that name is an error (GS_EIO, errno EEXIST) unless
 * `replace` is true, in which case it is unlinked first, or unless it was
 * abandoned unfinished (its creator died before gs_seg_made: nothing was
 * ever in it), in which case it is made again in place.  A named segment is
 * locked as "being made" until gs_seg_made.  The creator becomes the owner.
 * On error nothing is left behind.
 */
int gs_seg_create(const char *name, const gs_geom *g, bool replace, gs_seg *out);

/* The byte of a named segment's object its maker locks (F_OFD_SETLK) while
 * making it. */
#define GS_SEG_MAKING_LOCK_BYTE 64

/* The creator's last step, once the segment is formatted and marked ready:
 * lets go of the "being made" lock. */
void gs_seg_made(gs_seg *s);

/*
 * Attaches an existing named segment.  Fails with GS_ELAYOUT if its magic,
 * version or size do not match this build, GS_ENOTFOUND if it does not exist
 * or nothing was written in it yet (being made, or abandoned by a creator
 * that died: gs_seg_create makes it again).
 */
int gs_seg_attach(const char *name, gs_seg *out);

/* Unmaps (does not unlink). Safe on a zeroed handle. */
void gs_seg_detach(gs_seg *s);

/* Removes a named segment's name; mappings stay valid until detached. */
int gs_seg_unlink(const char *name);

/* True when the recorded owner process no longer exists. */
bool gs_seg_owner_dead(const gs_seg *s);

/* Makes the calling process the owner; returns the new epoch. */
uint64_t gs_seg_take_ownership(gs_seg *s);

#endif /* GS_SEGMENT_H */
