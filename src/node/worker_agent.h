/*
 * worker_agent.h - the gsched worker: one session with the server at a time
 * (WorkerService.Connect), tasks run by a task runner (task_runner.h).
 *
 * What it does.  gs_worker_agent_run() connects to the server, registers
 * (name, slots, queues, the built-in handler names, runs_argv), and then runs
 * every Assignment it receives: argv tasks as processes, handler tasks
 * in-process, each bounded by its timeout_ms and by max_output.  It sends
 *   - Started{id, attempt, started_us} when a task starts;
 *   - one WorkResult per finished attempt, at once (the transport batches
 *     under load): DONE when the process exited 0 / the handler succeeded,
 *     CANCELLED when the server cancelled it, FAILED otherwise (non-zero
 *     exit, signal, timeout, spawn failure, handler error, invalid spec).
 *     error is the runner's message; for a failed process the first bytes of
 *     its stderr are appended (at most GS_WORKER_STDERR_IN_ERROR bytes,
 *     control characters and invalid UTF-8 replaced);
 *   - a Heartbeat{running, free_slots, sent_us} every heartbeat_ms (from
 *     Registered; 0 means 1000 ms).
 * Results are kept until the server acknowledges them (result_acks): one
 * unacknowledged after max(1 s, two heartbeat intervals) is sent again, with
 * doubling intervals (capped at 60 s); on a new session every unacknowledged result
 * is sent again after Registered.  At most GS_WORKER_MAX_UNACKED results are
 * (GS_WORKER_MAX_UNACKED_BYTES encoded) are kept; past that the oldest sent
 * one is forgotten (logged once per session).
 * Assignments beyond the free slots wait in a local FIFO.
 *
 * Instant handler calls (noop, echo) skip the machinery above when they can:
 * run in the agent's loop turn when a slot is free and nothing is queued (no
 * runner slot, no Started), or, when the agent holds no task at all, answered
 * by the stream thread itself (no thread hand-over: the latency path).
 * Results answered on the stream thread are not kept for resending: if the
 * connection drops first, the server requeues the task (at-least-once).
 *
 * Connection loss (the stream ends for any reason, including malformed bytes
 * from the server, or no Registered within GS_WORKER_REGISTER_TIMEOUT_MS):
 * the tasks in flight are killed without reporting them (the server requeues
 * a lost worker's tasks), the local FIFO is dropped, and the agent reconnects
 * with exponential backoff (100 ms doubling to reconnect_max_ms, back to
 * 100 ms after a successful registration).  It gives up by itself only when
 * the server refuses its credentials (UNAUTHENTICATED or PERMISSION_DENIED
 * before Registered: retrying with the same token cannot help): it then
 * returns GS_EAUTH.
 *
 * Security.  token (if set) goes with the stream as "authorization: Bearer
 * <token>" (the server's worker token); tls / tls_ca_file / tls_cert_file +
 * tls_key_file connect over TLS (rpc_tls.h).  The token never appears in a
 * log line.
 *
 * Stopping.  Drain from the server: no new task is started (later
 * assignments are left to the server to requeue when the session ends);
 * what was assigned before runs to completion, then the agent half-closes
 * the stream and returns GS_OK ("finish and leave").  *stop set non-zero
 * (e.g. from a SIGTERM handler; the agent reads it with an atomic load at
 * least every 50 ms, so another thread should store it atomically, e.g.
 * __atomic_store_n):
 * nothing new starts, the local FIFO is dropped, running tasks get up to
 * grace_ms to finish (their results are sent), the rest are killed without a
 * result, the stream is half-closed (bounded wait for the server's status)
 * and the function returns GS_OK.
 *
 * Logging: one line per state change ("gsched worker: connected to ADDR as
 * worker ID ...", "gsched worker: lost connection to ADDR: ...; retrying in
 * N ms", ...) on stderr unless quiet, and to on_event if set.  Worker IDs are
 * printed as 16 hex digits.
 *
 * Threads.  The caller's thread runs the agent: it owns the task runner and
 * every piece of agent state, and calls on_event.  Each session's gRPC
 * stream has its own thread (rpc_client.h): it only decodes WorkerDown
 * messages and hands them over through a mutex-protected inbox, waking the
 * runner (the inbox is not bounded: a server only sends what the slots can
 * take).  All threads are joined before gs_worker_agent_run returns.
 *
 * Ownership and buffers.  opts and everything it points to are read during
 * the call and must stay valid (and *stop writable by the signaller) until
 * it returns; nothing is kept afterwards.  The agent has no global state:
 * several agents may run in one process (each on its own thread).  It
 * spawns children, so SIGCHLD must not be SIG_IGN (see task_runner.h).
 *
 * Errors: GS_OK after a stop or a drain; GS_EINVAL for bad options (nothing
 * started); GS_ENOMEM / GS_EIO when a resource (runner, client, a TLS file)
 * cannot be set up; GS_EAUTH when the server refuses the credentials.
 * Nothing a server sends makes it abort.
 */
