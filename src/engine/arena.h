/*
 * arena.h - size-classed storage for payloads and results in the segment.
 *
 * Owns: the arena region: pages of `page_size` bytes, each given to one size
 * class (32 B, 64 B, ... up to the page size) the first time that class needs
 * room, and per-class lock-free free lists of blocks.  A block is named by a
 * 32-bit reference (offset / 32 + 1), valid in every process.  Bytes up to
 * GS_INLINE_BYTES never come here: the task slot holds them.
 *
 * Thread-safety: alloc and free are lock-free (counted Treiber stacks), from
 * any thread of any process.  A process killed between alloc and storing the
 * reference leaks that block until gs_arena_rebuild() (quiescent only).
 *
 * Errors: GS_ETOOBIG (over the page size, the largest block), GS_EFULL (no
 * block of that class free and no page left).
 */
#ifndef GS_ARENA_H
#define GS_ARENA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "segment.h"

#define GS_ARENA_MIN_BLOCK 32u
#define GS_ARENA_CLASSES   26u /* 32 B .. 1 GiB: more than any page */

struct gs_arena_hdr {
	_Atomic uint64_t free_head[GS_ARENA_CLASSES]; /* counted: cnt << 32 | ref */
	_Atomic uint32_t next_page;
	uint32_t page_size;
	uint32_t n_pages;
	uint32_t pad;
	_Atomic uint64_t bytes_in_use;
};

typedef struct gs_arena {
	struct gs_arena_hdr *hdr;
	_Atomic uint8_t *page_class; /* class + 1 per page; 0: unassigned */
	uint8_t *data;
	uint32_t page_size;
	uint32_t n_pages;
} gs_arena;

/* The page size for a geometry: max_payload rounded up to a power of two, >= 64 KiB. */
uint32_t gs_arena_page_size(const gs_geom *g);
uint64_t gs_arena_meta_bytes(const gs_geom *g); /* header + page classes */

void gs_arena_bind(gs_arena *a, void *meta, void *data, const gs_geom *g, bool format);

/* Allocates a block of at least len bytes; *ref names it. len > 0. */
int gs_arena_alloc(gs_arena *a, uint32_t len, uint32_t *ref);

/* Frees the block `ref` holding len bytes (the len given to alloc). */
void gs_arena_free(gs_arena *a, uint32_t ref, uint32_t len);

/* The block's bytes: valid while the block is allocated. */
static inline uint8_t *gs_arena_ptr(const gs_arena *a, uint32_t ref)
{
	return a->data + (uint64_t)(ref - 1) * GS_ARENA_MIN_BLOCK;
}

/*
 * Rebuilds every free list (quiescent only): a block is in use iff
 * used(ref, arg) says so; is_used is called for every block of every page.
 */
int gs_arena_rebuild(gs_arena *a, bool (*used)(uint32_t ref, void *arg), void *arg);

#endif /* GS_ARENA_H */
