/*
 * engine.h - the scheduler core: every operation the server roles need.
 *
 * Owns: one segment (segment.h) and the views of its regions: the task table,
 * task heap, payload arena, worker pool and worker heap.  This is the API the
 * PLM, the Main Scheduler and the Register call; it has no threads, no clock
 * (callers pass `now_us`, microseconds of CLOCK_REALTIME) and no gRPC.
 *
 * A task's path: gs_engine_submit() -> QUEUED (or DELAYED until
 * gs_engine_delayed_release()) -> gs_engine_dispatch() or
 * gs_engine_pop_assign() -> ASSIGNED -> gs_engine_start() -> RUNNING ->
 * gs_engine_finish() -> DONE | FAILED -> gs_engine_release() -> FREE.
 * gs_engine_cancel() ends it early; gs_engine_worker_dead() requeues a dead
 * worker's tasks (attempt + 1) or fails them with GS_REASON_WORKER_LOST.
 *
 * Thread-safety, per function:
 *   any thread, any process: submit, submit_idem, idem_at, pop_assign, start, finish, cancel,
 *     task_info/payload/result, queue, queue_stats, worker_register,
 *     worker_heartbeat, worker_drain, worker_dead, worker_orphaned, worker_expired,
 *     worker_tasks, worker_info, delayed_release.
 *   the scheduler only (one thread at a time): dispatch, delayed_take.
 *   the owner of a task's result (no concurrent reader): release.
 *   quiescent (no other thread or process using the segment): create,
 *     close, recover, restore, idem_restore, restore_finish.
 *
 * Buffers: pointers returned by task_payload/task_result point into the
 * segment and stay valid until the task is released.  Spec payloads and
 * results passed in are copied; the caller keeps ownership.
 *
 * Errors: see gs_error.h; each function lists its own.  Bad input returns an
 * error and changes nothing.
 */
#ifndef GS_ENGINE_H
#define GS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "idem_table.h"
#include "roles.h"
#include "segment.h"
#include "task_table.h"
#include "worker_pool.h"

typedef struct gs_engine gs_engine;

typedef struct gs_engine_opts {
	const char *segment_name; /* POSIX shm name, or NULL for an anonymous segment */
	gs_geom geom;             /* zero fields take the defaults */
	bool replace;             /* unlink an existing segment of that name first */
} gs_engine_opts;

#define GS_MAX_RETRIES 100u

typedef struct gs_task_spec {
	uint32_t queue;         /* from gs_engine_queue() */
	uint32_t priority;      /* 0..255, higher runs first */
	uint32_t max_retries;   /* extra attempts after a worker is lost, 0..100 */
	uint32_t timeout_ms;    /* for the worker; 0: none */
	uint64_t not_before_us; /* 0 or a time: DELAYED until then */
	const void *payload;    /* copied */
	uint32_t payload_len;   /* 0..max_payload */
} gs_task_spec;

typedef struct gs_assignment {
	uint64_t task;
	uint64_t worker;
	uint32_t attempt; /* 1 for the first */
	uint32_t queue;
	uint32_t priority;
	uint32_t timeout_ms;
} gs_assignment;

typedef struct gs_outcome {
	bool failed;        /* FAILED rather than DONE */
	int32_t status;     /* exit code or handler status */
	uint8_t reason;     /* enum gs_task_reason; 0 defaults to GS_REASON_EXIT */
	const void *result; /* copied */
	uint32_t result_len;
	uint64_t started_us;  /* 0: keep the recorded start */
	uint64_t finished_us; /* 0: now_us of the call */
} gs_outcome;

typedef struct gs_task_info {
	uint64_t id;
	uint32_t state; /* enum gs_task_state */
	uint32_t attempt;
	uint32_t queue, priority, max_retries, timeout_ms;
	uint64_t worker; /* worker ID while assigned or after it ran, else 0 */
	int32_t status;
	uint32_t reason;
	uint32_t payload_len, result_len;
	bool result_dropped; /* the arena was full when the result came */
	uint64_t submitted_us, assigned_us, started_us, finished_us, not_before_us;
} gs_task_info;

