/*
 * test_e2e.c - end to end: real `gsched server` and `gsched worker`
 * processes on 127.0.0.1, driven through the C client library
 * (gsched_client.h) and, for malformed input, raw gRPC calls.
 *
 * Each test starts its own server (a free port: bound to port 0 here, closed,
 * then given to the server) with --heartbeat-ms 100 --worker-timeout-ms 1000,
 * and its own workers; the teardown kills every process it started (SIGKILL
 * after a SIGTERM grace), and so does an atexit handler if a test aborts.
 * Every wait is bounded.  Process logs go to a temporary directory, printed
 * at the start and kept when a test fails.
 *
 * argv[1] (or GSCHED_BIN): the gsched binary.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "gsched_client.h"
#include "gsched.pb-c.h"
#include "rpc_client.h"

struct env {
	int port;
	char addr[64];
	pid_t server;
	struct gs_client *c;
};

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static pid_t start_worker(struct env *e, const char *name, int slots)
{
	char s[16];
	snprintf(s, sizeof(s), "%d", slots);
	const char *args[] = {"worker", "--server", e->addr,      "--slots", s,
	                      "--name", name,       "--grace-ms", "500",     NULL};
	return gs_e2e_spawn(name, args);
}

static size_t n_workers(struct env *e)
{
	struct gs_client_worker *w = NULL;
	size_t n = 0;
	if (gs_client_list_workers(e->c, false, &w, &n) != GS_OK)
		return 0;
	gs_client_workers_free(w, n);
	return n;
}

/* The worker ID of the worker named name (0: none). */
static uint64_t worker_id(struct env *e, const char *name)
{
	struct gs_client_worker *w = NULL;
	size_t n = 0;
	uint64_t id = 0;
	if (gs_client_list_workers(e->c, false, &w, &n) != GS_OK)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(w[i].name, name) == 0)
			id = w[i].id;
	gs_client_workers_free(w, n);
	return id;
}

static void wait_workers(struct env *e, size_t want)
{
	uint64_t end = gs_e2e_mono_ms() + 10000;
	while (n_workers(e) < want && gs_e2e_mono_ms() < end)
		gs_e2e_sleep_ms(20);
	assert_int_equal(n_workers(e), want);
}

static struct env *start_env(void)
{
	struct env *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	e->port = gs_e2e_free_port();
	snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", e->port);
	const char *args[] = {"server", "--listen",
	                      e->addr,  "--heartbeat-ms",
	                      "100",    "--worker-timeout-ms",
	                      "1000",   "--grace-ms",
	                      "3000",   NULL};
	char name[32];
	snprintf(name, sizeof(name), "server-%d", e->port);
	e->server = gs_e2e_spawn(name, args);
	e->c = gs_e2e_connect(e->addr, 10000);
	assert_non_null(e->c);
	return e;
}

static int teardown_env(void **state)
{
	struct env *e = *state;
	if (e)
		gs_client_close(e->c);
	free(e);
	*state = NULL;
	gs_e2e_kill_all();
	return 0;
}

static int setup_env(void **state)
{
	*state = start_env();
	return 0;
}

static struct gs_client_spec argv_spec(const char *const *argv, size_t argc)
{
	struct gs_client_spec s = {0};
	s.argv = argv;
	s.argc = argc;
	return s;
}

static uint64_t submit1(struct env *e, const struct gs_client_spec *s)
{
	uint64_t id = 0;
	int rc = gs_client_submit(e->c, s, 1, &id);
	if (rc != GS_OK)
		fail_msg("submit: %s", gs_client_error(e->c));
	return id;
}

static void get1(struct env *e, uint64_t id, struct gs_client_result *r)
{
	assert_int_equal(gs_client_get(e->c, &id, 1, false, r), GS_OK);
}

