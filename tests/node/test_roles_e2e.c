/*
 * test_roles_e2e.c - the server roles as processes of their own (`gsched server
 * --role plm|scheduler|register --segment /NAME`) end to end: three role
 * processes on one named segment, real workers on the Register's address,
 * clients on the PLM's, all on 127.0.0.1.
 *
 *   bad invocations   --role without --segment, with --data-dir, an unknown
 *                     role: exit 2 and a clear line, no segment made; a
 *                     second process for a role a live process holds, and a
 *                     plain `gsched server` on the roles' segment: refused
 *                     (non-zero, naming the holder), the roles keep serving;
 *   basic flow        Health SERVING on every role's address; echo tasks on
 *                     a SubmitStream through the PLM each come back once,
 *                     DONE, with their own output, each after the ack that
 *                     names its task (the proto's order); a unary Submit +
 *                     Wait too;
 *   delayed           delayed tasks, the scheduler SIGKILLed and restarted
 *                     before they are due: they run after their time, once;
 *   cancel            a long sleep cancelled through the PLM: the worker is
 *                     told (its only slot runs an echo within seconds), the
 *                     task ends CANCELLED;
 *   role restarts     a Wait in progress when the PLM is SIGKILLed: Wait
 *                     again on the restarted PLM, all DONE, each run once;
 *                     the Register SIGKILLed while tasks run: the worker
 *                     reconnects by itself, the tasks it held run again
 *                     (no retry charged: they have none), every result
 *                     DONE exactly once;
 *   drain             AdminService.Drain through the PLM (raw gRPC: the
 *                     client library has no drain call) reaches the worker:
 *                     it finishes its task, takes nothing new and exits 0.
 *
 * Each test has its own segment (/gsched-test-roles-PID-N) and ports; the
 * teardown kills every process it started and unlinks the segment, also
 * after a failure.  Every wait is bounded; the sanitizer trees (5-15x
 * slower) get fewer tasks and longer bounds.  Process logs go to a
 * temporary directory, kept when a test fails.  argv[1] (or GSCHED_BIN):
 * the gsched binary.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "gs_error.h"
#include "gsched.pb-c.h"
#include "gsched_client.h"
#include "rpc_client.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLOW     6   /* time bounds are multiplied by this */
#define N_ECHO   400 /* echo tasks of the basic flow */
#define N_SLEEP  60  /* 50 ms sleep tasks across a PLM restart */
#define N_REG    60  /* 50 ms sleep tasks across a Register restart */
#define DELAY_MS 5000
#else
#define SLOW     1
#define N_ECHO   2000
#define N_SLEEP  200
#define N_REG    200
#define DELAY_MS 1500
#endif
#define T(ms) ((ms)*SLOW)

#define N_DELAYED   10
#define HEALTH_PATH "/grpc.health.v1.Health/Check"
#define DRAIN_PATH  "/gsched.v1.AdminService/Drain"

enum { PLM = 0, SCHED = 1, REG = 2, N_ROLES = 3 };
static const char *const role_name[N_ROLES] = {"plm", "scheduler", "register"};

/* A Wait on its own client and thread (the role-restart test). */
struct waiter {
	char addr[64];
	const uint64_t *ids;
	size_t n;
	int rc;
	atomic_bool done;
	uint64_t ended_ms;
};

struct env {
	char seg[64];
	char addr[N_ROLES][64];
	pid_t role[N_ROLES];
	int starts[N_ROLES];
	int test;              /* this test's number (log names: tN-...) */
	char log[N_ROLES][64]; /* the latest start's log name */
	int workers;           /* workers started (log names) */
	struct gs_client *c;   /* on the PLM */
	pthread_t wait_thread;
	bool wait_running;
	struct waiter *w;
};

/* --- processes ------------------------------------------------------------- */

static int setup(void **state)
{
	static int n;
	struct env *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	e->test = ++n;
	snprintf(e->seg, sizeof(e->seg), "/gsched-test-roles-%d-%d", (int)getpid(), e->test);
	shm_unlink(e->seg); /* a leftover of an earlier run with this pid */
	int ports[N_ROLES];
	for (int r = 0; r < N_ROLES; r++) {
		bool dup;
		do {
			ports[r] = gs_e2e_free_port();
			dup = false;
			for (int k = 0; k < r; k++)
				dup |= ports[k] == ports[r];
		} while (dup);
		snprintf(e->addr[r], sizeof(e->addr[r]), "127.0.0.1:%d", ports[r]);
	}
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	if (e && e->wait_running)
		pthread_join(e->wait_thread, NULL); /* its Wait has a deadline */
	if (e && e->c)
		gs_client_close(e->c);
	gs_e2e_kill_all();
	if (e) {
		shm_unlink(e->seg);
		free(e->w);
	}
	free(e);
	*state = NULL;
	return 0;
}

