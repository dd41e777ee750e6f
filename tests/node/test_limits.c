/*
 * test_limits.c - the server's configurable limits, end to end: real
 * `gsched server` and `gsched worker` processes on 127.0.0.1, driven through
 * the C client library (gsched_client.h) and the raw RPC client.
 *
 * test_message_limit: --max-message-bytes 65536.  A Submit carrying a
 * payload under the limit is served; one over it (unary, and on a
 * SubmitStream) is refused with RESOURCE_EXHAUSTED by gRPC before it is
 * decoded, changes nothing (Stats), and the server keeps serving.
 *
 * test_stream_limit: --max-streams 4 and one worker (its Connect stream is
 * one of the 4).  Three SubmitStreams work; a fourth is refused with
 * RESOURCE_EXHAUSTED "too many streams" while the three keep working and
 * unary calls are unaffected; once one of them ends, its slot is reused.
 *
 * test_connection_limit: --max-connections 3, one worker (connection 1) and
 * clients A and B each holding a SubmitStream (connections 2 and 3).  A
 * third client C connects (the health probe is exempt) but its calls, unary
 * or streaming, are refused with RESOURCE_EXHAUSTED "too many connections"
 * while A, B and the worker keep working; once B closes, C is served.
 *
 * Each client of the library has a TCP connection of its own (rpc_client.h),
 * which the server tells apart by peer address.  Every wait is bounded (time
 * and count); every process started is killed in the teardown (and at exit
 * if a test aborts).  argv[1] (or GSCHED_BIN): the gsched binary.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "gsched_client.h"
#include "rpc_client.h"

#define SUBMIT_PATH "/gsched.v1.TaskService/Submit"
#define WAIT_MS     10000 /* bound of each single wait */
#define MSG_LIMIT   65536

struct env {
	char addr[64];
	struct gs_client *c;
};

static int teardown_env(void **state)
{
	struct env *e = *state;
	if (e) {
		gs_client_close(e->c);
		free(e);
	}
	*state = NULL;
	gs_e2e_kill_all();
	return 0;
}

/* A server with the given extra flags (NULL-terminated, at most 8) and one
 * worker; e->c is connected and the worker registered. */