/* Waits (bounded) until the task is ASSIGNED or RUNNING; returns its worker. */
static uint64_t wait_on_worker(struct env *e, uint64_t id)
{
	uint64_t end = gs_e2e_mono_ms() + 5000;
	for (;;) {
		struct gs_client_result r;
		get1(e, id, &r);
		int st = r.state;
		uint64_t w = r.worker_id;
		gs_client_result_free(&r);
		if (st == GS_CLIENT_ASSIGNED || st == GS_CLIENT_RUNNING)
			return w;
		if (gs_e2e_mono_ms() > end)
			fail_msg("task %016" PRIx64 " not on a worker (state %s)", id,
			         gs_client_state_name(st));
		gs_e2e_sleep_ms(10);
	}
}

static void wait_running(struct env *e, uint64_t id)
{
	uint64_t end = gs_e2e_mono_ms() + 5000;
	for (;;) {
		struct gs_client_result r;
		get1(e, id, &r);
		int st = r.state;
		gs_client_result_free(&r);
		if (st == GS_CLIENT_RUNNING)
			return;
		if (gs_e2e_mono_ms() > end)
			fail_msg("task %016" PRIx64 " not running (%s)", id,
			         gs_client_state_name(st));
		gs_e2e_sleep_ms(10);
	}
}

/* --- throughput: every result reaches the submitter once, correct ------ */

#define N_ECHO 10000
#define N_ARGV 200
#define MAGIC  "e2e-echo"

struct bulk {
	pthread_mutex_t mu;
	unsigned seen[N_ECHO];
	size_t acks, rejected, results, bad;
};

static void bulk_ack(void *ud, uint64_t seq, uint64_t id, int code, const char *msg)
{
	struct bulk *b = ud;
	(void)seq;
	pthread_mutex_lock(&b->mu);
	b->acks++;
	if (!id) {
		b->rejected++;
		fprintf(stderr, "rejected: %d %s\n", code, msg);
	}
	pthread_mutex_unlock(&b->mu);
}

static void bulk_result(void *ud, const struct gs_client_result *r)
{
	struct bulk *b = ud;
	pthread_mutex_lock(&b->mu);
	b->results++;
	uint64_t seq;
	if (r->state == GS_CLIENT_DONE && r->output_len == 16 &&
	    memcmp(r->output + 8, MAGIC, 8) == 0) {
		memcpy(&seq, r->output, 8);
		if (seq < N_ECHO)
			b->seen[seq]++;
		else
			b->bad++;
	} else {
		b->bad++;
	}
	pthread_mutex_unlock(&b->mu);
}

static void test_bulk(void **state)
{
	struct env *e = *state;
	start_worker(e, "w1", 8);
	start_worker(e, "w2", 8);
	wait_workers(e, 2);

	static struct bulk b;
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.mu, NULL);
	struct gs_client_stream *s = NULL;
	assert_int_equal(gs_client_stream_open(e->c, bulk_ack, bulk_result, &b, &s), GS_OK);
	for (uint64_t i = 0; i < N_ECHO; i++) {
		uint8_t p[16];
		memcpy(p, &i, 8);
		memcpy(p + 8, MAGIC, 8);
		struct gs_client_spec sp = {.handler = "echo", .payload = p, .payload_len = 16};
		int rc;
		uint64_t end = gs_e2e_mono_ms() + 10000;
		while ((rc = gs_client_stream_submit(s, &sp, i)) == GS_EFULL &&
		       gs_e2e_mono_ms() < end)
			gs_e2e_sleep_ms(1);
		assert_int_equal(rc, GS_OK);
	}
	/* Meanwhile, argv tasks by unary Submit. */
	static struct gs_client_spec specs[N_ARGV];
	static char vals[N_ARGV][32];
	static const char *argvs[N_ARGV][4];
	for (int i = 0; i < N_ARGV; i++) {
		snprintf(vals[i], sizeof(vals[i]), "value-%d", i);
		argvs[i][0] = "sh";
		argvs[i][1] = "-c";
		argvs[i][2] = "echo $0";
		argvs[i][3] = vals[i];
		specs[i] = argv_spec(argvs[i], 4);
	}
	static uint64_t ids[N_ARGV];
	assert_int_equal(gs_client_submit(e->c, specs, N_ARGV, ids), GS_OK);
	static struct gs_client_result res[N_ARGV];
	assert_int_equal(gs_client_wait(e->c, ids, N_ARGV, 60000, res), GS_OK);
	for (int i = 0; i < N_ARGV; i++) {
		char want[40];
		snprintf(want, sizeof(want), "%.31s\n", vals[i]);
		assert_int_equal(res[i].state, GS_CLIENT_DONE);
		assert_int_equal(res[i].exit_code, 0);
		assert_string_equal((char *)res[i].output, want);
		assert_int_equal(res[i].attempts, 1);
	}
	gs_client_results_free(res, N_ARGV);
	/* A result once fetched is gone: a second Wait finds nothing. */
	struct gs_client_result again;
	gs_client_wait(e->c, ids, 1, 0, &again);
	assert_int_equal(again.state, GS_CLIENT_UNKNOWN);
	gs_client_result_free(&again);

	assert_int_equal(gs_client_stream_close(s), GS_OK);
	assert_int_equal(gs_client_stream_wait(s, 60000), GS_OK);
	gs_client_stream_destroy(s);
	assert_int_equal(b.acks, N_ECHO);
	assert_int_equal(b.rejected, 0);
	assert_int_equal(b.results, N_ECHO);
	assert_int_equal(b.bad, 0);
	for (int i = 0; i < N_ECHO; i++)
		if (b.seen[i] != 1)
			fail_msg("echo task %d delivered %u times", i, b.seen[i]);
	pthread_mutex_destroy(&b.mu);
}

