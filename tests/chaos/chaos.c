/*
 * chaos.c - the "Nothing lost" chaos test: N tasks through one `gsched
 * server` (a write-ahead log in --data-dir and a named --segment) and 3
 * `gsched worker` processes, while this driver SIGKILLs a random worker about
 * every --worker-kill-ms (restarting it at once) and the server
 * --server-kills times at random points spread over the run (restarting it
 * on the same port and directory; --replay-kills of them also remove the
 * segment first, so the restart replays the log instead of adopting it).
 *
 * Checked, and printed as counts (exit status 1 if any check fails):
 *   - every acknowledged task reaches a final state and its result comes back
 *     through the submitter's Wait (missing = 0; a task whose ID the server
 *     stopped knowing before its result was delivered counts as lost);
 *   - each DONE result's output is the task's own payload (echo handler);
 *   - no task has two final results: after the run, and again after one more
 *     SIGKILL and log replay, every acknowledged ID is waited on once more;
 *     the server must either have forgotten it (released) or return the very
 *     same final result (state, exit code, output, error, attempt, finish
 *     time and worker).  A changed result, or a task back in a non-final
 *     state, is a second final result.
 *   - acknowledged IDs are non-zero and distinct; no process dies unasked.
 * Also printed: kills, restarts by path (segment adopted / log replayed),
 * submit calls that failed (retried with the batch's idempotency key, so a
 * retry after a lost acknowledgement returns the first attempt's IDs; the
 * server must hold no extra copy at the end; with --no-idem a retry may make
 * one, counted, never waited on), tasks requeued (attempts > 1), and the
 * duration.
 *
 * Usage: chaos [--bin GSCHED] [--tasks N] [--server-kills K] [--replay-kills R]
 *              [--worker-kill-ms MS] [--workers W] [--slots S] [--retries N]
 *              [--window N] [--batch N] [--rate N] [--sleep-every N] [--seed N]
 *              [--deadline-s S] [--roles MODE] [--no-idem] [--keep]
 * Tasks are submitted at --rate per second (default 1500) so that the kills
 * land while work is in flight; every --sleep-every-th task (default 10) is a
 * `sleep` of 10..100 ms (DONE with no output) so that kills also hit running
 * tasks; the others `echo` a payload unique to the task.
 * --roles threads (the default, and the only mode built) runs the server's
 * roles as threads of one process; the hook for separate role processes is
 * server_spawn()/server_kill() below.
 *
 * Ownership and threads.  main() owns one struct chaos and is the only thread
 * that starts, kills and reaps processes (e2e_util's process table is not
 * thread-safe).  Submitter and waiter threads each own a gs_client and share
 * only: the per-task records (a task's record is written by the one thread
 * that owns its index at that moment: its submitter until it is queued for
 * the waiters, then one waiter), the ack queue (mutex), and atomic counters.
 * Processes, logs, the data directory and the segment live in
 * /tmp/gsched-chaos-PID (kept when a check fails or with --keep); every child
 * is ended on exit (e2e_util), and the segment is unlinked.  Every loop is
 * bounded by --deadline-s.  Errors: a gs_client call that fails is retried
 * within the deadline and counted; a process that cannot be started ends the
 * run (exit status 2).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"
#include "gsched_client.h"

#define MAX_WORKERS     8
#define MAX_THREADS     8
#define WAIT_BATCH      256
#define WAIT_TIMEOUT_MS 500
#define PAYLOAD_MAX     48

enum roles_mode {
	ROLES_THREADS,   /* one `gsched server`: PLM, scheduler and register as threads */
	ROLES_PROCESSES, /* `gsched server --role R` x 3 on one segment (no log) */
};

#define N_ROLES 3
static const char *const role_names[N_ROLES] = {"plm", "scheduler", "register"};

struct opts {
	const char *bin; /* NULL: e2e_util's default */
	size_t tasks;
	int server_kills, replay_kills, worker_kill_ms, workers, slots;
	uint32_t retries;
	size_t window, batch;
	unsigned rate;        /* tasks submitted per second (0: as fast as acknowledged) */
	unsigned sleep_every; /* every Nth task sleeps 10..100 ms instead of echoing (0: none) */
	uint64_t seed;
	int deadline_s;
	enum roles_mode roles;
	bool keep;
	bool kills_given; /* --server-kills was given */
	bool idem; /* Submit with an idempotency key per batch (default; --no-idem: without) */
	int submitters, waiters;
};

/* What the first final result of a task looked like (state 0: none yet). */
struct task_rec {
	uint64_t id; /* the acknowledged ID */
	bool acked;
	uint64_t worker, finished_us, out_hash;
	uint32_t attempts;
	int32_t exit_code;
	uint8_t state;
	bool unknown_seen; /* the server did not know the ID before its result came */
	bool mismatch;
};

struct restart_stat {
	int role;         /* ROLES_PROCESSES: the role killed (-1: all three) */
	uint64_t wall_us; /* when the SIGKILL was sent (CLOCK_REALTIME, as finished_us) */
	int ms;           /* SIGKILL to health SERVING */
	bool replayed;    /* the segment was removed: the log was replayed */
	bool path_ok;     /* the server's log says it took the expected path */
	size_t at_acked;  /* acknowledged tasks when it was killed */
	size_t at_finals; /* final results received when it was killed */
};

struct chaos {
	struct opts o;
	char addr[64], data_dir[400], segment[96], server_log[400];
	uint64_t t0_ms, deadline_ms, submit_t0_ms;

	/* ROLES_PROCESSES: each role's address (addr is the PLM's), log, process */
	char role_addr[N_ROLES][64], role_log[N_ROLES][400];
	pid_t roles[N_ROLES];
	int role_kills[N_ROLES];
	int kill_role[64]; /* the role each planned kill hits */

	/* processes: main thread only */
	pid_t server, workers[MAX_WORKERS];
	int server_starts, worker_starts[MAX_WORKERS];
	uint64_t rng;
	struct restart_stat restarts[64];
	long long left_in_server; /* tasks_in_use after the rechecks (-1: unknown) */
	int n_restarts, chaos_kills, worker_kills, worker_unexpected, server_unexpected;

	/* shared */
	struct task_rec *rec;
	atomic_size_t next_submit, acked, finals, submit_threads_left;
	atomic_size_t submit_fail_calls, submit_retried, submit_unacked, submit_full, never_acked;
	atomic_size_t wait_fail_calls, unknown_ids, mismatches, reconnects;
	atomic_size_t done, failed, failed_lost, cancelled, requeued, max_attempts;
	atomic_bool stop, fatal;
	pthread_mutex_t qmu; /* the ack queue: indices acknowledged, not yet taken */
	pthread_cond_t qcv;
	size_t *queue, q_head, q_tail;
};

struct thread_arg {
	struct chaos *x;
	int n;
};