static bool seg_exists(const char *seg)
{
	char path[128];
	snprintf(path, sizeof(path), "/dev/shm%s", seg);
	return access(path, F_OK) == 0;
}

/* The whole of DIR/name.log (at most 64 KiB) in buf. */
static const char *read_log(const char *name, char *buf, size_t cap)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.log", gs_e2e_dir(), name);
	buf[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return buf;
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = 0;
	return buf;
}

static bool log_has(const char *name, const char *needle)
{
	static char buf[65536];
	return strstr(read_log(name, buf, sizeof(buf)), needle) != NULL;
}

/* Health.Check on addr answers SERVING. */
static void assert_serving(const char *addr)
{
	struct gs_rpc_client *raw = NULL;
	assert_int_equal(gs_rpc_client_create(addr, NULL, &raw), GS_OK);
	struct gs_rpc_reply rep;
	int rc = gs_rpc_client_unary(raw, HEALTH_PATH, "", 0, NULL, 0, T(5000), &rep);
	/* HealthCheckResponse.status = 1 (SERVING). */
	bool serving = rc == GS_OK && rep.len == 2 && rep.data[0] == 0x08 && rep.data[1] == 1;
	int code = rep.code;
	gs_rpc_reply_free(&rep);
	gs_rpc_client_destroy(raw);
	if (!serving)
		fail_msg("health of %s: not SERVING (rc %d, %s)", addr, rc, gs_rpc_code_name(code));
}

/* Starts role r on e's segment and waits until its address serves. */
static void start_role(struct env *e, int r)
{
	snprintf(e->log[r], sizeof(e->log[r]), "t%d-%s-%d", e->test, role_name[r], ++e->starts[r]);
	const char *args[] = {"server",     "--role",
	                      role_name[r], "--listen",
	                      e->addr[r],   "--segment",
	                      e->seg,       "--max-tasks",
	                      "16384",      "--heartbeat-ms",
	                      "100",        "--worker-timeout-ms",
	                      "2000",       "--result-ttl-ms",
	                      "600000",     "--grace-ms",
	                      "500",        NULL};
	e->role[r] = gs_e2e_spawn(e->log[r], args);
	struct gs_client *c = gs_e2e_connect(e->addr[r], T(15000));
	if (!c)
		fail_msg("role %s (%s.log) does not serve within %d ms", role_name[r], e->log[r],
		         T(15000));
	if (r == PLM) {
		if (e->c)
			gs_client_close(e->c);
		e->c = c;
	} else {
		gs_client_close(c);
	}
}

static void start_roles(struct env *e)
{
	for (int r = 0; r < N_ROLES; r++)
		start_role(e, r);
}

static void kill_role(struct env *e, int r)
{
	assert_int_equal(kill(e->role[r], SIGKILL), 0);
	assert_true(gs_e2e_wait_exit(e->role[r], T(5000)) != -1);
	e->role[r] = 0;
}

static bool still_running(pid_t pid)
{
	return gs_e2e_wait_exit(pid, 0) == -1;
}

static pid_t start_worker(struct env *e, int slots)
{
	char name[32], s[16];
	snprintf(name, sizeof(name), "t%d-worker-%d", e->test, ++e->workers);
	snprintf(s, sizeof(s), "%d", slots);
	const char *args[] = {"worker", "--server", e->addr[REG], "--slots", s,
	                      "--name", name,       "--grace-ms", "300",     NULL};
	return gs_e2e_spawn(name, args);
}

/* Runs `gsched ARGS` that is to be refused: returns its exit status. */
static int run_refused(const char *name, const char *const *args)
{
	pid_t pid = gs_e2e_spawn(name, args);
	int st = gs_e2e_wait_exit(pid, T(10000));
	if (st == -1)
		fail_msg("%s: still running after %d ms (see %s.log)", name, T(10000), name);
	if (!WIFEXITED(st))
		fail_msg("%s: did not exit (wait status 0x%x)", name, st);
	return WEXITSTATUS(st);
}

/* The live workers the PLM lists: how many; *id the first one's. */
static size_t list_workers(struct env *e, uint64_t *id, int *state)
{
	struct gs_client_worker *w = NULL;
	size_t n = 0;
	if (gs_client_list_workers(e->c, false, &w, &n) != GS_OK)
		return 0;
	if (n && id)
		*id = w[0].id;
	if (n && state)
		*state = w[0].state;
	gs_client_workers_free(w, n);
	return n;
}

/* --- tasks ----------------------------------------------------------------- */

static uint64_t submit1(struct env *e, const struct gs_client_spec *s)
{
	uint64_t id = 0;
	if (gs_client_submit(e->c, s, 1, &id) != GS_OK)
		fail_msg("submit: %s", gs_client_error(e->c));
	return id;
}

static int state_of(struct env *e, uint64_t id)
{
	struct gs_client_result r;
	assert_int_equal(gs_client_get(e->c, &id, 1, false, &r), GS_OK);
	int st = r.state;
	gs_client_result_free(&r);
	return st;
}

