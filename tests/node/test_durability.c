/*
 * test_durability.c - the write-ahead log end to end (`gsched server
 * --data-dir DIR`): real server and worker processes on 127.0.0.1, the
 * server killed with SIGKILL and started again on the same directory (with
 * an anonymous segment, as after a machine restart).
 *
 *   restart     every acknowledged task is still there; with a worker they
 *               all complete, each exactly once; results that finished
 *               before the crash are still there for Wait; new IDs differ
 *               from every old one.
 *   torn tail   garbage appended to the last log file while the server is
 *               down: it warns, cuts it, and loses nothing acknowledged.
 *   stream      SIGKILL in the middle of a stream of submissions: every ID
 *               the client received an ack for survives.
 *
 * Process logs and data directories go to a temporary directory, removed
 * when every test passed.  argv[1] (or GSCHED_BIN): the gsched binary.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "gsched_client.h"

struct env {
	char addr[64];
	char dir[300];
	pid_t server;
	int starts;
	struct gs_client *c;
};

static void hard_kill(pid_t pid)
{
	kill(pid, SIGKILL);
	assert_true(gs_e2e_wait_exit(pid, 5000) != -1);
}

/* Starts the server on e->addr and e->dir and connects e->c. */
static void start_server(struct env *e)
{
	char name[64];
	snprintf(name, sizeof(name), "server-%d", ++e->starts);
	const char *args[] = {"server", "--listen",
	                      e->addr,  "--data-dir",
	                      e->dir,   "--fsync-ms",
	                      "5",      "--heartbeat-ms",
	                      "100",    "--worker-timeout-ms",
	                      "1000",   "--result-ttl-ms",
	                      "600000", NULL};
	e->server = gs_e2e_spawn(name, args);
	if (e->c)
		gs_client_close(e->c);
	e->c = gs_e2e_connect(e->addr, 15000);
	assert_non_null(e->c);
}

static pid_t start_worker(struct env *e, const char *name)
{
	const char *args[] = {"worker", "--server", e->addr,      "--slots", "8",
	                      "--name", name,       "--grace-ms", "300",     NULL};
	return gs_e2e_spawn(name, args);
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
	free(e);
	*state = NULL;
	gs_e2e_kill_all();
	return 0;
}

static struct gs_client_spec echo_spec(const char *text)
{
	struct gs_client_spec s = {0};
	s.handler = "echo";
	s.payload = text;
	s.payload_len = strlen(text);
	return s;
}

/* Submits n echo tasks "<tag>-<i>" in batches; ids[n]. */
static void submit_echo(struct env *e, const char *tag, size_t n, uint64_t *ids)
{
	char(*txt)[32] = calloc(n, 32);
	struct gs_client_spec *sp = calloc(n, sizeof(*sp));
	assert_non_null(txt);
	assert_non_null(sp);
	for (size_t i = 0; i < n; i++) {
		snprintf(txt[i], 32, "%s-%zu", tag, i);
		sp[i] = echo_spec(txt[i]);
	}
	for (size_t i = 0; i < n; i += 50) {
		size_t k = n - i < 50 ? n - i : 50;
		if (gs_client_submit(e->c, sp + i, k, ids + i) != GS_OK)
			fail_msg("submit: %s", gs_client_error(e->c));
	}
	free(sp);
	free(txt);
}

/* Every id known (state != UNKNOWN); returns how many are in state `st`. */
static size_t count_state(struct env *e, const uint64_t *ids, size_t n, int st)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i += 500) {
		size_t m = n - i < 500 ? n - i : 500;
		struct gs_client_result *r = calloc(m, sizeof(*r));
		assert_non_null(r);
		assert_int_equal(gs_client_get(e->c, ids + i, m, false, r), GS_OK);
		for (size_t j = 0; j < m; j++) {
			if (r[j].state == GS_CLIENT_UNKNOWN)
				fail_msg("task %016" PRIx64 " (#%zu) lost", ids[i + j], i + j);
			k += r[j].state == st;
		}
		gs_client_results_free(r, m);
		free(r);
	}
	return k;
}

