/*
 * local_cluster.h - a server in a thread of this process plus N worker
 * processes: what `gsched local` and `gsched bench` (without --server) run.
 *
 * Owns: the server thread (gs_server_run on an anonymous segment) and the
 * worker children (fork+exec of /proc/self/exe `worker`; they get SIGTERM
 * if this process dies: PR_SET_PDEATHSIG).  Stopping sends SIGTERM to the
 * workers, waits a bounded time, SIGKILLs what is left, then stops the
 * server.
 *
 * Thread-safety: one cluster is driven from one thread.
 * Errors: GS_EIO (the server did not start, fork failed), GS_ENOMEM,
 * GS_EINVAL.
 */
#ifndef GS_LOCAL_CLUSTER_H
#define GS_LOCAL_CLUSTER_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#define GS_LOCAL_MAX_WORKERS 64

typedef struct gs_local_cluster gs_local_cluster;

typedef struct gs_local_cluster_opts {
	const char *listen;          /* NULL: "127.0.0.1:0" (a free port) */
	unsigned workers;            /* 0..GS_LOCAL_MAX_WORKERS */
	unsigned slots;              /* per worker (0: 4) */
	unsigned busy_poll_us;       /* server and workers poll this long before sleeping (0) */
	int register_wait_ms;        /* wait this long for every worker to register (0: 10000) */
	const char *prefix;          /* for messages on stderr, e.g. "gsched local" */
	volatile sig_atomic_t *stop; /* stops the registration wait early (may be NULL) */
} gs_local_cluster_opts;

/* Starts the server, waits until it listens, starts the workers and waits
 * (bounded) until they have registered.  On failure nothing is left
 * running and *out is NULL. */
int gs_local_cluster_start(const gs_local_cluster_opts *o, gs_local_cluster **out);
/* "127.0.0.1:PORT" of the server. */
const char *gs_local_cluster_addr(const gs_local_cluster *c);
/* The pid of worker i (0 if none). */
pid_t gs_local_cluster_worker_pid(const gs_local_cluster *c, unsigned i);
/* Restarts workers that exited (reported on stderr); returns how many. */
unsigned gs_local_cluster_restart_dead(gs_local_cluster *c);
/* Stops the workers and the server and frees c; returns the server's
 * gs_server_run status. */
int gs_local_cluster_stop(gs_local_cluster *c);

#endif /* GS_LOCAL_CLUSTER_H */