/* --- small helpers ------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t v = *s;
	v ^= v >> 12;
	v ^= v << 25;
	v ^= v >> 27;
	*s = v;
	return v * 2685821657736338717ull;
}

static uint64_t rng_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
	return hi <= lo ? lo : lo + rng_next(s) % (hi - lo + 1);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t result_hash(const struct gs_client_result *r)
{
	uint64_t h = fnv1a(14695981039346656037ull, r->output, r->output_len);
	return fnv1a(h, r->error, strlen(r->error));
}

/* Task i: a sleep of 10..100 ms (every sleep_every-th task), else an echo
 * of a payload unique to the run and the task. */
static bool is_sleeper(const struct chaos *x, size_t i)
{
	return x->o.sleep_every && i % x->o.sleep_every == x->o.sleep_every - 1;
}

static int payload_of(const struct chaos *x, size_t i, char *buf)
{
	if (is_sleeper(x, i))
		return snprintf(buf, PAYLOAD_MAX, "%zu", 10 + (i * 7919) % 91);
	return snprintf(buf, PAYLOAD_MAX, "chaos-%" PRIu64 "-%zu", x->o.seed, i);
}

static bool past_deadline(const struct chaos *x)
{
	return gs_e2e_mono_ms() >= x->deadline_ms;
}

static void atomic_max(atomic_size_t *a, size_t v)
{
	size_t cur = atomic_load(a);
	while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
		;
}

static void say(const struct chaos *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(const struct chaos *x, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	double t = (double)(gs_e2e_mono_ms() - x->t0_ms) / 1000.0;
	printf("chaos [%7.2fs] %s\n", t, line);
	fflush(stdout);
}

/* Appends a marker line to a process log (so restarts can be told apart). */
static long log_mark(const char *path, const char *text)
{
	FILE *f = fopen(path, "a");
	if (!f)
		return 0;
	fprintf(f, "=== chaos: %s ===\n", text);
	long off = ftell(f);
	fclose(f);
	return off;
}

/* True if the file, from offset `from`, contains needle (first 1 MiB). */
static bool log_has(const char *path, long from, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	static const size_t cap = 1 << 20;
	char *buf = malloc(cap + 1);
	bool found = false;
	if (buf && fseek(f, from, SEEK_SET) == 0) {
		size_t n = fread(buf, 1, cap, f);
		buf[n] = 0;
		found = strstr(buf, needle) != NULL;
	}
	free(buf);
	fclose(f);
	return found;
}

static void log_tail(const char *path)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "tail -n 20 '%s' 1>&2", path);
	if (system(cmd) != 0)
		fprintf(stderr, "chaos: cannot show %s\n", path);
}

/* Exited (without reaping it)? */
static bool has_exited(pid_t pid)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* --- processes (main thread only) --------------------------------------- */

static int wait_serving(struct chaos *x, int ms)
{
	struct gs_client *c = gs_e2e_connect(x->addr, ms);
	if (!c)
		return GS_EUNAVAIL;
	gs_client_close(c);
	return GS_OK;
}

/* ROLES_PROCESSES: starts role r on x->segment and waits until it serves. */
static int role_spawn(struct chaos *x, int r, const char *why, long *log_off)
{
	char mark[128], name[32];
	snprintf(mark, sizeof(mark), "start %d: %s", ++x->server_starts, why);
	snprintf(name, sizeof(name), "server-%s", role_names[r]);
	*log_off = log_mark(x->role_log[r], mark);
	const char *args[] = {"server",        "--role",
	                      role_names[r],   "--listen",
	                      x->role_addr[r], "--segment",
	                      x->segment,      "--max-tasks",
	                      "262144",        "--heartbeat-ms",
	                      "100",           "--worker-timeout-ms",
	                      "1000",          "--result-ttl-ms",
	                      "3600000",       "--grace-ms",
	                      "500",           NULL};
	x->roles[r] = gs_e2e_spawn(name, args);
	struct gs_client *c = gs_e2e_connect(x->role_addr[r], 60000);
	if (!c) {
		fprintf(stderr, "chaos: role %s (start %d) does not serve within 60 s\n",
		        role_names[r], x->server_starts);
		log_tail(x->role_log[r]);
		return GS_EUNAVAIL;
	}
	gs_client_close(c);
	return GS_OK;
}

/* SIGKILLs role r's process and reaps it. */
static void role_kill(struct chaos *x, int r)
{
	kill(x->roles[r], SIGKILL);
	if (gs_e2e_wait_exit(x->roles[r], 10000) == -1)
		fprintf(stderr, "chaos: role %s %d not reaped after SIGKILL\n", role_names[r],
		        (int)x->roles[r]);
	x->roles[r] = 0;
}

/*
 * Starts "the server" and waits until it serves.  ROLES_THREADS: one
 * `gsched server` process; ROLES_PROCESSES: the three role processes.
 */
static int server_spawn(struct chaos *x, const char *why, long *log_off)
{
	if (x->o.roles == ROLES_PROCESSES) {
		int rc = GS_OK;
		for (int r = 0; r < N_ROLES && rc == GS_OK; r++)
			rc = role_spawn(x, r, why, log_off);
		return rc;
	}
	char mark[128];
	snprintf(mark, sizeof(mark), "start %d: %s", ++x->server_starts, why);
	*log_off = log_mark(x->server_log, mark);
	const char *args[] = {"server",    "--listen",
	                      x->addr,     "--segment",
	                      x->segment,  "--data-dir",
	                      x->data_dir, "--fsync-ms",
	                      "5",         "--max-tasks",
	                      "262144",    "--heartbeat-ms",
	                      "100",       "--worker-timeout-ms",
	                      "1000",      "--result-ttl-ms",
	                      "3600000",   "--grace-ms",
	                      "500",       NULL};
	x->server = gs_e2e_spawn("server", args);
	if (wait_serving(x, 60000) != GS_OK) {
		fprintf(stderr, "chaos: the server (start %d) does not serve within 60 s\n",
		        x->server_starts);
		log_tail(x->server_log);
		return GS_EUNAVAIL;
	}
	return GS_OK;
}

/* SIGKILLs "the server" (every role process) and reaps it. */
static void server_kill(struct chaos *x)
{
	if (x->o.roles == ROLES_PROCESSES) {
		for (int r = 0; r < N_ROLES; r++)
			role_kill(x, r);
		return;
	}
	kill(x->server, SIGKILL);
	if (gs_e2e_wait_exit(x->server, 10000) == -1)
		fprintf(stderr, "chaos: server %d not reaped after SIGKILL\n", (int)x->server);
	x->server = 0;
}