/* Waits (bounded) until task id is in state want. */
static void wait_state(struct env *e, uint64_t id, int want, int ms)
{
	uint64_t end = gs_e2e_mono_ms() + (uint64_t)ms;
	int st;
	while ((st = state_of(e, id)) != want) {
		if (gs_e2e_mono_ms() > end)
			fail_msg("task %016" PRIx64 ": %s after %d ms, want %s", id,
			         gs_client_state_name(st), ms, gs_client_state_name(want));
		gs_e2e_sleep_ms(10);
	}
}

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Submits echo "<tag>-<i>" x n by unary Submit (batches of 100), then
 * Waits for them: each DONE with its own output. */
static void echo_round(struct env *e, const char *tag, size_t n)
{
	char(*txt)[32] = calloc(n, 32);
	struct gs_client_spec *sp = calloc(n, sizeof(*sp));
	uint64_t *ids = calloc(n, sizeof(*ids));
	struct gs_client_result *r = calloc(n, sizeof(*r));
	assert_true(txt && sp && ids && r);
	for (size_t i = 0; i < n; i++) {
		snprintf(txt[i], 32, "%s-%zu", tag, i);
		sp[i] = (struct gs_client_spec){
		    .handler = "echo", .payload = txt[i], .payload_len = strlen(txt[i])};
	}
	for (size_t i = 0; i < n; i += 100) {
		size_t k = n - i < 100 ? n - i : 100;
		if (gs_client_submit(e->c, sp + i, k, ids + i) != GS_OK)
			fail_msg("submit: %s", gs_client_error(e->c));
	}
	int rc = gs_client_wait(e->c, ids, n, T(20000), r);
	for (size_t i = 0; i < n; i++) {
		if (r[i].state != GS_CLIENT_DONE)
			fail_msg("%s #%zu %016" PRIx64 ": %s (wait rc %d: %s)", tag, i, ids[i],
			         gs_client_state_name(r[i].state), rc, gs_client_error(e->c));
		if (r[i].output_len != strlen(txt[i]) ||
		    memcmp(r[i].output, txt[i], r[i].output_len) != 0)
			fail_msg("%s #%zu: output '%.*s', want '%s'", tag, i, (int)r[i].output_len,
			         (const char *)r[i].output, txt[i]);
	}
	gs_client_results_free(r, n);
	free(r);
	free(ids);
	free(sp);
	free(txt);
}

/* --- a SubmitStream's acks and results, per client_seq --------------------- */

/* One result as the stream delivered it. */
struct res {
	uint64_t id;
	int state;
	uint32_t attempts;
	uint64_t started_us, submitted_us;
	char out[32];
};

/*
 * Results are matched to their items by the ID in the item's ack (a result
 * carries no client_seq).  The proto promises the ack first ("one ack per
 * submitted item ..., then each task's result"); a result whose ID no ack
 * has named yet is kept in `early` and matched at the end, so that the
 * other checks still run, and counted as an ordering fault.
 */
struct coll {
	pthread_mutex_t mu;
	size_t n;
	uint64_t *ids;     /* by seq; 0 until acked */
	unsigned *got;     /* results by seq */
	struct res *r;     /* the last result by seq */
	struct res *early; /* results before their ack (at most n) */
	size_t n_early;
	size_t acks, rejected, results, unknown;
};

static void coll_init(struct coll *c, size_t n)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	c->n = n;
	c->ids = calloc(n, sizeof(*c->ids));
	c->got = calloc(n, sizeof(*c->got));
	c->r = calloc(n, sizeof(*c->r));
	c->early = calloc(n, sizeof(*c->early));
	assert_true(c->ids && c->got && c->r && c->early);
}

static void coll_free(struct coll *c)
{
	free(c->ids);
	free(c->got);
	free(c->r);
	free(c->early);
	pthread_mutex_destroy(&c->mu);
}

static void coll_ack(void *ud, uint64_t seq, uint64_t id, int code, const char *msg)
{
	struct coll *c = ud;
	pthread_mutex_lock(&c->mu);
	c->acks++;
	if (id && seq < c->n) {
		c->ids[seq] = id;
	} else {
		c->rejected++;
		fprintf(stderr, "test_roles_e2e: item %" PRIu64 " rejected: %d %s\n", seq, code,
		        msg);
	}
	pthread_mutex_unlock(&c->mu);
}

/* The seq whose ack named id, or c->n. */
static size_t coll_seq(struct coll *c, uint64_t id)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->ids[i] == id)
			return i;
	return c->n;
}

static void coll_put(struct coll *c, size_t seq, const struct res *x)
{
	c->got[seq]++;
	c->r[seq] = *x;
}