static struct env *start(void **state, const char *const *extra)
{
	struct env *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	*state = e;
	int port = gs_e2e_free_port();
	snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", port);
	const char *args[24] = {
	    "server", "--listen", e->addr, "--heartbeat-ms", "100", "--worker-timeout-ms", "1000"};
	size_t n = 7;
	for (size_t i = 0; extra[i] && i < 8; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	assert_true(gs_e2e_spawn("server", args) > 0);
	e->c = gs_e2e_connect(e->addr, WAIT_MS);
	assert_non_null(e->c);
	const char *wargs[] = {"worker", "--server", e->addr,      "--slots", "8",
	                       "--name", "w1",       "--grace-ms", "300",     NULL};
	assert_true(gs_e2e_spawn("worker", wargs) > 0);
	gs_e2e_wait_workers(e->c, 1, WAIT_MS);
	return e;
}

static uint64_t submitted_total(struct gs_client *c)
{
	struct gs_client_stats st;
	int rc = gs_client_stats(c, &st);
	if (rc != GS_OK)
		fail_msg("stats: rc %d (%s)", rc, gs_client_error(c));
	uint64_t t = 0;
	for (size_t i = 0; i < st.n_queues; i++)
		t += st.queues[i].submitted_total;
	gs_client_stats_free(&st);
	return t;
}

/* One echo task by unary Submit + Wait; returns Submit's status and checks
 * the result when accepted. */
static int unary_echo(struct gs_client *c, const void *payload, size_t len)
{
	struct gs_client_spec sp = {.handler = "echo", .payload = payload, .payload_len = len};
	uint64_t id = 0;
	int rc = gs_client_submit(c, &sp, 1, &id);
	if (rc != GS_OK)
		return rc;
	struct gs_client_result r;
	rc = gs_client_wait(c, &id, 1, WAIT_MS, &r);
	if (rc != GS_OK || r.state != GS_CLIENT_DONE || r.output_len != len ||
	    memcmp(r.output, payload, len) != 0)
		fail_msg("echo of %zu bytes: rc %d, state %s, %zu bytes out", len, rc,
		         gs_client_state_name(r.state), r.output_len);
	gs_client_result_free(&r);
	return GS_OK;
}

/* --- a SubmitStream on a client of its own ------------------------------ */

struct tstream {
	struct gs_client *c; /* owned */
	struct gs_client_stream *s;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t acks, rejects, results, bad_results;
};

static void ts_ack(void *ud, uint64_t seq, uint64_t id, int code, const char *msg)
{
	(void)seq;
	(void)code;
	(void)msg;
	struct tstream *t = ud;
	pthread_mutex_lock(&t->mu);
	if (id)
		t->acks++;
	else
		t->rejects++;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

static void ts_result(void *ud, const struct gs_client_result *r)
{
	struct tstream *t = ud;
	pthread_mutex_lock(&t->mu);
	t->results++;
	if (r->state != GS_CLIENT_DONE)
		t->bad_results++;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

/* Opens a stream on client c, which the stream then owns. */
static struct tstream *ts_open_on(struct gs_client *c)
{
	assert_non_null(c);
	struct tstream *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	t->c = c;
	assert_int_equal(gs_client_stream_open(t->c, ts_ack, ts_result, t, &t->s), GS_OK);
	return t;
}

/* Connects a new client (own connection) and opens a stream on it. */
static struct tstream *ts_open(const char *addr)
{
	return ts_open_on(gs_e2e_connect(addr, WAIT_MS));
}

/* Half-closes (if graceful), waits for the stream's end, frees it all. */
static void ts_close(struct tstream *t, bool graceful)
{
	if (t == NULL)
		return;
	if (graceful) {
		gs_client_stream_close(t->s);
		int rc = gs_client_stream_wait(t->s, WAIT_MS);
		if (rc != GS_OK)
			fail_msg("closing a stream: rc %d (%s)", rc, gs_client_stream_error(t->s));
	}
	gs_client_stream_destroy(t->s);
	gs_client_close(t->c);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/*
 * Submits one task of len bytes on the stream and waits (bounded) for its
 * result.  Returns GS_OK when the result came, or the stream's end status
 * (its message copied into why) when the stream ended instead.
 */
static int ts_roundtrip(struct tstream *t, uint64_t seq, size_t len, char *why, size_t why_len)
{
	static char pay[128 * 1024];
	memset(pay, 'p', sizeof(pay));
	assert_true(len <= sizeof(pay));
	struct gs_client_spec sp = {.handler = "echo", .payload = pay, .payload_len = len};
	pthread_mutex_lock(&t->mu);
	size_t want = t->results + 1;
	pthread_mutex_unlock(&t->mu);
	int rc = gs_client_stream_submit(t->s, &sp, seq);
	if (rc != GS_OK && rc != GS_EUNAVAIL)
		fail_msg("stream submit: rc %d", rc);
	uint64_t end = gs_e2e_mono_ms() + WAIT_MS;
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&t->mu);
		bool got = t->results >= want;
		size_t bad = t->bad_results, rej = t->rejects;
		pthread_mutex_unlock(&t->mu);
		if (bad || rej)
			fail_msg("stream: %zu bad results, %zu rejected submissions", bad, rej);
		if (got)
			return GS_OK;
		rc = gs_client_stream_wait(t->s, 5);
		if (rc != GS_ETIMEOUT) {
			snprintf(why, why_len, "%s", gs_client_stream_error(t->s));
			return rc == GS_OK ? GS_EPROTO : rc;
		}
		if (gs_e2e_mono_ms() > end)
			break;
	}
	fail_msg("no result and no end of stream within %d ms", WAIT_MS);
	return GS_ETIMEOUT;
}

/* Asserts that the stream works (a task's result comes back on it). */
static void ts_works(struct tstream *t, uint64_t seq)
{
	char why[256] = "";
	int rc = ts_roundtrip(t, seq, 16, why, sizeof(why));
	if (rc != GS_OK)
		fail_msg("stream %" PRIu64 " ended: rc %d (%s)", seq, rc, why);
}

/* Asserts that the stream was refused with RESOURCE_EXHAUSTED (GS_EFULL)
 * and a message containing text. */
static void ts_refused(struct tstream *t, const char *text)
{
	char why[256] = "";
	int rc = ts_roundtrip(t, 1, 16, why, sizeof(why));
	fprintf(stderr, "limits: refused stream: rc %d (%s)\n", rc, why);
	assert_int_equal(rc, GS_EFULL);
	assert_non_null(strstr(why, text));
}

/* --- a client's stream batches under the server's limit ------------------- */

/* A client submitting faster than its stream drains sends what queued as
 * one message; with max_send_batch_bytes at or below the server's limit
 * every such message is taken, however many tasks are in flight.  (With a
 * 4 MiB batch against this 64 KiB server the stream ends after some 300
 * acks: a message over the limit.) */
static void test_send_batches(void **state)
{
	char lim[16];
	snprintf(lim, sizeof(lim), "%u", MSG_LIMIT);
	const char *extra[] = {"--max-message-bytes", lim, NULL};
	struct env *e = start(state, extra);
	struct gs_client_opts o = {.connect_timeout_ms = 1000,
	                           .max_send_batch_bytes = MSG_LIMIT / 4};
	struct gs_client *c = NULL;
	assert_int_equal(gs_client_connect(e->addr, &o, &c), GS_OK);
	struct tstream *t = ts_open_on(c);
	enum { N = 3000 };
	static char pay[64];
	memset(pay, 'q', sizeof(pay));
	struct gs_client_spec sp = {.handler = "echo", .payload = pay, .payload_len = sizeof(pay)};
	size_t full = 0;
	uint64_t end = gs_e2e_mono_ms() + WAIT_MS;
	for (uint64_t i = 0; i < N; i++) {
		int rc;
		while ((rc = gs_client_stream_submit(t->s, &sp, i)) == GS_EFULL &&
		       gs_e2e_mono_ms() < end) {
			full++;
			gs_e2e_sleep_ms(1);
		}
		if (rc != GS_OK)
			fail_msg("submit %" PRIu64 ": rc %d (%s)", i, rc,
			         gs_client_stream_error(t->s));
	}
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&t->mu);
		bool all = t->results >= N;
		pthread_mutex_unlock(&t->mu);
		if (all || gs_e2e_mono_ms() > end + WAIT_MS)
			break;
		gs_e2e_sleep_ms(10);
	}
	pthread_mutex_lock(&t->mu);
	size_t acks = t->acks, results = t->results, bad = t->bad_results, rej = t->rejects;
	pthread_mutex_unlock(&t->mu);
	fprintf(stderr,
	        "limits: %d tasks on one stream, batches <= %u bytes: %zu acks, %zu results, "
	        "%zu full-queue retries\n",
	        N, MSG_LIMIT / 4, acks, results, full);
	assert_int_equal(acks, N);
	assert_int_equal(results, N);
	assert_int_equal(bad + rej, 0);
	ts_close(t, true); /* the stream ends OK: no message was refused */
}