static void worker_spawn(struct chaos *x, int k)
{
	char name[32], slots[16], mark[64];
	snprintf(name, sizeof(name), "worker-%d", k);
	snprintf(slots, sizeof(slots), "%d", x->o.slots);
	char path[400];
	snprintf(path, sizeof(path), "%s/%s.log", gs_e2e_dir(), name);
	snprintf(mark, sizeof(mark), "start %d", ++x->worker_starts[k]);
	log_mark(path, mark);
	const char *server = x->o.roles == ROLES_PROCESSES ? x->role_addr[2] : x->addr;
	const char *args[] = {"worker", "--server",   server, "--slots", slots, "--name",
	                      name,     "--grace-ms", "300",  "--quiet", NULL};
	x->workers[k] = gs_e2e_spawn(name, args);
}

static void worker_kill_random(struct chaos *x)
{
	int k = (int)rng_range(&x->rng, 0, (uint64_t)x->o.workers - 1);
	kill(x->workers[k], SIGKILL);
	if (gs_e2e_wait_exit(x->workers[k], 10000) == -1)
		fprintf(stderr, "chaos: worker %d not reaped after SIGKILL\n", (int)x->workers[k]);
	x->worker_kills++;
	worker_spawn(x, k);
}

/* A process that exited without being asked to: report, reap, restart. */
static int check_unexpected(struct chaos *x)
{
	for (int k = 0; k < x->o.workers; k++)
		if (has_exited(x->workers[k])) {
			int st = gs_e2e_wait_exit(x->workers[k], 1000);
			x->worker_unexpected++;
			say(x, "UNEXPECTED: worker-%d exited (wait status 0x%x); restarted", k, st);
			worker_spawn(x, k);
		}
	for (int r = 0; r < N_ROLES; r++)
		if (x->roles[r] && has_exited(x->roles[r])) {
			int st = gs_e2e_wait_exit(x->roles[r], 1000);
			x->server_unexpected++;
			say(x, "UNEXPECTED: role %s exited (wait status 0x%x); log tail:",
			    role_names[r], st);
			log_tail(x->role_log[r]);
			long off;
			if (role_spawn(x, r, "after an unexpected exit", &off) != GS_OK)
				return GS_EUNAVAIL;
		}
	if (x->server && has_exited(x->server)) {
		int st = gs_e2e_wait_exit(x->server, 1000);
		x->server_unexpected++;
		say(x, "UNEXPECTED: the server exited (wait status 0x%x); log tail:", st);
		log_tail(x->server_log);
		long off;
		if (server_spawn(x, "after an unexpected exit", &off) != GS_OK)
			return GS_EUNAVAIL;
	}
	return GS_OK;
}

/* ROLES_PROCESSES: SIGKILL role `role` (-1: all three), restart it; the
 * restarted role's log must say it attached and repaired the segment. */
static int role_chaos_restart(struct chaos *x, int role, const char *why)
{
	struct restart_stat *r = &x->restarts[x->n_restarts++];
	r->role = role;
	r->at_acked = atomic_load(&x->acked);
	r->at_finals = atomic_load(&x->finals);
	uint64_t t = gs_e2e_mono_ms();
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	r->wall_us = (uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_nsec / 1000;
	int lo = role < 0 ? 0 : role, hi = role < 0 ? N_ROLES - 1 : role;
	for (int k = lo; k <= hi; k++) {
		role_kill(x, k);
		x->role_kills[k]++;
	}
	int rc = GS_OK;
	r->path_ok = true;
	for (int k = lo; k <= hi && rc == GS_OK; k++) {
		long off;
		rc = role_spawn(x, k, why, &off);
		r->path_ok &= log_has(x->role_log[k], off, "attached segment");
	}
	r->ms = (int)(gs_e2e_mono_ms() - t);
	say(x, "%s killed (%s) at %zu acked / %zu final; serving again after %d ms%s",
	    role < 0 ? "every role" : role_names[role], why, r->at_acked, r->at_finals, r->ms,
	    r->path_ok ? " (segment attached and repaired)" : " (NOT CONFIRMED by its log)");
	return rc;
}

/* SIGKILL, optionally remove the segment, restart; records the restart. */
static int server_chaos_restart(struct chaos *x, bool replay, const char *why)
{
	struct restart_stat *r = &x->restarts[x->n_restarts++];
	r->role = -1;
	r->at_acked = atomic_load(&x->acked);
	r->at_finals = atomic_load(&x->finals);
	r->replayed = replay;
	uint64_t t = gs_e2e_mono_ms();
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	r->wall_us = (uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_nsec / 1000;
	server_kill(x);
	if (replay && shm_unlink(x->segment) != 0)
		fprintf(stderr, "chaos: shm_unlink %s: %s\n", x->segment, strerror(errno));
	long off;
	char mark[160];
	snprintf(mark, sizeof(mark), "%s (%s)", why, replay ? "segment removed" : "segment kept");
	int rc = server_spawn(x, mark, &off);
	r->ms = (int)(gs_e2e_mono_ms() - t);
	r->path_ok = log_has(x->server_log, off, replay ? "replayed" : "adopted segment");
	say(x, "server killed (%s) at %zu acked / %zu final; serving again after %d ms via %s%s",
	    why, r->at_acked, r->at_finals, r->ms, replay ? "log replay" : "segment adoption",
	    r->path_ok ? "" : " (NOT CONFIRMED by its log)");
	return rc;
}

/* --- the ack queue ------------------------------------------------------ */

static void queue_push(struct chaos *x, const size_t *idx, size_t n)
{
	pthread_mutex_lock(&x->qmu);
	for (size_t i = 0; i < n; i++)
		x->queue[x->q_tail++] = idx[i];
	pthread_cond_broadcast(&x->qcv);
	pthread_mutex_unlock(&x->qmu);
}

/* Takes up to max indices; waits up to ms when there are none. */
static size_t queue_take(struct chaos *x, size_t *out, size_t max, int ms)
{
	pthread_mutex_lock(&x->qmu);
	if (x->q_head == x->q_tail && ms > 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)ms * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&x->qcv, &x->qmu, &ts);
	}
	size_t n = 0;
	while (n < max && x->q_head < x->q_tail)
		out[n++] = x->queue[x->q_head++];
	pthread_mutex_unlock(&x->qmu);
	return n;
}

/* --- clients ------------------------------------------------------------ */

static struct gs_client *client_connect(struct chaos *x)
{
	struct gs_client_opts co = {.connect_timeout_ms = 2000, .call_timeout_ms = 10000};
	struct gs_client *c = NULL;
	while (!past_deadline(x) && !atomic_load(&x->stop)) {
		if (gs_client_connect(x->addr, &co, &c) == GS_OK)
			return c;
		gs_e2e_sleep_ms(100);
	}
	return NULL;
}

/* After a failed call: back off; after many in a row, a fresh channel. */
static void client_backoff(struct chaos *x, struct gs_client **c, int *fails)
{
	gs_e2e_sleep_ms(*fails < 10 ? 20 : 100);
	if (++*fails % 50 == 0) {
		gs_client_close(*c);
		*c = client_connect(x);
		atomic_fetch_add(&x->reconnects, 1);
	}
}