/* A queue's counters (task_heap.h).  Gauges, tasks in that state now:
 * queued, delayed, assigned (given to a worker, not started), running.
 * Totals since the segment was made: submitted, done, failed, cancelled,
 * requeued (attempts put back after a lost worker). */
typedef struct gs_queue_stats {
	uint64_t queued, delayed, assigned, running;
	uint64_t submitted, done, failed, cancelled, requeued;
} gs_queue_stats;

typedef struct gs_worker_info {
	uint64_t id;
	uint32_t state; /* enum gs_worker_state */
	uint32_t slots, load;
	uint64_t queue_mask, last_seen_us, assigned_total, finished_total;
} gs_worker_info;

typedef struct gs_recovery_report {
	uint32_t requeued_unlinked; /* QUEUED tasks a dead process had unlinked */
	uint32_t reserved_freed;    /* half-submitted slots freed (never acknowledged) */
	uint32_t completing_undone; /* half-recorded results dropped: back to ASSIGNED */
	uint32_t orphans_requeued;  /* tasks of workers that no longer exist */
	uint32_t released_freed;
	uint32_t workers_freed;
	uint32_t keyed_published; /* filled tasks of a committed key, published */
} gs_recovery_report;

/* Called by worker_dead for each task it moves: to QUEUED or FAILED. */
typedef void (*gs_task_event_fn)(uint64_t task, uint32_t new_state, void *arg);

/* --- lifecycle ------------------------------------------------------- */

/* Creates and formats a segment; the caller is its owner. */
int gs_engine_create(const gs_engine_opts *o, gs_engine **out);

/*
 * Attaches an existing named segment.  GS_ENOTFOUND (none, or one not ready:
 * being made, or abandoned by a creator that died; gs_engine_create then
 * makes it again, or fails with GS_EIO / EEXIST while a live creator is at
 * it), GS_ELAYOUT.  If its
 * owner is dead, *owner_dead is set: call gs_engine_recover() once no other
 * process operates on it.
 */
int gs_engine_attach(const char *name, gs_engine **out, bool *owner_dead);

/* Unmaps; unlinks a named segment too when `unlink_name`. */
void gs_engine_close(gs_engine *e, bool unlink_name);

/* Repairs what dead processes left half-done (quiescent); takes ownership. */
int gs_engine_recover(gs_engine *e, gs_recovery_report *report);

const gs_geom *gs_engine_geom(const gs_engine *e);

/* Task slots not FREE (queued, delayed, on a worker, or a result kept). */
uint32_t gs_engine_tasks_in_use(const gs_engine *e);
gs_seg *gs_engine_segment(gs_engine *e);

/* The roles region of the segment (roles.h): used when the server's roles
 * run as separate processes.  Valid while the engine is open. */
gs_roles *gs_engine_roles(gs_engine *e);

/* --- queues --------------------------------------------------------- */

/* Queue ID by name; `create` names it if absent. "default" always exists. */
int gs_engine_queue(gs_engine *e, const char *name, bool create, uint32_t *qid);
const char *gs_engine_queue_name(const gs_engine *e, uint32_t qid);
int gs_engine_queue_stats(const gs_engine *e, uint32_t qid, gs_queue_stats *out);

/* --- tasks ---------------------------------------------------------- */

/*
 * Submits n tasks, all or nothing; ids[i] receives the ID of specs[i].
 * GS_EINVAL (bad queue, priority, retries, n == 0), GS_ETOOBIG (payload
 * over max_payload), GS_EFULL (table or arena full: nothing submitted).
 */
int gs_engine_submit(gs_engine *e, const gs_task_spec *specs, size_t n, uint64_t now_us,
                     uint64_t *ids);

