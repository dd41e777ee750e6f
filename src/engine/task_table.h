/*
 * task_table.h - the fixed table of task slots and the task state machine.
 *
 * Owns: the task slots of a segment, their free list, and every state
 * transition.  A task ID is (generation << 32 | slot): lookup is O(1) and an
 * old ID never matches a reused slot, because the generation moves on when a
 * slot is freed.  Each slot's state lives in one 64-bit word:
 *
 *   [63:32] generation  [31:12] worker index + 1 (0: none)
 *   [11:5]  attempt     [4] linked (a queue node refers to the slot)  [3:0] state
 *
 * and every transition is one compare-and-swap on that word, so a process
 * killed at any instruction leaves each slot in some valid state.  States:
 *
 *   FREE -> RESERVED -> QUEUED | DELAYED
 *   DELAYED -> QUEUED
 *   QUEUED -> ASSIGNED -> RUNNING -> COMPLETING -> DONE | FAILED
 *   ASSIGNED -> COMPLETING; ASSIGNED | RUNNING -> QUEUED (worker lost, retry)
 *   ASSIGNED | RUNNING -> FAILED (worker lost, retries spent)
 *   QUEUED | DELAYED | ASSIGNED | RUNNING -> CANCELLED
 *   DONE | FAILED | CANCELLED -> FREE, or -> RELEASED while still linked
 *   RELEASED -> FREE (by the consumer that unlinks it)
 *
 * RESERVED and COMPLETING are held by one thread only, while it writes the
 * slot's fields; recovery turns them back (RESERVED -> FREE, COMPLETING ->
 * ASSIGNED).
 *
 * Thread-safety: all functions are lock-free and may be called from any
 * thread of any process attached to the segment.  Plain fields of a slot are
 * written only while the writer holds it exclusively (RESERVED, COMPLETING)
 * and are published by the release-CAS that leaves that state.
 *
 * Errors: GS_ENOTFOUND (stale or out-of-range ID), GS_ESTATE (illegal
 * transition; nothing changed), GS_EFULL (no free slot).
 */
#ifndef GS_TASK_TABLE_H
#define GS_TASK_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "segment.h"

enum gs_task_state {
	GS_TASK_FREE = 0,
	GS_TASK_RESERVED = 1,
	GS_TASK_DELAYED = 2,
	GS_TASK_QUEUED = 3,
	GS_TASK_ASSIGNED = 4,
	GS_TASK_RUNNING = 5,
	GS_TASK_COMPLETING = 6,
	GS_TASK_DONE = 7,
	GS_TASK_FAILED = 8,
	GS_TASK_CANCELLED = 9,
	GS_TASK_RELEASED = 10,
};

/* DONE, FAILED or CANCELLED: the task has its one final result. */
static inline bool gs_task_state_final(uint32_t st)
{
	return st == GS_TASK_DONE || st == GS_TASK_FAILED || st == GS_TASK_CANCELLED;
}

/* Why a task ended the way it did, beside its exit status. */
enum gs_task_reason {
	GS_REASON_NONE = 0,
	GS_REASON_EXIT = 1,        /* the worker reported it */
	GS_REASON_WORKER_LOST = 2, /* its worker died and its retries were spent */
	GS_REASON_CANCELLED = 3,
	GS_REASON_TIMEOUT = 4,
};

#define GS_INLINE_BYTES 40u
#define GS_REF_NONE     0u         /* no bytes */
#define GS_REF_INLINE   UINT32_MAX /* bytes are in slot->inline_data */
#define GS_MAX_ATTEMPT  127u
#define GS_TASK_ID_NONE 0u

/*
 * One task: 112 bytes, so a queued task costs 128 with its queue node.  Times
 * after submission are 32-bit offsets from t_submit_us (gs_ts_pack): exact
 * to the microsecond for 35 minutes, then to the millisecond for 24 days.
 */
struct gs_task_slot {
	_Atomic uint64_t word; /* the state word above */
	uint64_t t_submit_us;  /* written while RESERVED */
	_Atomic uint32_t link; /* free list / delayed inbox: slot index + 1 */
	uint16_t queue;
	uint8_t priority;
	uint8_t max_retries;
	uint32_t timeout_ms;
	uint32_t payload_len;
	uint32_t payload_ref; /* GS_REF_INLINE, GS_REF_NONE or an arena reference */
	uint32_t result_len;  /* written while COMPLETING */
	uint32_t result_ref;
	_Atomic int32_t status; /* exit code or handler status */
	_Atomic uint8_t reason; /* enum gs_task_reason */
	uint8_t flags;
	/* Attempts that count against no retry: the task was requeued because
	 * the server, not its worker, went away (a restart; engine.c). */
	_Atomic uint16_t free_attempts;
	_Atomic uint32_t t_assign; /* gs_ts_pack offsets from t_submit_us; 0: not yet */
	_Atomic uint32_t t_start;
	_Atomic uint32_t t_finish;
	uint32_t not_before; /* written while RESERVED; 0: not delayed */
	uint8_t inline_data[GS_INLINE_BYTES];
};

/* A time as an offset from `base` (0 stays "unset"; earlier times clamp to base). */
static inline uint32_t gs_ts_pack(uint64_t base_us, uint64_t t_us)
{
	if (t_us == 0)
		return 0;
	uint64_t d = (t_us > base_us ? t_us - base_us : 0) + 1;
	if (d < 0x80000000u)
		return (uint32_t)d;
	uint64_t ms = d / 1000;
	return 0x80000000u | (uint32_t)(ms < 0x7fffffffu ? ms : 0x7fffffffu);
}

