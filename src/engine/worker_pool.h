/*
 * worker_pool.h - the worker slots in the segment: state, capacity, load.
 *
 * Owns: one slot per connected worker (its state, slot count, queue mask,
 * current load, last heartbeat) and the "dirty" marks that tell the
 * scheduler's worker heap which workers' keys changed.  A worker ID is
 * (generation << 32 | slot index); a slot reused after a death gets a new
 * generation, so reports under an old ID are refused.
 *
 *   FREE -> ALIVE <-> DRAINING;  ALIVE | DRAINING -> DEAD -> FREE
 *
 * Thread-safety: every function is lock-free and callable from any thread of
 * any process.  Loads are atomic counters; each change marks the worker dirty
 * (a two-level bitmap) so the single scheduler re-keys it (worker_heap.h).
 *
 * Errors: GS_EINVAL (bad slots or mask), GS_EFULL (no free worker slot),
 * GS_ENOTFOUND (unknown or stale worker ID), GS_ESTATE (wrong state).
 */
#ifndef GS_WORKER_POOL_H
#define GS_WORKER_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "segment.h"

enum gs_worker_state {
	GS_WORKER_FREE = 0,
	GS_WORKER_ALIVE = 1,
	GS_WORKER_DRAINING = 2, /* takes no new tasks */
	GS_WORKER_DEAD = 3,     /* its tasks are being requeued */
	GS_WORKER_CLAIMED = 4,  /* being registered by one thread */
};

#define GS_WORKER_MAX_SLOTS 65535u

struct gs_worker_slot {
	_Atomic uint64_t word; /* gen << 32 | state */
	_Atomic uint32_t load; /* tasks assigned and not yet finished */
	uint32_t slots;        /* capacity, written while CLAIMED */
	uint64_t queue_mask;   /* bit q: serves queue q; written while CLAIMED */
	_Atomic uint64_t last_seen_us;
	_Atomic uint64_t assigned_total;
	_Atomic uint64_t finished_total;
	uint8_t pad[GS_CACHELINE - 48];
};

typedef struct gs_worker_pool {
	struct gs_worker_slot *slots;
	_Atomic uint64_t *dirty_leaf;    /* bit per worker */
	_Atomic uint64_t *dirty_summary; /* bit per leaf word */
	uint32_t max_workers;
	uint32_t leaf_words, summary_words;
} gs_worker_pool;

static inline uint64_t gs_worker_id(uint32_t slot, uint32_t gen)
{
	return ((uint64_t)gen << 32) | slot;
}

uint64_t gs_worker_pool_slots_bytes(const gs_geom *g);
uint64_t gs_worker_pool_dirty_bytes(const gs_geom *g);
void gs_worker_pool_bind(gs_worker_pool *p, void *slots, void *dirty, uint32_t max_workers,
                         bool format);

/*
 * Registers a worker with `slots` (1..65535) task slots serving the queues
 * in `queue_mask` (non-zero); *id receives its ID.  Marks it dirty.
 */
int gs_worker_pool_register(gs_worker_pool *p, uint32_t slots, uint64_t queue_mask, uint64_t now_us,
                            uint64_t *id);

/* Resolves an ID: its slot index and state. GS_ENOTFOUND if stale or free. */
int gs_worker_pool_lookup(const gs_worker_pool *p, uint64_t id, uint32_t *slot, uint32_t *state);

/* Moves worker `id` from state `from` to `to` by one CAS; marks it dirty. */
int gs_worker_pool_transition(gs_worker_pool *p, uint64_t id, uint32_t from, uint32_t to);

/* Records a heartbeat. */
int gs_worker_pool_heartbeat(gs_worker_pool *p, uint64_t id, uint64_t now_us);

/* Load changes (by slot index); each marks the worker dirty. */
void gs_worker_pool_load_add(gs_worker_pool *p, uint32_t slot, int32_t delta);

/* Marks a worker's key as changed. */
void gs_worker_pool_mark_dirty(gs_worker_pool *p, uint32_t slot);

/*
 * Takes every dirty mark and calls fn(slot, arg) for each (the scheduler).
 * A mark set while this runs is either taken now or left for the next call.
 */
void gs_worker_pool_take_dirty(gs_worker_pool *p, void (*fn)(uint32_t slot, void *arg), void *arg);

#endif /* GS_WORKER_POOL_H */
