/*
 * test_worker_agent.c - the worker agent against an in-test fake server.
 *
 * The fake server is a real gRPC server (gs_rpc_server on 127.0.0.1, port 0)
 * serving "/gsched.v1.WorkerService/Connect": it checks the Register
 * message, answers Registered, records Started / results / heartbeats,
 * acknowledges results, and lets the test send assignments, cancels and
 * drains.  The agent runs gs_worker_agent_run on its own thread.  Every wait
 * is bounded; the teardown stops the agent and the servers even after a
 * failed assertion.
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

#include "gs_error.h"
#include "gsched.pb-c.h"
#include "rpc_server.h"
#include "worker_agent.h"

#define METHOD    "/gsched.v1.WorkerService/Connect"
#define WORKER_ID 0xabcdef0123456789ull
#define HB_MS     100
#define MAX_REC   512

/* ---- time ------------------------------------------------------------------- */

static int64_t mono_ms(void)
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

/* ---- the fake server --------------------------------------------------------- */

struct rec_result {
	uint64_t id;
	uint32_t attempt;
	int state;
	int exit_code;
	char *output; /* NUL-terminated copy */
	size_t output_len;
	bool truncated;
	char *error;
	uint64_t started_us, finished_us;
};

struct rec_hb {
	int64_t at_ms;
	unsigned free_slots;
	size_t n_running;
	uint64_t running[8];
};

struct fake {
	pthread_mutex_t mu;
	struct gs_rpc_server *srv;
	int port;
	struct gs_rpc_call *call; /* the current session (the fake's reference) */
	/* what arrived */
	int sessions, registrations, half_closes, closes, protocol_errors;
	char reg_name[128];
	unsigned reg_slots;
	char reg_queues[128]; /* joined with ',' */
	char reg_handlers[256];
	bool reg_runs_argv;
	struct rec_result results[MAX_REC];
	size_t n_results;
	uint64_t started[MAX_REC];
	size_t n_started;
	struct rec_hb hbs[MAX_REC];
	size_t n_hbs;
	/* behaviour */
	bool ack;                   /* acknowledge results */
	uint64_t skip_ack_id;       /* do not acknowledge this ID's first result */
	int garbage_after_register; /* sessions that get malformed bytes */
	bool garbage_armed;
};

static void join(char *dst, size_t cap, char **v, size_t n)
{
	dst[0] = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(dst);
		snprintf(dst + l, cap - l, "%s%s", i ? "," : "", v[i]);
	}
}