/* --- priorities behind one busy 1-slot worker ------------------------------ */

static void test_priority(void **state)
{
	struct env *e = *state;
	start_worker(e, "solo", 1);
	wait_workers(e, 1);
	const char *sl[] = {"sleep", "0.5"};
	struct gs_client_spec busy = argv_spec(sl, 2);
	uint64_t first = submit1(e, &busy);
	wait_on_worker(e, first);

	enum { N = 15 };
	static const uint32_t pri[N] = {1, 9, 5, 1, 9, 5, 1, 9, 5, 200, 0, 0, 200, 5, 9};
	struct gs_client_spec sp[N];
	char pay[N][8];
	for (int i = 0; i < N; i++) {
		snprintf(pay[i], sizeof(pay[i]), "%d", i);
		sp[i] = (struct gs_client_spec){.handler = "echo",
		                                .payload = pay[i],
		                                .payload_len = strlen(pay[i]),
		                                .priority = pri[i]};
	}
	uint64_t ids[N + 1];
	/* One at a time, so FIFO order within a priority is the index order. */
	for (int i = 0; i < N; i++)
		ids[i] = submit1(e, &sp[i]);
	ids[N] = first;
	struct gs_client_result r[N + 1];
	assert_int_equal(gs_client_wait(e->c, ids, N + 1, 20000, r), GS_OK);
	assert_int_equal(r[N].state, GS_CLIENT_DONE);
	/* Order by finish time. */
	int order[N];
	for (int i = 0; i < N; i++)
		order[i] = i;
	for (int i = 1; i < N; i++)
		for (int j = i; j > 0 && r[order[j]].finished_us < r[order[j - 1]].finished_us;
		     j--) {
			int t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (int k = 0; k < N; k++) {
		int i = order[k];
		assert_int_equal(r[i].state, GS_CLIENT_DONE);
		assert_true(r[i].started_us >= r[N].finished_us - 2000); /* after the sleep */
		if (k > 0) {
			int p = order[k - 1];
			if (pri[p] < pri[i] || (pri[p] == pri[i] && p > i))
				fail_msg("task %d (pri %u) finished after task %d (pri %u)", i,
				         pri[i], p, pri[p]);
		}
	}
	gs_client_results_free(r, N + 1);
}

/* --- least-loaded: workers of 4 and 1 slots --------------------------------- */

static void test_least_loaded(void **state)
{
	struct env *e = *state;
	start_worker(e, "big", 4);
	wait_workers(e, 1);
	start_worker(e, "small", 1);
	wait_workers(e, 2);
	uint64_t big = worker_id(e, "big"), small = worker_id(e, "small");
	assert_true(big && small && big != small);
	const char *sl[] = {"sleep", "1"};
	struct gs_client_spec sp = argv_spec(sl, 2);
	uint64_t ids[5], on[5];
	for (int i = 0; i < 5; i++) {
		ids[i] = submit1(e, &sp);
		on[i] = wait_on_worker(e, ids[i]);
	}
	/* Load is running/slots: after one task each (1/4 vs 1/1) the big
	 * worker is the less loaded one; the first two go to different workers. */
	assert_true(on[0] != on[1]);
	int n_big = 0, n_small = 0;
	for (int i = 0; i < 5; i++) {
		n_big += on[i] == big;
		n_small += on[i] == small;
	}
	assert_int_equal(n_big, 4);
	assert_int_equal(n_small, 1);
	struct gs_client_result r[5];
	assert_int_equal(gs_client_wait(e->c, ids, 5, 10000, r), GS_OK);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(r[i].state, GS_CLIENT_DONE);
		assert_int_equal(r[i].worker_id, on[i]);
	}
	gs_client_results_free(r, 5);
}