/* --- submitters --------------------------------------------------------- */

static void *submitter_main(void *arg)
{
	struct chaos *x = ((struct thread_arg *)arg)->x;
	size_t b = x->o.batch;
	struct gs_client_spec *specs = calloc(b, sizeof(*specs));
	char(*pay)[PAYLOAD_MAX] = calloc(b, PAYLOAD_MAX);
	uint64_t *ids = calloc(b, sizeof(*ids));
	size_t *idx = calloc(b, sizeof(*idx));
	struct gs_client *c = client_connect(x);
	if (!specs || !pay || !ids || !idx || !c) {
		fprintf(stderr, "chaos: submitter: no memory or no server\n");
		atomic_store(&x->fatal, true);
		goto out;
	}
	for (;;) {
		size_t base = atomic_fetch_add(&x->next_submit, b);
		if (base >= x->o.tasks)
			break;
		size_t n = x->o.tasks - base < b ? x->o.tasks - base : b;
		/* At --rate, and at most `window` tasks acknowledged and not final. */
		if (x->o.rate) {
			uint64_t due = x->submit_t0_ms + (uint64_t)base * 1000 / x->o.rate;
			while (gs_e2e_mono_ms() < due && !past_deadline(x) &&
			       !atomic_load(&x->stop))
				gs_e2e_sleep_ms(due > gs_e2e_mono_ms() + 20 ? 20 : 1);
		}
		for (;;) {
			size_t f = atomic_load(&x->finals); /* first: then f <= a */
			size_t a = atomic_load(&x->acked);
			if (a - f + n <= x->o.window || past_deadline(x) || atomic_load(&x->stop))
				break;
			gs_e2e_sleep_ms(2);
		}
		for (size_t j = 0; j < n; j++) {
			int len = payload_of(x, base + j, pay[j]);
			specs[j] = (struct gs_client_spec){
			    .handler = is_sleeper(x, base + j) ? "sleep" : "echo",
			    .payload = pay[j],
			    .payload_len = (size_t)len,
			    .retries = x->o.retries};
			idx[j] = base + j;
		}
		int fails = 0;
		bool acked = false, retried = false;
		while (!acked && !past_deadline(x) && !atomic_load(&x->stop)) {
			char key[64];
			snprintf(key, sizeof(key), "chaos-%" PRIu64 "-%zu", x->o.seed, base);
			int rc = gs_client_submit_idem(c, x->o.idem ? key : NULL, specs, n, ids);
			if (rc == GS_OK) {
				acked = true;
				break;
			}
			atomic_fetch_add(&x->submit_fail_calls, 1);
			if (rc == GS_EFULL) {
				atomic_fetch_add(&x->submit_full, 1); /* refused: nothing created */
			} else if (rc == GS_EINVAL || rc == GS_EAUTH || rc == GS_EPROTO) {
				fprintf(stderr, "chaos: submit refused: %s: %s\n", gs_strerror(rc),
				        gs_client_error(c));
				atomic_store(&x->fatal, true);
				break;
			} else if (!retried) {
				/* The server may have taken them before it died: without
				 * an idempotency key the retry makes a second copy. */
				retried = true;
				atomic_fetch_add(&x->submit_retried, 1);
				atomic_fetch_add(&x->submit_unacked, n);
			}
			client_backoff(x, &c, &fails);
			if (!c)
				break;
		}
		if (!acked) {
			atomic_fetch_add(&x->never_acked, n);
			if (!c)
				break;
			continue;
		}
		for (size_t j = 0; j < n; j++) {
			x->rec[base + j].id = ids[j];
			x->rec[base + j].acked = true;
		}
		atomic_fetch_add(&x->acked, n);
		queue_push(x, idx, n);
	}
out:
	atomic_fetch_sub(&x->submit_threads_left, 1);
	pthread_mutex_lock(&x->qmu);
	pthread_cond_broadcast(&x->qcv);
	pthread_mutex_unlock(&x->qmu);
	if (c)
		gs_client_close(c);
	free(specs);
	free(pay);
	free(ids);
	free(idx);
	return NULL;
}

/* --- waiters ------------------------------------------------------------ */

static void record_final(struct chaos *x, size_t i, const struct gs_client_result *r)
{
	struct task_rec *t = &x->rec[i];
	t->state = (uint8_t)r->state;
	t->exit_code = r->exit_code;
	t->attempts = r->attempts;
	t->worker = r->worker_id;
	t->finished_us = r->finished_us;
	t->out_hash = result_hash(r);
	atomic_fetch_add(&x->finals, 1);
	if (r->attempts > 1)
		atomic_fetch_add(&x->requeued, 1);
	atomic_max(&x->max_attempts, r->attempts);
	if (r->state == GS_CLIENT_DONE) {
		atomic_fetch_add(&x->done, 1);
		char want[PAYLOAD_MAX] = "";
		int len = is_sleeper(x, i) ? 0 : payload_of(x, i, want);
		if (r->output_len != (size_t)len || memcmp(r->output, want, (size_t)len) != 0 ||
		    r->exit_code != 0) {
			t->mismatch = true;
			if (atomic_fetch_add(&x->mismatches, 1) < 5)
				say(x,
				    "MISMATCH: task #%zu %016" PRIx64 ": output '%.*s', want '%s'",
				    i, t->id, (int)(r->output_len > 60 ? 60 : r->output_len),
				    (const char *)r->output, want);
		}
	} else if (r->state == GS_CLIENT_FAILED) {
		atomic_fetch_add(&x->failed, 1);
		if (strstr(r->error, "worker lost"))
			atomic_fetch_add(&x->failed_lost, 1);
		else
			say(x, "task #%zu %016" PRIx64 " failed: %s", i, t->id, r->error);
	} else {
		atomic_fetch_add(&x->cancelled, 1);
	}
}