/* --- idempotency keys (idem_table.h) --------------------------------- */

/* A request's idempotency key: 1..GS_IDEM_MAX_KEY bytes of any content, and
 * a digest of the request (the caller's choice, e.g. a hash of the specs; a
 * retry must bring the same one). */
typedef struct gs_idem_req {
	const void *key;
	uint32_t key_len;
	uint64_t digest;
} gs_idem_req;

enum gs_idem_outcome {
	GS_IDEM_NEW = 0,       /* the tasks were submitted and the key recorded */
	GS_IDEM_EXISTING = 1,  /* the key's first request: ids[] are its IDs */
	GS_IDEM_KEYS_FULL = 2, /* GS_EFULL came from the key table, not the task table */
};

/*
 * gs_engine_submit under an idempotency key.  A key still live (at least
 * one of the tasks it created is not yet released) with the same n and
 * digest: ids[] receive those IDs, nothing is submitted, *outcome is
 * GS_IDEM_EXISTING.  Otherwise the tasks are submitted as by
 * gs_engine_submit and the key is recorded with their IDs (GS_IDEM_NEW).
 * Errors as gs_engine_submit, and: GS_EINVAL (key length 0 or over
 * GS_IDEM_MAX_KEY), GS_ESTATE (the key is live with another n or digest:
 * nothing changed), GS_EBUSY (the same key is being submitted by another
 * thread right now: retry, and get its IDs), GS_EFULL with
 * GS_IDEM_KEYS_FULL (no room in the key table: the key's window holds only
 * live keys), GS_ETOOBIG (n over gs_engine_idem_max_ids).
 */
int gs_engine_submit_idem(gs_engine *e, const gs_idem_req *k, const gs_task_spec *specs, size_t n,
                          uint64_t now_us, uint64_t *ids, enum gs_idem_outcome *outcome);

/* Entries of the key table (geometry max_keys); the most IDs one key holds. */
uint32_t gs_engine_idem_capacity(const gs_engine *e);
uint32_t gs_engine_idem_max_ids(const gs_engine *e);

/*
 * The live key in entry `index` < capacity, for listing (a snapshot): info,
 * and up to cap of its info->n IDs copied to ids.  GS_ENOTFOUND (no live key
 * there), GS_EBUSY (it changed while being read: read again).  Any thread.
 */
int gs_engine_idem_at(const gs_engine *e, uint32_t index, gs_idem_info *info, uint64_t *ids,
                      size_t cap);

/*
 * Puts a key back with its task IDs (log replay: quiescent, after the tasks
 * were restored, before gs_engine_restore_finish).  GS_ENOTFOUND if none of
 * those tasks is in the engine (the key is dead: callers skip it),
 * GS_ESTATE (already there), GS_EFULL, GS_ETOOBIG, GS_EINVAL.
 */
int gs_engine_idem_restore(gs_engine *e, const gs_idem_req *k, uint64_t created_us,
                           const uint64_t *ids, size_t n);

/*
 * Pops the next task of queue `queue` and assigns it to `worker` in one CAS,
 * whatever that worker's load.  GS_EEMPTY (nothing queued), GS_ENOTFOUND
 * (unknown worker), GS_ESTATE (worker not alive).
 */
int gs_engine_pop_assign(gs_engine *e, uint32_t queue, uint64_t worker, uint64_t now_us,
                         gs_assignment *out);

/*
 * The Main Scheduler's step: the least-loaded alive worker of `queue` with a
 * free slot gets the queue's next task.  GS_EEMPTY when no task or no free
 * worker (check gs_engine_queue_stats to tell which).  Scheduler only.
 */
int gs_engine_dispatch(gs_engine *e, uint32_t queue, uint64_t now_us, gs_assignment *out);

/* ASSIGNED -> RUNNING for (worker, attempt).  GS_ESTALE for another attempt. */
int gs_engine_start(gs_engine *e, uint64_t task, uint64_t worker, uint32_t attempt,
                    uint64_t now_us);