static char *dup_bytes(const void *p, size_t n)
{
	char *s = malloc(n + 1);
	if (s) {
		if (n)
			memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

static void send_down(struct gs_rpc_call *call, const Gsched__V1__WorkerDown *m)
{
	size_t n = gsched__v1__worker_down__get_packed_size(m);
	uint8_t *b = malloc(n ? n : 1);
	if (b == NULL)
		return;
	gsched__v1__worker_down__pack(m, b);
	(void)gs_rpc_call_send(call, b, n);
	free(b);
}

static int fk_open(struct gs_rpc_call *call, void *mud, void **cud)
{
	struct fake *f = mud;
	*cud = f;
	pthread_mutex_lock(&f->mu);
	f->sessions++;
	if (f->call) /* an old session still open: the test's reference goes */
		gs_rpc_call_unref(f->call);
	gs_rpc_call_ref(call);
	f->call = call;
	pthread_mutex_unlock(&f->mu);
	return GS_OK;
}

static void fk_message(struct gs_rpc_call *call, void *cud, const uint8_t *b, size_t n)
{
	struct fake *f = cud;
	Gsched__V1__WorkerUp *m = gsched__v1__worker_up__unpack(NULL, n, b);
	pthread_mutex_lock(&f->mu);
	if (m == NULL) {
		f->protocol_errors++;
		pthread_mutex_unlock(&f->mu);
		return;
	}
	bool answer = false, garbage = false;
	if (m->n_register_ > 0) {
		Gsched__V1__Register *r = m->register_[0];
		f->registrations++;
		if (m->n_register_ != 1)
			f->protocol_errors++;
		snprintf(f->reg_name, sizeof(f->reg_name), "%s", r->name);
		f->reg_slots = r->slots;
		join(f->reg_queues, sizeof(f->reg_queues), r->queues, r->n_queues);
		join(f->reg_handlers, sizeof(f->reg_handlers), r->handlers, r->n_handlers);
		f->reg_runs_argv = r->runs_argv;
		answer = true;
		if (f->garbage_after_register > 0) {
			f->garbage_after_register--;
			f->garbage_armed = true;
		}
	}
	if (m->n_heartbeat > 0 && f->garbage_armed) {
		/* After a heartbeat the agent has surely taken Registered. */
		f->garbage_armed = false;
		garbage = true;
	}
	for (size_t i = 0; i < m->n_started; i++)
		if (f->n_started < MAX_REC)
			f->started[f->n_started++] = m->started[i]->id;
	for (size_t i = 0; i < m->n_heartbeat; i++) {
		Gsched__V1__Heartbeat *h = m->heartbeat[i];
		if (f->n_hbs >= MAX_REC)
			break;
		struct rec_hb *r = &f->hbs[f->n_hbs++];
		r->at_ms = mono_ms();
		r->free_slots = h->free_slots;
		r->n_running = h->n_running;
		for (size_t k = 0; k < h->n_running && k < 8; k++)
			r->running[k] = h->running[k]->id;
	}
	Gsched__V1__TaskRef *acks = calloc(m->n_results + 1, sizeof(*acks));
	Gsched__V1__TaskRef **ackp = calloc(m->n_results + 1, sizeof(*ackp));
	size_t n_acks = 0;
	for (size_t i = 0; i < m->n_results; i++) {
		Gsched__V1__WorkResult *w = m->results[i];
		bool first = true;
		for (size_t k = 0; k < f->n_results; k++)
			if (f->results[k].id == w->id && f->results[k].attempt == w->attempt)
				first = false;
		if (f->n_results < MAX_REC) {
			struct rec_result *r = &f->results[f->n_results++];
			r->id = w->id;
			r->attempt = w->attempt;
			r->state = w->state;
			r->exit_code = w->exit_code;
			r->output = dup_bytes(w->output.data, w->output.len);
			r->output_len = w->output.len;
			r->truncated = w->output_truncated;
			r->error = dup_bytes(w->error, strlen(w->error));
			r->started_us = w->started_us;
			r->finished_us = w->finished_us;
		}
		if (f->ack && acks && ackp && !(first && w->id == f->skip_ack_id)) {
			gsched__v1__task_ref__init(&acks[n_acks]);
			acks[n_acks].id = w->id;
			acks[n_acks].attempt = w->attempt;
			ackp[n_acks] = &acks[n_acks];
			n_acks++;
		}
	}
	pthread_mutex_unlock(&f->mu);

	if (answer) {
		Gsched__V1__Registered reg = GSCHED__V1__REGISTERED__INIT;
		reg.worker_id = WORKER_ID;
		reg.heartbeat_ms = HB_MS;
		reg.dead_after_ms = 10 * HB_MS;
		Gsched__V1__Registered *rp = &reg;
		Gsched__V1__WorkerDown d = GSCHED__V1__WORKER_DOWN__INIT;
		d.n_registered = 1;
		d.registered = &rp;
		send_down(call, &d);
	}
	if (garbage) {
		static const uint8_t junk[] = {0x0a, 0x05, 0x01}; /* field 1, length 5, 1 byte */
		(void)gs_rpc_call_send(call, junk, sizeof(junk));
	}
	if (n_acks) {
		Gsched__V1__WorkerDown d = GSCHED__V1__WORKER_DOWN__INIT;
		d.n_result_acks = n_acks;
		d.result_acks = ackp;
		send_down(call, &d);
	}
	free(acks);
	free(ackp);
	gsched__v1__worker_up__free_unpacked(m, NULL);
}

static void fk_half_close(struct gs_rpc_call *call, void *cud)
{
	struct fake *f = cud;
	pthread_mutex_lock(&f->mu);
	f->half_closes++;
	pthread_mutex_unlock(&f->mu);
	(void)gs_rpc_call_finish(call, 0, NULL);
}

static void fk_close(struct gs_rpc_call *call, void *cud, int cancelled)
{
	(void)cancelled;
	struct fake *f = cud;
	pthread_mutex_lock(&f->mu);
	f->closes++;
	if (f->call == call) {
		f->call = NULL;
		gs_rpc_call_unref(call); /* the fake's reference */
	}
	pthread_mutex_unlock(&f->mu);
	gs_rpc_call_unref(call); /* the user reference from on_open */
}

/* port 0: a free one. */
static struct fake *fake_start(int port)
{
	struct fake *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return NULL;
	pthread_mutex_init(&f->mu, NULL);
	f->ack = true;
	static const struct gs_rpc_method_ops ops = {fk_open, fk_message, fk_half_close, fk_close,
	                                             NULL};
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	if (gs_rpc_server_create(NULL, &f->srv) != GS_OK ||
	    gs_rpc_server_add_method(f->srv, METHOD, GS_RPC_BIDI, &ops, f) != GS_OK ||
	    gs_rpc_server_start(f->srv, addr, &f->port) != GS_OK) {
		if (f->srv)
			gs_rpc_server_destroy(f->srv);
		pthread_mutex_destroy(&f->mu);
		free(f);
		return NULL;
	}
	return f;
}

static void fake_stop(struct fake *f)
{
	if (f == NULL)
		return;
	gs_rpc_server_stop(f->srv, 200);
	gs_rpc_server_destroy(f->srv);
	pthread_mutex_lock(&f->mu);
	if (f->call) {
		gs_rpc_call_unref(f->call);
		f->call = NULL;
	}
	pthread_mutex_unlock(&f->mu);
	for (size_t i = 0; i < f->n_results; i++) {
		free(f->results[i].output);
		free(f->results[i].error);
	}
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* Sends a WorkerDown on the current session; false if there is none. */
static bool fake_send(struct fake *f, const Gsched__V1__WorkerDown *d)
{
	pthread_mutex_lock(&f->mu);
	struct gs_rpc_call *c = f->call;
	if (c)
		gs_rpc_call_ref(c);
	pthread_mutex_unlock(&f->mu);
	if (c == NULL)
		return false;
	send_down(c, d);
	gs_rpc_call_unref(c);
	return true;
}

static bool assign(struct fake *f, uint64_t id, Gsched__V1__TaskSpec *spec)
{
	Gsched__V1__Assignment as = GSCHED__V1__ASSIGNMENT__INIT;
	as.id = id;
	as.attempt = 1;
	as.spec = spec;
	Gsched__V1__Assignment *ap = &as;
	Gsched__V1__WorkerDown d = GSCHED__V1__WORKER_DOWN__INIT;
	d.n_assignments = 1;
	d.assignments = &ap;
	return fake_send(f, &d);
}

static bool assign_handler(struct fake *f, uint64_t id, const char *name, const void *payload,
                           size_t len, uint32_t timeout_ms)
{
	Gsched__V1__HandlerCall h = GSCHED__V1__HANDLER_CALL__INIT;
	h.name = (char *)name;
	h.payload.data = (uint8_t *)payload;
	h.payload.len = len;
	Gsched__V1__TaskSpec spec = GSCHED__V1__TASK_SPEC__INIT;
	spec.body_case = GSCHED__V1__TASK_SPEC__BODY_HANDLER;
	spec.handler = &h;
	spec.timeout_ms = timeout_ms;
	return assign(f, id, &spec);
}

static bool assign_argv(struct fake *f, uint64_t id, uint32_t timeout_ms, size_t n, ...)
{
	char *args[8];
	va_list ap;
	va_start(ap, n);
	for (size_t i = 0; i < n && i < 8; i++)
		args[i] = va_arg(ap, char *);
	va_end(ap);
	Gsched__V1__Argv av = GSCHED__V1__ARGV__INIT;
	av.n_args = n;
	av.args = args;
	Gsched__V1__TaskSpec spec = GSCHED__V1__TASK_SPEC__INIT;
	spec.body_case = GSCHED__V1__TASK_SPEC__BODY_ARGV;
	spec.argv = &av;
	spec.timeout_ms = timeout_ms;
	return assign(f, id, &spec);
}

static bool send_cancel(struct fake *f, uint64_t id)
{
	Gsched__V1__TaskRef r = GSCHED__V1__TASK_REF__INIT;
	r.id = id;
	r.attempt = 1;
	Gsched__V1__TaskRef *rp = &r;
	Gsched__V1__WorkerDown d = GSCHED__V1__WORKER_DOWN__INIT;
	d.n_cancels = 1;
	d.cancels = &rp;
	return fake_send(f, &d);
}

static bool send_drain(struct fake *f, const char *reason)
{
	Gsched__V1__Drain dr = GSCHED__V1__DRAIN__INIT;
	dr.reason = (char *)reason;
	Gsched__V1__Drain *dp = &dr;
	Gsched__V1__WorkerDown d = GSCHED__V1__WORKER_DOWN__INIT;
	d.n_drain = 1;
	d.drain = &dp;
	return fake_send(f, &d);
}

/* ---- queries on what the fake recorded (all lock) ---------------------------- */

static int n_results_for(struct fake *f, uint64_t id)
{
	int n = 0;
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->n_results; i++)
		n += f->results[i].id == id;
	pthread_mutex_unlock(&f->mu);
	return n;
}

static bool was_started(struct fake *f, uint64_t id)
{
	bool yes = false;
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->n_started; i++)
		yes |= f->started[i] == id;
	pthread_mutex_unlock(&f->mu);
	return yes;
}

static int counter(struct fake *f, const int *field)
{
	pthread_mutex_lock(&f->mu);
	int v = *field;
	pthread_mutex_unlock(&f->mu);
	return v;
}

static size_t n_hbs(struct fake *f)
{
	pthread_mutex_lock(&f->mu);
	size_t n = f->n_hbs;
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* A copy of the first result for id (its strings stay the fake's). */
static struct rec_result result_of(struct fake *f, uint64_t id)
{
	struct rec_result r = {0};
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->n_results; i++)
		if (f->results[i].id == id) {
			r = f->results[i];
			break;
		}
	pthread_mutex_unlock(&f->mu);
	return r;
}

/* A heartbeat at index >= from whose running list holds id and which
 * reports free_slots; returns its index or -1. */
static long hb_with(struct fake *f, size_t from, uint64_t id, unsigned free_slots)
{
	long found = -1;
	pthread_mutex_lock(&f->mu);
	for (size_t i = from; i < f->n_hbs && found < 0; i++) {
		if (f->hbs[i].free_slots != free_slots)
			continue;
		for (size_t k = 0; k < f->hbs[i].n_running && k < 8; k++)
			if (f->hbs[i].running[k] == id)
				found = (long)i;
	}
	pthread_mutex_unlock(&f->mu);
	return found;
}

#define WAIT_UNTIL(cond, ms)                                                                       \
	do {                                                                                       \
		int64_t end_ = mono_ms() + (ms);                                                   \
		while (!(cond) && mono_ms() < end_)                                                \
			sleep_ms(5);                                                               \
		if (!(cond))                                                                       \
			fail_msg("timed out after %d ms waiting for: %s", (int)(ms), #cond);       \
	} while (0)

/* ---- the agent on its own thread -------------------------------------------------- */

struct agent_thr {
	pthread_t thr;
	struct gs_worker_opts o;
	char server[64];
	const char *queues[2];
	volatile int stop;
	pthread_mutex_t mu;
	bool running, done;
	int rc;
	/* events */
	int connected, disconnected, connect_failed, draining, stopped;
	int retries[16];
	size_t n_retries;
	char last_connected_line[256];
};

static void on_event(void *arg, const struct gs_worker_event *ev)
{
	struct agent_thr *t = arg;
	pthread_mutex_lock(&t->mu);
	switch (ev->kind) {
	case GS_WORKER_EV_CONNECTED:
		t->connected++;
		snprintf(t->last_connected_line, sizeof(t->last_connected_line), "%s", ev->line);
		break;
	case GS_WORKER_EV_DISCONNECTED:
		t->disconnected++;
		break;
	case GS_WORKER_EV_CONNECT_FAILED:
		t->connect_failed++;
		if (t->n_retries < 16)
			t->retries[t->n_retries++] = ev->retry_ms;
		break;
	case GS_WORKER_EV_DRAINING:
		t->draining++;
		break;
	case GS_WORKER_EV_STOPPED:
		t->stopped++;
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&t->mu);
}

static void *agent_main(void *arg)
{
	struct agent_thr *t = arg;
	int rc = gs_worker_agent_run(&t->o);
	pthread_mutex_lock(&t->mu);
	t->rc = rc;
	t->done = true;
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

static int agent_field(struct agent_thr *t, const int *field)
{
	pthread_mutex_lock(&t->mu);
	int v = *field;
	pthread_mutex_unlock(&t->mu);
	return v;
}

static bool agent_done(struct agent_thr *t)
{
	pthread_mutex_lock(&t->mu);
	bool d = t->done;
	pthread_mutex_unlock(&t->mu);
	return d;
}

/* Options with test defaults; adjust t->o before agent_start. */
static struct agent_thr *agent_new(int port)
{
	struct agent_thr *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	pthread_mutex_init(&t->mu, NULL);
	snprintf(t->server, sizeof(t->server), "127.0.0.1:%d", port);
	t->queues[0] = "q1";
	t->queues[1] = "q2";
	t->o.server = t->server;
	t->o.name = "test-worker";
	t->o.slots = 2;
	t->o.queues = t->queues;
	t->o.n_queues = 2;
	t->o.reconnect_max_ms = 400;
	t->o.stop = &t->stop;
	t->o.grace_ms = 1000;
	t->o.quiet = getenv("GS_TEST_VERBOSE") == NULL;
	t->o.on_event = on_event;
	t->o.event_arg = t;
	return t;
}

static bool agent_start(struct agent_thr *t)
{
	if (pthread_create(&t->thr, NULL, agent_main, t) != 0)
		return false;
	t->running = true;
	return true;
}

/* Sets *stop, waits up to ms for the run to return; true if it did. */
static bool agent_stop(struct agent_thr *t, int ms)
{
	if (t == NULL || !t->running)
		return true;
	__atomic_store_n(&t->stop, 1, __ATOMIC_RELEASE);
	int64_t end = mono_ms() + ms;
	while (!agent_done(t) && mono_ms() < end)
		sleep_ms(5);
	if (!agent_done(t))
		return false; /* left running: the test fails, the process exits */
	pthread_join(t->thr, NULL);
	t->running = false;
	return true;
}

static void agent_free(struct agent_thr *t)
{
	if (t == NULL || t->running)
		return; /* never free what a live thread uses */
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* ---- fixture ------------------------------------------------------------------- */

struct fx {
	struct fake *srv[2];
	struct agent_thr *ag;
};

static int fx_setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return -1;
	x->srv[0] = fake_start(0);
	if (x->srv[0] == NULL) {
		free(x);
		return -1;
	}
	x->ag = agent_new(x->srv[0]->port);
	*state = x;
	return x->ag ? 0 : -1;
}

static int fx_teardown(void **state)
{
	struct fx *x = *state;
	bool stopped = agent_stop(x->ag, 10000);
	agent_free(x->ag);
	fake_stop(x->srv[0]);
	fake_stop(x->srv[1]);
	free(x);
	return stopped ? 0 : -1;
}

/* Starts the agent and waits for it to register with srv. */
static void start_and_register(struct fx *x, struct fake *srv)
{
	assert_true(agent_start(x->ag));
	WAIT_UNTIL(counter(srv, &srv->registrations) >= 1, 5000);
	WAIT_UNTIL(agent_field(x->ag, &x->ag->connected) >= 1, 5000);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_bad_opts(void **state)
{
	(void)state;
	assert_int_equal(gs_worker_agent_run(NULL), GS_EINVAL);
	struct gs_worker_opts o = {.server = "127.0.0.1:1", .slots = 1};
	o.slots = 0;
	assert_int_equal(gs_worker_agent_run(&o), GS_EINVAL);
	o.slots = 1;
	o.server = "";
	assert_int_equal(gs_worker_agent_run(&o), GS_EINVAL);
	o.server = NULL;
	assert_int_equal(gs_worker_agent_run(&o), GS_EINVAL);
	o.server = "127.0.0.1:1";
	o.grace_ms = -1;
	assert_int_equal(gs_worker_agent_run(&o), GS_EINVAL);
	o.grace_ms = 0;
	o.n_queues = 1;
	assert_int_equal(gs_worker_agent_run(&o), GS_EINVAL);
	const char *qs[] = {NULL};
	o.queues = qs;
	assert_int_equal(gs_worker_agent_run(&o), GS_EINVAL);
	o.n_queues = 0;
	o.reconnect_max_ms = -5;
	assert_int_equal(gs_worker_agent_run(&o), GS_EINVAL);
}

#define ID(n) (0x8000000000000000ull | (uint64_t)(n))

static void test_tasks(void **state)
{
	struct fx *x = *state;
	struct fake *f = x->srv[0];
	start_and_register(x, f);

	/* Register content. */
	pthread_mutex_lock(&f->mu);
	assert_string_equal(f->reg_name, "test-worker");
	assert_int_equal(f->reg_slots, 2);
	assert_string_equal(f->reg_queues, "q1,q2");
	assert_non_null(strstr(f->reg_handlers, "echo"));
	assert_non_null(strstr(f->reg_handlers, "sleep"));
	assert_non_null(strstr(f->reg_handlers, "noop"));
	assert_true(f->reg_runs_argv);
	assert_int_equal(f->protocol_errors, 0);
	pthread_mutex_unlock(&f->mu);
	char want[128];
	snprintf(want, sizeof(want), "connected to 127.0.0.1:%d as worker %016" PRIx64, f->port,
	         (uint64_t)WORKER_ID);
	pthread_mutex_lock(&x->ag->mu);
	assert_non_null(strstr(x->ag->last_connected_line, want));
	pthread_mutex_unlock(&x->ag->mu);

	/* Two long sleeps take both slots; a third task waits in the FIFO and
	 * is cancelled there; then both sleeps are cancelled. */
	assert_true(assign_handler(f, ID(1), "sleep", "10000", 5, 0));
	assert_true(assign_handler(f, ID(2), "sleep", "10000", 5, 0));
	WAIT_UNTIL(was_started(f, ID(1)) && was_started(f, ID(2)), 5000);
	size_t hb_from;
	pthread_mutex_lock(&f->mu);
	hb_from = f->n_hbs;
	pthread_mutex_unlock(&f->mu);
	assert_true(assign_handler(f, ID(3), "echo", "queued", 6, 0));
	WAIT_UNTIL(hb_with(f, hb_from, ID(3), 0) >= 0, 3000); /* held, no free slot */
	assert_true(send_cancel(f, ID(3)));
	WAIT_UNTIL(n_results_for(f, ID(3)) == 1, 3000);
	assert_false(was_started(f, ID(3)));
	assert_true(send_cancel(f, ID(1)));
	assert_true(send_cancel(f, ID(2)));
	WAIT_UNTIL(n_results_for(f, ID(1)) == 1 && n_results_for(f, ID(2)) == 1, 3000);

	/* A mix, more than the slots at once. */
	static const uint8_t bin[] = {0, 1, 2, 0xff, 0xfe, '\n', 0};
	assert_true(assign_handler(f, ID(10), "echo", "hello", 5, 0));
	assert_true(assign_handler(f, ID(11), "echo", "", 0, 0));
	assert_true(assign_handler(f, ID(12), "echo", bin, sizeof(bin), 0));
	assert_true(assign_argv(f, ID(13), 0, 4, "sh", "-c", "echo $0", "value"));
	assert_true(
	    assign_argv(f, ID(14), 0, 3, "sh", "-c", "echo partial; echo oops >&2; exit 3"));
	assert_true(assign_argv(f, ID(15), 300, 2, "sleep", "5"));
	assert_true(assign_handler(f, ID(16), "nope", "", 0, 0));
	assert_true(assign_argv(f, ID(17), 0, 1, "/nonexistent/gsched-test-binary"));
	Gsched__V1__TaskSpec empty = GSCHED__V1__TASK_SPEC__INIT;
	assert_true(assign(f, ID(18), &empty));
	assert_true(assign_handler(f, ID(19), "noop", "", 0, 0));
	const uint64_t ids[] = {ID(10), ID(11), ID(12), ID(13), ID(14),
	                        ID(15), ID(16), ID(17), ID(18), ID(19)};
	int64_t t0 = mono_ms();
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		WAIT_UNTIL(n_results_for(f, ids[i]) >= 1, 10000);
	int64_t took = mono_ms() - t0;
	print_message("10 mixed tasks on 2 slots: %lld ms (one times out at 300 ms)\n",
	              (long long)took);
	sleep_ms(300); /* anything duplicated would show up now */

	struct rec_result r;
	for (uint64_t n = 1; n <= 2; n++) {
		r = result_of(f, ID(n));
		assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_CANCELLED);
		assert_int_equal(r.attempt, 1);
		assert_true(r.started_us > 0 && r.finished_us >= r.started_us);
	}
	r = result_of(f, ID(3));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_CANCELLED);
	assert_int_equal(r.started_us, 0);

	r = result_of(f, ID(10));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_DONE);
	assert_int_equal(r.exit_code, 0);
	assert_string_equal(r.output, "hello");
	assert_string_equal(r.error, "");
	assert_true(r.started_us > 0 && r.finished_us >= r.started_us);
	r = result_of(f, ID(11));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_DONE);
	assert_int_equal(r.output_len, 0);
	r = result_of(f, ID(12));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_DONE);
	assert_int_equal(r.output_len, sizeof(bin));
	assert_memory_equal(r.output, bin, sizeof(bin));
	r = result_of(f, ID(13));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_DONE);
	assert_string_equal(r.output, "value\n");
	r = result_of(f, ID(14));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_FAILED);
	assert_int_equal(r.exit_code, 3);
	assert_string_equal(r.output, "partial\n");
	assert_non_null(strstr(r.error, "exited with code 3"));
	assert_non_null(strstr(r.error, "stderr: oops"));
	r = result_of(f, ID(15));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_FAILED);
	assert_non_null(strstr(r.error, "timeout"));
	assert_true(r.finished_us - r.started_us >= 250000 &&
	            r.finished_us - r.started_us < 3000000);
	r = result_of(f, ID(16));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_FAILED);
	assert_non_null(strstr(r.error, "unknown handler"));
	r = result_of(f, ID(17));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_FAILED);
	assert_int_equal(r.exit_code, 127);
	r = result_of(f, ID(18));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_FAILED);
	assert_non_null(strstr(r.error, "invalid task"));
	assert_false(was_started(f, ID(18)));
	r = result_of(f, ID(19));
	assert_int_equal(r.state, GSCHED__V1__TASK_STATE__TASK_STATE_DONE);

	/* Exactly once each; Started for every process that ran (an instant
	 * handler such as echo may report only its result, with started_us). */
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		assert_int_equal(n_results_for(f, ids[i]), 1);
	for (uint64_t n = 1; n <= 3; n++)
		assert_int_equal(n_results_for(f, ID(n)), 1);
	assert_true(was_started(f, ID(13)) && was_started(f, ID(15)));
	assert_true(result_of(f, ID(10)).started_us > 0);

	/* Heartbeats: about every HB_MS; idle now: all slots free, none running. */
	size_t h0;
	pthread_mutex_lock(&f->mu);
	h0 = f->n_hbs;
	pthread_mutex_unlock(&f->mu);
	sleep_ms(10 * HB_MS);
	pthread_mutex_lock(&f->mu);
	size_t h1 = f->n_hbs;
	assert_true(h1 - h0 >= 6 && h1 - h0 <= 13);
	double avg = (double)(f->hbs[h1 - 1].at_ms - f->hbs[h0].at_ms) / (double)(h1 - 1 - h0);
	assert_int_equal(f->hbs[h1 - 1].free_slots, 2);
	assert_int_equal(f->hbs[h1 - 1].n_running, 0);
	assert_int_equal(f->protocol_errors, 0);
	pthread_mutex_unlock(&f->mu);
	print_message("heartbeats: %zu in %d ms, mean interval %.1f ms (heartbeat_ms %d)\n",
	              h1 - h0, 10 * HB_MS, avg, HB_MS);
	assert_true(avg >= 0.8 * HB_MS && avg <= 1.6 * HB_MS);

	assert_true(agent_stop(x->ag, 5000));
	assert_int_equal(x->ag->rc, GS_OK);
	WAIT_UNTIL(counter(f, &f->half_closes) == 1, 3000);
}