/* --- a worker killed mid-run --------------------------------------------- */

static void test_worker_killed(void **state)
{
	struct env *e = *state;
	pid_t victim = start_worker(e, "victim", 4);
	wait_workers(e, 1);
	uint64_t vid = worker_id(e, "victim");
	const char *sl[] = {"sleep", "1"};
	struct gs_client_spec retry = argv_spec(sl, 2), once = argv_spec(sl, 2);
	retry.retries = 2;
	uint64_t ids[4];
	for (int i = 0; i < 3; i++)
		ids[i] = submit1(e, &retry);
	ids[3] = submit1(e, &once);
	for (int i = 0; i < 4; i++)
		assert_int_equal(wait_on_worker(e, ids[i]), vid);
	start_worker(e, "rescuer", 4);
	wait_workers(e, 2);
	uint64_t rid = worker_id(e, "rescuer");
	uint64_t t0 = gs_e2e_mono_ms();
	assert_int_equal(kill(victim, SIGKILL), 0);
	assert_true(gs_e2e_wait_exit(victim, 2000) != -1);
	struct gs_client_result r[4];
	/* Worker timeout 1 s + a 1 s task, with margin. */
	assert_int_equal(gs_client_wait(e->c, ids, 4, 6000, r), GS_OK);
	uint64_t took = gs_e2e_mono_ms() - t0;
	/* Rerun elsewhere: on the rescuer (or, on a machine so slow that the
	 * rescuer itself missed its heartbeats, on its next registration). */
	(void)rid;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].state, GS_CLIENT_DONE);
		assert_true(r[i].worker_id != vid);
		assert_true(r[i].attempts >= 2);
	}
	assert_int_equal(r[3].state, GS_CLIENT_FAILED);
	assert_string_equal(r[3].error, "worker lost");
	assert_true(took < 6000);
	gs_client_results_free(r, 4);
	/* The dead worker is gone from the live list. */
	assert_int_equal(worker_id(e, "victim"), 0);
}

/* --- cancel, timeout, delay ------------------------------------------------ */

