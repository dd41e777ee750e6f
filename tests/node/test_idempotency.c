/*
 * test_idempotency.c - Submit with an idempotency key across server crashes:
 * real `gsched server` and `gsched worker` processes on 127.0.0.1, the
 * server killed with SIGKILL (the crash that loses an acknowledgement) and
 * started again, then the same Submit retried with the same key.
 *
 *   after ack, log      acknowledged, SIGKILL, log replay (anonymous
 *                       segment): the retry gets the same IDs; another
 *                       request under the key is INVALID_ARGUMENT
 *   before ack, log     SIGKILL while the reply waits for its fsync: the
 *                       retry gets one set of tasks, whatever survived
 *   before ack, segment SIGKILL while the reply waits; restart adopting the
 *                       named segment (the tasks and the key are there: the
 *                       retry gets them), then SIGKILL, the segment removed,
 *                       restart from the log: the same IDs again
 *
 * Each ends with a worker running what is queued: exactly one set of tasks
 * ran (tasks in use, Stats counters, every result once).  argv[1] (or
 * GSCHED_BIN): the gsched binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "gsched_client.h"

#define N_TASKS 3

struct env {
	char addr[64];
	char dir[300];
	char segment[64]; /* "" for an anonymous segment */
	pid_t server;
	int starts;
	struct gs_client *c;
};

static void hard_kill(pid_t pid)
{
	kill(pid, SIGKILL);
	assert_true(gs_e2e_wait_exit(pid, 5000) != -1);
}

static void start_server(struct env *e, const char *fsync_ms)
{
	char name[64];
	snprintf(name, sizeof(name), "server-%d", ++e->starts);
	const char *args[24] = {
	    "server",     "--listen",        e->addr,          "--data-dir", e->dir,
	    "--fsync-ms", fsync_ms,          "--heartbeat-ms", "100",        "--worker-timeout-ms",
	    "1000",       "--result-ttl-ms", "600000",         NULL};
	if (e->segment[0]) {
		args[13] = "--segment";
		args[14] = e->segment;
		args[15] = NULL;
	}
	e->server = gs_e2e_spawn(name, args);
	if (e->c)
		gs_client_close(e->c);
	e->c = gs_e2e_connect(e->addr, 15000);
	assert_non_null(e->c);
}

static int setup(void **state)
{
	static int n;
	struct env *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", gs_e2e_free_port());
	snprintf(e->dir, sizeof(e->dir), "%s/data-%d", gs_e2e_dir(), ++n);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	if (e && e->c)
		gs_client_close(e->c);
	gs_e2e_kill_all();
	if (e && e->segment[0])
		shm_unlink(e->segment);
	free(e);
	*state = NULL;
	return 0;
}

static const char *const texts[N_TASKS] = {"idem-0", "idem-1", "idem-2"};

static void specs(struct gs_client_spec *sp, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memset(&sp[i], 0, sizeof(sp[i]));
		sp[i].handler = "echo";
		sp[i].payload = texts[i % N_TASKS];
		sp[i].payload_len = strlen(texts[i % N_TASKS]);
	}
}

static int submit(struct gs_client *c, const char *key, size_t n, uint64_t *ids)
{
	struct gs_client_spec sp[N_TASKS + 1];
	specs(sp, n);
	return gs_client_submit_idem(c, key, sp, n, ids);
}

static void stats(struct env *e, uint64_t *in_use, uint64_t *submitted, uint64_t *done)
{
	struct gs_client_stats st;
	assert_int_equal(gs_client_stats(e->c, &st), GS_OK);
	*in_use = st.tasks_in_use;
	*submitted = *done = 0;
	for (size_t i = 0; i < st.n_queues; i++) {
		*submitted += st.queues[i].submitted_total;
		*done += st.queues[i].done_total;
	}
	gs_client_stats_free(&st);
}

/* Exactly the N_TASKS tasks of ids are in the server, none ran yet. */
static void expect_one_set(struct env *e, const uint64_t *ids)
{
	uint64_t in_use, submitted, done;
	stats(e, &in_use, &submitted, &done);
	assert_int_equal(in_use, N_TASKS);
	assert_int_equal(submitted, N_TASKS);
	struct gs_client_result r[N_TASKS];
	assert_int_equal(gs_client_get(e->c, ids, N_TASKS, false, r), GS_OK);
	for (size_t i = 0; i < N_TASKS; i++)
		if (r[i].state == GS_CLIENT_UNKNOWN)
			fail_msg("task %016" PRIx64 " unknown", ids[i]);
	gs_client_results_free(r, N_TASKS);
}

/* A worker runs them: every result once, nothing else ran. */
static void run_and_check(struct env *e, const uint64_t *ids)
{
	const char *args[] = {"worker", "--server", e->addr, "--slots", "4", NULL};
	gs_e2e_spawn("worker", args);
	struct gs_client_result r[N_TASKS];
	assert_int_equal(gs_client_wait(e->c, ids, N_TASKS, 30000, r), GS_OK);
	for (size_t i = 0; i < N_TASKS; i++) {
		assert_int_equal(r[i].state, GS_CLIENT_DONE);
		assert_int_equal(r[i].attempts, 1);
		assert_int_equal(r[i].output_len, strlen(texts[i]));
		assert_memory_equal(r[i].output, texts[i], strlen(texts[i]));
	}
	gs_client_results_free(r, N_TASKS);
	uint64_t in_use, submitted, done;
	stats(e, &in_use, &submitted, &done);
	assert_int_equal(done, N_TASKS);
	assert_int_equal(submitted, N_TASKS);
	assert_int_equal(in_use, 0); /* fetched: released */
	/* The key went with its tasks: the same request now queues anew. */
	uint64_t again[N_TASKS];
	assert_int_equal(submit(e->c, "order-1", N_TASKS, again), GS_OK);
	for (size_t i = 0; i < N_TASKS; i++)
		assert_true(again[i] != ids[i]);
}