/* --- the message limit --------------------------------------------------- */

static void test_message_limit(void **state)
{
	const char *extra[] = {"--max-message-bytes", "65536", NULL};
	struct env *e = start(state, extra);
	static char big[100 * 1024], small[32 * 1024];
	memset(big, 'b', sizeof(big));
	memset(small, 's', sizeof(small));

	/* Under the limit: served. */
	assert_int_equal(unary_echo(e->c, small, sizeof(small)), GS_OK);
	assert_int_equal(submitted_total(e->c), 1);

	/* Over it: RESOURCE_EXHAUSTED through the library, nothing queued. */
	int rc = unary_echo(e->c, big, sizeof(big));
	fprintf(stderr, "limits: %zu-byte payload: rc %d (%s)\n", sizeof(big), rc,
	        gs_client_error(e->c));
	assert_int_equal(rc, GS_EFULL);
	assert_int_equal(submitted_total(e->c), 1);

	/* The raw status: RESOURCE_EXHAUSTED before decoding (the same bytes
	 * under the limit are decoded and rejected as INVALID_ARGUMENT). */
	struct gs_rpc_client *raw = NULL;
	assert_int_equal(gs_rpc_client_create(e->addr, NULL, &raw), GS_OK);
	static uint8_t junk[MSG_LIMIT + 1];
	memset(junk, 0xff, sizeof(junk));
	struct gs_rpc_reply rep;
	gs_rpc_client_unary(raw, SUBMIT_PATH, junk, sizeof(junk), NULL, 0, WAIT_MS, &rep);
	fprintf(stderr, "limits: raw %zu bytes: code %d (%s)\n", sizeof(junk), rep.code,
	        rep.details);
	assert_int_equal(rep.code, GS_RPC_RESOURCE_EXHAUSTED);
	gs_rpc_reply_free(&rep);
	gs_rpc_client_unary(raw, SUBMIT_PATH, junk, 1000, NULL, 0, WAIT_MS, &rep);
	assert_int_equal(rep.code, GS_RPC_INVALID_ARGUMENT);
	gs_rpc_reply_free(&rep);
	gs_rpc_client_destroy(raw);

	/* On a stream: the stream ends with RESOURCE_EXHAUSTED... */
	struct tstream *t = ts_open(e->addr);
	ts_works(t, 1);
	char why[256] = "";
	rc = ts_roundtrip(t, 2, sizeof(big), why, sizeof(why));
	fprintf(stderr, "limits: stream with a %zu-byte payload: rc %d (%s)\n", sizeof(big), rc,
	        why);
	assert_int_equal(rc, GS_EFULL);
	ts_close(t, false);
	assert_int_equal(submitted_total(e->c), 2);

	/* ... and the server still serves, unary and streams. */
	assert_int_equal(unary_echo(e->c, small, sizeof(small)), GS_OK);
	t = ts_open(e->addr);
	ts_works(t, 1);
	ts_close(t, true);
	assert_int_equal(submitted_total(e->c), 4);
}

/* --- the stream limit ---------------------------------------------------- */

#define N_STREAMS 3 /* + the worker's = --max-streams */