static void *waiter_main(void *arg)
{
	struct chaos *x = ((struct thread_arg *)arg)->x;
	/* pending: a ring of the indices this waiter owns, not final yet */
	size_t cap = x->o.tasks + 1, head = 0, len = 0;
	size_t *ring = calloc(cap, sizeof(*ring));
	size_t *taken = calloc(WAIT_BATCH, sizeof(*taken));
	uint64_t *ids = calloc(WAIT_BATCH, sizeof(*ids));
	struct gs_client_result *res = calloc(WAIT_BATCH, sizeof(*res));
	struct gs_client *c = client_connect(x);
	int fails = 0;
	if (!ring || !taken || !ids || !res || !c) {
		fprintf(stderr, "chaos: waiter: no memory or no server\n");
		atomic_store(&x->fatal, true);
		goto out;
	}
	while (!past_deadline(x) && !atomic_load(&x->stop) && c) {
		size_t got = queue_take(x, taken, WAIT_BATCH, len ? 0 : 100);
		for (size_t j = 0; j < got; j++)
			ring[(head + len++) % cap] = taken[j];
		if (!len) {
			if (atomic_load(&x->submit_threads_left) == 0) {
				pthread_mutex_lock(&x->qmu);
				bool empty = x->q_head == x->q_tail;
				pthread_mutex_unlock(&x->qmu);
				if (empty)
					break;
			}
			continue;
		}
		size_t k = len < WAIT_BATCH ? len : WAIT_BATCH;
		for (size_t j = 0; j < k; j++) {
			taken[j] = ring[(head + j) % cap];
			ids[j] = x->rec[taken[j]].id;
		}
		head = (head + k) % cap;
		len -= k;
		int rc = gs_client_wait(c, ids, k, WAIT_TIMEOUT_MS, res);
		bool answered = rc == GS_OK || rc == GS_ETIMEOUT;
		for (size_t j = 0; j < k; j++) {
			size_t i = taken[j];
			if (gs_client_state_final(res[j].state)) {
				record_final(x, i, &res[j]);
				continue;
			}
			if (answered && res[j].state == GS_CLIENT_UNKNOWN &&
			    !x->rec[i].unknown_seen) {
				x->rec[i].unknown_seen = true;
				if (atomic_fetch_add(&x->unknown_ids, 1) < 5)
					say(x,
					    "UNKNOWN: acknowledged task #%zu %016" PRIx64
					    " is unknown to the server before its result came",
					    i, x->rec[i].id);
			}
			ring[(head + len++) % cap] = i; /* again later */
		}
		gs_client_results_free(res, k);
		if (answered) {
			fails = 0;
		} else {
			atomic_fetch_add(&x->wait_fail_calls, 1);
			client_backoff(x, &c, &fails);
		}
	}
out:
	if (c)
		gs_client_close(c);
	free(ring);
	free(taken);
	free(ids);
	free(res);
	return NULL;
}

/* --- the second look: no task has two final results --------------------- */

struct recheck {
	size_t forgotten, identical, changed, resurrected, worker_dropped, not_checked;
};

/* A changed result: which server kill fell between the two results. */
static void explain_second(struct chaos *x, const struct task_rec *t,
                           const struct gs_client_result *r)
{
	for (int k = 0; k < x->n_restarts; k++) {
		const struct restart_stat *s = &x->restarts[k];
		if (s->wall_us >= t->finished_us && s->wall_us <= r->finished_us) {
			say(x,
			    "  the first result finished %.1f ms before server kill %d (%s), the "
			    "second %.1f ms after it",
			    (double)(s->wall_us - t->finished_us) / 1000.0, k + 1,
			    x->o.roles == ROLES_PROCESSES
			        ? (s->role < 0 ? "every role" : role_names[s->role])
			    : s->replayed ? "log replay"
			                  : "segment adopted",
			    (double)(r->finished_us - s->wall_us) / 1000.0);
			return;
		}
	}
}

/* Waits (timeout 0) on every acknowledged, final-recorded ID once more. */
static int recheck_all(struct chaos *x, struct recheck *out)
{
	memset(out, 0, sizeof(*out));
	struct gs_client *c = client_connect(x);
	if (!c)
		return GS_EUNAVAIL;
	size_t cap = 1024;
	uint64_t *ids = calloc(cap, sizeof(*ids));
	size_t *idx = calloc(cap, sizeof(*idx));
	struct gs_client_result *res = calloc(cap, sizeof(*res));
	int rc = ids && idx && res ? GS_OK : GS_ENOMEM;
	size_t i = 0;
	while (rc == GS_OK && i < x->o.tasks) {
		size_t n = 0;
		for (; i < x->o.tasks && n < cap; i++)
			if (x->rec[i].id && x->rec[i].state) {
				ids[n] = x->rec[i].id;
				idx[n++] = i;
			}
		if (!n)
			break;
		int fails = 0;
		int wrc;
		while ((wrc = gs_client_wait(c, ids, n, 0, res)) != GS_OK && wrc != GS_ETIMEOUT) {
			/* Results fetched by a failed call count as changed: retry whole. */
			for (size_t j = 0; j < n; j++)
				if (gs_client_state_final(res[j].state))
					say(x, "recheck: a Wait failed after fetching task #%zu",
					    idx[j]);
			gs_client_results_free(res, n);
			if (past_deadline(x) || fails > 200) {
				rc = wrc;
				break;
			}
			client_backoff(x, &c, &fails);
			if (!c) {
				rc = GS_EUNAVAIL;
				break;
			}
		}
		if (rc != GS_OK)
			break;
		for (size_t j = 0; j < n; j++) {
			const struct task_rec *t = &x->rec[idx[j]];
			const struct gs_client_result *r = &res[j];
			if (r->state == GS_CLIENT_UNKNOWN) {
				out->forgotten++;
			} else if (!gs_client_state_final(r->state)) {
				out->resurrected++;
				if (out->resurrected <= 5)
					say(x, "RESURRECTED: task #%zu %016" PRIx64 " is %s again",
					    idx[j], t->id, gs_client_state_name(r->state));
			} else if (r->state != t->state || r->exit_code != t->exit_code ||
			           result_hash(r) != t->out_hash || r->attempts != t->attempts ||
			           r->finished_us != t->finished_us ||
			           (r->worker_id && r->worker_id != t->worker)) {
				out->changed++;
				if (out->changed <= 5)
					explain_second(x, t, r);
				if (out->changed <= 5)
					say(x,
					    "SECOND RESULT: task #%zu %016" PRIx64
					    ": first %s attempt %u "
					    "worker %" PRIu64 " finished %" PRIu64
					    ", now %s attempt %u worker "
					    "%" PRIu64 " finished %" PRIu64,
					    idx[j], t->id, gs_client_state_name(t->state),
					    t->attempts, t->worker, t->finished_us,
					    gs_client_state_name(r->state), r->attempts,
					    r->worker_id, r->finished_us);
			} else {
				out->identical++;
				out->worker_dropped += r->worker_id == 0 && t->worker != 0;
			}
		}
		gs_client_results_free(res, n);
	}
	for (size_t k = 0; k < x->o.tasks; k++)
		out->not_checked += x->rec[k].id && !x->rec[k].state;
	gs_client_close(c);
	free(ids);
	free(idx);
	free(res);
	return rc;
}