static void test_resend_until_acked(void **state)
{
	struct fx *x = *state;
	struct fake *f = x->srv[0];
	pthread_mutex_lock(&f->mu);
	f->skip_ack_id = ID(40);
	pthread_mutex_unlock(&f->mu);
	start_and_register(x, f);
	/* Tasks the agent holds (not instant handler calls answered inline,
	 * whose loss the server covers by requeuing): a 1 ms sleep. */
	assert_true(assign_handler(f, ID(40), "sleep", "1", 1, 0));
	assert_true(assign_handler(f, ID(41), "sleep", "1", 1, 0));
	WAIT_UNTIL(n_results_for(f, ID(40)) == 1 && n_results_for(f, ID(41)) == 1, 3000);
	int64_t t0 = mono_ms();
	WAIT_UNTIL(n_results_for(f, ID(40)) == 2, 5000); /* not acked: sent again */
	int64_t gap = mono_ms() - t0;
	sleep_ms(2500); /* acked the second time: no third copy */
	assert_int_equal(n_results_for(f, ID(40)), 2);
	assert_int_equal(n_results_for(f, ID(41)), 1);
	print_message("unacknowledged result resent after ~%lld ms\n", (long long)gap);
}

static void test_reconnect(void **state)
{
	struct fx *x = *state;
	struct fake *f = x->srv[0];
	int port = f->port;
	x->ag->o.name = NULL;  /* hostname-pid */
	x->ag->o.n_queues = 0; /* "default" */
	start_and_register(x, f);
	char pid[32];
	snprintf(pid, sizeof(pid), "-%ld", (long)getpid());
	pthread_mutex_lock(&f->mu);
	assert_non_null(strstr(f->reg_name, pid));
	assert_string_equal(f->reg_queues, "default");
	pthread_mutex_unlock(&f->mu);

	/* A task in flight when the server goes away is killed, not reported. */
	assert_true(assign_handler(f, ID(50), "sleep", "10000", 5, 0));
	WAIT_UNTIL(was_started(f, ID(50)), 3000);
	fake_stop(f);
	x->srv[0] = NULL;
	WAIT_UNTIL(agent_field(x->ag, &x->ag->disconnected) == 1, 3000);
	sleep_ms(300);

	int64_t t0 = mono_ms();
	x->srv[1] = fake_start(port);
	assert_non_null(x->srv[1]);
	struct fake *g = x->srv[1];
	WAIT_UNTIL(counter(g, &g->registrations) == 1, 10000);
	int64_t took = mono_ms() - t0;
	print_message("re-registered %lld ms after the new server started\n", (long long)took);
	WAIT_UNTIL(agent_field(x->ag, &x->ag->connected) == 2, 3000);
	/* Its first heartbeat: nothing held, every slot free. */
	WAIT_UNTIL(n_hbs(g) >= 1, 3000);
	pthread_mutex_lock(&g->mu);
	assert_int_equal(g->hbs[0].n_running, 0);
	assert_int_equal(g->hbs[0].free_slots, 2);
	pthread_mutex_unlock(&g->mu);
	assert_int_equal(n_results_for(g, ID(50)), 0);

	assert_true(assign_handler(g, ID(51), "echo", "back", 4, 0));
	WAIT_UNTIL(n_results_for(g, ID(51)) == 1, 3000);
	assert_string_equal(result_of(g, ID(51)).output, "back");
	assert_true(agent_stop(x->ag, 5000));
	assert_int_equal(x->ag->rc, GS_OK);
}

