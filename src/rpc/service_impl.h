/*
 * service_impl.h - state shared by the service files (service.c, plm.c,
 * task_service.c, worker_service.c, admin_service.c).  Not a public header.
 */
#ifndef GS_SERVICE_IMPL_H
#define GS_SERVICE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "codec.h"
#include "delay_timer.h"
#include "health.h"
#include "id_map.h"
#include "service.h"
#include "worker_table.h"

/* Something waiting for task results: a Wait call, a SubmitStream, a Watch. */
enum waiter_kind { W_WAIT, W_STREAM, W_WATCH };

struct waiter {
	enum waiter_kind kind;
	gs_service *svc;
	struct gs_rpc_call *call; /* a user reference, dropped when the waiter goes */
	unsigned refs;            /* subscriptions + 1 while the call is open */
	bool closed;              /* the call is over: deliver nothing more */
	bool half_closed;         /* stream: the client will submit no more */
	uint64_t pending;         /* stream/watch: results still to deliver */
	/* W_WAIT */
	uint64_t *ids;
	size_t n_ids, remaining;
	bool any;
	bool include_output;
	uint64_t deadline_us;
	struct waiter *next_wait, *prev_wait; /* list of open Waits */
	/* Stream/watch output gathered under mu and sent as one message by
	 * gs_plm_flush; the tasks it carries are released once it is sent. */
	gs_pb_buf out;
	uint64_t *out_ids;
	size_t n_out_ids, cap_out_ids;
	struct waiter *next_dirty; /* on s->dirty while out holds something */
	bool dirty;
	/* W_WATCH: counted in s->watchers while open; a queue watch (no IDs)
	 * is on s->qwatch[queue] and never ends by itself. */
	bool watch_counted;
	bool queue_watch;
	uint32_t queue;
	struct waiter *next_qwatch, *prev_qwatch;
};

struct sub {
	struct sub *next;
	uint64_t id;
	struct waiter *w;
};

/* Assignments gathered per worker during one dispatch pass, sent as one
 * message per worker at its end.  Owned by the holder of sched_mu. */
struct assign_batch {
	struct assign_ent {
		uint64_t wid;
		gs_pb_buf buf;
	} * ent;
	size_t n, cap;
	int32_t *pos; /* per worker slot: index in ent, or -1 */
};

struct retained {
	uint64_t id;
	uint64_t expires_us;
};

/* One worker's stream. */
struct worker_conn {
	gs_service *svc;
	struct gs_rpc_call *call;
	uint64_t wid; /* 0 until registered */
	char name[64];
	char peer[64];
	uint32_t slots;
	uint64_t registered_us;
	atomic_bool lost; /* declared dead: its stream is being torn down */
	atomic_int refs;  /* the stream's (until on_close) + the worker table's
	                   * + svc->ack_list's while on it */
	/* Result acks not sent yet, under svc->ack_mu.  They only stop the
	 * worker's resends (due a second or more later), so they ride on the
	 * next assignment message to this worker, or go out with the
	 * Register's next tick: no message and no wake-up of their own. */
	gs_pb_buf acks;
	bool on_ack_list;
	struct worker_conn *ack_next;
};

/* Drops a reference; the last one drops the call reference and frees. */
void gs_worker_conn_unref(struct worker_conn *c);

struct gs_service {
	gs_engine *eng;
	gs_service_opts o; /* o.client_token / o.worker_token: our own copies */
	size_t client_token_len, worker_token_len;
	gs_worker_table *workers;
	struct gs_rpc_health *health;
	uint64_t started_us;
	atomic_bool stopping;

	/* PLM, under mu. */
	pthread_mutex_t mu;
	struct sub **buckets;
	size_t n_buckets, n_subs;
	struct waiter waits;  /* sentinel of the open-Wait list */
	struct waiter *dirty; /* waiters with output to flush */
	struct retained *ret;
	size_t ret_head, ret_len, ret_cap;
	char handlers[32][64]; /* handler names workers advertised */
	size_t n_handlers;
	struct waiter *qwatch[GS_MAX_QUEUES]; /* queue watches, by queue */
	/* Open Watch calls (any thread may read it without mu): while 0, no
	 * state change needs mu for an event. */
	atomic_uint watchers;
	/* Tasks assigned in a dispatch pass, for their events (under sched_mu). */
	uint64_t *ev_ids;
	size_t n_ev, cap_ev;

	/* Scheduler wake-up. */
	pthread_mutex_t wake_mu;
	pthread_cond_t wake_cv;
	atomic_bool wake_flag;
	atomic_bool sleeping;