static void test_cancel(void **state)
{
	struct env *e = *state;
	start_worker(e, "solo", 1);
	wait_workers(e, 1);
	const char *sl[] = {"sleep", "30"}, *tr[] = {"true"};
	struct gs_client_spec long_task = argv_spec(sl, 2), queued = argv_spec(tr, 1);
	uint64_t ids[2];
	ids[0] = submit1(e, &long_task);
	wait_running(e, ids[0]);
	ids[1] = submit1(e, &queued);
	struct gs_client_result q;
	get1(e, ids[1], &q);
	assert_int_equal(q.state, GS_CLIENT_QUEUED);
	gs_client_result_free(&q);
	int out[2], st[2];
	uint64_t t0 = gs_e2e_mono_ms();
	assert_int_equal(gs_client_cancel(e->c, ids, 2, out, st), GS_OK);
	assert_int_equal(out[0], GS_CLIENT_CANCEL_REQUESTED);
	assert_int_equal(out[1], GS_CLIENT_CANCEL_CANCELLED);
	assert_int_equal(st[1], GS_CLIENT_CANCELLED);
	struct gs_client_result r[2];
	assert_int_equal(gs_client_wait(e->c, ids, 2, 5000, r), GS_OK);
	assert_int_equal(r[0].state, GS_CLIENT_CANCELLED);
	assert_int_equal(r[1].state, GS_CLIENT_CANCELLED);
	assert_true(gs_e2e_mono_ms() - t0 < 5000);
	gs_client_results_free(r, 2);
	/* The slot is free again: a new task runs at once. */
	uint64_t id = submit1(e, &queued);
	assert_int_equal(gs_client_wait(e->c, &id, 1, 5000, r), GS_OK);
	assert_int_equal(r[0].state, GS_CLIENT_DONE);
	gs_client_result_free(&r[0]);
	/* Cancelling again: already finished or unknown, never an error. */
	assert_int_equal(gs_client_cancel(e->c, ids, 1, out, NULL), GS_OK);
	assert_true(out[0] == GS_CLIENT_CANCEL_ALREADY_FINISHED ||
	            out[0] == GS_CLIENT_CANCEL_NOT_FOUND);
}

static void test_timeout_and_delay(void **state)
{
	struct env *e = *state;
	start_worker(e, "w", 2);
	wait_workers(e, 1);
	const char *sl[] = {"sleep", "30"};
	struct gs_client_spec t = argv_spec(sl, 2);
	t.timeout_ms = 300;
	struct gs_client_spec d = {
	    .handler = "echo", .payload = "late", .payload_len = 4, .delay_ms = 700};
	uint64_t t0 = wall_us();
	uint64_t ids[2] = {submit1(e, &t), submit1(e, &d)};
	struct gs_client_result g;
	get1(e, ids[1], &g);
	assert_int_equal(g.state, GS_CLIENT_DELAYED);
	gs_client_result_free(&g);
	struct gs_client_result r[2];
	assert_int_equal(gs_client_wait(e->c, ids, 2, 5000, r), GS_OK);
	assert_int_equal(r[0].state, GS_CLIENT_FAILED);
	assert_non_null(strstr(r[0].error, "time"));
	assert_true(r[0].finished_us - r[0].started_us < 2000000);
	assert_true(r[0].finished_us - r[0].started_us >= 250000);
	assert_int_equal(r[1].state, GS_CLIENT_DONE);
	assert_string_equal((char *)r[1].output, "late");
	assert_true(r[1].started_us >= r[1].submitted_us + 700000);
	assert_true(r[1].started_us >= t0 + 690000);
	gs_client_results_free(r, 2);
}

/* --- bad input changes nothing --------------------------------------------- */

static uint64_t submitted_total(struct env *e, uint64_t *in_use)
{
	struct gs_client_stats s;
	assert_int_equal(gs_client_stats(e->c, &s), GS_OK);
	uint64_t n = 0;
	for (size_t i = 0; i < s.n_queues; i++)
		n += s.queues[i].submitted_total;
	*in_use = s.tasks_in_use;
	gs_client_stats_free(&s);
	return n;
}

