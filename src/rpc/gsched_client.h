/*
 * gsched_client.h - the gsched C client library (TaskService and
 * AdminService of proto/gsched.proto over gRPC).
 *
 * Owns: one gRPC channel to one server (struct gs_client) and the submit
 * streams opened on it (struct gs_client_stream).  Blocking calls: Submit,
 * Wait, Get, Cancel, ListWorkers, Stats; asynchronous: a SubmitStream whose
 * acks and results are delivered to callbacks.
 *
 * Connecting.  gs_client_connect() probes the server (grpc.health.v1 Check)
 * within connect_timeout_ms, so an unreachable address fails there, quickly,
 * with GS_EUNAVAIL and a one-line message (gs_client_error); every later
 * call has a deadline too: nothing blocks without bound.  A TLS handshake
 * that fails (wrong CA, a plaintext server) fails the probe the same way.
 * Health is served without a token, so a missing or wrong token shows up on
 * the first call: GS_EAUTH (UNAUTHENTICATED or PERMISSION_DENIED).
 *
 * Thread-safety: every function may be called from any thread on one client;
 * gs_client_stream_submit may be called from several threads at once.
 * Callbacks of a stream run on that stream's own thread, one at a time
 * (acks and results in the order the server sent them); they must not call
 * gs_client_stream_wait/destroy on their own stream.  gs_client_error
 * reports the last failure on the client (from whichever thread).
 *
 * Errors: gs_status codes (gs_error.h): GS_EINVAL (bad argument or the
 * server said INVALID_ARGUMENT), GS_ENOTFOUND, GS_EFULL (RESOURCE_EXHAUSTED,
 * or a stream's send queue full: retry later), GS_EUNAVAIL (unreachable or
 * shutting down), GS_ETIMEOUT, GS_EAUTH (UNAUTHENTICATED, PERMISSION_DENIED),
 * GS_ENOMEM, GS_EPROTO (malformed reply), GS_EIO (also: a TLS file cannot be
 * read at connect).  The server's message is kept for gs_client_error.
 *
 * Buffers: inputs are copied before the call returns.  Results, statuses,
 * worker lists and stats returned by the blocking calls are the caller's to
 * free with the matching *_free function; a result given to a stream
 * callback is valid during the callback only.
 */
#ifndef GSCHED_CLIENT_H
#define GSCHED_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gs_error.h"

