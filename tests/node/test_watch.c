/*
 * test_watch.c - TaskService.Watch against a real server and worker on
 * 127.0.0.1: a whole queue (every state change of its tasks, nothing of
 * another queue's) and a list of IDs (the current state, each change, the
 * final state with the output, then the stream's end).
 *
 * The first two use a raw server stream (rpc_client.h) decoded with
 * protobuf-c, so they check the wire; the third the client library's
 * gs_client_watch_open.  Events are collected by the
 * stream's thread under a mutex; every wait is bounded.
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

#include <cmocka.h>

#include "e2e_util.h"
#include "gs_error.h"
#include "gsched.pb-c.h"
#include "gsched_client.h"
#include "rpc_client.h"

#define WATCH_PATH "/gsched.v1.TaskService/Watch"
#define WAIT_MS    10000 /* bound of each single wait */
#define MAX_EV     1024

struct ev {
	uint64_t id;
	int state; /* Gsched__V1__TaskState */
	char output[64];
};

struct watch {
	pthread_mutex_t mu;
	int messages; /* received so far (the first of a queue watch is empty) */
	struct ev ev[MAX_EV];
	int n;
	bool closed;
	int code;
	bool bad; /* a message did not decode */
};

struct env {
	char addr[64];
	struct gs_client *c;
	struct gs_rpc_client *raw;
	struct gs_rpc_stream *st;
	struct watch w;
};

static void on_message(struct gs_rpc_stream *s, void *ud, const uint8_t *bytes, size_t len)
{
	(void)s;
	struct watch *w = ud;
	Gsched__V1__TaskEvents *m = gsched__v1__task_events__unpack(NULL, len, bytes);
	pthread_mutex_lock(&w->mu);
	w->messages++;
	if (!m) {
		w->bad = true;
	} else {
		for (size_t i = 0; i < m->n_events && w->n < MAX_EV; i++) {
			struct ev *e = &w->ev[w->n++];
			memset(e, 0, sizeof(*e));
			e->id = m->events[i]->id;
			e->state = m->events[i]->state;
			const Gsched__V1__TaskResult *r = m->events[i]->result;
			if (r && r->output.len < sizeof(e->output))
				memcpy(e->output, r->output.data, r->output.len);
		}
		gsched__v1__task_events__free_unpacked(m, NULL);
	}
	pthread_mutex_unlock(&w->mu);
}

static void on_close(struct gs_rpc_stream *s, void *ud, int code, const char *details)
{
	(void)s;
	(void)details;
	struct watch *w = ud;
	pthread_mutex_lock(&w->mu);
	w->closed = true;
	w->code = code;
	pthread_mutex_unlock(&w->mu);
}

static int teardown_env(void **state)
{
	struct env *e = *state;
	if (e) {
		if (e->st)
			gs_rpc_stream_destroy(e->st);
		if (e->raw)
			gs_rpc_client_destroy(e->raw);
		gs_client_close(e->c);
		pthread_mutex_destroy(&e->w.mu);
		free(e);
	}
	*state = NULL;
	gs_e2e_kill_all();
	return 0;
}

/* A server and one worker; e->c connected, the worker registered. */
static struct env *start(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	*state = e;
	pthread_mutex_init(&e->w.mu, NULL);
	snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", gs_e2e_free_port());
	const char *args[] = {"server",         "--listen", e->addr,
	                      "--heartbeat-ms", "100",      "--worker-timeout-ms",
	                      "1000",           NULL};
	assert_true(gs_e2e_spawn("server", args) > 0);
	e->c = gs_e2e_connect(e->addr, WAIT_MS);
	assert_non_null(e->c);
	const char *wargs[] = {"worker", "--server",   e->addr,   "--slots", "4",  "--name",
	                       "w1",     "--queue",    "default", "--queue", "wq", "--queue",
	                       "other",  "--grace-ms", "300",     NULL};
	assert_true(gs_e2e_spawn("worker", wargs) > 0);
	gs_e2e_wait_workers(e->c, 1, WAIT_MS);
	return e;
}

static void open_watch(struct env *e, const char *queue, const uint64_t *ids, size_t n)
{
	Gsched__V1__WatchRequest req = GSCHED__V1__WATCH_REQUEST__INIT;
	req.queue = (char *)(queue ? queue : "");
	req.ids = (uint64_t *)ids;
	req.n_ids = n;
	req.include_output = true;
	uint8_t buf[1024];
	size_t len = gsched__v1__watch_request__pack(&req, buf);
	assert_true(len < sizeof(buf));
	if (!e->raw)
		assert_int_equal(gs_rpc_client_create(e->addr, NULL, &e->raw), GS_OK);
	static const struct gs_rpc_stream_ops ops = {on_message, on_close};
	assert_int_equal(gs_rpc_stream_open(e->raw, WATCH_PATH, GS_RPC_SERVER_STREAM, buf, len,
	                                    NULL, 0, 30000, &ops, &e->w, &e->st),
	                 GS_OK);
}