#ifndef GS_WORKER_AGENT_H
#define GS_WORKER_AGENT_H

#include <stddef.h>
#include <stdint.h>

#define GS_WORKER_DEFAULT_RECONNECT_MAX_MS 2000
#define GS_WORKER_RECONNECT_MIN_MS         100
#define GS_WORKER_DEFAULT_HEARTBEAT_MS     1000
#define GS_WORKER_REGISTER_TIMEOUT_MS      10000
#define GS_WORKER_STDERR_IN_ERROR          256
#define GS_WORKER_MAX_UNACKED              4096
#define GS_WORKER_MAX_UNACKED_BYTES        (64u * 1024u * 1024u)

enum gs_worker_event_kind {
	GS_WORKER_EV_NOTICE = 0,     /* anything else worth a line */
	GS_WORKER_EV_CONNECTED,      /* registered; worker_id set */
	GS_WORKER_EV_CONNECT_FAILED, /* a session ended before Registered */
	GS_WORKER_EV_DISCONNECTED,   /* a registered session ended */
	GS_WORKER_EV_DRAINING,       /* the server asked to drain */
	GS_WORKER_EV_STOPPING,       /* *stop seen */
	GS_WORKER_EV_STOPPED,        /* about to return */
};

struct gs_worker_event {
	enum gs_worker_event_kind kind;
	uint64_t worker_id; /* the current or last worker ID (0: none yet) */
	int code;           /* enum gs_rpc_code of the session's end (0 otherwise) */
	int retry_ms;       /* CONNECT_FAILED / DISCONNECTED: delay before retrying */
	const char *line;   /* the log line (no newline), valid during the call */
};

/* Called on the agent's thread; must not block for long. */
typedef void (*gs_worker_event_fn)(void *arg, const struct gs_worker_event *ev);

struct gs_worker_opts {
	const char *server;        /* "127.0.0.1:7070" (required) */
	const char *name;          /* NULL or "": "hostname-pid" */
	unsigned slots;            /* 1..GS_RUNNER_MAX_SLOTS */
	unsigned busy_poll_us;     /* the stream thread polls this long before sleeping (0) */
	const char *const *queues; /* n_queues names; none: "default" */
	size_t n_queues;
	size_t max_output;           /* per task, stdout; 0: 64 KiB */
	int reconnect_max_ms;        /* backoff cap, >= 0 (0: 2000) */
	volatile int *stop;          /* may be NULL: run until drained */
	int grace_ms;                /* >= 0: time running tasks get on stop */
	int quiet;                   /* non-zero: no lines on stderr */
	gs_worker_event_fn on_event; /* may be NULL */
	void *event_arg;
	const char *token;         /* bearer token (NULL: none) */
	int tls;                   /* TLS (implied by tls_ca_file or tls_cert_file) */
	const char *tls_ca_file;   /* PEM CAs verifying the server (NULL: gRPC's roots) */
	const char *tls_cert_file; /* PEM client certificate (mutual TLS), with ... */
	const char *tls_key_file;  /* ... its PEM private key */
};

/* Run the worker until *stop is set or the server drains it (GS_OK), or a
 * fatal setup error (GS_EINVAL, GS_ENOMEM, GS_EIO).  See the top comment. */
int gs_worker_agent_run(const struct gs_worker_opts *o);

#endif /* GS_WORKER_AGENT_H */