static void test_bad_input(void **state)
{
	struct env *e = *state;
	uint64_t in_use0, in_use;
	uint64_t sub0 = submitted_total(e, &in_use0);
	const char *ok_argv[] = {"true"};
	struct gs_client_spec good = argv_spec(ok_argv, 1);
	struct gs_client_spec none = {0};
	struct gs_client_spec unknown = {.handler = "no-such-handler"};
	struct gs_client_spec pri = argv_spec(ok_argv, 1);
	pri.priority = 300;
	const struct gs_client_spec *bad[] = {&none, &unknown, &pri};
	uint64_t ids[2];
	for (int i = 0; i < 3; i++) {
		struct gs_client_spec batch[2] = {good, *bad[i]};
		assert_int_equal(gs_client_submit(e->c, batch, 2, ids), GS_EINVAL);
		assert_non_null(strstr(gs_client_error(e->c), "INVALID_ARGUMENT"));
	}
	assert_non_null(strstr(gs_client_error(e->c), "300"));

	/* Unknown IDs. */
	uint64_t ghost = 0x00000abc00000123ull;
	struct gs_client_result r;
	get1(e, ghost, &r);
	assert_int_equal(r.state, GS_CLIENT_UNKNOWN);
	gs_client_result_free(&r);
	assert_int_equal(gs_client_wait(e->c, &ghost, 1, 100, &r), GS_OK);
	assert_int_equal(r.state, GS_CLIENT_UNKNOWN);
	gs_client_result_free(&r);
	int out;
	assert_int_equal(gs_client_cancel(e->c, &ghost, 1, &out, NULL), GS_OK);
	assert_int_equal(out, GS_CLIENT_CANCEL_NOT_FOUND);

	/* Malformed bytes to every unary method. */
	struct gs_rpc_client *raw;
	assert_int_equal(gs_rpc_client_create(e->addr, NULL, &raw), GS_OK);
	static const char *const methods[] = {
	    "/gsched.v1.TaskService/Submit",       "/gsched.v1.TaskService/Wait",
	    "/gsched.v1.TaskService/Get",          "/gsched.v1.TaskService/Cancel",
	    "/gsched.v1.AdminService/ListWorkers", "/gsched.v1.AdminService/Stats",
	    "/gsched.v1.AdminService/Drain",       "/grpc.health.v1.Health/Check",
	};
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x80};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		struct gs_rpc_reply rep;
		int rc =
		    gs_rpc_client_unary(raw, methods[i], junk, sizeof(junk), NULL, 0, 5000, &rep);
		if (rep.code != GS_RPC_INVALID_ARGUMENT)
			fail_msg("%s: malformed request got %s (%s)", methods[i],
			         gs_rpc_code_name(rep.code), rep.details);
		assert_int_equal(rc, GS_EINVAL);
		gs_rpc_reply_free(&rep);
	}
	/* An empty Submit is invalid too. */
	struct gs_rpc_reply rep;
	gs_rpc_client_unary(raw, methods[0], "", 0, NULL, 0, 5000, &rep);
	assert_int_equal(rep.code, GS_RPC_INVALID_ARGUMENT);
	gs_rpc_reply_free(&rep);
	/* Health: SERVING (HealthCheckResponse.status = 1). */
	assert_int_equal(gs_rpc_client_unary(raw, methods[7], "", 0, NULL, 0, 5000, &rep), GS_OK);
	assert_true(rep.len == 2 && rep.data[0] == 0x08 && rep.data[1] == 1);
	gs_rpc_reply_free(&rep);
	gs_rpc_client_destroy(raw);

	assert_int_equal(submitted_total(e, &in_use), sub0);
	assert_int_equal(in_use, in_use0);
	assert_int_equal(in_use, 0);
}

/* --- stale and foreign reports from a worker ------------------------------- */

/* A hand-driven worker on a raw WorkerService.Connect stream. */
struct fakew {
	pthread_mutex_t mu;
	uint64_t wid;
	uint64_t task;
	uint32_t attempt;
	int assignments;
	int closed;
};

static void fw_msg(struct gs_rpc_stream *s, void *ud, const uint8_t *b, size_t n)
{
	(void)s;
	struct fakew *f = ud;
	Gsched__V1__WorkerDown *m = gsched__v1__worker_down__unpack(NULL, n, b);
	if (!m)
		return;
	pthread_mutex_lock(&f->mu);
	if (m->n_registered)
		f->wid = m->registered[0]->worker_id;
	for (size_t i = 0; i < m->n_assignments; i++) {
		f->task = m->assignments[i]->id;
		f->attempt = m->assignments[i]->attempt;
		f->assignments++;
	}
	pthread_mutex_unlock(&f->mu);
	gsched__v1__worker_down__free_unpacked(m, NULL);
}

static void fw_close(struct gs_rpc_stream *s, void *ud, int code, const char *details)
{
	(void)s;
	(void)code;
	(void)details;
	struct fakew *f = ud;
	pthread_mutex_lock(&f->mu);
	f->closed = 1;
	pthread_mutex_unlock(&f->mu);
}