/* --- options ------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f, "usage: chaos [--bin GSCHED] [--tasks N] [--server-kills K] [--replay-kills R]\n"
	           "             [--worker-kill-ms MS] [--workers W] [--slots S] [--retries N]\n"
	           "             [--window N] [--batch N] [--rate N] [--sleep-every N]\n"
	           "             [--seed N] [--deadline-s S]\n"
	           "             [--roles threads|processes] [--no-idem] [--keep]\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){.tasks = 100000,
	                   .server_kills = 5,
	                   .replay_kills = 1,
	                   .worker_kill_ms = 500,
	                   .workers = 3,
	                   .slots = 32,
	                   .retries = 100,
	                   .window = 4000,
	                   .batch = 25,
	                   .rate = 1500,
	                   .sleep_every = 10,
	                   .seed = ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid(),
	                   .roles = ROLES_THREADS,
	                   .idem = true,
	                   .submitters = 2,
	                   .waiters = 2};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--keep")) {
			o->keep = true;
			continue;
		}
		if (!strcmp(a, "--no-idem")) {
			o->idem = false;
			continue;
		}
		if (!strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		}
		if (i + 1 >= argc) {
			usage(stderr);
			return -1;
		}
		const char *v = argv[++i];
		char *end = NULL;
		unsigned long long n = strtoull(v, &end, 10);
		bool num = end && *end == 0 && *v;
		if (!strcmp(a, "--bin"))
			o->bin = v;
		else if (!strcmp(a, "--roles")) {
			if (strcmp(v, "threads") == 0) {
				o->roles = ROLES_THREADS;
			} else if (strcmp(v, "processes") == 0) {
				o->roles = ROLES_PROCESSES;
			} else {
				fprintf(stderr,
				        "chaos: --roles is threads or processes, not '%s'\n", v);
				return -1;
			}
		} else if (!num) {
			fprintf(stderr, "chaos: %s needs a number, not '%s'\n", a, v);
			return -1;
		} else if (!strcmp(a, "--tasks") && n >= 1 && n <= 10000000)
			o->tasks = (size_t)n;
		else if (!strcmp(a, "--server-kills") && n <= 50) {
			o->server_kills = (int)n;
			o->kills_given = true;
		} else if (!strcmp(a, "--replay-kills") && n <= 50)
			o->replay_kills = (int)n;
		else if (!strcmp(a, "--worker-kill-ms") && n <= 600000)
			o->worker_kill_ms = (int)n;
		else if (!strcmp(a, "--workers") && n >= 1 && n <= MAX_WORKERS)
			o->workers = (int)n;
		else if (!strcmp(a, "--slots") && n >= 1 && n <= 4096)
			o->slots = (int)n;
		else if (!strcmp(a, "--retries") && n <= 1000000)
			o->retries = (uint32_t)n;
		else if (!strcmp(a, "--window") && n >= 1)
			o->window = (size_t)n;
		else if (!strcmp(a, "--batch") && n >= 1 && n <= 10000)
			o->batch = (size_t)n;
		else if (!strcmp(a, "--rate") && n <= 10000000)
			o->rate = (unsigned)n;
		else if (!strcmp(a, "--sleep-every") && n <= 1000000)
			o->sleep_every = (unsigned)n;
		else if (!strcmp(a, "--seed"))
			o->seed = n;
		else if (!strcmp(a, "--deadline-s") && n >= 1 && n <= 86400)
			o->deadline_s = (int)n;
		else {
			fprintf(stderr, "chaos: bad option or value: %s %s\n", a, v);
			usage(stderr);
			return -1;
		}
	}
	if (o->roles == ROLES_PROCESSES) {
		/* No log with roles apart: every restart attaches the segment. */
		o->replay_kills = 0;
		if (!o->kills_given)
			o->server_kills = 3 * N_ROLES;
	}
	if (o->replay_kills > o->server_kills)
		o->replay_kills = o->server_kills;
	if (o->window < o->batch)
		o->window = o->batch;
	if (!o->deadline_s)
		o->deadline_s = 180 + (int)(o->tasks / (o->rate && o->rate < 250 ? o->rate : 250));
	return 0;
}

/* --- the run ------------------------------------------------------------ */

/* Server kill points: the k-th when acknowledgements pass a random point in
 * the k-th of K equal parts of the run; which of them replay the log. */
static void plan_kills(struct chaos *x, size_t *at, bool *replay)
{
	int k = x->o.server_kills;
	/* Roles: kill j hits role (first + j) % 3, so each is hit k / 3 times. */
	int first = (int)rng_range(&x->rng, 0, N_ROLES - 1);
	for (int j = 0; j < k; j++) {
		x->kill_role[j] = (first + j) % N_ROLES;
		double f =
		    ((double)j + 0.15 + 0.7 * (double)rng_range(&x->rng, 0, 1000) / 1000.0) / k;
		at[j] = (size_t)(f * (double)x->o.tasks);
		replay[j] = false;
	}
	for (int r = 0; r < x->o.replay_kills; r++) {
		int j;
		do
			j = (int)rng_range(&x->rng, 0, (uint64_t)k - 1);
		while (replay[j]);
		replay[j] = true;
	}
}

static void progress(struct chaos *x)
{
	say(x, "%zu acked, %zu final (%zu requeued), %d worker kills, %d server kills",
	    atomic_load(&x->acked), atomic_load(&x->finals), atomic_load(&x->requeued),
	    x->worker_kills, x->n_restarts);
}

/* The chaos loop: kills and restarts until every acknowledged task is final
 * (and no submitter is left) or the deadline. */
