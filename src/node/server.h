/*
 * server.h - `gsched server`: the PLM, the Main Scheduler and the Register as
 * threads of one process over one engine segment.
 *
 * Owns: the engine (created, or adopted from a dead owner and recovered), the
 * services, the gRPC server, the scheduler thread and the register thread.
 *
 * Thread-safety: gs_server_run() blocks in the calling thread until *stop is
 * set, then shuts down: it stops accepting submissions (UNAVAILABLE, health
 * NOT_SERVING), stops dispatching, lets running tasks finish for grace_ms,
 * then ends every stream and returns.  Tasks still queued stay in a named
 * segment for the next server.
 *
 * Durability (docs/DURABILITY.md): with data_dir, a write-ahead log in that
 * directory (wal.h) records every change; Submits are acknowledged once
 * their records are on disk, synced by a committer thread every fsync_ms
 * (group commit; 0: as soon as a reply waits).  At start, a named segment
 * whose owner died is adopted (the fast path) and the log compacted from
 * it; otherwise the log is replayed into a new engine, every task under its
 * old ID.  The log is compacted when it grows past max(64 MiB, 4 x the last
 * snapshot).
 * Limits (README, "Limits"): max_message_bytes bounds each message received
 * or sent (gRPC refuses a larger one with RESOURCE_EXHAUSTED), and
 * stream_queue_bytes each stream's outbound queue (a SubmitStream or
 * worker stream whose peer does not read is ended with RESOURCE_EXHAUSTED
 * "client too slow" when it is full); max_connections and max_streams bound
 * the connections and streaming calls open at once (rpc_server.h, "Limits":
 * a call over either is refused with RESOURCE_EXHAUSTED).
 * Roles as processes (role set): the process attaches the named segment
 * (creating it if none exists), claims its role (GS_EBUSY while a live
 * process holds it), and, when the segment was there before it, pauses the
 * other roles and repairs what a dead process left half-done (roles.h)
 * before it serves.  A PLM serves TaskService and AdminService, a Register
 * WorkerService, each Health on `listen`.
 * Errors: GS_EIO (cannot listen, or a TLS file cannot be used: one line on
 * stderr says which), GS_EINVAL (equal client and worker tokens), engine
 * and rpc errors.
 */
#ifndef GS_SERVER_H
#define GS_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "engine.h"
#include "rpc_tls.h"

/* `gsched server`'s defaults for the limits (0 in gs_server_opts: none). */
#define GS_SERVER_DEFAULT_MAX_CONNECTIONS 1000
#define GS_SERVER_DEFAULT_MAX_STREAMS     10000

typedef struct gs_server_opts {
	const char *listen;         /* default "127.0.0.1:7070" */
	const char *segment;        /* POSIX shm name, NULL: anonymous */
	gs_geom geom;               /* zero fields: defaults */
	uint32_t heartbeat_ms;      /* default 500 */
	uint32_t worker_timeout_ms; /* default 3000 */
	uint32_t result_ttl_ms;     /* default 300000 */
	int grace_ms;               /* default 10000 */
	unsigned rpc_threads;       /* default 1 */
	unsigned busy_poll_us;      /* RPC threads poll this long before sleeping (0) */
	volatile sig_atomic_t *stop;
	const char *client_token;     /* NULL: TaskService/AdminService open (service.h) */
	const char *worker_token;     /* NULL: WorkerService open */
	const struct gs_rpc_tls *tls; /* NULL: plaintext; else certificate, key, client CA */
	/* Called once listening, with the bound port (may be NULL). */
	void (*on_ready)(int port, void *arg);
	void *arg;
	int quiet;
	const char *data_dir;      /* write-ahead log directory; NULL: none */
	int fsync_ms;              /* group commit interval (data_dir only); < 0: default 5 */
	size_t max_message_bytes;  /* per message, in and out (0: 4 MiB) */
	size_t stream_queue_bytes; /* outbound queue per call (0: max_message_bytes) */
	unsigned max_connections;  /* connections with a call open (0: no limit) */
	unsigned max_streams;      /* streaming calls open at once (0: no limit) */
	/* NULL: the three roles as threads of this process.  "plm",
	 * "scheduler" or "register": that role alone, on `segment` (required),
	 * the others in their own processes (no data_dir). */
	const char *role;
} gs_server_opts;

int gs_server_run(const gs_server_opts *o);

/* gs_server_run with o->role set (server_role.c); gs_server_run calls it. */
int gs_server_run_role(const gs_server_opts *o);

#endif /* GS_SERVER_H */