static void fw_send(struct gs_rpc_stream *st, const Gsched__V1__WorkerUp *up)
{
	size_t n = gsched__v1__worker_up__get_packed_size(up);
	uint8_t *b = malloc(n ? n : 1);
	assert_non_null(b);
	gsched__v1__worker_up__pack(up, b);
	assert_int_equal(gs_rpc_stream_send(st, b, n), GS_OK);
	free(b);
}

static struct gs_rpc_stream *fw_open(struct gs_rpc_client *raw, struct fakew *f, const char *q)
{
	static const struct gs_rpc_stream_ops ops = {.on_message = fw_msg, .on_close = fw_close};
	struct gs_rpc_stream *st;
	assert_int_equal(gs_rpc_stream_open(raw, "/gsched.v1.WorkerService/Connect", GS_RPC_BIDI,
	                                    NULL, 0, NULL, 0, 0, &ops, f, &st),
	                 GS_OK);
	Gsched__V1__Register reg = GSCHED__V1__REGISTER__INIT;
	char *queues[] = {(char *)q};
	reg.name = "fake";
	reg.slots = 1;
	reg.n_queues = 1;
	reg.queues = queues;
	Gsched__V1__Register *rp = &reg;
	Gsched__V1__WorkerUp up = GSCHED__V1__WORKER_UP__INIT;
	up.n_register_ = 1;
	up.register_ = &rp;
	fw_send(st, &up);
	return st;
}

static void fw_result(struct gs_rpc_stream *st, uint64_t id, uint32_t attempt, const char *out)
{
	Gsched__V1__WorkResult r = GSCHED__V1__WORK_RESULT__INIT;
	r.id = id;
	r.attempt = attempt;
	r.state = GSCHED__V1__TASK_STATE__TASK_STATE_DONE;
	r.output.data = (uint8_t *)out;
	r.output.len = strlen(out);
	Gsched__V1__WorkResult *rp = &r;
	Gsched__V1__WorkerUp up = GSCHED__V1__WORKER_UP__INIT;
	up.n_results = 1;
	up.results = &rp;
	fw_send(st, &up);
}