static void test_unreachable_backoff(void **state)
{
	struct fx *x = *state;
	/* Nobody listens on the fake's port once it is stopped. */
	fake_stop(x->srv[0]);
	x->srv[0] = NULL;
	assert_true(agent_start(x->ag));
	WAIT_UNTIL(agent_field(x->ag, &x->ag->connect_failed) >= 3, 5000);
	sleep_ms(1500); /* several more attempts at the 400 ms cap */
	pthread_mutex_lock(&x->ag->mu);
	int n = x->ag->connect_failed;
	int r0 = x->ag->retries[0], r1 = x->ag->retries[1], r2 = x->ag->retries[2];
	pthread_mutex_unlock(&x->ag->mu);
	print_message("unreachable: %d lines, retries %d, %d, %d ms\n", n, r0, r1, r2);
	assert_int_equal(r0, 100);
	assert_int_equal(r1, 200);
	assert_int_equal(r2, 400);
	assert_true(n <= 5); /* identical failures at the cap are not repeated */
	assert_false(agent_done(x->ag));
	int64_t t0 = mono_ms();
	assert_true(agent_stop(x->ag, 3000));
	assert_true(mono_ms() - t0 < 1000);
	assert_int_equal(x->ag->rc, GS_OK);
}

static void test_malformed_reconnects(void **state)
{
	struct fx *x = *state;
	struct fake *f = x->srv[0];
	pthread_mutex_lock(&f->mu);
	f->garbage_after_register = 1;
	pthread_mutex_unlock(&f->mu);
	assert_true(agent_start(x->ag));
	WAIT_UNTIL(counter(f, &f->registrations) == 2, 5000); /* dropped, came back */
	WAIT_UNTIL(agent_field(x->ag, &x->ag->disconnected) == 1, 3000);
	WAIT_UNTIL(agent_field(x->ag, &x->ag->connected) == 2, 3000);
	assert_true(assign_handler(f, ID(60), "echo", "ok", 2, 0));
	WAIT_UNTIL(n_results_for(f, ID(60)) == 1, 3000);
	assert_false(agent_done(x->ag));
}