static void coll_result(void *ud, const struct gs_client_result *r)
{
	struct coll *c = ud;
	struct res x = {.id = r->id,
	                .state = r->state,
	                .attempts = r->attempts,
	                .started_us = r->started_us,
	                .submitted_us = r->submitted_us};
	size_t len = r->output_len < sizeof(x.out) - 1 ? r->output_len : sizeof(x.out) - 1;
	if (len)
		memcpy(x.out, r->output, len);
	x.out[len] = 0;
	pthread_mutex_lock(&c->mu);
	c->results++;
	size_t seq = coll_seq(c, r->id);
	if (seq < c->n)
		coll_put(c, seq, &x);
	else if (c->n_early < c->n)
		c->early[c->n_early++] = x;
	else
		c->unknown++;
	pthread_mutex_unlock(&c->mu);
}

static size_t coll_count(struct coll *c, bool results)
{
	pthread_mutex_lock(&c->mu);
	size_t n = results ? c->results : c->acks;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* Waits (bounded) until want acks (results) came in. */
static void coll_wait(struct coll *c, bool results, size_t want, int ms)
{
	uint64_t end = gs_e2e_mono_ms() + (uint64_t)ms;
	size_t got;
	while ((got = coll_count(c, results)) < want) {
		if (gs_e2e_mono_ms() > end)
			fail_msg("%zu of %zu %s within %d ms", got, want,
			         results ? "results" : "acks", ms);
		gs_e2e_sleep_ms(5);
	}
}

static void stream_put(struct gs_client_stream *s, const struct gs_client_spec *sp, uint64_t seq)
{
	uint64_t end = gs_e2e_mono_ms() + T(10000);
	int rc;
	while ((rc = gs_client_stream_submit(s, sp, seq)) == GS_EFULL && gs_e2e_mono_ms() < end)
		gs_e2e_sleep_ms(1);
	if (rc != GS_OK)
		fail_msg("stream submit #%" PRIu64 ": %s (%s)", seq, gs_strerror(rc),
		         gs_client_stream_error(s));
}

/* Closes the stream, waits for its end (every result sent), and checks that
 * each task came back exactly once and DONE (results that came before their
 * ack included: see coll_acks_first). */
static void stream_finish(struct gs_client_stream *s, struct coll *c, int ms)
{
	assert_int_equal(gs_client_stream_close(s), GS_OK);
	int rc = gs_client_stream_wait(s, ms);
	if (rc != GS_OK)
		fail_msg("stream end: %s (%s); %zu results of %zu", gs_strerror(rc),
		         gs_client_stream_error(s), coll_count(c, true), c->n);
	gs_client_stream_destroy(s);
	assert_int_equal(c->acks, c->n);
	assert_int_equal(c->rejected, 0);
	for (size_t k = 0; k < c->n_early; k++) {
		size_t seq = coll_seq(c, c->early[k].id);
		if (seq == c->n)
			fail_msg("a result for task %016" PRIx64 ", which no ack named",
			         c->early[k].id);
		coll_put(c, seq, &c->early[k]);
	}
	assert_int_equal(c->unknown, 0);
	for (size_t i = 0; i < c->n; i++) {
		if (c->got[i] != 1)
			fail_msg("task #%zu %016" PRIx64 ": %u results, want 1", i, c->ids[i],
			         c->got[i]);
		if (c->r[i].state != GS_CLIENT_DONE)
			fail_msg("task #%zu %016" PRIx64 ": %s", i, c->ids[i],
			         gs_client_state_name(c->r[i].state));
	}
	assert_int_equal(c->results, c->n);
}

/* No result came before the ack that names its task (the proto's order). */
static void coll_acks_first(struct coll *c, const char *what)
{
	if (c->n_early)
		fail_msg("%s: %zu of %zu results came before the ack naming their task (first: "
		         "%016" PRIx64 ")",
		         what, c->n_early, c->n, c->early[0].id);
}

/* --- 1. bad invocations ---------------------------------------------------- */

static void test_bad_invocations(void **state)
{
	struct env *e = *state;
	char other[64], dir[300];
	snprintf(other, sizeof(other), "127.0.0.1:%d", gs_e2e_free_port());
	snprintf(dir, sizeof(dir), "%s/data", gs_e2e_dir());

	/* Refused by the command line: exit 2, one clear line, nothing made. */
	const char *no_seg[] = {"server", "--role", "plm", "--listen", other, NULL};
	assert_int_equal(run_refused("no-segment", no_seg), 2);
	assert_true(log_has("no-segment", "--role needs --segment"));
	const char *with_dir[] = {"server",    "--role", "plm",        "--listen", other,
	                          "--segment", e->seg,   "--data-dir", dir,        NULL};
	assert_int_equal(run_refused("data-dir", with_dir), 2);
	assert_true(log_has("data-dir", "--data-dir"));
	assert_int_equal(access(dir, F_OK), -1);
	const char *bogus[] = {"server", "--role",    "planner", "--listen",
	                       other,    "--segment", e->seg,    NULL};
	assert_int_equal(run_refused("bogus-role", bogus), 2);
	assert_true(log_has("bogus-role", "'planner'"));
	assert_true(log_has("bogus-role", "plm, scheduler or register"));
	assert_false(seg_exists(e->seg));

	/* The roles and a worker; then a second process for each role. */
	start_roles(e);
	assert_true(seg_exists(e->seg));
	pid_t w = start_worker(e, 2);
	gs_e2e_wait_workers(e->c, 1, T(10000));
	uint64_t wid = 0;
	assert_int_equal(list_workers(e, &wid, NULL), 1);
	for (int r = 0; r < N_ROLES; r++) {
		char name[32], want[160];
		snprintf(name, sizeof(name), "second-%s", role_name[r]);
		const char *args[] = {"server",    "--role", role_name[r],     "--listen", other,
		                      "--segment", e->seg,   "--heartbeat-ms", "100",      NULL};
		int code = run_refused(name, args);
		if (code == 0)
			fail_msg("a second %s on a held segment exited 0", role_name[r]);
		snprintf(want, sizeof(want), "role %s on %s is held by live process %d",
		         role_name[r], e->seg, (int)e->role[r]);
		if (!log_has(name, want)) {
			static char buf[65536];
			fail_msg("%s.log does not say '%s':\n%s", name, want,
			         read_log(name, buf, sizeof(buf)));
		}
	}
	/* A server running every role on the same segment. */
	const char *plain[] = {"server", "--listen", other, "--segment", e->seg, NULL};
	int code = run_refused("plain-server", plain);
	assert_true(code != 0);
	assert_true(log_has("plain-server", "served by other processes"));
	char holder[64];
	snprintf(holder, sizeof(holder), "(plm: pid %d)", (int)e->role[PLM]);
	assert_true(log_has("plain-server", holder));

	/* Nothing was disturbed: every role serves, the worker is still the
	 * registered one, and tasks run. */
	for (int r = 0; r < N_ROLES; r++) {
		assert_true(still_running(e->role[r]));
		assert_serving(e->addr[r]);
	}
	assert_true(still_running(w));
	uint64_t wid2 = 0;
	assert_int_equal(list_workers(e, &wid2, NULL), 1);
	assert_true(wid2 == wid);
	echo_round(e, "after-refusals", 20);
	for (int r = 0; r < N_ROLES; r++)
		assert_false(log_has(e->log[r], "declared lost"));
}

/* --- 2. basic flow ----------------------------------------------------------- */

static void test_basic_flow(void **state)
{
	struct env *e = *state;
	start_roles(e);
	for (int r = 0; r < N_ROLES; r++)
		assert_serving(e->addr[r]);
	start_worker(e, 4);
	gs_e2e_wait_workers(e->c, 1, T(10000));

	static struct coll c;
	coll_init(&c, N_ECHO);
	struct gs_client_stream *s = NULL;
	assert_int_equal(gs_client_stream_open(e->c, coll_ack, coll_result, &c, &s), GS_OK);
	static char txt[N_ECHO][32];
	uint64_t t0 = gs_e2e_mono_ms();
	for (size_t i = 0; i < N_ECHO; i++) {
		snprintf(txt[i], sizeof(txt[i]), "roles-%zu", i);
		struct gs_client_spec sp = {
		    .handler = "echo", .payload = txt[i], .payload_len = strlen(txt[i])};
		stream_put(s, &sp, i);
	}
	stream_finish(s, &c, T(60000));
	fprintf(stderr,
	        "test_roles_e2e: %d echo tasks through 3 role processes in %" PRIu64 " ms\n",
	        N_ECHO, gs_e2e_mono_ms() - t0);
	for (size_t i = 0; i < N_ECHO; i++) {
		if (strcmp(c.r[i].out, txt[i]) != 0)
			fail_msg("task #%zu: output '%s', want '%s'", i, c.r[i].out, txt[i]);
		assert_int_equal(c.r[i].attempts, 1);
	}
	/* Unary Submit and Wait. */
	echo_round(e, "unary", 100);
	for (int r = 0; r < N_ROLES; r++)
		assert_serving(e->addr[r]);
	coll_acks_first(&c, "echo stream");
	coll_free(&c);
}

/* --- 3. a delayed task across a scheduler restart ---------------------------- */

static void test_delayed_scheduler_restart(void **state)
{
	struct env *e = *state;
	start_roles(e);
	start_worker(e, 2);
	gs_e2e_wait_workers(e->c, 1, T(10000));

	static struct coll c;
	coll_init(&c, N_DELAYED);
	struct gs_client_stream *s = NULL;
	assert_int_equal(gs_client_stream_open(e->c, coll_ack, coll_result, &c, &s), GS_OK);
	static char txt[N_DELAYED][32];
	uint64_t t0 = wall_us();
	for (size_t i = 0; i < N_DELAYED; i++) {
		snprintf(txt[i], sizeof(txt[i]), "late-%zu", i);
		struct gs_client_spec sp = {.handler = "echo",
		                            .payload = txt[i],
		                            .payload_len = strlen(txt[i]),
		                            .delay_ms = DELAY_MS};
		stream_put(s, &sp, i);
	}
	coll_wait(&c, false, N_DELAYED, T(5000));
	assert_int_equal(c.rejected, 0);
	for (size_t i = 0; i < N_DELAYED; i++)
		assert_int_equal(state_of(e, c.ids[i]), GS_CLIENT_DELAYED);

	kill_role(e, SCHED);
	start_role(e, SCHED);
	uint64_t restarted = wall_us();
	if (restarted >= t0 + (uint64_t)DELAY_MS * 1000)
		fail_msg("the scheduler's restart took %" PRIu64 " ms, past the tasks' %d ms delay",
		         (restarted - t0) / 1000, DELAY_MS);
	fprintf(stderr, "test_roles_e2e: scheduler restarted %" PRIu64 " ms after the submit\n",
	        (restarted - t0) / 1000);
	assert_true(log_has(e->log[SCHED], "after a crash"));
	/* Not run early: still delayed (if read before they are due). */
	for (size_t i = 0; i < N_DELAYED; i++) {
		int st = state_of(e, c.ids[i]);
		if (wall_us() < t0 + (uint64_t)DELAY_MS * 1000 - 50000 && st != GS_CLIENT_DELAYED)
			fail_msg("delayed task #%zu is %s before it is due", i,
			         gs_client_state_name(st));
	}
	stream_finish(s, &c, DELAY_MS + T(10000));
	for (size_t i = 0; i < N_DELAYED; i++) {
		if (strcmp(c.r[i].out, txt[i]) != 0)
			fail_msg("task #%zu: output '%s', want '%s'", i, c.r[i].out, txt[i]);
		assert_int_equal(c.r[i].attempts, 1);
		if (c.r[i].started_us < t0 + (uint64_t)DELAY_MS * 1000 ||
		    c.r[i].started_us < c.r[i].submitted_us + (uint64_t)DELAY_MS * 1000)
			fail_msg(
			    "task #%zu started %" PRId64 " ms after its submission, before its "
			    "%d ms delay",
			    i, ((int64_t)c.r[i].started_us - (int64_t)c.r[i].submitted_us) / 1000,
			    DELAY_MS);
	}
	coll_acks_first(&c, "delayed stream");
	coll_free(&c);
}

/* --- 4. cancel across processes ---------------------------------------------- */

static void test_cancel(void **state)
{
	struct env *e = *state;
	start_roles(e);
	start_worker(e, 1);
	gs_e2e_wait_workers(e->c, 1, T(10000));
	/* The only slot sleeps for 4x the bound the echo below gets. */
	char ms[16];
	snprintf(ms, sizeof(ms), "%d", T(20000));
	struct gs_client_spec sl = {.handler = "sleep", .payload = ms, .payload_len = strlen(ms)};
	uint64_t id = submit1(e, &sl);
	wait_state(e, id, GS_CLIENT_RUNNING, T(10000));

	int out = 0, st = 0;
	assert_int_equal(gs_client_cancel(e->c, &id, 1, &out, &st), GS_OK);
	assert_true(out == GS_CLIENT_CANCEL_REQUESTED || out == GS_CLIENT_CANCEL_CANCELLED);
	uint64_t t0 = gs_e2e_mono_ms();
	struct gs_client_spec echo = {.handler = "echo", .payload = "next", .payload_len = 4};
	uint64_t next = submit1(e, &echo);
	struct gs_client_result r = {0};
	int rc = gs_client_wait(e->c, &next, 1, T(5000), &r);
	uint64_t took = gs_e2e_mono_ms() - t0;
	if (rc != GS_OK || r.state != GS_CLIENT_DONE)
		fail_msg("the echo behind the cancelled sleep: %s after %" PRIu64
		         " ms (the worker was not told to stop the sleep?)",
		         gs_client_state_name(r.state), took);
	assert_string_equal((char *)r.output, "next");
	assert_true(took < (uint64_t)T(5000));
	gs_client_result_free(&r);

	assert_int_equal(gs_client_wait(e->c, &id, 1, T(5000), &r), GS_OK);
	assert_int_equal(r.state, GS_CLIENT_CANCELLED);
	gs_client_result_free(&r);
	/* Cancelling again: finished or forgotten, never an error. */
	assert_int_equal(gs_client_cancel(e->c, &id, 1, &out, NULL), GS_OK);
	assert_true(out == GS_CLIENT_CANCEL_ALREADY_FINISHED || out == GS_CLIENT_CANCEL_NOT_FOUND);
}

/* --- 5. the PLM and the Register SIGKILLed while tasks run ------------------- */

static void *wait_main(void *arg)
{
	struct waiter *w = arg;
	struct gs_client_opts o = {.connect_timeout_ms = T(5000)};
	struct gs_client *c = NULL;
	w->rc = gs_client_connect(w->addr, &o, &c);
	if (w->rc == GS_OK) {
		struct gs_client_result *r = calloc(w->n, sizeof(*r));
		if (r) {
			w->rc = gs_client_wait(c, w->ids, w->n, T(30000), r);
			gs_client_results_free(r, w->n);
			free(r);
		} else {
			w->rc = GS_ENOMEM;
		}
		gs_client_close(c);
	}
	w->ended_ms = gs_e2e_mono_ms();
	atomic_store(&w->done, true);
	return NULL;
}

static void test_role_restarts(void **state)
{
	struct env *e = *state;
	start_roles(e);
	pid_t worker = start_worker(e, 4);
	gs_e2e_wait_workers(e->c, 1, T(10000));

	/* A Wait in progress when the PLM dies. */
	static uint64_t ids[N_SLEEP];
	static struct gs_client_spec sp[N_SLEEP];
	for (size_t i = 0; i < N_SLEEP; i++)
		sp[i] =
		    (struct gs_client_spec){.handler = "sleep", .payload = "50", .payload_len = 2};
	for (size_t i = 0; i < N_SLEEP; i += 100) {
		size_t k = N_SLEEP - i < 100 ? N_SLEEP - i : 100;
		if (gs_client_submit(e->c, sp + i, k, ids + i) != GS_OK)
			fail_msg("submit: %s", gs_client_error(e->c));
	}
	e->w = calloc(1, sizeof(*e->w));
	assert_non_null(e->w);
	snprintf(e->w->addr, sizeof(e->w->addr), "%s", e->addr[PLM]);
	e->w->ids = ids;
	e->w->n = N_SLEEP;
	assert_int_equal(pthread_create(&e->wait_thread, NULL, wait_main, e->w), 0);
	e->wait_running = true;
	gs_e2e_sleep_ms(300);
	if (atomic_load(&e->w->done))
		fail_msg("the Wait ended (rc %d) before the PLM was killed", e->w->rc);
	uint64_t killed = gs_e2e_mono_ms();
	kill_role(e, PLM);
	uint64_t end = killed + T(10000);
	while (!atomic_load(&e->w->done) && gs_e2e_mono_ms() < end)
		gs_e2e_sleep_ms(10);
	if (!atomic_load(&e->w->done))
		fail_msg("the Wait on the killed PLM has not returned after %d ms", T(10000));
	pthread_join(e->wait_thread, NULL);
	e->wait_running = false;
	assert_true(e->w->rc != GS_OK);
	fprintf(stderr,
	        "test_roles_e2e: the Wait on the killed PLM returned %s after %" PRIu64 " ms\n",
	        gs_strerror(e->w->rc), e->w->ended_ms - killed);

	start_role(e, PLM); /* reconnects e->c */
	assert_true(log_has(e->log[PLM], "after a crash"));
	static struct gs_client_result r[N_SLEEP];
	int rc = gs_client_wait(e->c, ids, N_SLEEP, T(30000), r);
	for (size_t i = 0; i < N_SLEEP; i++) {
		if (r[i].state != GS_CLIENT_DONE)
			fail_msg("sleep task #%zu %016" PRIx64 " after the PLM's restart: %s (wait "
			         "rc %d)",
			         i, ids[i], gs_client_state_name(r[i].state), rc);
		if (r[i].attempts != 1)
			fail_msg("sleep task #%zu ran %u times across the PLM's restart", i,
			         r[i].attempts);
	}
	gs_client_results_free(r, N_SLEEP);
	assert_int_equal(rc, GS_OK);

	/* The Register dies while the worker holds tasks. */
	uint64_t wid = 0;
	assert_int_equal(list_workers(e, &wid, NULL), 1);
	static struct coll c;
	coll_init(&c, N_REG);
	struct gs_client_stream *s = NULL;
	assert_int_equal(gs_client_stream_open(e->c, coll_ack, coll_result, &c, &s), GS_OK);
	/* No retries: the worker did not fail, so a Register restart must not
	 * charge its tasks one (they would end FAILED "worker lost"). */
	struct gs_client_spec reg = {.handler = "sleep", .payload = "50", .payload_len = 2};
	for (size_t i = 0; i < N_REG; i++)
		stream_put(s, &reg, i);
	coll_wait(&c, true, N_REG / 10, T(20000));
	size_t before = coll_count(&c, true);
	if (before > N_REG / 2)
		fail_msg("%zu of %d results before the Register's kill: too late", before, N_REG);
	kill_role(e, REG);
	start_role(e, REG);
	assert_true(log_has(e->log[REG], "declared lost"));
	/* The worker reconnects by itself (a new registration). */
	gs_e2e_wait_workers(e->c, 1, T(10000));
	uint64_t wid2 = 0;
	assert_int_equal(list_workers(e, &wid2, NULL), 1);
	assert_true(wid2 != wid);
	assert_true(still_running(worker));
	stream_finish(s, &c, T(30000));
	size_t again = 0;
	for (size_t i = 0; i < N_REG; i++)
		again += c.r[i].attempts > 1;
	fprintf(stderr,
	        "test_roles_e2e: Register killed after %zu of %d results; %zu tasks ran again\n",
	        before, N_REG, again);
	/* What the worker held when its Register died ran again. */
	assert_true(again >= 1);
	/* And later tasks run as before. */
	echo_round(e, "after-restarts", 50);
	assert_true(still_running(worker));
	coll_acks_first(&c, "stream across the Register's restart");
	coll_free(&c);
}

/* --- 6. drain through the PLM ------------------------------------------------ */

static void test_drain(void **state)
{
	struct env *e = *state;
	start_roles(e);
	pid_t w1 = start_worker(e, 1);
	gs_e2e_wait_workers(e->c, 1, T(10000));
	uint64_t wid = 0;
	assert_int_equal(list_workers(e, &wid, NULL), 1);
	char ms[16];
	snprintf(ms, sizeof(ms), "%d", T(1500));
	struct gs_client_spec sl = {.handler = "sleep", .payload = ms, .payload_len = strlen(ms)};
	uint64_t busy = submit1(e, &sl);
	wait_state(e, busy, GS_CLIENT_RUNNING, T(10000));

	/* AdminService.Drain on the PLM's address (gsched_client.h has no drain
	 * call: raw gRPC). */
	struct gs_rpc_client *raw = NULL;
	assert_int_equal(gs_rpc_client_create(e->addr[PLM], NULL, &raw), GS_OK);
	Gsched__V1__DrainRequest req = GSCHED__V1__DRAIN_REQUEST__INIT;
	req.worker_id = wid;
	req.reason = "test_roles";
	uint8_t buf[128];
	size_t len = gsched__v1__drain_request__pack(&req, buf);
	struct gs_rpc_reply rep;
	int rc = gs_rpc_client_unary(raw, DRAIN_PATH, buf, len, NULL, 0, T(5000), &rep);
	if (rc != GS_OK)
		fail_msg("Drain: %s (%s)", gs_rpc_code_name(rep.code), rep.details);
	Gsched__V1__DrainResponse *resp =
	    gsched__v1__drain_response__unpack(NULL, rep.len, rep.data);
	assert_non_null(resp);
	assert_int_equal(resp->state, GSCHED__V1__WORKER_STATE__WORKER_STATE_DRAINING);
	gsched__v1__drain_response__free_unpacked(resp, NULL);
	gs_rpc_reply_free(&rep);
	gs_rpc_client_destroy(raw);
	uint64_t t0 = gs_e2e_mono_ms();

	/* Draining: listed so, and nothing new goes to it. */
	int wstate = 0;
	uint64_t id = 0;
	if (list_workers(e, &id, &wstate) == 1) {
		assert_true(id == wid);
		assert_int_equal(wstate, 2);
	}
	struct gs_client_spec echo = {.handler = "echo", .payload = "later", .payload_len = 5};
	uint64_t later = submit1(e, &echo);

	/* It finishes the running task and leaves (exit 0). */
	int st = gs_e2e_wait_exit(w1, T(1500) + T(10000));
	if (st == -1)
		fail_msg("the drained worker still runs after %d ms (see t%d-worker-1.log)",
		         T(1500) + T(10000), e->test);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	fprintf(stderr, "test_roles_e2e: the drained worker left after %" PRIu64 " ms\n",
	        gs_e2e_mono_ms() - t0);
	struct gs_client_result r;
	assert_int_equal(gs_client_wait(e->c, &busy, 1, T(5000), &r), GS_OK);
	assert_int_equal(r.state, GS_CLIENT_DONE);
	assert_int_equal(r.attempts, 1);
	gs_client_result_free(&r);
	assert_int_equal(state_of(e, later), GS_CLIENT_QUEUED);

	/* A new worker takes it. */
	start_worker(e, 1);
	assert_int_equal(gs_client_wait(e->c, &later, 1, T(10000), &r), GS_OK);
	assert_int_equal(r.state, GS_CLIENT_DONE);
	assert_string_equal((char *)r.output, "later");
	assert_true(r.worker_id != wid);
	gs_client_result_free(&r);
}

int main(int argc, char **argv)
{
	if (gs_e2e_init("test_roles_e2e", "roles-e2e", 0755, argc, argv) != 0)
		return 1;
	fprintf(stderr, "test_roles_e2e: %s; process logs in %s\n", gs_e2e_bin(), gs_e2e_dir());
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_bad_invocations, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_basic_flow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delayed_scheduler_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_role_restarts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
	};
	return gs_e2e_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