/*
 * Records the outcome of (worker, attempt): -> DONE or FAILED with the
 * result bytes.  GS_ESTALE: not this worker's current attempt (ignored,
 * nothing changed); GS_ETOOBIG: result over max_payload (nothing changed).
 * If the arena is full the task still finishes, with result_dropped set.
 */
int gs_engine_finish(gs_engine *e, uint64_t task, uint64_t worker, uint32_t attempt,
                     const gs_outcome *o, uint64_t now_us);

/*
 * Cancels a DELAYED, QUEUED, ASSIGNED or RUNNING task.  For a task that was
 * on a worker, *worker and *attempt say whom to tell (else 0).  GS_ESTATE if
 * already final, GS_EBUSY while its result is being recorded.
 */
int gs_engine_cancel(gs_engine *e, uint64_t task, uint64_t now_us, uint64_t *worker,
                     uint32_t *attempt);

/* Frees a final (DONE, FAILED, CANCELLED) task: its ID stops resolving. */
int gs_engine_release(gs_engine *e, uint64_t task);

int gs_engine_task_info(const gs_engine *e, uint64_t task, gs_task_info *out);
int gs_engine_task_payload(const gs_engine *e, uint64_t task, const uint8_t **p, uint32_t *len);
int gs_engine_task_result(const gs_engine *e, uint64_t task, const uint8_t **p, uint32_t *len);

/* --- delayed tasks -------------------------------------------------- */

/* Takes up to max newly DELAYED task IDs for the scheduler's timer. */
size_t gs_engine_delayed_take(gs_engine *e, uint64_t *ids, size_t max);

/*
 * Moves a DELAYED task, taken with gs_engine_delayed_take(), to QUEUED.
 * GS_ENOTFOUND / GS_ESTATE if cancelled; GS_EBUSY if not taken yet.
 */
int gs_engine_delayed_release(gs_engine *e, uint64_t task, uint64_t now_us);

/* --- workers -------------------------------------------------------- */

int gs_engine_worker_register(gs_engine *e, uint32_t slots, uint64_t queue_mask, uint64_t now_us,
                              uint64_t *worker);
int gs_engine_worker_heartbeat(gs_engine *e, uint64_t worker, uint64_t now_us);
/* ALIVE -> DRAINING: takes no new tasks, finishes what it has. */
int gs_engine_worker_drain(gs_engine *e, uint64_t worker);

/*
 * Declares a worker dead: each of its ASSIGNED/RUNNING tasks goes back to
 * QUEUED with attempt + 1, or to FAILED (GS_REASON_WORKER_LOST) when its
 * retries are spent; fn (may be NULL) hears of each.  Then the worker slot
 * is freed and its ID stops resolving.  O(tasks in the table).
 */
int gs_engine_worker_dead(gs_engine *e, uint64_t worker, uint64_t now_us, gs_task_event_fn fn,
                          void *arg);

/*
 * As gs_engine_worker_dead, for a worker that may be fine but that nobody
 * can reach any more: its stream ended with a Register process that was
 * restarted.  Its tasks go back to QUEUED with attempt + 1, an attempt that
 * counts against no retry (at-least-once: as after a log replay or a
 * repair, a restart of the server fails no task and costs no retry); at
 * GS_MAX_ATTEMPT they keep that number.  fn hears only of QUEUED moves.
 */
int gs_engine_worker_orphaned(gs_engine *e, uint64_t worker, uint64_t now_us, gs_task_event_fn fn,
                              void *arg);

/* Workers whose last heartbeat is older than now - timeout: up to max IDs. */
size_t gs_engine_worker_expired(const gs_engine *e, uint64_t now_us, uint64_t timeout_us,
                                uint64_t *workers, size_t max);