static int fw_assignments(struct fakew *f)
{
	pthread_mutex_lock(&f->mu);
	int n = f->assignments;
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* A late result from a lost worker's attempt, and a report of a task never
 * given to the reporter, are both ignored: the task keeps its real owner and
 * its one final result comes from that owner. */
static void test_stale_reports(void **state)
{
	struct env *e = *state;
	struct gs_rpc_client *raw;
	assert_int_equal(gs_rpc_client_create(e->addr, NULL, &raw), GS_OK);
	struct fakew a = {.mu = PTHREAD_MUTEX_INITIALIZER}, b = {.mu = PTHREAD_MUTEX_INITIALIZER},
	             c = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct gs_rpc_stream *sa = fw_open(raw, &a, "stale");
	struct gs_client_spec spec = {
	    .queue = "stale", .handler = "echo", .payload = "x", .payload_len = 1, .retries = 3};
	uint64_t id = submit1(e, &spec);
	uint64_t end = gs_e2e_mono_ms() + 5000;
	while (fw_assignments(&a) < 1 && gs_e2e_mono_ms() < end)
		gs_e2e_sleep_ms(5);
	assert_int_equal(fw_assignments(&a), 1);
	assert_int_equal(a.task, id);
	assert_int_equal(a.attempt, 1);

	/* A is lost (its stream ends); B gets attempt 2. */
	gs_rpc_stream_destroy(sa);
	struct gs_rpc_stream *sb = fw_open(raw, &b, "stale");
	end = gs_e2e_mono_ms() + 5000;
	while (fw_assignments(&b) < 1 && gs_e2e_mono_ms() < end)
		gs_e2e_sleep_ms(5);
	assert_int_equal(fw_assignments(&b), 1);
	assert_int_equal(b.task, id);
	assert_int_equal(b.attempt, 2);

	/* C (A reconnected, say) reports A's attempt late, then B's attempt as
	 * if it were its own: both ignored. */
	struct gs_rpc_stream *sc = fw_open(raw, &c, "stale");
	fw_result(sc, id, 1, "late");
	fw_result(sc, id, 2, "foreign");
	gs_e2e_sleep_ms(300);
	struct gs_client_result r;
	get1(e, id, &r);
	assert_true(r.state == GS_CLIENT_ASSIGNED || r.state == GS_CLIENT_RUNNING);
	assert_int_equal(r.attempts, 2);
	assert_int_equal(r.worker_id, b.wid);
	gs_client_result_free(&r);

	/* B's own result is the one. */
	fw_result(sb, id, 2, "owner");
	assert_int_equal(gs_client_wait(e->c, &id, 1, 5000, &r), GS_OK);
	assert_int_equal(r.state, GS_CLIENT_DONE);
	assert_int_equal(r.output_len, 5);
	assert_memory_equal(r.output, "owner", 5);
	gs_client_result_free(&r);
	gs_rpc_stream_destroy(sb);
	gs_rpc_stream_destroy(sc);
	gs_rpc_client_destroy(raw);
}

/* A connection failure is quick and clear. */
static void test_unreachable(void **state)
{
	(void)state;
	int port = gs_e2e_free_port();
	char addr[64], err[256];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	struct gs_client *c = NULL;
	uint64_t t0 = gs_e2e_mono_ms();
	assert_int_equal(gs_client_connect_err(addr, NULL, &c, err, sizeof(err)), GS_EUNAVAIL);
	assert_null(c);
	assert_true(gs_e2e_mono_ms() - t0 < 3000);
	assert_non_null(strstr(err, "UNAVAILABLE"));
	assert_null(strchr(err, '\n'));
}

/* SIGTERM: the server lets running tasks finish and exits 0 within grace. */
static void test_sigterm(void **state)
{
	struct env *e = *state;
	start_worker(e, "w", 1);
	wait_workers(e, 1);
	const char *sl[] = {"sleep", "0.3"};
	struct gs_client_spec sp = argv_spec(sl, 2);
	uint64_t id = submit1(e, &sp);
	wait_on_worker(e, id);
	uint64_t t0 = gs_e2e_mono_ms();
	assert_int_equal(kill(e->server, SIGTERM), 0);
	int st = gs_e2e_wait_exit(e->server, 3000 + 3000);
	assert_true(st != -1);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_true(gs_e2e_mono_ms() - t0 < 6000);
	/* Now unreachable: a call fails fast with UNAVAILABLE. */
	struct gs_client_result r;
	t0 = gs_e2e_mono_ms();
	assert_int_equal(gs_client_get(e->c, &id, 1, false, &r), GS_EUNAVAIL);
	assert_true(gs_e2e_mono_ms() - t0 < 3000);
}

int main(int argc, char **argv)
{
	if (gs_e2e_init("test_e2e", "e2e", 0755, argc, argv) != 0)
		return 1;
	fprintf(stderr, "test_e2e: %s; process logs in %s\n", gs_e2e_bin(), gs_e2e_dir());
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unreachable),
	    cmocka_unit_test_setup_teardown(test_bad_input, setup_env, teardown_env),
	    cmocka_unit_test_setup_teardown(test_bulk, setup_env, teardown_env),
	    cmocka_unit_test_setup_teardown(test_priority, setup_env, teardown_env),
	    cmocka_unit_test_setup_teardown(test_least_loaded, setup_env, teardown_env),
	    cmocka_unit_test_setup_teardown(test_worker_killed, setup_env, teardown_env),
	    cmocka_unit_test_setup_teardown(test_stale_reports, setup_env, teardown_env),
	    cmocka_unit_test_setup_teardown(test_cancel, setup_env, teardown_env),
	    cmocka_unit_test_setup_teardown(test_timeout_and_delay, setup_env, teardown_env),
	    cmocka_unit_test_setup_teardown(test_sigterm, setup_env, teardown_env),
	};
	return gs_e2e_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