/* Waits for every task; checks output "<tag>-<i>" and one attempt each. */
static void wait_echo(struct env *e, const char *tag, const uint64_t *ids, size_t n,
                      uint32_t max_attempts)
{
	struct gs_client_result *r = calloc(n, sizeof(*r));
	assert_non_null(r);
	int rc = gs_client_wait(e->c, ids, n, 30000, r);
	for (size_t i = 0; i < n; i++) {
		char want[32];
		snprintf(want, sizeof(want), "%s-%zu", tag, i);
		if (r[i].state != GS_CLIENT_DONE)
			fail_msg("task #%zu %016" PRIx64 ": %s (wait rc %d)", i, ids[i],
			         gs_client_state_name(r[i].state), rc);
		if (r[i].output_len != strlen(want) || memcmp(r[i].output, want, strlen(want)))
			fail_msg("task #%zu: output '%.*s', want '%s'", i, (int)r[i].output_len,
			         (const char *)r[i].output, want);
		if (r[i].attempts > max_attempts)
			fail_msg("task #%zu ran %u times", i, r[i].attempts);
	}
	gs_client_results_free(r, n);
	free(r);
}

static bool file_has(const char *path, const char *needle)
{
	char buf[65536];
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return strstr(buf, needle) != NULL;
}

/* --- restart: acknowledged tasks and unfetched results survive --------- */

#define N_QUEUED 2000

static void test_restart(void **state)
{
	struct env *e = *state;
	start_server(e);
	/* Tasks that finish before the crash: results not fetched yet. */
	uint64_t early[5];
	pid_t w = start_worker(e, "w1");
	submit_echo(e, "early", 5, early);
	uint64_t end = gs_e2e_mono_ms() + 10000;
	while (count_state(e, early, 5, GS_CLIENT_DONE) < 5 && gs_e2e_mono_ms() < end)
		gs_e2e_sleep_ms(20);
	assert_int_equal(count_state(e, early, 5, GS_CLIENT_DONE), 5);
	hard_kill(w);
	gs_e2e_sleep_ms(1500); /* declared dead: nothing more goes to it */

	static uint64_t ids[N_QUEUED];
	submit_echo(e, "task", N_QUEUED, ids);
	assert_int_equal(count_state(e, ids, N_QUEUED, GS_CLIENT_QUEUED), N_QUEUED);
	hard_kill(e->server);

	start_server(e); /* anonymous segment: everything comes from the log */
	char log[512];
	snprintf(log, sizeof(log), "%s/server-2.log", gs_e2e_dir());
	assert_true(file_has(log, "replayed"));
	assert_int_equal(count_state(e, ids, N_QUEUED, GS_CLIENT_QUEUED), N_QUEUED);
	/* Results from before the crash, for Wait. */
	wait_echo(e, "early", early, 5, 1);
	/* New IDs never equal an old one. */
	uint64_t fresh[100];
	submit_echo(e, "fresh", 100, fresh);
	for (size_t i = 0; i < 100; i++) {
		for (size_t j = 0; j < N_QUEUED; j++)
			assert_true(fresh[i] != ids[j]);
		for (size_t j = 0; j < 5; j++)
			assert_true(fresh[i] != early[j]);
	}
	/* A worker runs all of them, each once. */
	start_worker(e, "w2");
	wait_echo(e, "task", ids, N_QUEUED, 1);
	wait_echo(e, "fresh", fresh, 100, 1);

	/* And once more: nothing comes back that was fetched. */
	hard_kill(e->server);
	start_server(e);
	struct gs_client_result r;
	assert_int_equal(gs_client_get(e->c, &ids[0], 1, false, &r), GS_OK);
	assert_int_equal(r.state, GS_CLIENT_UNKNOWN);
	gs_client_result_free(&r);
}

/* --- a torn tail is cut, nothing acknowledged is lost ------------------ */