static int chaos_loop(struct chaos *x)
{
	size_t at[64];
	bool replay[64];
	plan_kills(x, at, replay);
	int next_kill = 0;
	uint64_t armed = 0, server_ok = gs_e2e_mono_ms(), next_check = 0, next_progress = 0;
	uint64_t next_wkill = gs_e2e_mono_ms() + (uint64_t)x->o.worker_kill_ms;
	while (!past_deadline(x) && !atomic_load(&x->fatal)) {
		uint64_t now = gs_e2e_mono_ms();
		if (atomic_load(&x->submit_threads_left) == 0 &&
		    atomic_load(&x->finals) >= atomic_load(&x->acked) &&
		    next_kill >= x->o.server_kills)
			return GS_OK;
		if (x->o.worker_kill_ms && now >= next_wkill) {
			worker_kill_random(x);
			uint64_t ms = (uint64_t)x->o.worker_kill_ms;
			next_wkill = gs_e2e_mono_ms() + rng_range(&x->rng, ms / 2, ms + ms / 2);
		}
		if (next_kill < x->o.server_kills && atomic_load(&x->acked) >= at[next_kill] &&
		    now >= server_ok + 1000) {
			if (!armed) {
				armed = now + rng_range(&x->rng, 0, 300);
			} else if (now >= armed) {
				char why[32];
				snprintf(why, sizeof(why), "kill %d/%d", next_kill + 1,
				         x->o.server_kills);
				int rc = x->o.roles == ROLES_PROCESSES
				             ? role_chaos_restart(x, x->kill_role[next_kill], why)
				             : server_chaos_restart(x, replay[next_kill], why);
				if (rc != GS_OK)
					return GS_EUNAVAIL;
				next_kill++;
				x->chaos_kills++;
				armed = 0;
				server_ok = gs_e2e_mono_ms();
			}
		}
		if (now >= next_check) {
			if (check_unexpected(x) != GS_OK)
				return GS_EUNAVAIL;
			next_check = now + 200;
		}
		if (now >= next_progress) {
			progress(x);
			next_progress = now + 5000;
		}
		gs_e2e_sleep_ms(5);
	}
	return atomic_load(&x->fatal) ? GS_EIO : GS_ETIMEOUT;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Acknowledged IDs that are 0, and IDs acknowledged for two tasks. */
static int check_ids(const struct chaos *x, size_t *zero, size_t *dups)
{
	uint64_t *v = malloc(x->o.tasks * sizeof(*v));
	size_t n = 0;
	*zero = *dups = 0;
	if (!v)
		return GS_ENOMEM;
	for (size_t i = 0; i < x->o.tasks; i++) {
		if (!x->rec[i].acked)
			continue;
		if (x->rec[i].id)
			v[n++] = x->rec[i].id;
		else
			++*zero;
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	for (size_t i = 1; i < n; i++)
		*dups += v[i] == v[i - 1];
	free(v);
	return GS_OK;
}

static void print_recheck(const char *when, const struct recheck *r)
{
	printf("  %-34s forgotten %zu, identical %zu (worker id not kept: %zu), changed %zu, "
	       "back to non-final %zu, not checked %zu\n",
	       when, r->forgotten, r->identical, r->worker_dropped, r->changed, r->resurrected,
	       r->not_checked);
}

/* Prints every count; returns the number of failed checks. */
static int report(struct chaos *x, int loop_rc, const struct recheck *ra, int rca,
                  const struct recheck *rb, int rcb, uint64_t run_ms)
{
	size_t missing = 0, lost = 0, unknown_then_final = 0, zero = 0, dups = 0, acked = 0;
	for (size_t i = 0; i < x->o.tasks; i++) {
		const struct task_rec *t = &x->rec[i];
		acked += t->acked;
		if (t->acked && !t->state) {
			missing++;
			lost += t->unknown_seen;
			if (missing <= 5)
				printf("  missing: task #%zu %016" PRIx64 "%s\n", i, t->id,
				       t->unknown_seen ? " (unknown to the server)" : "");
		}
		unknown_then_final += t->unknown_seen && t->state;
	}
	check_ids(x, &zero, &dups);
	int replays = 0, adopts = 0, unconfirmed = 0, ms_max = 0;
	long ms_sum = 0;
	for (int k = 0; k < x->n_restarts; k++) {
		replays += x->restarts[k].replayed;
		adopts += !x->restarts[k].replayed;
		unconfirmed += !x->restarts[k].path_ok;
		ms_sum += x->restarts[k].ms;
		ms_max = x->restarts[k].ms > ms_max ? x->restarts[k].ms : ms_max;
	}
	size_t second = ra->changed + ra->resurrected + rb->changed + rb->resurrected;
	printf("chaos: results (seed %" PRIu64 ")\n", x->o.seed);
	printf("  tasks                              %zu (%u retries each; every %u-th a sleep, "
	       "the others echo), at %u/s\n",
	       x->o.tasks, x->o.retries, x->o.sleep_every, x->o.rate);
	printf("  acknowledged IDs                   %zu (zero %zu, duplicate %zu)\n", acked, zero,
	       dups);
	printf("  never acknowledged by the deadline %zu\n", atomic_load(&x->never_acked));
	printf("  submit calls failed                %zu (%zu RESOURCE_EXHAUSTED); batches "
	       "retried after a failure that may have left copies: %zu (%zu tasks)\n",
	       atomic_load(&x->submit_fail_calls), atomic_load(&x->submit_full),
	       atomic_load(&x->submit_retried), atomic_load(&x->submit_unacked));
	printf("  copies left in the server          %lld (unacknowledged submissions that "
	       "were taken after all; nobody waits on them)\n",
	       x->left_in_server);
	printf("  final results via Wait             %zu (done %zu, failed %zu [worker lost %zu], "
	       "cancelled %zu)\n",
	       atomic_load(&x->finals), atomic_load(&x->done), atomic_load(&x->failed),
	       atomic_load(&x->failed_lost), atomic_load(&x->cancelled));
	printf("  missing (acked, never final)       %zu (of which unknown to the server: %zu)\n",
	       missing, lost);
	printf("  acked IDs the server did not know  %zu (later final anyway: %zu)\n",
	       atomic_load(&x->unknown_ids), unknown_then_final);
	printf("  output mismatches                  %zu\n", atomic_load(&x->mismatches));
	printf("  second final results               %zu\n", second);
	bool apart = x->o.roles == ROLES_PROCESSES;
	print_recheck("  recheck after the run:", ra);
	print_recheck(apart ? "  recheck after SIGKILL of all roles:"
	                    : "  recheck after SIGKILL + replay:",
	              rb);
	printf("  requeued (attempts > 1)            %zu (max attempts %zu)\n",
	       atomic_load(&x->requeued), atomic_load(&x->max_attempts));
	printf("  worker kills (SIGKILL)             %d (unexpected worker exits %d)\n",
	       x->worker_kills, x->worker_unexpected);
	if (apart)
		printf(
		    "  role kills (SIGKILL)               %d of %d planned: plm %d, scheduler %d, "
		    "register %d (each + 1 for the recheck; repair not confirmed %d; "
		    "unexpected exits %d)\n",
		    x->chaos_kills, x->o.server_kills, x->role_kills[0] - 1, x->role_kills[1] - 1,
		    x->role_kills[2] - 1, unconfirmed, x->server_unexpected);
	else
		printf("  server kills (SIGKILL)             %d of %d planned, + 1 for the recheck "
		       "(segment adopted %d, log replayed %d, path not confirmed %d; unexpected "
		       "exits %d)\n",
		       x->chaos_kills, x->o.server_kills, adopts, replays, unconfirmed,
		       x->server_unexpected);
	printf("  server restart, SIGKILL to serving mean %ld ms, max %d ms\n",
	       x->n_restarts ? ms_sum / x->n_restarts : 0, ms_max);
	printf("  Wait calls failed, reconnects      %zu, %zu\n", atomic_load(&x->wait_fail_calls),
	       atomic_load(&x->reconnects));
	printf("  duration                           %.1f s (chaos phase %.1f s)\n",
	       (double)(gs_e2e_mono_ms() - x->t0_ms) / 1000.0, (double)run_ms / 1000.0);

	int bad = 0;
#define CHECK(cond, what)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("  FAIL: %s\n", what);                                              \
			bad++;                                                                     \
		}                                                                                  \
	} while (0)
	CHECK(loop_rc == GS_OK, "the run did not finish by the deadline");
	CHECK(acked == x->o.tasks, "not every task was acknowledged");
	CHECK(zero == 0 && dups == 0, "an acknowledged ID is zero or was given twice");
	CHECK(missing == 0, "an acknowledged task never reached a final state via Wait");
	CHECK(atomic_load(&x->unknown_ids) == 0, "the server forgot an acknowledged task");
	CHECK(atomic_load(&x->mismatches) == 0, "a result does not match its task");
	CHECK(atomic_load(&x->cancelled) == 0, "a task nobody cancelled is cancelled");
	CHECK(atomic_load(&x->failed) == atomic_load(&x->failed_lost), "a task failed");
	CHECK(second == 0, "a task has two final results");
	CHECK(rca == GS_OK && rcb == GS_OK, "a recheck could not complete");
	CHECK(x->chaos_kills == x->o.server_kills, "fewer server kills than planned");
	for (int r = 0; apart && r < N_ROLES; r++)
		CHECK(x->role_kills[r] - 1 >= x->o.server_kills / N_ROLES,
		      "a role was killed fewer times than planned");
	CHECK(!x->o.idem || x->left_in_server == 0,
	      "a Submit retried with its idempotency key left a second copy");
	CHECK(unconfirmed == 0, "a restart did not take the expected path");
	CHECK(x->worker_unexpected == 0 && x->server_unexpected == 0, "a process exited unasked");
#undef CHECK
	return bad;
}