#ifdef __cplusplus
extern "C" {
#endif

struct gs_client;
struct gs_client_stream;

/* Task states: the numbers of gsched.v1.TaskState. */
enum gs_client_state {
	GS_CLIENT_QUEUED = 1,
	GS_CLIENT_ASSIGNED = 2,
	GS_CLIENT_RUNNING = 3,
	GS_CLIENT_DONE = 4,
	GS_CLIENT_FAILED = 5,
	GS_CLIENT_CANCELLED = 6,
	GS_CLIENT_DELAYED = 7,
	GS_CLIENT_UNKNOWN = 8,
};

/* Cancel outcomes: the numbers of gsched.v1.CancelResult. */
enum gs_client_cancel_result {
	GS_CLIENT_CANCEL_CANCELLED = 1,
	GS_CLIENT_CANCEL_REQUESTED = 2,
	GS_CLIENT_CANCEL_ALREADY_FINISHED = 3,
	GS_CLIENT_CANCEL_NOT_FOUND = 4,
};

struct gs_client_opts {
	int connect_timeout_ms;   /* the probe's bound (0: 5000; < 0: no probe) */
	int call_timeout_ms;      /* unary calls other than Wait (0: 30000) */
	size_t max_message_bytes; /* receive/send limit (0: 64 MiB) */
	/* Security (all optional; strings are copied or read at connect). */
	const char *token;         /* bearer token sent with every call (NULL: none) */
	bool tls;                  /* TLS (implied by tls_ca_file or tls_cert_file) */
	const char *tls_ca_file;   /* PEM CAs verifying the server (NULL: gRPC's roots) */
	const char *tls_cert_file; /* PEM client certificate (mutual TLS), with ... */
	const char *tls_key_file;  /* ... its PEM private key */
	unsigned busy_poll_us;     /* stream threads poll this long before sleeping (0) */
	/* What a stream queues while its previous message is in flight goes out
	 * as one message: at most this much (0: 4 MiB, the server's default
	 * --max-message-bytes; never above max_message_bytes).  Keep it at or
	 * below the server's limit: a bigger message would end the stream.  A
	 * full queue is GS_EFULL from gs_client_stream_submit. */
	size_t max_send_batch_bytes;
};

/* One task to submit.  Exactly one of argv (argc > 0) and handler should be
 * set; the server rejects anything else with INVALID_ARGUMENT. */
struct gs_client_spec {
	const char *queue; /* NULL or "": "default" */
	uint32_t priority; /* 0..255, higher first */
	uint32_t retries;
	uint32_t timeout_ms; /* per attempt, 0: none */
	uint32_t delay_ms;   /* not before now + delay_ms */
	const char *const *argv;
	size_t argc;
	const void *stdin_data;
	size_t stdin_len;
	const char *handler;
	const void *payload;
	size_t payload_len;
};

/* A task's result or status. */
struct gs_client_result {
	uint64_t id;
	int state; /* enum gs_client_state */
	int32_t exit_code;
	uint8_t *output; /* copies are NUL-terminated (not counted); in callbacks: not */
	size_t output_len;
	bool truncated;
	char *error; /* "" if none */
	uint64_t worker_id;
	uint32_t attempts;
	uint64_t submitted_us, assigned_us, started_us, finished_us;
	/* gs_client_get only: */
	char *queue; /* NULL otherwise */
	uint32_t priority;
};

struct gs_client_worker {
	uint64_t id;
	char *name, *peer, *queues; /* queues: comma-separated */
	int state;                  /* 1 alive, 2 draining, 3 dead */
	uint32_t slots, running;
	uint64_t registered_us, last_heartbeat_us, tasks_done, tasks_failed;
};

struct gs_client_queue_stats {
	char *queue;
	uint64_t queued, delayed, assigned, running;
	uint64_t submitted_total, done_total, failed_total, cancelled_total, retried_total;
};

struct gs_client_stats {
	struct gs_client_queue_stats *queues;
	size_t n_queues;
	uint64_t tasks_capacity, tasks_in_use, uptime_ms;
	uint32_t workers_alive;
};

/* "TASK_STATE"-like short names: "queued", "done", ... ("?" if unknown). */
const char *gs_client_state_name(int state);
/* True for DONE, FAILED, CANCELLED. */
bool gs_client_state_final(int state);

/* Connects to addr ("host:port") and probes it.  opts may be NULL.
 * GS_EUNAVAIL (unreachable: *out is NULL, the message says why), GS_EINVAL,
 * GS_EIO (a TLS file cannot be read: the message names it), GS_ENOMEM. */
int gs_client_connect(const char *addr, const struct gs_client_opts *opts, struct gs_client **out);
void gs_client_close(struct gs_client *c);
/* The message of the last failed call (never NULL).  With c NULL: the last
 * connect failure cannot be reported; use gs_client_connect_err. */
const char *gs_client_error(struct gs_client *c);
/* Like gs_client_connect, also writing a one-line reason into err. */
int gs_client_connect_err(const char *addr, const struct gs_client_opts *opts,
                          struct gs_client **out, char *err, size_t err_len);

/* Unary Submit of n specs (all-or-nothing); ids_out[n]. */
int gs_client_submit(struct gs_client *c, const struct gs_client_spec *specs, size_t n,
                     uint64_t *ids_out);

/*
 * gs_client_submit with an idempotency key (NULL or "": none, the same as
 * gs_client_submit).  Retrying a Submit whose reply was lost (GS_EUNAVAIL,
 * GS_ETIMEOUT, a server restart) with the same key and the same specs
 * returns the IDs of the tasks the first attempt created, if it got that
 * far, instead of queuing them again.  The server keeps a key while any of
 * its tasks is still there (until their results are fetched or expire
 * after --result-ttl-ms); after that the key is forgotten and a retry
 * queues new tasks.  Keys are at most 128 bytes.  GS_EINVAL also when the
 * key was used for a different request (another count or specs: nothing
 * queued); GS_EFULL when the server's key table is full.
 */
int gs_client_submit_idem(struct gs_client *c, const char *idempotency_key,
                          const struct gs_client_spec *specs, size_t n, uint64_t *ids_out);

/* Waits until all n tasks are final or timeout_ms passes (< 0: no limit).
 * results_out[n] is always filled; free with gs_client_results_free.
 * GS_OK when every task is final; GS_ETIMEOUT when timeout_ms passed first
 * (non-final tasks with their current state, unknown IDs as
 * GS_CLIENT_UNKNOWN).  Any other error (GS_EUNAVAIL: the server is down,
 * restarting or did not answer in time): the tasks the server did not
 * answer for read GS_CLIENT_UNKNOWN, which then says nothing about them;
 * wait again.  A final result returned here has been fetched: the server
 * forgets the task. */
int gs_client_wait(struct gs_client *c, const uint64_t *ids, size_t n, int timeout_ms,
                   struct gs_client_result *results_out);
/* Current status of n tasks (with output if include_output). */
int gs_client_get(struct gs_client *c, const uint64_t *ids, size_t n, bool include_output,
                  struct gs_client_result *results_out);
/* Cancels n tasks; outcomes_out[n] (enum gs_client_cancel_result) and
 * states_out[n] (may be NULL). */
int gs_client_cancel(struct gs_client *c, const uint64_t *ids, size_t n, int *outcomes_out,
                     int *states_out);
int gs_client_list_workers(struct gs_client *c, bool include_dead, struct gs_client_worker **out,
                           size_t *n_out);
int gs_client_stats(struct gs_client *c, struct gs_client_stats *out);

void gs_client_result_free(struct gs_client_result *r);
void gs_client_results_free(struct gs_client_result *r, size_t n);
void gs_client_workers_free(struct gs_client_worker *w, size_t n);
void gs_client_stats_free(struct gs_client_stats *s);

/* --- Asynchronous: SubmitStream -------------------------------------- */

/* An ack: id != 0 when accepted; otherwise code (a gRPC status number) and
 * message say why the item was rejected. */
typedef void (*gs_client_ack_fn)(void *ud, uint64_t client_seq, uint64_t id, int code,
                                 const char *message);
/* A final result of an accepted task (valid during the call). */
typedef void (*gs_client_result_fn)(void *ud, const struct gs_client_result *r);

/* Opens a SubmitStream.  A connection failure shows up as the stream's end
 * (gs_client_stream_wait returns GS_EUNAVAIL). */
int gs_client_stream_open(struct gs_client *c, gs_client_ack_fn on_ack,
                          gs_client_result_fn on_result, void *ud, struct gs_client_stream **out);
/* Queues one task (thread-safe).  GS_EFULL: the send queue is full, retry
 * after some acks; GS_EUNAVAIL: the stream has ended; GS_ESTATE: closed. */
int gs_client_stream_submit(struct gs_client_stream *s, const struct gs_client_spec *spec,
                            uint64_t client_seq);
/* No more submits; the server ends the stream once every result is sent. */
int gs_client_stream_close(struct gs_client_stream *s);
/* Waits (timeout_ms < 0: no limit) for the stream to end: GS_OK if it ended
 * with OK, the mapped error otherwise (message: gs_client_stream_error),
 * GS_ETIMEOUT if it has not ended yet. */
int gs_client_stream_wait(struct gs_client_stream *s, int timeout_ms);
const char *gs_client_stream_error(struct gs_client_stream *s);
/* Cancels the stream if still open, waits for it, frees it. */
void gs_client_stream_destroy(struct gs_client_stream *s);

/* --- Asynchronous: Watch --------------------------------------------- */

/* One state change: r->state is the new state, r->id, r->attempts and
 * r->worker_id are set; on a final state every result field is (the output
 * only with include_output).  at_us: when the change happened.  Valid
 * during the call, which runs on the watch's own thread. */
typedef void (*gs_client_event_fn)(void *ud, const struct gs_client_result *r, uint64_t at_us);

/* Watches the n tasks ids (their current states first; the stream ends by
 * itself after their final states), or with n == 0 every task of `queue`
 * (NULL or "": "default") from now on, until gs_client_stream_destroy (a
 * first event-less message says the watch is in place: on_ready, may be
 * NULL).  Wait and free with gs_client_stream_wait/_error/_destroy; there is
 * nothing to submit on it.  GS_EINVAL, GS_ENOMEM. */
int gs_client_watch_open(struct gs_client *c, const char *queue, const uint64_t *ids, size_t n,
                         bool include_output, gs_client_event_fn on_event,
                         void (*on_ready)(void *ud), void *ud, struct gs_client_stream **out);

#ifdef __cplusplus
}
#endif

#endif /* GSCHED_CLIENT_H */