	/* The Main Scheduler's role: whoever holds sched_mu dispatches (the
	 * scheduler thread, or an RPC thread that just queued work or freed a
	 * worker slot and found the role free: one thread hop less). */
	pthread_mutex_t sched_mu;
	gs_delay_timer timer;      /* under sched_mu */
	struct assign_batch batch; /* under sched_mu */

	_Atomic uint64_t dispatched, results, stale_results, workers_lost;

	/* Workers with result acks pending (worker_conn.acks), under ack_mu. */
	pthread_mutex_t ack_mu;
	struct worker_conn *ack_list;

	/* The write-ahead log's held replies (durable.c), under dur_mu. */
	atomic_bool log_failed;
	pthread_mutex_t dur_mu;
	pthread_cond_t dur_cv;
	struct dur_ack *dur_head, *dur_tail;
	/* Final states waiting for their record to be on disk (durable.c):
	 * (task, LSN) under dur_mu, and, under mu, task -> the state shown
	 * meanwhile (a final state is shown to nobody before it is durable). */
	struct dur_fin *fin;
	size_t n_fin, cap_fin;
	gs_id_map unsynced;

	/* Roles as processes (service.h): this process's roles (GS_ROLE_BIT
	 * mask, never 0 here), the segment's roles region, and the lock that
	 * makes this process's threads one producer of GS_RING_DONE and
	 * GS_RING_CANCEL (GS_RING_ASSIGN's is the holder of sched_mu). */
	unsigned roles;
	gs_roles *link;
	pthread_mutex_t link_mu;
	/* gs_roles_starts of each role when this process last resynchronised:
	 * a resync looks for what a ring lost only if the role that feeds it
	 * was restarted meanwhile (the parker's thread only). */
	uint64_t seen_starts[GS_ROLE_COUNT];
};

/* True when this process runs role r (roles.h). */
static inline bool gs_service_has(const gs_service *s, enum gs_role r)
{
	return (s->roles & GS_ROLE_BIT(r)) != 0;
}

/* plm.c: under s->mu. */
int gs_plm_subscribe(gs_service *s, uint64_t id, struct waiter *w);
void gs_plm_unsubscribe_all(gs_service *s, struct waiter *w);
/* A task reached a final state: deliver to its waiters, or retain it.
 * Stream output is gathered: call gs_plm_flush before releasing mu. */
void gs_plm_finished(gs_service *s, uint64_t id, uint64_t now_us);
/* Puts w on the list of waiters whose gathered output (w->out) gs_plm_flush
 * sends. */
void gs_plm_mark_dirty(gs_service *s, struct waiter *w);
/* Sends every waiter's gathered output, one message each. */
void gs_plm_flush(gs_service *s, uint64_t now_us);
/* A task changed to a state that is not final (QUEUED, DELAYED, ASSIGNED,
 * RUNNING): an event for the Watch calls on it or on its queue (gathered;
 * gs_plm_flush sends).  Final states go through gs_plm_finished.  Cheap to
 * skip: callers test s->watchers first. */
void gs_plm_event(gs_service *s, uint64_t id, uint64_t now_us);
/* Events for n tasks, taking mu (no lock held by the caller). */
void gs_plm_events(gs_service *s, const uint64_t *ids, size_t n, uint64_t now_us);
/* Puts a queue watch on (on) or off s->qwatch (under mu). */
void gs_plm_queue_watch(gs_service *s, struct waiter *w, bool on);
void gs_plm_waiter_unref(gs_service *s, struct waiter *w);
void gs_plm_retain(gs_service *s, uint64_t id, uint64_t now_us);
void gs_plm_expire(gs_service *s, uint64_t now_us);
void gs_plm_wait_reply(gs_service *s, struct waiter *w, bool complete);
void gs_plm_free(gs_service *s);
/* Releases a final task, and logs it: what every release goes through. */
int gs_plm_release(gs_service *s, uint64_t id);
bool gs_plm_handler_known(const char *name, void *arg);
void gs_plm_add_handler(gs_service *s, const char *name);

/* worker_service.c */
void gs_worker_lost(gs_service *s, uint64_t wid, uint64_t now_us);
/* A worker whose stream ended with a previous Register process: its tasks
 * run again without counting against their retries (engine.h). */
void gs_worker_orphaned(gs_service *s, uint64_t wid, uint64_t now_us);
int gs_worker_service_register(gs_service *s, struct gs_rpc_server *srv);
void gs_worker_send_cancel(gs_service *s, uint64_t wid, uint64_t task, uint32_t attempt);
/* Tells worker wid to drain (reason: shown by the worker; "" for none). */
void gs_worker_send_drain(gs_service *s, uint64_t wid, const char *reason);
/* Adds an assignment to its worker's message of the pass (under sched_mu). */
void gs_worker_batch_add(gs_service *s, const gs_assignment *a);
/* Sends the pass's messages, one per worker (under sched_mu). */
void gs_worker_batch_flush(gs_service *s);
/* Sends every worker's pending result acks (the Register's tick), or with
 * drop, frees them unsent (service destroy).  Any thread, no lock held. */