static void test_stop_grace(void **state)
{
	struct fx *x = *state;
	struct fake *f = x->srv[0];
	x->ag->o.grace_ms = 1000;
	start_and_register(x, f);
	assert_true(assign_handler(f, ID(70), "sleep", "300", 3, 0));
	assert_true(assign_handler(f, ID(71), "sleep", "30000", 5, 0));
	WAIT_UNTIL(was_started(f, ID(70)) && was_started(f, ID(71)), 3000);
	int64_t t0 = mono_ms();
	assert_true(agent_stop(x->ag, 6000));
	int64_t took = mono_ms() - t0;
	print_message("stop with grace 1000 ms returned after %lld ms\n", (long long)took);
	assert_int_equal(x->ag->rc, GS_OK);
	assert_true(took >= 900 && took < 4000);
	assert_int_equal(n_results_for(f, ID(70)), 1);
	assert_int_equal(result_of(f, ID(70)).state, GSCHED__V1__TASK_STATE__TASK_STATE_DONE);
	assert_int_equal(n_results_for(f, ID(71)), 0); /* killed: the server requeues it */
	WAIT_UNTIL(counter(f, &f->half_closes) == 1, 3000);
}

static void test_drain(void **state)
{
	struct fx *x = *state;
	struct fake *f = x->srv[0];
	x->ag->o.stop = NULL; /* only the drain ends it */
	start_and_register(x, f);
	assert_true(assign_handler(f, ID(80), "sleep", "800", 3, 0));
	WAIT_UNTIL(was_started(f, ID(80)), 3000);
	assert_true(send_drain(f, "maintenance"));
	WAIT_UNTIL(agent_field(x->ag, &x->ag->draining) == 1, 3000);
	assert_true(assign_handler(f, ID(81), "echo", "late", 4, 0)); /* not taken */
	WAIT_UNTIL(agent_done(x->ag), 5000);
	pthread_join(x->ag->thr, NULL);
	x->ag->running = false;
	assert_int_equal(x->ag->rc, GS_OK);
	assert_int_equal(n_results_for(f, ID(80)), 1);
	assert_int_equal(result_of(f, ID(80)).state, GSCHED__V1__TASK_STATE__TASK_STATE_DONE);
	assert_int_equal(n_results_for(f, ID(81)), 0);
	assert_false(was_started(f, ID(81)));
	WAIT_UNTIL(counter(f, &f->half_closes) == 1, 3000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_opts),
	    cmocka_unit_test_setup_teardown(test_tasks, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_resend_until_acked, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reconnect, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unreachable_backoff, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_reconnects, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_stop_grace, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_drain, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