static void test_torn_tail(void **state)
{
	struct env *e = *state;
	start_server(e);
	static uint64_t ids[500];
	submit_echo(e, "torn", 500, ids);
	hard_kill(e->server);
	/* Garbage after the last record of the newest segment. */
	DIR *d = opendir(e->dir);
	assert_non_null(d);
	char last[256] = "";
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, "wal-", 4) == 0 && strcmp(de->d_name, last) > 0)
			snprintf(last, sizeof(last), "%s", de->d_name);
	closedir(d);
	assert_true(last[0]);
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", e->dir, last);
	FILE *f = fopen(path, "ab");
	assert_non_null(f);
	static const unsigned char junk[] = {0x40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 'x', 'y'};
	fwrite(junk, 1, sizeof(junk), f);
	fclose(f);

	start_server(e);
	char log[512];
	snprintf(log, sizeof(log), "%s/server-2.log", gs_e2e_dir());
	assert_true(file_has(log, "warning"));
	assert_int_equal(count_state(e, ids, 500, GS_CLIENT_QUEUED), 500);
	start_worker(e, "w");
	wait_echo(e, "torn", ids, 500, 1);
}

/* --- SIGKILL during a stream: every acked ID survives ------------------- */

#define N_STREAM 200000

struct acks {
	pthread_mutex_t mu;
	uint64_t *ids; /* by client_seq; 0: no ack */
	size_t n, rejected;
};

static void on_ack(void *ud, uint64_t seq, uint64_t id, int code, const char *msg)
{
	struct acks *a = ud;
	(void)code;
	(void)msg;
	pthread_mutex_lock(&a->mu);
	if (seq < N_STREAM && id) {
		a->ids[seq] = id;
		a->n++;
	} else {
		a->rejected++;
	}
	pthread_mutex_unlock(&a->mu);
}

static void on_result(void *ud, const struct gs_client_result *r)
{
	(void)ud;
	(void)r;
}

static void test_kill_during_stream(void **state)
{
	struct env *e = *state;
	start_server(e);
	struct acks a = {.ids = calloc(N_STREAM, sizeof(uint64_t))};
	assert_non_null(a.ids);
	pthread_mutex_init(&a.mu, NULL);
	struct gs_client_stream *st = NULL;
	assert_int_equal(gs_client_stream_open(e->c, on_ack, on_result, &a, &st), GS_OK);
	struct gs_client_spec sp = echo_spec("s");
	uint64_t killed_at = 0;
	size_t sent = 0;
	for (uint64_t seq = 0; seq < N_STREAM; seq++) {
		int rc;
		while ((rc = gs_client_stream_submit(st, &sp, seq)) == GS_EFULL)
			gs_e2e_sleep_ms(1);
		if (rc != GS_OK)
			break;
		sent++;
		/* A window of 2000 unacknowledged submissions until the kill. */
		size_t acked;
		uint64_t until = gs_e2e_mono_ms() + 10000;
		for (;;) {
			pthread_mutex_lock(&a.mu);
			acked = a.n;
			pthread_mutex_unlock(&a.mu);
			if (killed_at || sent - acked < 2000 || gs_e2e_mono_ms() > until)
				break;
			gs_e2e_sleep_ms(1);
		}
		if (!killed_at && acked >= 3000) {
			kill(e->server, SIGKILL); /* acks still in flight */
			killed_at = seq;
		}
		if (killed_at && seq > killed_at + 2000)
			break;
	}
	if (!killed_at)
		fail_msg("no kill: %zu sent, %zu acked, %zu rejected: %s", sent, a.n, a.rejected,
		         gs_client_stream_error(st));
	assert_true(gs_e2e_wait_exit(e->server, 5000) != -1);
	gs_client_stream_destroy(st);
	size_t n_acked = a.n;
	fprintf(stderr, "stream: %zu sent, %zu acked before the kill took effect\n", sent, n_acked);
	start_server(e);
	uint64_t *ids = malloc(n_acked * sizeof(*ids));
	size_t k = 0;
	for (size_t i = 0; i < N_STREAM && k < n_acked; i++)
		if (a.ids[i])
			ids[k++] = a.ids[i];
	assert_int_equal(k, n_acked);
	count_state(e, ids, k, GS_CLIENT_QUEUED); /* fails on any unknown ID */
	free(ids);
	free(a.ids);
}

int main(int argc, char **argv)
{
	if (gs_e2e_init("test_durability", "dur", 0755, argc, argv) != 0)
		return 1;
	fprintf(stderr, "test_durability: %s; logs and data in %s\n", gs_e2e_bin(), gs_e2e_dir());
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kill_during_stream, setup, teardown),
	};
	return gs_e2e_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
