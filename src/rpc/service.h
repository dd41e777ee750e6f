/*
 * service.h - the gsched gRPC services over one engine: TaskService (the
 * PLM's front-end), WorkerService (the Register's), AdminService and
 * grpc.health.v1.Health, plus the two loops the server's role threads run.
 *
 * Owns: the process-local state of the server roles: the worker table
 * (worker ID -> connection, under RCU), the PLM's waiters (Wait calls,
 * SubmitStream streams, Watch streams) keyed by task ID, the retention queue
 * of results nobody has fetched yet, the scheduler's delay timer and wake-up.
 *
 * Thread-safety:
 *   - RPC callbacks run on the rpc server's polling threads;
 *   - gs_service_schedule / gs_service_wait_work: the scheduler thread only;
 *   - gs_service_tick: the register thread only;
 *   - both role threads call gs_service_thread_online() first and
 *     gs_service_thread_offline() last (RCU registration);
 *   - create/register/destroy: the main thread, with no role thread running
 *     (destroy after the rpc server is destroyed).
 * The PLM's state is under one process-local mutex; the engine is lock-free.
 *
 * Authentication.  With a client token and/or a worker token set, every
 * call must carry "authorization: Bearer <token>": TaskService and
 * AdminService take the client token, WorkerService the worker token
 * (checked when the call opens, before any message is read).  No or an
 * unknown token: UNAUTHENTICATED; the other kind's token: PERMISSION_DENIED.
 * A kind whose token is not set is not checked.  grpc.health.v1.Health stays
 * open (standard probes carry no token).  Comparisons take constant time;
 * no token appears in any message or log line.
 *
 * Errors: gs_status codes; RPC errors go to the client as gRPC statuses.
 */
#ifndef GS_SERVICE_H
#define GS_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "rpc_server.h"
#include "wal.h"

typedef struct gs_service gs_service;

typedef struct gs_service_opts {
	uint32_t heartbeat_ms;      /* workers send heartbeats this often (default 500) */
	uint32_t worker_timeout_ms; /* silence this long: dead (default 3000) */
	uint32_t result_ttl_ms;     /* unfetched results kept this long (default 300000) */
	uint32_t max_batch;         /* tasks per Submit (default 100000) */
	const char *client_token;   /* NULL: TaskService/AdminService unchecked (copied) */
	const char *worker_token;   /* NULL: WorkerService unchecked (copied) */
	/*
	 * The write-ahead log (NULL: none).  Every accepted submission,
	 * assignment, result, cancellation and release is appended; Submit,
	 * SubmitStream acks and Cancel replies are held until their records are
	 * durable: someone (the server's committer) must call gs_wal_sync and
	 * then gs_service_durable.  Not owned.
	 */
	gs_wal *wal;
	/*
	 * The roles this process runs: GS_ROLE_BIT()s of roles.h, 0 for all
	 * three (the default: threads of one process).  With fewer, the other
	 * roles run in other processes attached to the same named segment, and
	 * link must be its roles region (gs_engine_roles): the hand-offs go
	 * through its rings and doorbells (see "Roles as processes" below).
	 * No write-ahead log then (wal NULL).  Not owned.
	 */
	unsigned roles;
	gs_roles *link;
} gs_service_opts;

typedef struct gs_service_counters {
	uint64_t dispatched, results, stale_results, workers_lost, in_flight;
} gs_service_counters;

/* GS_EINVAL if both tokens are set and equal (the kinds could not be told
 * apart), GS_ENOMEM. */
int gs_service_create(gs_engine *e, const gs_service_opts *o, gs_service **out);
/* Registers every method and Health on srv, and the token check when a token
 * is set (before gs_rpc_server_start). */
int gs_service_register(gs_service *s, struct gs_rpc_server *srv);
void gs_service_destroy(gs_service *s);

void gs_service_thread_online(gs_service *s);
void gs_service_thread_offline(gs_service *s);
/* The same as gs_rpc_server_opts.on_thread_start / on_thread_stop hooks
 * (thread_arg: the service): the RPC threads read the worker table. */
void gs_service_rpc_thread_start(void *svc);
void gs_service_rpc_thread_stop(void *svc);

/* How often the Register's tick runs: a quarter of the heartbeat interval,
 * within 5..50 ms. */
uint32_t gs_service_tick_ms(const gs_service *s);