static inline uint64_t gs_ts_unpack(uint64_t base_us, uint32_t v)
{
	if (v == 0)
		return 0;
	if (v & 0x80000000u)
		return base_us + (uint64_t)(v & 0x7fffffffu) * 1000;
	return base_us + v - 1;
}

/* --- the state word --------------------------------------------------- */

static inline uint32_t gs_word_state(uint64_t w)
{
	return (uint32_t)(w & 0xfu);
}
static inline bool gs_word_linked(uint64_t w)
{
	return (w >> 4) & 1u;
}
static inline uint32_t gs_word_attempt(uint64_t w)
{
	return (uint32_t)((w >> 5) & 0x7fu);
}
static inline uint32_t gs_word_worker(uint64_t w) /* worker index + 1, 0 when none */
{
	return (uint32_t)((w >> 12) & 0xfffffu);
}
static inline uint32_t gs_word_gen(uint64_t w)
{
	return (uint32_t)(w >> 32);
}
static inline uint64_t gs_word_make(uint32_t gen, uint32_t worker1, uint32_t attempt, bool linked,
                                    uint32_t state)
{
	return ((uint64_t)gen << 32) | ((uint64_t)(worker1 & 0xfffffu) << 12) |
	       ((uint64_t)(attempt & 0x7fu) << 5) | ((uint64_t)(linked ? 1u : 0u) << 4) |
	       (state & 0xfu);
}
static inline uint64_t gs_word_with_state(uint64_t w, uint32_t state)
{
	return (w & ~(uint64_t)0xfu) | (state & 0xfu);
}
static inline uint64_t gs_word_with_linked(uint64_t w, bool linked)
{
	return (w & ~((uint64_t)1u << 4)) | ((uint64_t)(linked ? 1u : 0u) << 4);
}

/* --- task IDs ---------------------------------------------------------- */

static inline uint64_t gs_task_id(uint32_t slot, uint32_t gen)
{
	return ((uint64_t)gen << 32) | slot;
}
static inline uint32_t gs_task_id_slot(uint64_t id)
{
	return (uint32_t)id;
}
static inline uint32_t gs_task_id_gen(uint64_t id)
{
	return (uint32_t)(id >> 32);
}

const char *gs_task_state_name(uint32_t state);

/* --- the table ---------------------------------------------------------- */

/* Shared part, in the segment. */
struct gs_task_table_hdr {
	_Atomic uint64_t free_head; /* tagged: count << 32 | (slot + 1) */
	uint8_t pad0[GS_CACHELINE - 8];
	_Atomic uint32_t high_water; /* slots [0, high_water) have been handed out once */
	_Atomic uint32_t in_use;     /* slots not FREE */
	_Atomic uint32_t delayed;    /* head of the DELAYED inbox: slot + 1, linked by `link` */
	/* No ID is handed out with a lower generation (0: no floor).  Set by
	 * gs_engine_restore_finish() so that no new ID can equal one issued
	 * before a restart; a segment formatted by an older build reads 0. */
	_Atomic uint32_t gen_floor;
	uint8_t pad1[GS_CACHELINE - 16];
};

/* Process-local view. */
typedef struct gs_task_table {
	struct gs_task_table_hdr *hdr;
	struct gs_task_slot *slots;
	uint32_t max_tasks;
} gs_task_table;

/* Bytes the table needs in a segment of geometry *g. */
uint64_t gs_task_table_region_bytes(const gs_geom *g);

/* Binds a view to its region; `format` initialises a new region. */
void gs_task_table_bind(gs_task_table *t, void *region, uint32_t max_tasks, bool format);

/*
 * Takes a FREE slot and moves it to RESERVED; *id receives its new ID.
 * The caller fills the slot, then publishes it with gs_task_table_cas().
 * GS_EFULL when every slot is in use.
 */
int gs_task_table_reserve(gs_task_table *t, uint64_t *id);

/*
 * Returns a slot to the free list.  Caller must hold the slot exclusively:
 * its word is `expect` (RESERVED, RELEASED, or DONE/FAILED/CANCELLED not
 * linked), and no reader may use its fields any more.  Moves the generation
 * on, so every old ID of the slot stops matching.  GS_ESTATE if the word
 * changed under the caller.
 */
int gs_task_table_free(gs_task_table *t, uint32_t slot, uint64_t expect);

/*
 * Resolves an ID to its slot and current word.  GS_ENOTFOUND if the index is
 * out of range, the generation differs or the slot is FREE or RESERVED.
 */
int gs_task_table_lookup(const gs_task_table *t, uint64_t id, struct gs_task_slot **slot,
                         uint64_t *word);

/*
 * The one transition primitive: CAS the slot's word from *expect to desired.
 * On failure *expect receives the current word.  Release on success (the
 * slot's fields written before become visible with the new state), acquire
 * on failure.
 */
static inline bool gs_task_table_cas(struct gs_task_slot *s, uint64_t *expect, uint64_t desired)
{
	return atomic_compare_exchange_strong_explicit(&s->word, expect, desired,
	                                               memory_order_acq_rel, memory_order_acquire);
}

/* Whether `from -> to` is an edge of the state machine above. */
bool gs_task_transition_legal(uint32_t from, uint32_t to);

#endif /* GS_TASK_TABLE_H */