/* Waits until pred(w, arg) holds (under w->mu); false after WAIT_MS. */
static bool wait_for(struct watch *w, bool (*pred)(struct watch *, const void *), const void *arg)
{
	uint64_t end = gs_e2e_mono_ms() + WAIT_MS;
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&w->mu);
		bool ok = pred(w, arg);
		pthread_mutex_unlock(&w->mu);
		if (ok)
			return true;
		if (gs_e2e_mono_ms() > end)
			break;
		gs_e2e_sleep_ms(5);
	}
	return false;
}

static bool has_message(struct watch *w, const void *arg)
{
	(void)arg;
	return w->messages > 0 || w->closed;
}

static bool is_final(int st)
{
	return st == GSCHED__V1__TASK_STATE__TASK_STATE_DONE ||
	       st == GSCHED__V1__TASK_STATE__TASK_STATE_FAILED ||
	       st == GSCHED__V1__TASK_STATE__TASK_STATE_CANCELLED;
}

/* The order a task's states may be seen in (DELAYED before QUEUED). */
static int rank(int st)
{
	switch (st) {
	case GSCHED__V1__TASK_STATE__TASK_STATE_DELAYED:
		return 0;
	case GSCHED__V1__TASK_STATE__TASK_STATE_QUEUED:
		return 1;
	case GSCHED__V1__TASK_STATE__TASK_STATE_ASSIGNED:
		return 2;
	case GSCHED__V1__TASK_STATE__TASK_STATE_RUNNING:
		return 3;
	default:
		return 4;
	}
}

struct want {
	const uint64_t *ids;
	size_t n;
};

static bool finals_in(struct watch *w, const void *arg)
{
	const struct want *q = arg;
	for (size_t i = 0; i < q->n; i++) {
		bool seen = false;
		for (int k = 0; k < w->n && !seen; k++)
			seen = w->ev[k].id == q->ids[i] && is_final(w->ev[k].state);
		if (!seen)
			return false;
	}
	return true;
}

/* Per task: states in order, exactly one final event, DONE with `want`
 * as output; returns how many events it had. */
static int check_task(struct watch *w, uint64_t id, const char *want)
{
	int n = 0, finals = 0, last = -1;
	for (int k = 0; k < w->n; k++) {
		struct ev *e = &w->ev[k];
		if (e->id != id)
			continue;
		n++;
		if (rank(e->state) < last)
			fail_msg("task %016" PRIx64 ": state %d after a later one", id, e->state);
		last = rank(e->state);
		if (is_final(e->state)) {
			finals++;
			assert_int_equal(e->state, GSCHED__V1__TASK_STATE__TASK_STATE_DONE);
			assert_string_equal(e->output, want);
		}
	}
	if (finals != 1)
		fail_msg("task %016" PRIx64 ": %d final events", id, finals);
	return n;
}

static uint64_t submit_echo(struct env *e, const char *queue, const char *payload,
                            uint32_t delay_ms)
{
	struct gs_client_spec sp = {.queue = queue,
	                            .handler = "echo",
	                            .payload = payload,
	                            .payload_len = strlen(payload),
	                            .delay_ms = delay_ms};
	uint64_t id = 0;
	if (gs_client_submit(e->c, &sp, 1, &id) != GS_OK)
		fail_msg("submit: %s", gs_client_error(e->c));
	return id;
}

/* A whole queue: its tasks' changes up to their results; not another's. */
static void test_watch_queue(void **state)
{
	struct env *e = start(state);
	open_watch(e, "wq", NULL, 0);
	assert_true(wait_for(&e->w, has_message, NULL)); /* the watch is in place */
	assert_false(e->w.closed);

	uint64_t ids[3], other[2];
	char pay[3][16];
	for (int i = 0; i < 3; i++) {
		snprintf(pay[i], sizeof(pay[i]), "wq-%d", i);
		ids[i] = submit_echo(e, "wq", pay[i], 0);
	}
	other[0] = submit_echo(e, NULL, "default-0", 0);
	other[1] = submit_echo(e, "other", "other-0", 0);
	struct gs_client_result r[3];
	assert_int_equal(gs_client_wait(e->c, ids, 3, WAIT_MS, r), GS_OK);
	gs_client_results_free(r, 3);
	struct want q = {ids, 3};
	assert_true(wait_for(&e->w, finals_in, &q));

	pthread_mutex_lock(&e->w.mu);
	assert_false(e->w.bad);
	int total = 0;
	for (int i = 0; i < 3; i++) {
		int n = check_task(&e->w, ids[i], pay[i]);
		assert_true(n >= 2); /* a change before the result: QUEUED or ASSIGNED */
		total += n;
	}
	for (int k = 0; k < e->w.n; k++)
		assert_true(e->w.ev[k].id != other[0] && e->w.ev[k].id != other[1]);
	assert_int_equal(total, e->w.n); /* nothing else */
	bool closed = e->w.closed;
	pthread_mutex_unlock(&e->w.mu);
	assert_false(closed); /* a queue watch lasts until the client ends it */
	fprintf(stderr, "watch queue: %d events for 3 tasks\n", total);
}

