/*
 * test_rpc.c - the RPC transport end to end: a real server on 127.0.0.1 (port
 * 0) and a real client in one process.  Every wait is bounded in time and
 * every loop in count; each test stops what it started.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "grpc/health/v1/health.pb-c.h"
#include "gs_error.h"
#include "gsched.pb-c.h"
#include "health.h"
#include "rpc_client.h"
#include "rpc_server.h"
#include "rpc_status.h"

#define ECHO_PATH  "/gsched.test.Echo/Unary"
#define AUTH_PATH  "/gsched.test.Echo/NeedsAuth"
#define COUNT_PATH "/gsched.test.Stream/Count"
#define HOLD_PATH  "/gsched.test.Stream/Hold"
#define TICKS_PATH "/gsched.test.Stream/Ticks"
#define N_SENDERS  2
#define N_PER_SEND 5000
#define N_TOTAL    (N_SENDERS * N_PER_SEND)
#define WAIT_MS    30000

/* Checks inside callbacks (gRPC threads) count failures here instead of
 * asserting: cmocka's asserts may only fail on the test's own thread. */
static atomic_long g_cb_errors;
#define CB_CHECK(x)                                                                                \
	do {                                                                                       \
		if (!(x)) {                                                                        \
			fprintf(stderr, "callback check failed: %s (line %d)\n", #x, __LINE__);    \
			atomic_fetch_add(&g_cb_errors, 1);                                         \
		}                                                                                  \
	} while (0)

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Poll *flag until it is at least want, for at most timeout_ms. */
static int wait_atomic_ge(atomic_long *v, long want, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	while (atomic_load(v) < want) {
		if (now_ms() > end)
			return 0;
		sleep_ms(2);
	}
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Server handlers                                                           */

struct echo_state {
	atomic_long calls;
	char auth[64];
	char peer[64];
	pthread_mutex_t mu;
};

static void echo_on_message(struct gs_rpc_call *call, void *ud, const uint8_t *b, size_t n)
{
	struct echo_state *st = ud;
	const char *v;
	size_t vl;
	pthread_mutex_lock(&st->mu);
	if (gs_rpc_call_metadata(call, "authorization", &v, &vl) == GS_OK)
		snprintf(st->auth, sizeof(st->auth), "%s", v);
	snprintf(st->peer, sizeof(st->peer), "%s", gs_rpc_call_peer(call));
	pthread_mutex_unlock(&st->mu);
	atomic_fetch_add(&st->calls, 1);
	/* Two sends: a unary response is their concatenation. */
	size_t half = n / 2;
	CB_CHECK(gs_rpc_call_send(call, b, half) == GS_OK);
	CB_CHECK(gs_rpc_call_send(call, b + half, n - half) == GS_OK);
	CB_CHECK(gs_rpc_call_finish(call, GS_RPC_OK, NULL) == GS_OK);
	CB_CHECK(gs_rpc_call_finish(call, GS_RPC_OK, NULL) == GS_ESTATE);
}

static void unref_on_close(struct gs_rpc_call *call, void *ud, int cancelled)
{
	(void)ud;
	(void)cancelled;
	gs_rpc_call_unref(call);
}

static int auth_on_open(struct gs_rpc_call *call, void *method_ud, void **call_ud)
{
	const char *v;
	*call_ud = method_ud;
	if (gs_rpc_call_metadata(call, "authorization", &v, NULL) != GS_OK ||
	    strcmp(v, "Bearer good") != 0)
		return GS_EAUTH;
	return GS_OK;
}

static void auth_on_message(struct gs_rpc_call *call, void *ud, const uint8_t *b, size_t n)
{
	(void)ud;
	(void)b;
	(void)n;
	gs_rpc_call_finish(call, GS_RPC_OK, NULL); /* empty response */
}

/* Count: a bidi stream of SubmitStreamIn; one ack sent per item received. */
struct count_state {
	atomic_long items;
	atomic_long msgs;
	atomic_long malformed;
	atomic_long closed;
	atomic_long order_errors;
	uint64_t last_seq[N_SENDERS]; /* only touched by the call's callbacks */
	struct gs_rpc_io_stats call_stats;
	pthread_mutex_t mu;
};

static void count_on_message(struct gs_rpc_call *call, void *ud, const uint8_t *b, size_t n)
{
	struct count_state *st = ud;
	atomic_fetch_add(&st->msgs, 1);
	Gsched__V1__SubmitStreamIn *in = gsched__v1__submit_stream_in__unpack(NULL, n, b);
	if (in == NULL) {
		atomic_fetch_add(&st->malformed, 1);
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "malformed SubmitStreamIn");
		return;
	}
	for (size_t i = 0; i < in->n_submits; i++) {
		uint64_t seq = in->submits[i]->client_seq;
		unsigned sender = (unsigned)(seq >> 32);
		if (sender < N_SENDERS) {
			if ((seq & 0xffffffffu) != st->last_seq[sender] + 1)
				atomic_fetch_add(&st->order_errors, 1);
			st->last_seq[sender] = seq & 0xffffffffu;
		}
		Gsched__V1__SubmitAck ack = GSCHED__V1__SUBMIT_ACK__INIT;
		Gsched__V1__SubmitAck *acks[1] = {&ack};
		ack.client_seq = seq;
		ack.outcome_case = GSCHED__V1__SUBMIT_ACK__OUTCOME_ID;
		ack.id = seq ^ 0xabcdef;
		Gsched__V1__SubmitStreamOut out = GSCHED__V1__SUBMIT_STREAM_OUT__INIT;
		out.n_acks = 1;
		out.acks = acks;
		uint8_t buf[64];
		size_t len = gsched__v1__submit_stream_out__pack(&out, buf);
		int rc = GS_EFULL;
		for (int tries = 0; tries < 2000 && rc == GS_EFULL; tries++) {
			rc = gs_rpc_call_send(call, buf, len);
			if (rc == GS_EFULL)
				sleep_ms(1);
		}
		CB_CHECK(rc == GS_OK);
	}
	atomic_fetch_add(&st->items, (long)in->n_submits);
	gsched__v1__submit_stream_in__free_unpacked(in, NULL);
}

static void count_on_half_close(struct gs_rpc_call *call, void *ud)
{
	(void)ud;
	gs_rpc_call_finish(call, GS_RPC_OK, "bye");
}

static void count_on_close(struct gs_rpc_call *call, void *ud, int cancelled)
{
	struct count_state *st = ud;
	(void)cancelled;
	pthread_mutex_lock(&st->mu);
	gs_rpc_call_stats(call, &st->call_stats);
	pthread_mutex_unlock(&st->mu);
	atomic_fetch_add(&st->closed, 1);
	gs_rpc_call_unref(call);
}

/* Hold: a bidi stream the server keeps open; the test thread may send on it. */
struct hold_state {
	atomic_long opened;
	atomic_long closed;
	atomic_long cancelled;
	struct gs_rpc_call *call; /* referenced for the test thread */
	pthread_mutex_t mu;
};

static int hold_on_open(struct gs_rpc_call *call, void *method_ud, void **call_ud)
{
	struct hold_state *st = method_ud;
	*call_ud = st;
	gs_rpc_call_ref(call);
	pthread_mutex_lock(&st->mu);
	st->call = call;
	pthread_mutex_unlock(&st->mu);
	atomic_fetch_add(&st->opened, 1);
	return GS_OK;
}

static void hold_on_message(struct gs_rpc_call *call, void *ud, const uint8_t *b, size_t n)
{
	(void)ud;
	(void)b;
	(void)n;
	(void)call;
}

static void hold_on_close(struct gs_rpc_call *call, void *ud, int cancelled)
{
	struct hold_state *st = ud;
	if (cancelled)
		atomic_fetch_add(&st->cancelled, 1);
	atomic_fetch_add(&st->closed, 1);
	gs_rpc_call_unref(call);
}

static struct gs_rpc_call *hold_take(struct hold_state *st)
{
	pthread_mutex_lock(&st->mu);
	struct gs_rpc_call *c = st->call;
	st->call = NULL;
	pthread_mutex_unlock(&st->mu);
	return c;
}

/* Ticks: server-stream; the request is one byte n; n one-byte sends follow. */
static void ticks_on_message(struct gs_rpc_call *call, void *ud, const uint8_t *b, size_t n)
{
	(void)ud;
	if (n != 1) {
		gs_rpc_call_finish(call, GS_RPC_INVALID_ARGUMENT, "want one byte");
		return;
	}
	for (uint8_t i = 0; i < b[0]; i++)
		CB_CHECK(gs_rpc_call_send(call, &i, 1) == GS_OK);
	CB_CHECK(gs_rpc_call_finish(call, GS_RPC_OK, "done") == GS_OK);
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                   */

struct fixture {
	struct gs_rpc_server *srv;
	struct gs_rpc_health *health;
	struct gs_rpc_client *cli;
	int port;
	struct echo_state echo;
	struct count_state count;
	struct hold_state hold;
};

static int fx_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	pthread_mutex_init(&fx->echo.mu, NULL);
	pthread_mutex_init(&fx->count.mu, NULL);
	pthread_mutex_init(&fx->hold.mu, NULL);
	struct gs_rpc_server_opts so = {
	    .threads = 2, .max_message_bytes = 2u << 20, .max_queue_bytes = 256u << 10};
	assert_int_equal(gs_rpc_server_create(&so, &fx->srv), GS_OK);
	struct gs_rpc_method_ops echo = {.on_message = echo_on_message, .on_close = unref_on_close};
	struct gs_rpc_method_ops auth = {
	    .on_open = auth_on_open, .on_message = auth_on_message, .on_close = unref_on_close};
	struct gs_rpc_method_ops count = {.on_message = count_on_message,
	                                  .on_half_close = count_on_half_close,
	                                  .on_close = count_on_close};
	struct gs_rpc_method_ops hold = {
	    .on_open = hold_on_open, .on_message = hold_on_message, .on_close = hold_on_close};
	assert_int_equal(
	    gs_rpc_server_add_method(fx->srv, ECHO_PATH, GS_RPC_UNARY, &echo, &fx->echo), GS_OK);
	assert_int_equal(gs_rpc_server_add_method(fx->srv, AUTH_PATH, GS_RPC_UNARY, &auth, NULL),
	                 GS_OK);
	assert_int_equal(
	    gs_rpc_server_add_method(fx->srv, COUNT_PATH, GS_RPC_BIDI, &count, &fx->count), GS_OK);
	assert_int_equal(
	    gs_rpc_server_add_method(fx->srv, HOLD_PATH, GS_RPC_BIDI, &hold, &fx->hold), GS_OK);
	struct gs_rpc_method_ops ticks = {.on_message = ticks_on_message,
	                                  .on_close = unref_on_close};
	assert_int_equal(
	    gs_rpc_server_add_method(fx->srv, TICKS_PATH, GS_RPC_SERVER_STREAM, &ticks, NULL),
	    GS_OK);
	/* Bad registrations are refused, not fatal. */
	assert_int_equal(gs_rpc_server_add_method(fx->srv, ECHO_PATH, GS_RPC_UNARY, &echo, NULL),
	                 GS_EINVAL);
	assert_int_equal(gs_rpc_server_add_method(fx->srv, "noslash", GS_RPC_UNARY, &echo, NULL),
	                 GS_EINVAL);
	assert_int_equal(gs_rpc_health_register(fx->srv, &fx->health), GS_OK);
	assert_int_equal(gs_rpc_server_start(fx->srv, "127.0.0.1:0", &fx->port), GS_OK);
	assert_true(fx->port > 0);
	assert_int_equal(gs_rpc_server_add_method(fx->srv, "/x.Y/Z", GS_RPC_UNARY, &echo, NULL),
	                 GS_ESTATE);
	char target[64];
	snprintf(target, sizeof(target), "127.0.0.1:%d", fx->port);
	struct gs_rpc_client_opts co = {.max_message_bytes = 2u << 20,
	                                .max_queue_bytes = 256u << 10};
	assert_int_equal(gs_rpc_client_create(target, &co, &fx->cli), GS_OK);
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fixture *fx = *state;
	if (fx == NULL)
		return 0;
	long cb_errors = atomic_exchange(&g_cb_errors, 0);
	struct gs_rpc_call *held = hold_take(&fx->hold);
	if (held)
		gs_rpc_call_unref(held);
	gs_rpc_client_destroy(fx->cli);
	gs_rpc_server_destroy(fx->srv);
	pthread_mutex_destroy(&fx->echo.mu);
	pthread_mutex_destroy(&fx->count.mu);
	pthread_mutex_destroy(&fx->hold.mu);
	free(fx);
	return cb_errors == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */

static void test_status_mapping(void **state)
{
	(void)state;
	assert_int_equal(gs_rpc_code_from_status(GS_OK), GS_RPC_OK);
	assert_int_equal(gs_rpc_code_from_status(GS_EINVAL), GS_RPC_INVALID_ARGUMENT);
	assert_int_equal(gs_rpc_code_from_status(GS_ENOTFOUND), GS_RPC_NOT_FOUND);
	assert_int_equal(gs_rpc_code_from_status(GS_EFULL), GS_RPC_RESOURCE_EXHAUSTED);
	assert_int_equal(gs_rpc_code_from_status(GS_ETOOBIG), GS_RPC_RESOURCE_EXHAUSTED);
	assert_int_equal(gs_rpc_code_from_status(GS_ESTATE), GS_RPC_FAILED_PRECONDITION);
	assert_int_equal(gs_rpc_code_from_status(GS_EUNAVAIL), GS_RPC_UNAVAILABLE);
	assert_int_equal(gs_rpc_code_from_status(GS_EAUTH), GS_RPC_UNAUTHENTICATED);
	assert_int_equal(gs_rpc_code_from_status(GS_ETIMEOUT), GS_RPC_DEADLINE_EXCEEDED);
	assert_int_equal(gs_rpc_code_from_status(GS_EIO), GS_RPC_INTERNAL);
	assert_int_equal(gs_rpc_code_from_status(-999), GS_RPC_INTERNAL);
	assert_int_equal(gs_rpc_status_from_code(GS_RPC_UNAVAILABLE), GS_EUNAVAIL);
	assert_int_equal(gs_rpc_status_from_code(GS_RPC_DEADLINE_EXCEEDED), GS_ETIMEOUT);
	assert_int_equal(gs_rpc_status_from_code(GS_RPC_UNAUTHENTICATED), GS_EAUTH);
	assert_int_equal(gs_rpc_status_from_code(GS_RPC_NOT_FOUND), GS_ENOTFOUND);
	assert_int_equal(gs_rpc_status_from_code(77), GS_EIO);
	assert_string_equal(gs_rpc_code_name(GS_RPC_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
	assert_string_equal(gs_rpc_code_name(99), "UNKNOWN_CODE");
}

static void test_unary_echo(void **state)
{
	struct fixture *fx = *state;
	struct gs_rpc_md md[] = {{"authorization", "Bearer t0k3n"}, {"x-trace", "1"}};
	struct gs_rpc_reply r;
	const char msg[] = "hello, gsched";
	int64_t t0 = now_ms();
	assert_int_equal(gs_rpc_client_unary(fx->cli, ECHO_PATH, msg, sizeof(msg), md, 2, 5000, &r),
	                 GS_OK);
	assert_int_equal(r.code, GS_RPC_OK);
	assert_int_equal(r.len, sizeof(msg));
	assert_memory_equal(r.data, msg, sizeof(msg));
	gs_rpc_reply_free(&r);
	printf("# unary echo round trip (first call, connects): %lld ms\n",
	       (long long)(now_ms() - t0));
	pthread_mutex_lock(&fx->echo.mu);
	assert_string_equal(fx->echo.auth, "Bearer t0k3n");
	assert_true(strstr(fx->echo.peer, "127.0.0.1") != NULL);
	pthread_mutex_unlock(&fx->echo.mu);

	/* Empty request, empty response. */
	assert_int_equal(gs_rpc_client_unary(fx->cli, ECHO_PATH, NULL, 0, NULL, 0, 5000, &r),
	                 GS_OK);
	assert_int_equal(r.len, 0);
	gs_rpc_reply_free(&r);

	/* 1 MiB: several slices each way. */
	size_t big = 1u << 20;
	uint8_t *buf = malloc(big);
	assert_non_null(buf);
	for (size_t i = 0; i < big; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	assert_int_equal(gs_rpc_client_unary(fx->cli, ECHO_PATH, buf, big, NULL, 0, 10000, &r),
	                 GS_OK);
	assert_int_equal(r.len, big);
	assert_memory_equal(r.data, buf, big);
	gs_rpc_reply_free(&r);
	free(buf);

	/* 200 sequential calls: a latency figure. */
	int64_t t1 = now_ms();
	for (int i = 0; i < 200; i++) {
		assert_int_equal(
		    gs_rpc_client_unary(fx->cli, ECHO_PATH, msg, sizeof(msg), NULL, 0, 5000, &r),
		    GS_OK);
		gs_rpc_reply_free(&r);
	}
	printf("# 200 unary echo calls: %lld ms\n", (long long)(now_ms() - t1));
	assert_true(atomic_load(&fx->echo.calls) == 203);
}

static void test_unary_errors(void **state)
{
	struct fixture *fx = *state;
	struct gs_rpc_reply r;
	/* Unknown method: UNIMPLEMENTED, at once. */
	assert_int_equal(
	    gs_rpc_client_unary(fx->cli, "/nope.Service/Nothing", "x", 1, NULL, 0, 5000, &r),
	    GS_EPROTO);
	assert_int_equal(r.code, GS_RPC_UNIMPLEMENTED);
	gs_rpc_reply_free(&r);
	/* on_open refusing: UNAUTHENTICATED; with the token: OK. */
	assert_int_equal(gs_rpc_client_unary(fx->cli, AUTH_PATH, "x", 1, NULL, 0, 5000, &r),
	                 GS_EAUTH);
	assert_int_equal(r.code, GS_RPC_UNAUTHENTICATED);
	gs_rpc_reply_free(&r);
	struct gs_rpc_md good = {"authorization", "Bearer good"};
	assert_int_equal(gs_rpc_client_unary(fx->cli, AUTH_PATH, "x", 1, &good, 1, 5000, &r),
	                 GS_OK);
	assert_int_equal(r.len, 0);
	gs_rpc_reply_free(&r);
	/* Over the message limit: refused locally. */
	size_t huge = (2u << 20) + 1;
	uint8_t *buf = calloc(1, huge);
	assert_non_null(buf);
	assert_int_equal(gs_rpc_client_unary(fx->cli, ECHO_PATH, buf, huge, NULL, 0, 5000, &r),
	                 GS_ETOOBIG);
	gs_rpc_reply_free(&r);
	free(buf);
	/* Bad arguments. */
	assert_int_equal(gs_rpc_client_unary(fx->cli, "noslash", "x", 1, NULL, 0, 5000, &r),
	                 GS_EINVAL);
	gs_rpc_reply_free(&r);
	struct gs_rpc_md bad = {"Bad Key", "v"};
	assert_int_equal(gs_rpc_client_unary(fx->cli, ECHO_PATH, "x", 1, &bad, 1, 5000, &r),
	                 GS_EINVAL);
	gs_rpc_reply_free(&r);
}

/* Bidi: two threads send N_PER_SEND items each, one send per item. */
struct cli_count {
	atomic_long acks;
	atomic_long msgs;
	atomic_long seq_sum;
	atomic_long closes;
	atomic_long efull;
	int code;
	char details[64];
};

static void cc_on_message(struct gs_rpc_stream *s, void *ud, const uint8_t *b, size_t n)
{
	struct cli_count *cc = ud;
	(void)s;
	atomic_fetch_add(&cc->msgs, 1);
	Gsched__V1__SubmitStreamOut *out = gsched__v1__submit_stream_out__unpack(NULL, n, b);
	CB_CHECK(out != NULL);
	if (out == NULL)
		return;
	for (size_t i = 0; i < out->n_acks; i++) {
		CB_CHECK(out->acks[i]->outcome_case == GSCHED__V1__SUBMIT_ACK__OUTCOME_ID);
		CB_CHECK(out->acks[i]->id == (out->acks[i]->client_seq ^ 0xabcdef));
		atomic_fetch_add(&cc->seq_sum, (long)(out->acks[i]->client_seq & 0xffffffffu));
	}
	atomic_fetch_add(&cc->acks, (long)out->n_acks);
	gsched__v1__submit_stream_out__free_unpacked(out, NULL);
}

static void cc_on_close(struct gs_rpc_stream *s, void *ud, int code, const char *details)
{
	struct cli_count *cc = ud;
	(void)s;
	cc->code = code;
	snprintf(cc->details, sizeof(cc->details), "%s", details);
	atomic_fetch_add(&cc->closes, 1);
}

struct sender_arg {
	struct gs_rpc_stream *s;
	struct cli_count *cc;
	unsigned id;
	int failures;
};

/* One SubmitStreamIn holding one item. */
static size_t pack_item(uint8_t *buf, uint64_t seq)
{
	Gsched__V1__TaskSpec spec = GSCHED__V1__TASK_SPEC__INIT;
	Gsched__V1__HandlerCall h = GSCHED__V1__HANDLER_CALL__INIT;
	h.name = "noop";
	spec.body_case = GSCHED__V1__TASK_SPEC__BODY_HANDLER;
	spec.handler = &h;
	spec.queue = "q";
	spec.priority = (uint32_t)(seq % 256);
	Gsched__V1__SubmitItem item = GSCHED__V1__SUBMIT_ITEM__INIT;
	Gsched__V1__SubmitItem *items[1] = {&item};
	item.client_seq = seq;
	item.task = &spec;
	Gsched__V1__SubmitStreamIn in = GSCHED__V1__SUBMIT_STREAM_IN__INIT;
	in.n_submits = 1;
	in.submits = items;
	return gsched__v1__submit_stream_in__pack(&in, buf);
}

static void *sender_main(void *p)
{
	struct sender_arg *a = p;
	for (uint32_t i = 1; i <= N_PER_SEND; i++) {
		uint8_t buf[128];
		size_t len = pack_item(buf, ((uint64_t)a->id << 32) | i);
		int rc = GS_EFULL;
		for (int tries = 0; tries < 5000 && rc == GS_EFULL; tries++) {
			rc = gs_rpc_stream_send(a->s, buf, len);
			if (rc == GS_EFULL) {
				atomic_fetch_add(&a->cc->efull, 1);
				sleep_ms(1);
			}
		}
		if (rc != GS_OK) {
			a->failures++;
			break;
		}
	}
	return NULL;
}

static void test_bidi_batching(void **state)
{
	struct fixture *fx = *state;
	struct cli_count cc = {0};
	struct gs_rpc_stream_ops ops = {.on_message = cc_on_message, .on_close = cc_on_close};
	struct gs_rpc_stream *s = NULL;
	assert_int_equal(gs_rpc_stream_open(fx->cli, COUNT_PATH, GS_RPC_BIDI, NULL, 0, NULL, 0,
	                                    60000, &ops, &cc, &s),
	                 GS_OK);
	/* Warm-up: one item round trip, so the stream is established and the
	 * batching below is the adaptive kind (its low 32 bits, 0, add nothing). */
	uint8_t wbuf[128];
	size_t wlen = pack_item(wbuf, (uint64_t)N_SENDERS << 32);
	assert_int_equal(gs_rpc_stream_send(s, wbuf, wlen), GS_OK);
	assert_true(wait_atomic_ge(&cc.acks, 1, 10000));
	int64_t t0 = now_ms();
	pthread_t th[N_SENDERS];
	struct sender_arg args[N_SENDERS];
	for (unsigned i = 0; i < N_SENDERS; i++) {
		args[i] = (struct sender_arg){.s = s, .cc = &cc, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, sender_main, &args[i]), 0);
	}
	for (unsigned i = 0; i < N_SENDERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].failures, 0);
	}
	assert_int_equal(gs_rpc_stream_close_send(s), GS_OK);
	assert_int_equal(gs_rpc_stream_close_send(s), GS_ESTATE);
	assert_int_equal(gs_rpc_stream_send(s, "x", 1), GS_ESTATE);
	int code = -1;
	assert_int_equal(gs_rpc_stream_wait(s, WAIT_MS, &code), GS_OK);
	int64_t elapsed = now_ms() - t0;
	assert_int_equal(code, GS_RPC_OK);
	assert_string_equal(cc.details, "bye");
	struct gs_rpc_io_stats cst;
	gs_rpc_stream_stats(s, &cst);
	gs_rpc_stream_destroy(s);

	assert_true(wait_atomic_ge(&fx->count.closed, 1, 5000));
	long items = atomic_load(&fx->count.items), srv_msgs = atomic_load(&fx->count.msgs);
	pthread_mutex_lock(&fx->count.mu);
	struct gs_rpc_io_stats sst = fx->count.call_stats;
	pthread_mutex_unlock(&fx->count.mu);
	printf("# bidi: %d items in %lld ms; client: %llu sends -> %llu gRPC messages "
	       "(%llu bytes), EFULL retries %ld; server received %ld messages\n",
	       N_TOTAL, (long long)elapsed, (unsigned long long)cst.sends,
	       (unsigned long long)cst.msgs_sent, (unsigned long long)cst.bytes_sent,
	       atomic_load(&cc.efull), srv_msgs);
	printf("# bidi acks: server %llu sends -> %llu gRPC messages; client received %ld "
	       "messages, %ld acks\n",
	       (unsigned long long)sst.sends, (unsigned long long)sst.msgs_sent,
	       atomic_load(&cc.msgs), atomic_load(&cc.acks));
	/* Everything arrived, in order per sender ... */
	assert_int_equal(items, N_TOTAL + 1);
	assert_int_equal(atomic_load(&fx->count.order_errors), 0);
	assert_int_equal(atomic_load(&fx->count.malformed), 0);
	assert_int_equal(cst.sends, N_TOTAL + 1);
	assert_int_equal(atomic_load(&cc.acks), N_TOTAL + 1);
	long want_sum = (long)N_SENDERS * N_PER_SEND * (N_PER_SEND + 1) / 2;
	assert_int_equal(atomic_load(&cc.seq_sum), want_sum);
	assert_int_equal(sst.sends, N_TOTAL + 1);
	assert_int_equal((long)sst.msgs_received, srv_msgs);
	/* ... in fewer gRPC messages than sends: the concatenation batching. */
	assert_true(cst.msgs_sent < cst.sends);
	assert_int_equal((long)cst.msgs_sent, srv_msgs);
	assert_true(sst.msgs_sent < sst.sends);
	assert_int_equal((long)sst.msgs_sent, atomic_load(&cc.msgs));
}

struct ticks_cli {
	uint8_t bytes[512];
	size_t n;
	int code;
	char details[32];
};

static void ticks_cli_on_message(struct gs_rpc_stream *s, void *ud, const uint8_t *b, size_t n)
{
	struct ticks_cli *tc = ud;
	(void)s;
	for (size_t i = 0; i < n && tc->n < sizeof(tc->bytes); i++)
		tc->bytes[tc->n++] = b[i];
}

static void ticks_cli_on_close(struct gs_rpc_stream *s, void *ud, int code, const char *d)
{
	struct ticks_cli *tc = ud;
	(void)s;
	tc->code = code;
	snprintf(tc->details, sizeof(tc->details), "%s", d);
}

static void test_server_stream(void **state)
{
	struct fixture *fx = *state;
	struct ticks_cli tc = {0};
	struct gs_rpc_stream_ops ops = {.on_message = ticks_cli_on_message,
	                                .on_close = ticks_cli_on_close};
	struct gs_rpc_stream *s = NULL;
	uint8_t n = 200;
	assert_int_equal(gs_rpc_stream_open(fx->cli, TICKS_PATH, GS_RPC_SERVER_STREAM, &n, 1, NULL,
	                                    0, 10000, &ops, &tc, &s),
	                 GS_OK);
	assert_int_equal(gs_rpc_stream_send(s, "x", 1), GS_ESTATE); /* not bidi */
	int code = -1;
	assert_int_equal(gs_rpc_stream_wait(s, WAIT_MS, &code), GS_OK);
	assert_int_equal(code, GS_RPC_OK);
	assert_string_equal(tc.details, "done");
	assert_int_equal(tc.n, 200);
	for (size_t i = 0; i < tc.n; i++)
		assert_int_equal(tc.bytes[i], i);
	struct gs_rpc_io_stats st;
	gs_rpc_stream_stats(s, &st);
	printf("# server stream: 200 sends arrived in %llu messages\n",
	       (unsigned long long)st.msgs_received);
	assert_true(st.msgs_received >= 1 && st.msgs_received <= 200);
	gs_rpc_stream_destroy(s);
}

static void test_malformed_bytes(void **state)
{
	struct fixture *fx = *state;
	/* Garbage on a stream: the handler sees the bytes, rejects them. */
	struct cli_count cc = {0};
	struct gs_rpc_stream_ops ops = {.on_message = cc_on_message, .on_close = cc_on_close};
	struct gs_rpc_stream *s = NULL;
	assert_int_equal(gs_rpc_stream_open(fx->cli, COUNT_PATH, GS_RPC_BIDI, NULL, 0, NULL, 0,
	                                    10000, &ops, &cc, &s),
	                 GS_OK);
	const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0a};
	assert_int_equal(gs_rpc_stream_send(s, junk, sizeof(junk)), GS_OK);
	int code = -1;
	assert_int_equal(gs_rpc_stream_wait(s, WAIT_MS, &code), GS_OK);
	assert_int_equal(code, GS_RPC_INVALID_ARGUMENT);
	assert_string_equal(cc.details, "malformed SubmitStreamIn");
	assert_int_equal(gs_rpc_stream_send(s, junk, sizeof(junk)), GS_EUNAVAIL);
	gs_rpc_stream_destroy(s);
	assert_true(atomic_load(&fx->count.malformed) >= 1);

	/* Garbage to the health check: INVALID_ARGUMENT. */
	struct gs_rpc_reply r;
	assert_int_equal(gs_rpc_client_unary(fx->cli, GS_RPC_HEALTH_CHECK_PATH, junk, sizeof(junk),
	                                     NULL, 0, 5000, &r),
	                 GS_EINVAL);
	assert_int_equal(r.code, GS_RPC_INVALID_ARGUMENT);
	gs_rpc_reply_free(&r);
	/* The server still serves. */
	assert_int_equal(gs_rpc_client_unary(fx->cli, ECHO_PATH, "ok", 2, NULL, 0, 5000, &r),
	                 GS_OK);
	gs_rpc_reply_free(&r);
}

static int health_check(struct gs_rpc_client *cli, const char *service, int *status)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = (char *)service;
	uint8_t buf[256];
	size_t n = grpc__health__v1__health_check_request__pack(&req, buf);
	struct gs_rpc_reply r;
	int rc = gs_rpc_client_unary(cli, GS_RPC_HEALTH_CHECK_PATH, buf, n, NULL, 0, 5000, &r);
	*status = -1;
	if (rc == GS_OK) {
		Grpc__Health__V1__HealthCheckResponse *resp =
		    grpc__health__v1__health_check_response__unpack(NULL, r.len, r.data);
		assert_non_null(resp);
		*status = resp->status;
		grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
	}
	gs_rpc_reply_free(&r);
	return rc;
}