int main(int argc, char **argv)
{
	struct chaos *x = calloc(1, sizeof(*x));
	if (!x)
		return 2;
	if (parse_opts(argc, argv, &x->o) != 0)
		return 2;
	char *e2e_argv[] = {argv[0], (char *)x->o.bin, NULL};
	if (gs_e2e_init("chaos", "chaos", 0755, x->o.bin ? 2 : 1, e2e_argv) != 0)
		return 2;
	x->rng = x->o.seed | 1;
	x->t0_ms = gs_e2e_mono_ms();
	x->deadline_ms = x->t0_ms + (uint64_t)x->o.deadline_s * 1000;
	x->rec = calloc(x->o.tasks, sizeof(*x->rec));
	x->queue = calloc(x->o.tasks, sizeof(*x->queue));
	if (!x->rec || !x->queue)
		return 2;
	pthread_mutex_init(&x->qmu, NULL);
	pthread_cond_init(&x->qcv, NULL);
	snprintf(x->addr, sizeof(x->addr), "127.0.0.1:%d", gs_e2e_free_port());
	for (int r = 0; r < N_ROLES; r++) {
		if (r == 0)
			snprintf(x->role_addr[r], sizeof(x->role_addr[r]), "%s", x->addr);
		else
			snprintf(x->role_addr[r], sizeof(x->role_addr[r]), "127.0.0.1:%d",
			         gs_e2e_free_port());
		snprintf(x->role_log[r], sizeof(x->role_log[r]), "%s/server-%s.log", gs_e2e_dir(),
		         role_names[r]);
	}
	snprintf(x->data_dir, sizeof(x->data_dir), "%s/data", gs_e2e_dir());
	snprintf(x->segment, sizeof(x->segment), "/gsched-chaos-%d", (int)getpid());
	snprintf(x->server_log, sizeof(x->server_log), "%s/server.log", gs_e2e_dir());
	shm_unlink(x->segment);

	printf("chaos: %s; %zu tasks, %d workers x %d slots, a worker SIGKILLed every ~%d ms, "
	       "the server %d times (%d with the segment removed: log replay); seed %" PRIu64
	       "; deadline %d s; roles: %s; logs in %s\n",
	       gs_e2e_bin(), x->o.tasks, x->o.workers, x->o.slots, x->o.worker_kill_ms,
	       x->o.server_kills, x->o.replay_kills, x->o.seed, x->o.deadline_s,
	       x->o.roles == ROLES_PROCESSES ? "processes (a random role per server kill)"
	                                     : "threads",
	       gs_e2e_dir());
	fflush(stdout);

	int failed = 1;
	long off;
	pthread_t th[2 * MAX_THREADS];
	struct thread_arg ta[2 * MAX_THREADS];
	int n_th = 0;
	if (server_spawn(x, "first", &off) != GS_OK)
		goto done;
	for (int k = 0; k < x->o.workers; k++)
		worker_spawn(x, k);
	atomic_store(&x->submit_threads_left, (size_t)x->o.submitters);
	x->submit_t0_ms = gs_e2e_mono_ms();
	for (int k = 0; k < x->o.submitters + x->o.waiters; k++) {
		ta[k] = (struct thread_arg){.x = x, .n = k};
		if (pthread_create(&th[k], NULL, k < x->o.submitters ? submitter_main : waiter_main,
		                   &ta[k]) != 0) {
			atomic_store(&x->stop, true);
			break;
		}
		n_th++;
	}
	uint64_t t_run = gs_e2e_mono_ms();
	int loop_rc = n_th == x->o.submitters + x->o.waiters ? chaos_loop(x) : GS_ENOMEM;
	uint64_t run_ms = gs_e2e_mono_ms() - t_run;
	atomic_store(&x->stop, true);
	pthread_mutex_lock(&x->qmu);
	pthread_cond_broadcast(&x->qcv);
	pthread_mutex_unlock(&x->qmu);
	for (int k = 0; k < n_th; k++)
		pthread_join(th[k], NULL);
	progress(x);
	say(x, "chaos phase over (%s); rechecking every result", gs_strerror(loop_rc));

	/* The second look: as the server is now, then after one more SIGKILL with
	 * the segment removed (the log alone decides what comes back). */
	x->deadline_ms = gs_e2e_mono_ms() + 300000;
	atomic_store(&x->stop, false);
	struct recheck ra = {0}, rb = {0};
	int rca = recheck_all(x, &ra);
	int rcb = GS_EUNAVAIL;
	int rrc = x->o.roles == ROLES_PROCESSES ? role_chaos_restart(x, -1, "recheck")
	                                        : server_chaos_restart(x, true, "recheck");
	if (rrc == GS_OK)
		rcb = recheck_all(x, &rb);
	struct gs_client *c = client_connect(x);
	struct gs_client_stats st;
	x->left_in_server = -1;
	if (c && gs_client_stats(c, &st) == GS_OK) {
		x->left_in_server = (long long)st.tasks_in_use;
		gs_client_stats_free(&st);
	}
	if (c)
		gs_client_close(c);
	int bad = report(x, loop_rc, &ra, rca, &rb, rcb, run_ms);
	printf("chaos: %s\n", bad ? "FAIL" : "PASS");
	failed = bad != 0;
done:
	fflush(stdout);
	gs_e2e_kill_all();
	shm_unlink(x->segment);
	int rc = gs_e2e_finish(failed || x->o.keep);
	if (x->o.keep || failed)
		printf("chaos: logs and data kept in %s\n", gs_e2e_dir());
	free(x->rec);
	free(x->queue);
	pthread_mutex_destroy(&x->qmu);
	pthread_cond_destroy(&x->qcv);
	free(x);
	return failed ? 1 : rc;
}