/* A list of IDs: the current state first, each change, then the end. */
static void test_watch_ids(void **state)
{
	struct env *e = start(state);
	uint64_t ids[2];
	ids[0] = submit_echo(e, NULL, "late", 500); /* DELAYED for 500 ms */
	ids[1] = submit_echo(e, NULL, "later", 700);
	open_watch(e, NULL, ids, 2);
	struct want q = {ids, 2};
	assert_true(wait_for(&e->w, finals_in, &q));
	uint64_t end = gs_e2e_mono_ms() + WAIT_MS;
	for (int i = 0; i < 2000; i++) {
		pthread_mutex_lock(&e->w.mu);
		bool closed = e->w.closed;
		pthread_mutex_unlock(&e->w.mu);
		if (closed || gs_e2e_mono_ms() > end)
			break;
		gs_e2e_sleep_ms(5);
	}
	pthread_mutex_lock(&e->w.mu);
	assert_false(e->w.bad);
	assert_true(e->w.closed);
	assert_int_equal(e->w.code, GS_RPC_OK);
	/* The first message: each task's state when the watch began. */
	assert_true(e->w.n >= 4);
	assert_int_equal(e->w.ev[0].state, GSCHED__V1__TASK_STATE__TASK_STATE_DELAYED);
	assert_int_equal(e->w.ev[1].state, GSCHED__V1__TASK_STATE__TASK_STATE_DELAYED);
	check_task(&e->w, ids[0], "late");
	check_task(&e->w, ids[1], "later");
	/* And at least one change between DELAYED and DONE: ASSIGNED. */
	bool assigned = false;
	for (int k = 0; k < e->w.n; k++)
		assigned |= e->w.ev[k].state == GSCHED__V1__TASK_STATE__TASK_STATE_ASSIGNED;
	int n = e->w.n;
	pthread_mutex_unlock(&e->w.mu);
	assert_true(assigned);
	fprintf(stderr, "watch ids: %d events for 2 tasks\n", n);
}

/* The client library's gs_client_watch_open: the same queue watch. */
struct lib_watch {
	pthread_mutex_t mu;
	bool ready;
	int events, finals;
	char last_output[32];
};

static void lib_ready(void *ud)
{
	struct lib_watch *l = ud;
	pthread_mutex_lock(&l->mu);
	l->ready = true;
	pthread_mutex_unlock(&l->mu);
}

static void lib_event(void *ud, const struct gs_client_result *r, uint64_t at_us)
{
	struct lib_watch *l = ud;
	pthread_mutex_lock(&l->mu);
	l->events++;
	assert_true(at_us > 0);
	if (r->state == GS_CLIENT_DONE) {
		l->finals++;
		size_t k = r->output_len < sizeof(l->last_output) - 1 ? r->output_len
		                                                      : sizeof(l->last_output) - 1;
		memcpy(l->last_output, r->output, k);
		l->last_output[k] = 0;
	}
	pthread_mutex_unlock(&l->mu);
}

static void test_watch_client_lib(void **state)
{
	struct env *e = start(state);
	static struct lib_watch l;
	memset(&l, 0, sizeof(l));
	pthread_mutex_init(&l.mu, NULL);
	struct gs_client_stream *w = NULL;
	assert_int_equal(
	    gs_client_watch_open(e->c, "wq", NULL, 0, true, lib_event, lib_ready, &l, &w), GS_OK);
	bool ready = false;
	for (int i = 0; i < 2000 && !ready; i++) {
		pthread_mutex_lock(&l.mu);
		ready = l.ready;
		pthread_mutex_unlock(&l.mu);
		if (!ready)
			gs_e2e_sleep_ms(5);
	}
	assert_true(ready);
	uint64_t id = submit_echo(e, "wq", "lib", 0);
	struct gs_client_result r;
	assert_int_equal(gs_client_wait(e->c, &id, 1, WAIT_MS, &r), GS_OK);
	gs_client_result_free(&r);
	bool done = false;
	for (int i = 0; i < 2000 && !done; i++) {
		pthread_mutex_lock(&l.mu);
		done = l.finals == 1;
		pthread_mutex_unlock(&l.mu);
		if (!done)
			gs_e2e_sleep_ms(5);
	}
	assert_true(done);
	/* Still open (a queue watch), until destroyed. */
	assert_int_equal(gs_client_stream_wait(w, 50), GS_ETIMEOUT);
	gs_client_stream_destroy(w);
	pthread_mutex_lock(&l.mu);
	assert_true(l.events >= 2);
	assert_string_equal(l.last_output, "lib");
	pthread_mutex_unlock(&l.mu);
	pthread_mutex_destroy(&l.mu);
}

int main(int argc, char **argv)
{
	if (gs_e2e_init("test_watch", "wat", 0755, argc, argv) != 0)
		return 1;
	fprintf(stderr, "test_watch: %s; process logs in %s\n", gs_e2e_bin(), gs_e2e_dir());
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_watch_queue, teardown_env),
	    cmocka_unit_test_teardown(test_watch_ids, teardown_env),
	    cmocka_unit_test_teardown(test_watch_client_lib, teardown_env),
	};
	return gs_e2e_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