/* IDs of the tasks assigned to a worker, up to max; *n the number written. */
int gs_engine_worker_tasks(const gs_engine *e, uint64_t worker, uint64_t *ids, size_t max,
                           size_t *n);

/* Worker by ID, or by slot index for listing (GS_ENOTFOUND when free). */
int gs_engine_worker_info(const gs_engine *e, uint64_t worker, gs_worker_info *out);
int gs_engine_worker_at(const gs_engine *e, uint32_t slot, gs_worker_info *out);

/* --- restore (from the write-ahead log) ------------------------------ */

/* A task as a log remembers it, to put back under its old ID. */
typedef struct gs_restore_task {
	uint64_t id;    /* its old ID: slot | generation << 32 (generation > 0) */
	uint32_t state; /* QUEUED, DELAYED, ASSIGNED or RUNNING (all come back
	                   QUEUED, or DELAYED while not_before_us is ahead), or
	                   DONE, FAILED, CANCELLED (kept with their result) */
	uint32_t queue; /* from gs_engine_queue() */
	uint32_t priority, max_retries, timeout_ms;
	uint64_t submitted_us, not_before_us;
	const void *payload; /* the spec bytes, copied */
	uint32_t payload_len;
	uint32_t attempt; /* last attempt assigned, 0 if never */
	/* final states: */
	int32_t status;
	uint32_t reason;      /* enum gs_task_reason */
	uint64_t finished_us; /* 0: now_us */
	const void *result;   /* copied */
	uint32_t result_len;
} gs_restore_task;

/*
 * Puts a task back under its old ID, on a freshly created engine before any
 * submit (quiescent; call gs_engine_restore_finish() once all are in).  A
 * task that was on a worker comes back QUEUED with the next attempt number
 * (at-least-once: a restart does not count against its retries).  QUEUED
 * tasks join their queue in the order of the calls, so restoring them in
 * submission order keeps FIFO within a priority.  GS_EINVAL (bad field,
 * generation 0, unknown state or queue), GS_ETOOBIG (payload or result over
 * max_payload), GS_EFULL (slot beyond max_tasks, or the arena is full: start
 * with the geometry of the server that wrote the log), GS_ESTATE (that slot
 * is already in use).  On error nothing changed.
 */
int gs_engine_restore(gs_engine *e, const gs_restore_task *t, uint64_t now_us);

/*
 * Links what gs_engine_restore() put back (as gs_engine_recover() does: free
 * list, delayed inbox, arena, counters) and makes every ID handed out from
 * now on have a generation >= gen_floor, so that no new ID equals one issued
 * before the restart: pass gs_engine_gen_high() of the old engine + 1, as the
 * log remembered it.  Quiescent.  report may be NULL.
 */
int gs_engine_restore_finish(gs_engine *e, uint32_t gen_floor, gs_recovery_report *report);

/* The highest generation any ID of this engine has had or will get next
 * from a free slot: what a log must remember for gs_engine_restore_finish. */
uint32_t gs_engine_gen_high(const gs_engine *e);

/*
 * The task in slot `slot`, for listing (e.g. a snapshot of the live tasks):
 * GS_ENOTFOUND when the slot is free, being filled or released.  Any thread;
 * the slot may change right after (read its bytes with task_payload /
 * task_result by out->id, which fail once the ID is gone).
 */
int gs_engine_task_at(const gs_engine *e, uint32_t slot, gs_task_info *out);

/* Slots at or above this one have never held a task: where a listing can stop. */
uint32_t gs_engine_task_slots_used(const gs_engine *e);

/* --- checking ------------------------------------------------------- */

/*
 * Verifies the invariants (quiescent): every QUEUED task reachable exactly
 * once, every node's task linked, worker loads equal to their assigned
 * tasks, counters consistent.  GS_OK or GS_ESTATE with a message in msg.
 */
int gs_engine_check(gs_engine *e, char *msg, size_t msg_len);

#endif /* GS_ENGINE_H */