void gs_worker_acks_flush(gs_service *s, bool drop);
/* task_service.c, admin_service.c */
int gs_task_service_register(gs_service *s, struct gs_rpc_server *srv);
int gs_admin_service_register(gs_service *s, struct gs_rpc_server *srv);

/* durable.c: records (call only with s->o.wal set; engine first, then these).
 * *lsn receives the last record's LSN.  Errors as gs_wal_append; GS_EIO also
 * marks the log failed. */
int gs_dur_submit(gs_service *s, const gs_task_spec *specs, const uint64_t *ids, size_t n,
                  uint64_t now_us, uint64_t *lsn);
/* The KEY record of a keyed Submit: appended before its SUBMITs (wal.h). */
int gs_dur_key(gs_service *s, const gs_idem_req *k, const uint64_t *ids, size_t n, uint64_t now_us,
               uint64_t *lsn);
void gs_dur_assign(gs_service *s, const gs_assignment *a, uint64_t now_us);
int gs_dur_complete(gs_service *s, uint64_t id, uint32_t attempt, const gs_outcome *o,
                    uint64_t now_us, uint64_t *lsn);
/* gs_dur_complete, returning the LSN to wait for: the record's, or when it
 * could not be appended (out of memory; a failed log shows everything at
 * once anyway) everything appended so far. */
uint64_t gs_dur_complete_lsn(gs_service *s, uint64_t id, uint32_t attempt, const gs_outcome *o,
                             uint64_t now_us);
/* Task id reached a final state whose record is lsn (under s->mu): without
 * a log, or once lsn is durable, gs_plm_finished(); until then the task
 * reads as `shown` (gs_service_read) and no waiter hears of it, so no final
 * state is seen that a crash could still undo. */
void gs_dur_finished(gs_service *s, uint64_t id, uint64_t lsn, uint32_t shown, uint64_t now_us);
int gs_dur_cancel(gs_service *s, uint64_t id, uint64_t now_us, uint64_t *lsn);
void gs_dur_release(gs_service *s, uint64_t id);
/* Cancels and releases tasks never acknowledged (under s->mu). */
void gs_dur_undo(gs_service *s, const uint64_t *ids, size_t n, uint64_t now_us);
/* Holds a unary reply (Submit: submit, with its task IDs; Cancel) until lsn
 * is durable; reply is moved.  GS_ENOMEM (nothing held, reply kept). */
int gs_dur_hold_reply(gs_service *s, struct gs_rpc_call *call, bool submit, uint64_t lsn,
                      gs_pb_buf *reply, const uint64_t *ids, size_t n);
/* Holds a SubmitStream message's acks; the accepted tasks are subscribed
 * once they are sent.  Call without s->mu.  GS_ENOMEM. */
int gs_dur_hold_stream(gs_service *s, struct waiter *w, uint64_t lsn, gs_pb_buf *acks,
                       const uint64_t *ids, size_t n);
/* Drops every held reply (service destroy). */
void gs_dur_free_all(gs_service *s);

/* service_link.c: hand-offs to a role in another process (s->link set). */
/* Task id reached a final state: tell the PLM (under s->mu). */
void gs_link_done(gs_service *s, uint64_t id);
/* Tell the Register to cancel (task, attempt) on worker wid. */
void gs_link_cancel(gs_service *s, uint64_t wid, uint64_t task, uint32_t attempt);
/* Tell the Register to have worker wid drain (the operator's reason stays
 * here: the worker is told "drain requested"). */
void gs_link_drain(gs_service *s, uint64_t wid);

/* New work may be dispatchable: dispatch now if the scheduler role is free,
 * else wake the scheduler thread.  Call with no other lock held. */
void gs_service_kick(gs_service *s);

/* Reads a task for a reply (under s->mu): info and stored result (NULL if
 * not final); a final state not yet durable reads as not final. */
int gs_service_read(gs_service *s, uint64_t id, gs_task_info *info, const uint8_t **res,
                    uint32_t *res_len);

/* Answers a unary call with b and frees it: OK, or RESOURCE_EXHAUSTED
 * ("reply too large") when b ran out of memory or could not be sent. */
void gs_service_reply(struct gs_rpc_call *call, gs_pb_buf *b);

/* on_close of the unary methods without per-call state: drops the user's
 * call reference (rpc_server.h: given even without on_open). */
void gs_service_unary_close(struct gs_rpc_call *call, void *ud, int cancelled);

#endif /* GS_SERVICE_IMPL_H */