/*
 * The Main Scheduler's pass: releases due delayed tasks, dispatches every
 * task that has a free worker, and sends the assignments.  Returns how many
 * were dispatched; *next_due_us the next delayed task's time (0: none).
 */
size_t gs_service_schedule(gs_service *s, uint64_t now_us, uint64_t *next_due_us);

/* How long the scheduler may sleep at now_us: until the next delayed task is
 * due (next_due_us from gs_service_schedule; 0: none), at most cap_ms. */
int gs_service_sleep_ms(uint64_t now_us, uint64_t next_due_us, int cap_ms);

/* Sleeps until woken (a submit, a result, a worker) or timeout_ms passes. */
void gs_service_wait_work(gs_service *s, int timeout_ms);

/* The Register's tick: dead workers, Wait deadlines, expired results. */
void gs_service_tick(gs_service *s, uint64_t now_us);

/* Stop accepting submissions and dispatching (SIGTERM); health NOT_SERVING. */
void gs_service_begin_shutdown(gs_service *s);

void gs_service_counters_get(gs_service *s, gs_service_counters *out);

/* Wakes the scheduler (thread-safe). */
void gs_service_wake(gs_service *s);

uint64_t gs_now_us(void);

/* --- with a write-ahead log (opts.wal) ----------------------------------- */

/*
 * The committer's step after gs_wal_sync(wal, &durable_lsn) returned
 * sync_rc: sends every held reply whose records are durable.  On GS_EIO the
 * log has failed for good: every held Submit is refused (UNAVAILABLE) and
 * its tasks taken back, and so is every later one.  Committer thread only.
 */
void gs_service_durable(gs_service *s, uint64_t durable_lsn, int sync_rc);

/* Waits up to timeout_ms for a held reply; true if there is one. */
bool gs_service_acks_wait(gs_service *s, int timeout_ms);

/* A gs_wal_live_fn (arg: the service): adds every live task of the engine
 * to a snapshot, and the highest ID generation issued.  Any thread. */
int gs_service_snapshot(void *arg, gs_wal_snap *snap);

/* At start, before serving: retains every final task found in the engine
 * (adopted or restored) for result_ttl_ms from its finish.  Returns how many. */
size_t gs_service_retain_found(gs_service *s);

/* --- roles as processes (opts.roles, opts.link) ---------------------------
 *
 * What this process serves: a PLM process TaskService and AdminService, a
 * Register process WorkerService, every process grpc.health.v1.Health.  The
 * hand-offs to the roles in other processes: the scheduler pushes each
 * assigned task on GS_RING_ASSIGN, the Register each task it finished (or
 * failed for a lost worker) on GS_RING_DONE, the PLM each cancel on
 * GS_RING_CANCEL, and each rings the consumer's doorbell; a submit or a freed
 * worker slot rings the scheduler's.  Each process's role loop calls
 * gs_service_link_drain when its doorbell rings.
 * Not across processes: Watch shows QUEUED and final states only (a task's
 * ASSIGNED and RUNNING changes happen in other processes), handler names
 * workers advertise are not checked at Submit (the worker fails an unknown
 * one), and AdminService lists workers without their names.
 */

/* Takes what the rings hold for this process's roles and acts on it: sends
 * assignments and cancels to workers (Register), hands final tasks to their
 * waiters (PLM).  One thread per process (the role loop).  Returns how
 * many entries were taken. */
size_t gs_service_link_drain(gs_service *s, uint64_t now_us);

/*
 * After another role's restart repaired the engine (roles.h, the pause),
 * finds again what a ring may have lost with the dead process, by what
 * restarted: a scheduler may have lost an assignment between its CAS and its
 * push, so the Register resends the ASSIGNED tasks of its workers (a worker
 * ignores one it runs); a Register may have lost a final task, so the PLM
 * delivers the final tasks its waiters wait for and retains every other
 * final task.  A Register also counts the pause as heard from its workers.
 * The parked thread, after the pause, while no other thread of this process
 * operates (it still holds the process's gate for writing).
 */
void gs_service_link_resync(gs_service *s, uint64_t now_us);

/* At a role process's start, after its repair and before it listens: a
 * Register declares
 * every worker of the segment orphaned (their streams ended with the process
 * before it) so that their tasks run again, without counting against their
 * retries.  Returns how many workers were orphaned. */
size_t gs_service_link_start(gs_service *s, uint64_t now_us);

#endif /* GS_SERVICE_H */
