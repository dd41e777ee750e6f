/*
 * worker_heap.h - the least-loaded eligible worker of each queue.
 *
 * Owns: for each queue, a binary min-heap of the workers that serve it and
 * are ALIVE, keyed by (load / slots, slot index) as one 64-bit number, with a
 * position index per worker so a key change is one sift, O(log W).  The keys
 * are snapshots: whenever a worker's load or state changes, worker_pool.c
 * marks it dirty and gs_worker_heap_sync() re-keys it, so the heap is exact
 * after every sync however loads changed concurrently.
 *
 * Thread-safety: single writer.  Only the scheduler (one thread of one
 * process at a time: the Main Scheduler role) calls these functions.  The
 * heaps are in the segment so a restarted scheduler can rebuild them from the
 * worker pool with gs_worker_heap_rebuild().
 *
 * Errors: GS_EEMPTY (no eligible worker with a free slot), GS_EINVAL.
 */
#ifndef GS_WORKER_HEAP_H
#define GS_WORKER_HEAP_H

#include <stdbool.h>
#include <stdint.h>

#include "segment.h"
#include "worker_pool.h"

#define GS_WORKER_KEY_FULL (1ull << 20) /* load/slots scaled: 1.0 */

typedef struct gs_worker_heap {
	uint32_t *size;    /* [GS_MAX_QUEUES] */
	uint64_t *entries; /* [GS_MAX_QUEUES][max_workers] keys */
	uint32_t *pos;     /* [GS_MAX_QUEUES][max_workers] position + 1, 0: absent */
	uint32_t max_workers;
} gs_worker_heap;

uint64_t gs_worker_heap_region_bytes(const gs_geom *g);
void gs_worker_heap_bind(gs_worker_heap *h, void *region, uint32_t max_workers, bool format);

/* Re-keys every worker marked dirty since the last call. */
void gs_worker_heap_sync(gs_worker_heap *h, gs_worker_pool *p);

/*
 * The least-loaded worker serving queue q with a free slot, by the keys of
 * the last sync: *slot receives its index.  GS_EEMPTY if none.
 */
int gs_worker_heap_peek(const gs_worker_heap *h, uint32_t q, uint32_t *slot);

/* Empties the heaps and re-inserts every ALIVE worker (after a restart). */
void gs_worker_heap_rebuild(gs_worker_heap *h, gs_worker_pool *p);

#endif /* GS_WORKER_HEAP_H */