static void test_health(void **state)
{
	struct fixture *fx = *state;
	int st;
	assert_int_equal(health_check(fx->cli, "", &st), GS_OK);
	assert_int_equal(st, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	assert_int_equal(health_check(fx->cli, "gsched.v1.TaskService", &st), GS_ENOTFOUND);
	assert_int_equal(gs_rpc_health_set(fx->health, "gsched.v1.TaskService", true), GS_OK);
	assert_int_equal(health_check(fx->cli, "gsched.v1.TaskService", &st), GS_OK);
	assert_int_equal(st, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	assert_int_equal(gs_rpc_health_set(fx->health, "", false), GS_OK);
	assert_int_equal(health_check(fx->cli, "", &st), GS_OK);
	assert_int_equal(st, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	assert_int_equal(gs_rpc_health_set(NULL, "", true), GS_EINVAL);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {0};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t al = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd); /* nothing listens there now */
	return ntohs(a.sin_port);
}

static void test_connect_refused(void **state)
{
	(void)state;
	char target[64];
	snprintf(target, sizeof(target), "127.0.0.1:%d", free_port());
	struct gs_rpc_client *cli = NULL;
	assert_int_equal(gs_rpc_client_create(target, NULL, &cli), GS_OK);
	struct gs_rpc_reply r;
	int64_t t0 = now_ms();
	assert_int_equal(gs_rpc_client_unary(cli, ECHO_PATH, "x", 1, NULL, 0, 20000, &r),
	                 GS_EUNAVAIL);
	int64_t dt = now_ms() - t0;
	printf("# unary to a closed port: %s after %lld ms\n", gs_rpc_code_name(r.code),
	       (long long)dt);
	assert_int_equal(r.code, GS_RPC_UNAVAILABLE);
	assert_true(dt < 3000);
	gs_rpc_reply_free(&r);

	/* A stream reports it through on_close. */
	struct cli_count cc = {0};
	struct gs_rpc_stream_ops ops = {.on_message = cc_on_message, .on_close = cc_on_close};
	struct gs_rpc_stream *s = NULL;
	t0 = now_ms();
	assert_int_equal(
	    gs_rpc_stream_open(cli, COUNT_PATH, GS_RPC_BIDI, NULL, 0, NULL, 0, 0, &ops, &cc, &s),
	    GS_OK);
	int code = -1;
	assert_int_equal(gs_rpc_stream_wait(s, 3000, &code), GS_OK);
	dt = now_ms() - t0;
	printf("# stream to a closed port: %s after %lld ms\n", gs_rpc_code_name(code),
	       (long long)dt);
	assert_int_equal(code, GS_RPC_UNAVAILABLE);
	assert_true(dt < 3000);
	assert_int_equal(gs_rpc_stream_send(s, "x", 1), GS_EUNAVAIL);
	gs_rpc_stream_destroy(s);
	gs_rpc_client_destroy(cli);
}

/* Server shutdown with a stream open: the client sees UNAVAILABLE. */
static void test_shutdown_open_stream(void **state)
{
	struct fixture *fx = *state;
	struct cli_count cc = {0};
	struct gs_rpc_stream_ops ops = {.on_message = cc_on_message, .on_close = cc_on_close};
	struct gs_rpc_stream *s = NULL;
	assert_int_equal(
	    gs_rpc_stream_open(fx->cli, HOLD_PATH, GS_RPC_BIDI, NULL, 0, NULL, 0, 0, &ops, &cc, &s),
	    GS_OK);
	assert_int_equal(gs_rpc_stream_send(s, "hi", 2), GS_OK);
	assert_true(wait_atomic_ge(&fx->hold.opened, 1, 5000));
	struct gs_rpc_call *call = hold_take(&fx->hold);
	assert_non_null(call);
	assert_int_equal(gs_rpc_call_kind(call), GS_RPC_BIDI);
	assert_string_equal(gs_rpc_call_method(call), HOLD_PATH);
	assert_true(gs_rpc_call_deadline_left_ms(call) > 1000000);

	int64_t t0 = now_ms();
	gs_rpc_server_stop(fx->srv, 2000);
	int64_t dt = now_ms() - t0;
	int code = -1;
	assert_int_equal(gs_rpc_stream_wait(s, 5000, &code), GS_OK);
	printf("# server stop with an open stream: %lld ms, client status %s (%s)\n", (long long)dt,
	       gs_rpc_code_name(code), cc.details);
	assert_int_equal(code, GS_RPC_UNAVAILABLE);
	assert_int_equal(atomic_load(&fx->hold.closed), 1);
	assert_true(gs_rpc_server_is_stopping(fx->srv));
	/* The call object outlives the server side: sends are refused, not fatal. */
	assert_int_equal(gs_rpc_call_send(call, "x", 1), GS_EUNAVAIL);
	assert_int_equal(gs_rpc_call_finish(call, GS_RPC_OK, NULL), GS_ESTATE);
	gs_rpc_call_unref(call);
	gs_rpc_stream_destroy(s);

	/* A new call now fails fast. */
	struct gs_rpc_reply r;
	assert_int_equal(gs_rpc_client_unary(fx->cli, ECHO_PATH, "x", 1, NULL, 0, 3000, &r),
	                 GS_EUNAVAIL);
	gs_rpc_reply_free(&r);
}

/* A peer that does not read: the server's sends hit the queue bound (EFULL),
 * and stop() still ends the call (grace, then cancel). */
struct slow_cli {
	atomic_long got;
	atomic_int release;
	atomic_long closes;
	int code;
	char details[64];
};

static void slow_on_message(struct gs_rpc_stream *s, void *ud, const uint8_t *b, size_t n)
{
	struct slow_cli *sc = ud;
	(void)s;
	(void)b;
	(void)n;
	atomic_fetch_add(&sc->got, 1);
	for (int i = 0; i < 10000 && !atomic_load(&sc->release); i++)
		sleep_ms(1);
}

static void slow_on_close(struct gs_rpc_stream *s, void *ud, int code, const char *details)
{
	struct slow_cli *sc = ud;
	(void)s;
	sc->code = code;
	snprintf(sc->details, sizeof(sc->details), "%s", details);
	atomic_fetch_add(&sc->closes, 1);
}

static void test_slow_consumer(void **state)
{
	struct fixture *fx = *state;
	struct slow_cli sc = {0};
	struct gs_rpc_stream_ops ops = {.on_message = slow_on_message, .on_close = slow_on_close};
	struct gs_rpc_stream *s = NULL;
	assert_int_equal(
	    gs_rpc_stream_open(fx->cli, HOLD_PATH, GS_RPC_BIDI, NULL, 0, NULL, 0, 0, &ops, &sc, &s),
	    GS_OK);
	assert_int_equal(gs_rpc_stream_send(s, "hi", 2), GS_OK);
	assert_true(wait_atomic_ge(&fx->hold.opened, 1, 5000));
	struct gs_rpc_call *call = hold_take(&fx->hold);
	assert_non_null(call);
	static uint8_t chunk[16384];
	int rc = GS_OK, sent = 0, first_full = -1;
	for (int i = 0; i < 4096 && rc == GS_OK; i++) {
		rc = gs_rpc_call_send(call, chunk, sizeof(chunk));
		if (rc == GS_OK)
			sent++;
	}
	first_full = sent;
	assert_int_equal(rc, GS_EFULL);
	/* Keep offering until the queue stays full for 300 ms: gRPC's own buffers
	 * and the flow-control windows are then exhausted too (bounded: 10 s). */
	int64_t end = now_ms() + 10000, full_since = now_ms();
	while (now_ms() < end && now_ms() - full_since < 300) {
		rc = gs_rpc_call_send(call, chunk, sizeof(chunk));
		if (rc == GS_OK) {
			sent++;
			full_since = now_ms();
		} else {
			assert_int_equal(rc, GS_EFULL);
			sleep_ms(1);
		}
	}
	printf("# slow consumer: EFULL after %d x 16 KiB; stuck after %d x 16 KiB "
	       "(%zu bytes queued)\n",
	       first_full, sent, gs_rpc_call_queued_bytes(call));
	assert_int_equal(rc, GS_EFULL);
	assert_true(gs_rpc_call_queued_bytes(call) <= (256u << 10));
	assert_int_equal(gs_rpc_call_send(call, chunk, (2u << 20) + 1), GS_ETOOBIG);
	gs_rpc_call_unref(call);

	/* stop() while the peer still does not read: the grace ends, calls are
	 * cancelled, on_close has run when stop returns. */
	int64_t t0 = now_ms();
	gs_rpc_server_stop(fx->srv, 300);
	int64_t dt = now_ms() - t0;
	assert_int_equal(atomic_load(&fx->hold.closed), 1);
	atomic_store(&sc.release, 1);
	int code = -1;
	assert_int_equal(gs_rpc_stream_wait(s, 10000, &code), GS_OK);
	printf("# stop with a stuck peer: %lld ms; client status %s (%s), %ld messages read\n",
	       (long long)dt, gs_rpc_code_name(code), sc.details, atomic_load(&sc.got));
	assert_true(code != GS_RPC_OK);
	assert_true(dt >= 250 && dt < 5000); /* the grace period, then cancellation */
	assert_int_equal(atomic_load(&fx->hold.cancelled), 1);
	gs_rpc_stream_destroy(s);
}

/* Destroying a stream from its own on_close callback. */
static void selfdestroy_on_close(struct gs_rpc_stream *s, void *ud, int code, const char *d)
{
	atomic_long *closes = ud;
	(void)code;
	(void)d;
	gs_rpc_stream_destroy(s);
	atomic_fetch_add(closes, 1);
}

static void noop_on_message(struct gs_rpc_stream *s, void *ud, const uint8_t *b, size_t n)
{
	(void)s;
	(void)ud;
	(void)b;
	(void)n;
}

static void test_stream_destroy_in_callback(void **state)
{
	struct fixture *fx = *state;
	atomic_long closes = 0;
	struct gs_rpc_stream_ops ops = {.on_message = noop_on_message,
	                                .on_close = selfdestroy_on_close};
	struct gs_rpc_stream *s = NULL;
	Gsched__V1__SubmitStreamIn in = GSCHED__V1__SUBMIT_STREAM_IN__INIT;
	uint8_t buf[8];
	size_t n = gsched__v1__submit_stream_in__pack(&in, buf);
	assert_int_equal(gs_rpc_stream_open(fx->cli, COUNT_PATH, GS_RPC_BIDI, NULL, 0, NULL, 0,
	                                    10000, &ops, &closes, &s),
	                 GS_OK);
	assert_int_equal(gs_rpc_stream_send(s, buf, n), GS_OK);
	assert_int_equal(gs_rpc_stream_close_send(s), GS_OK);
	assert_true(wait_atomic_ge(&closes, 1, 10000));
	/* The stream's thread frees it; give it a moment so leak checks see it. */
	sleep_ms(50);
}

/* The batching rule of the proto: concatenated encodings parse as one. */
static void test_proto_concatenation(void **state)
{
	(void)state;
	uint8_t buf[1024];
	size_t off = 0;
	for (int i = 0; i < 3; i++) {
		Gsched__V1__TaskRef ref = GSCHED__V1__TASK_REF__INIT;
		Gsched__V1__TaskRef *refs[1] = {&ref};
		ref.id = 100 + (uint64_t)i;
		ref.attempt = 1;
		Gsched__V1__WorkerDown d = GSCHED__V1__WORKER_DOWN__INIT;
		d.n_cancels = 1;
		d.cancels = refs;
		off += gsched__v1__worker_down__pack(&d, buf + off);
	}
	Gsched__V1__WorkerDown *all = gsched__v1__worker_down__unpack(NULL, off, buf);
	assert_non_null(all);
	assert_int_equal(all->n_cancels, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(all->cancels[i]->id, 100 + i);
	gsched__v1__worker_down__free_unpacked(all, NULL);
}

static void test_server_lifecycle_errors(void **state)
{
	(void)state;
	struct gs_rpc_server *srv = NULL;
	struct gs_rpc_server_opts bad = {.threads = 1000};
	assert_int_equal(gs_rpc_server_create(&bad, &srv), GS_EINVAL);
	assert_int_equal(gs_rpc_server_create(NULL, NULL), GS_EINVAL);
	/* Created, never started, destroyed. */
	assert_int_equal(gs_rpc_server_create(NULL, &srv), GS_OK);
	assert_int_equal(gs_rpc_health_register(srv, NULL), GS_OK);
	gs_rpc_server_destroy(srv);
	/* An address that cannot be bound. */
	assert_int_equal(gs_rpc_server_create(NULL, &srv), GS_OK);
	assert_int_equal(gs_rpc_server_start(srv, "256.1.1.1:1", NULL), GS_EIO);
	gs_rpc_server_destroy(srv);
	struct gs_rpc_client *cli = NULL;
	assert_int_equal(gs_rpc_client_create("", NULL, &cli), GS_EINVAL);
	assert_int_equal(gs_rpc_stream_send(NULL, "x", 1), GS_EINVAL);
	assert_int_equal(gs_rpc_call_send(NULL, "x", 1), GS_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_status_mapping),
	    cmocka_unit_test(test_proto_concatenation),
	    cmocka_unit_test(test_server_lifecycle_errors),
	    cmocka_unit_test(test_connect_refused),
	    cmocka_unit_test_setup_teardown(test_unary_echo, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unary_errors, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_health, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_server_stream, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_bidi_batching, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_bytes, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_stream_destroy_in_callback, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_shutdown_open_stream, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_slow_consumer, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