/* --- acknowledged, SIGKILL, log replay ------------------------------------ */

static void test_after_ack_log(void **state)
{
	struct env *e = *state;
	start_server(e, "5");
	uint64_t a[N_TASKS], b[N_TASKS + 1];
	assert_int_equal(submit(e->c, "order-1", N_TASKS, a), GS_OK);
	assert_int_equal(submit(e->c, "order-1", N_TASKS, b), GS_OK);
	assert_memory_equal(a, b, sizeof(a));
	/* Another request under the key: refused, nothing changes. */
	assert_int_equal(submit(e->c, "order-1", N_TASKS + 1, b), GS_EINVAL);
	assert_non_null(strstr(gs_client_error(e->c), "INVALID_ARGUMENT"));
	char long_key[200];
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = 0;
	assert_int_equal(submit(e->c, long_key, 1, b), GS_EINVAL);
	expect_one_set(e, a);

	hard_kill(e->server);
	start_server(e, "5");
	assert_int_equal(submit(e->c, "order-1", N_TASKS, b), GS_OK);
	assert_memory_equal(a, b, N_TASKS * sizeof(uint64_t));
	expect_one_set(e, a);
	run_and_check(e, a);
}

/* --- SIGKILL while the acknowledgement waits for the disk ----------------- */

struct bg_submit {
	const char *addr;
	int rc;
	uint64_t ids[N_TASKS];
};

static void *bg_submit_main(void *arg)
{
	struct bg_submit *b = arg;
	struct gs_client *c = NULL;
	b->rc = gs_client_connect(b->addr, NULL, &c);
	if (b->rc == GS_OK) {
		b->rc = submit(c, "order-1", N_TASKS, b->ids);
		gs_client_close(c);
	}
	return NULL;
}

/* Submits in a thread with a long --fsync-ms, kills the server meanwhile. */
static void kill_during_submit(struct env *e, struct bg_submit *b)
{
	start_server(e, "3000"); /* the reply waits up to 3 s for its sync */
	b->addr = e->addr;
	pthread_t th;
	pthread_create(&th, NULL, bg_submit_main, b);
	/* The tasks are in the engine once Stats sees them (bounded wait). */
	uint64_t in_use = 0, submitted, done, end = gs_e2e_mono_ms() + 10000;
	while (in_use < N_TASKS && gs_e2e_mono_ms() < end) {
		stats(e, &in_use, &submitted, &done);
		if (in_use < N_TASKS)
			gs_e2e_sleep_ms(5);
	}
	hard_kill(e->server);
	pthread_join(th, NULL);
	/* Usually the ack was lost (rc != OK); if the sync beat the kill, the
	 * client has its IDs, and the retry must return exactly those. */
	fprintf(stderr, "submit during the kill: %s\n", b->rc == GS_OK ? "acknowledged" : "lost");
}

static void test_before_ack_log(void **state)
{
	struct env *e = *state;
	struct bg_submit b = {0};
	kill_during_submit(e, &b);
	start_server(e, "5"); /* log replay: unsynced records are gone */
	uint64_t ids[N_TASKS];
	assert_int_equal(submit(e->c, "order-1", N_TASKS, ids), GS_OK);
	if (b.rc == GS_OK)
		assert_memory_equal(ids, b.ids, sizeof(ids));
	uint64_t again[N_TASKS];
	assert_int_equal(submit(e->c, "order-1", N_TASKS, again), GS_OK);
	assert_memory_equal(ids, again, sizeof(ids));
	expect_one_set(e, ids);
	run_and_check(e, ids);
}

static void test_before_ack_segment(void **state)
{
	struct env *e = *state;
	snprintf(e->segment, sizeof(e->segment), "/gsched-idem-%d", (int)getpid());
	shm_unlink(e->segment);
	struct bg_submit b = {0};
	kill_during_submit(e, &b);

	/* (a) The segment is adopted: the tasks and the key are in it. */
	start_server(e, "5");
	uint64_t ids[N_TASKS];
	assert_int_equal(submit(e->c, "order-1", N_TASKS, ids), GS_OK);
	if (b.rc == GS_OK)
		assert_memory_equal(ids, b.ids, sizeof(ids));
	expect_one_set(e, ids);

	/* (b) The segment is gone (a machine restart): the log has them. */
	hard_kill(e->server);
	assert_int_equal(shm_unlink(e->segment), 0);
	start_server(e, "5");
	char log[512];
	snprintf(log, sizeof(log), "%s/server-3.log", gs_e2e_dir());
	FILE *f = fopen(log, "r");
	assert_non_null(f);
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	assert_non_null(strstr(buf, "1 idempotency keys"));
	uint64_t again[N_TASKS];
	assert_int_equal(submit(e->c, "order-1", N_TASKS, again), GS_OK);
	assert_memory_equal(ids, again, sizeof(ids));
	expect_one_set(e, ids);
	run_and_check(e, ids);
}

int main(int argc, char **argv)
{
	if (gs_e2e_init("test_idempotency", "idem", 0755, argc, argv) != 0)
		return 1;
	fprintf(stderr, "test_idempotency: %s; logs and data in %s\n", gs_e2e_bin(), gs_e2e_dir());
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_after_ack_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_before_ack_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_before_ack_segment, setup, teardown),
	};
	return gs_e2e_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