static void test_stream_limit(void **state)
{
	const char *extra[] = {"--max-streams", "4", NULL};
	struct env *e = start(state, extra);
	struct tstream *s[N_STREAMS];
	for (int i = 0; i < N_STREAMS; i++) {
		s[i] = ts_open(e->addr);
		ts_works(s[i], 1);
	}
	/* The fifth stream (fourth SubmitStream) is refused... */
	struct tstream *x = ts_open(e->addr);
	ts_refused(x, "too many streams");
	ts_close(x, false);
	/* ... while the others, unary calls and the worker keep working. */
	for (int i = 0; i < N_STREAMS; i++)
		ts_works(s[i], 2);
	assert_int_equal(unary_echo(e->c, "u", 1), GS_OK);

	/* A freed slot is reused (the server releases it once the call is
	 * over: retried, bounded, as the client may see the end first). */
	ts_close(s[N_STREAMS - 1], true);
	s[N_STREAMS - 1] = NULL;
	uint64_t end = gs_e2e_mono_ms() + WAIT_MS;
	struct tstream *y = NULL;
	int tries = 0;
	for (; tries < 100; tries++) {
		y = ts_open(e->addr);
		char why[256] = "";
		int rc = ts_roundtrip(y, 1, 16, why, sizeof(why));
		if (rc == GS_OK)
			break;
		assert_int_equal(rc, GS_EFULL);
		ts_close(y, false);
		y = NULL;
		if (gs_e2e_mono_ms() > end)
			break;
		gs_e2e_sleep_ms(50);
	}
	fprintf(stderr, "limits: freed stream slot reused after %d refusals\n", tries);
	assert_non_null(y);
	/* Full again: refused again; the others still work. */
	x = ts_open(e->addr);
	ts_refused(x, "too many streams");
	ts_close(x, false);
	ts_works(y, 2);
	for (int i = 0; i < N_STREAMS - 1; i++)
		ts_works(s[i], 3);
	ts_close(y, true);
	for (int i = 0; i < N_STREAMS - 1; i++)
		ts_close(s[i], true);
}

/* --- the connection limit ------------------------------------------------ */

static void test_connection_limit(void **state)
{
	const char *extra[] = {"--max-connections", "3", NULL};
	struct env *e = start(state, extra);
	/* e->c only made unary calls: idle now, it counts for nothing. */
	struct tstream *a = ts_open(e->addr), *b = ts_open(e->addr);
	ts_works(a, 1);
	ts_works(b, 1);

	/* C connects (Health is exempt) but is refused, unary and stream. */
	struct gs_client *c = gs_e2e_connect(e->addr, WAIT_MS);
	assert_non_null(c);
	struct gs_client_stats st;
	int rc = gs_client_stats(c, &st);
	fprintf(stderr, "limits: fourth connection: stats rc %d (%s)\n", rc, gs_client_error(c));
	assert_int_equal(rc, GS_EFULL);
	assert_non_null(strstr(gs_client_error(c), "too many connections"));
	struct tstream *x = ts_open(e->addr);
	ts_refused(x, "too many connections");
	ts_close(x, false);

	/* The connections already open keep working, streams and unary. */
	ts_works(a, 2);
	ts_works(b, 2);
	assert_int_equal(unary_echo(a->c, "a", 1), GS_OK);

	/* B goes: C is served (bounded retry: the server sees B's end a little
	 * after B does), on a stream too. */
	ts_close(b, true);
	uint64_t end = gs_e2e_mono_ms() + WAIT_MS;
	int tries = 0;
	for (; tries < 200; tries++) {
		rc = gs_client_stats(c, &st);
		if (rc != GS_EFULL || gs_e2e_mono_ms() > end)
			break;
		gs_e2e_sleep_ms(50);
	}
	fprintf(stderr, "limits: freed connection slot reused after %d refusals\n", tries);
	assert_int_equal(rc, GS_OK);
	gs_client_stats_free(&st);
	struct tstream *ct = ts_open_on(c);
	ts_works(ct, 1);

	/* Full again (worker, A, C): a new connection is refused again. */
	x = ts_open(e->addr);
	ts_refused(x, "too many connections");
	ts_close(x, false);
	ts_works(a, 3);
	ts_close(ct, true);
	ts_close(a, true);
}

int main(int argc, char **argv)
{
	if (gs_e2e_init("test_limits", "lim", 0755, argc, argv) != 0)
		return 1;
	fprintf(stderr, "test_limits: %s; process logs in %s\n", gs_e2e_bin(), gs_e2e_dir());
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_message_limit, teardown_env),
	    cmocka_unit_test_teardown(test_stream_limit, teardown_env),
	    cmocka_unit_test_teardown(test_connection_limit, teardown_env),
	    cmocka_unit_test_teardown(test_send_batches, teardown_env),
	};
	return gs_e2e_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
