/*
 * fuzz_server.c - the server's request decoders and handlers, driven in
 * process through a fake transport (fake_rpc.c): the real TaskService,
 * WorkerService and AdminService callbacks of src/rpc over a small engine.
 *
 * The input is a program of calls: raw bytes fed to a method (every decoder
 * the server has: SubmitRequest, SubmitStreamIn, WaitRequest, GetRequest,
 * CancelRequest, WatchRequest, WorkerUp, ListWorkersRequest, StatsRequest,
 * DrainRequest), or well-formed messages built from the input that reach
 * deep states (specs that validate, results for the assignments the server
 * actually sent, Waits on real IDs), plus half-closes, peer cancels,
 * scheduler passes and register ticks with time moved forward.
 *
 * Checked after every step: every byte the server sent decodes as its
 * response type (the hand-written encoders of codec.c and the services),
 * gs_engine_check() holds, no call is closed twice or used after on_close;
 * at the end every call and every waiter is freed (LeakSanitizer).
 */
#include <stdlib.h>
#include <string.h>

#include "fake_rpc.h"
#include "fuzz_common.h"
#include "gs_error.h"
#include "gsched.pb-c.h"
#include "service_impl.h"

enum ckind {
	K_SUBMIT,
	K_STREAM,
	K_WAIT,
	K_GET,
	K_CANCEL,
	K_WATCH,
	K_WORKER,
	K_LIST,
	K_STATS,
	K_DRAIN,
	K_N
};

static const char *const paths[K_N] = {
    "/gsched.v1.TaskService/Submit",    "/gsched.v1.TaskService/SubmitStream",
    "/gsched.v1.TaskService/Wait",      "/gsched.v1.TaskService/Get",
    "/gsched.v1.TaskService/Cancel",    "/gsched.v1.TaskService/Watch",
    "/gsched.v1.WorkerService/Connect", "/gsched.v1.AdminService/ListWorkers",
    "/gsched.v1.AdminService/Stats",    "/gsched.v1.AdminService/Drain",
};

static const ProtobufCMessageDescriptor *const resp[K_N] = {
    &gsched__v1__submit_response__descriptor, &gsched__v1__submit_stream_out__descriptor,
    &gsched__v1__wait_response__descriptor,   &gsched__v1__get_response__descriptor,
    &gsched__v1__cancel_response__descriptor, &gsched__v1__task_events__descriptor,
    &gsched__v1__worker_down__descriptor,     &gsched__v1__list_workers_response__descriptor,
    &gsched__v1__stats_response__descriptor,  &gsched__v1__drain_response__descriptor,
};

#define MAX_CALLS 12
#define MAX_IDS   64

struct slot {
	struct gs_rpc_call *c;
	int kind;
};

struct asg {
	uint64_t id;
	uint32_t attempt;
	struct gs_rpc_call *w; /* the worker call it was sent on */
};

struct h {
	gs_engine *e;
	gs_service *s;
	struct gs_rpc_server srv;
	struct slot calls[MAX_CALLS];
	uint64_t ids[MAX_IDS];
	size_t n_ids;
	struct asg asg[MAX_IDS];
	size_t n_asg;
	uint64_t wids[8];
	size_t n_wids;
	uint64_t now_off;
	/* strings and buffers of the message being built */
	void *pool[256];
	size_t n_pool;
};

static void *pool_alloc(struct h *h, size_t n)
{
	void *p = calloc(1, n ? n : 1);
	FZ_CHECK(p != NULL, "out of memory");
	if (h->n_pool == sizeof(h->pool) / sizeof(h->pool[0])) {
		free(p);
		return NULL;
	}
	h->pool[h->n_pool++] = p;
	return p;
}

static void pool_free(struct h *h)
{
	for (size_t i = 0; i < h->n_pool; i++)
		free(h->pool[i]);
	h->n_pool = 0;
}

static char *gen_str(struct h *h, struct fz_in *in, size_t max)
{
	size_t len;
	const uint8_t *p = fz_bytes(in, max, &len);
	char *s = pool_alloc(h, len + 1);
	if (!s)
		return (char *)"";
	memcpy(s, p, len);
	s[len] = 0; /* an embedded NUL just shortens it */
	return s;
}

static char *pick_str(struct h *h, struct fz_in *in, const char *const *choices, size_t n)
{
	uint8_t b = fz_u8(in);
	if (b % (n + 1) == n)
		return gen_str(h, in, 80);
	return (char *)choices[b % (n + 1)];
}

static const char *const queues[] = {"", "default", "q1", "q2"};
static const char *const handlers[] = {"noop", "echo", "sleep", "nope", ""};

static void record_id(struct h *h, uint64_t id)
{
	h->ids[h->n_ids++ % MAX_IDS] = id;
}

static uint64_t pick_id(struct h *h, struct fz_in *in)
{
	uint8_t b = fz_u8(in);
	size_t known = h->n_ids < MAX_IDS ? h->n_ids : MAX_IDS;
	if (b < 200 && known)
		return h->ids[b % known];
	if (b < 230)
		return fz_u64(in);
	return b & 1; /* 0 or 1 */
}

/* Takes what the server sent on a call: it must decode as the response type. */
static void take_output(struct h *h, struct slot *sl)
{
	struct gs_rpc_call *c = sl->c;
	if (!c->out_len)
		return;
	ProtobufCMessage *m = protobuf_c_message_unpack(resp[sl->kind], NULL, c->out_len, c->out);
	FZ_CHECK(m != NULL, "%s: the server sent %zu bytes that do not decode", paths[sl->kind],
	         c->out_len);
	if (sl->kind == K_SUBMIT) {
		Gsched__V1__SubmitResponse *r = (Gsched__V1__SubmitResponse *)m;
		for (size_t i = 0; i < r->n_ids; i++)
			record_id(h, r->ids[i]);
	} else if (sl->kind == K_STREAM) {
		Gsched__V1__SubmitStreamOut *r = (Gsched__V1__SubmitStreamOut *)m;
		for (size_t i = 0; i < r->n_acks; i++)
			if (r->acks[i]->outcome_case == GSCHED__V1__SUBMIT_ACK__OUTCOME_ID)
				record_id(h, r->acks[i]->id);
		for (size_t i = 0; i < r->n_results; i++) {
			Gsched__V1__TaskState st = r->results[i]->state;
			FZ_CHECK(st == GSCHED__V1__TASK_STATE__TASK_STATE_DONE ||
			             st == GSCHED__V1__TASK_STATE__TASK_STATE_FAILED ||
			             st == GSCHED__V1__TASK_STATE__TASK_STATE_CANCELLED,
			         "a stream result in state %d", st);
		}
	} else if (sl->kind == K_WORKER) {
		Gsched__V1__WorkerDown *d = (Gsched__V1__WorkerDown *)m;
		for (size_t i = 0; i < d->n_registered; i++)
			h->wids[h->n_wids++ % 8] = d->registered[i]->worker_id;
		for (size_t i = 0; i < d->n_assignments; i++) {
			const Gsched__V1__Assignment *a = d->assignments[i];
			FZ_CHECK(a->spec != NULL, "an assignment without its spec");
			h->asg[h->n_asg++ % MAX_IDS] = (struct asg){a->id, a->attempt, c};
			record_id(h, a->id);
		}
	}
	protobuf_c_message_free_unpacked(m, NULL);
	c->out_len = 0;
}

static void forget_call(struct h *h, struct gs_rpc_call *c)
{
	for (size_t i = 0; i < MAX_IDS; i++)
		if (h->asg[i].w == c)
			h->asg[i].w = NULL;
}

/* Decodes every output and closes every call that is over, until stable. */
static void pump(struct h *h)
{
	bool again = true;
	while (again) {
		again = false;
		for (size_t i = 0; i < MAX_CALLS; i++) {
			struct slot *sl = &h->calls[i];
			if (!sl->c)
				continue;
			take_output(h, sl);
			if (fake_rpc_over(sl->c)) {
				struct gs_rpc_call *c = sl->c;
				sl->c = NULL;
				forget_call(h, c);
				fake_rpc_close(c);
				again = true;
			}
		}
	}
	char msg[256] = "";
	int rc = gs_engine_check(h->e, msg, sizeof(msg));
	FZ_CHECK(rc == GS_OK, "gs_engine_check: %s", msg);
}

static struct slot *open_call(struct h *h, int kind)
{
	for (size_t i = 0; i < MAX_CALLS; i++) {
		if (h->calls[i].c)
			continue;
		const struct fake_method *m = fake_rpc_method(&h->srv, paths[kind]);
		FZ_CHECK(m != NULL, "method %s not registered", paths[kind]);
		struct gs_rpc_call *c = fake_rpc_open(&h->srv, m);
		if (!c)
			return NULL;
		h->calls[i] = (struct slot){c, kind};
		return &h->calls[i];
	}
	return NULL;
}

/* An open call of that kind (picked by the input), else a new one. */
static struct slot *call_of(struct h *h, struct fz_in *in, int kind, bool may_open)
{
	struct slot *found[MAX_CALLS];
	size_t n = 0;
	for (size_t i = 0; i < MAX_CALLS; i++)
		if (h->calls[i].c && h->calls[i].kind == kind && !fake_rpc_over(h->calls[i].c))
			found[n++] = &h->calls[i];
	uint8_t b = fz_u8(in);
	if (n && (!may_open || b < 224))
		return found[b % n];
	return may_open ? open_call(h, kind) : NULL;
}

static void deliver(struct h *h, struct slot *sl, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *b = pool_alloc(h, n);
	if (!b)
		return;
	protobuf_c_message_pack(m, b);
	fake_rpc_message(sl->c, b, n);
}

/* --- generated messages -------------------------------------------------- */

static Gsched__V1__TaskSpec *gen_spec(struct h *h, struct fz_in *in)
{
	Gsched__V1__TaskSpec *sp = pool_alloc(h, sizeof(*sp));
	if (!sp)
		return NULL;
	gsched__v1__task_spec__init(sp);
	uint8_t f = fz_u8(in);
	sp->queue = pick_str(h, in, queues, 4);
	sp->priority = f & 1 ? fz_u32(in) : fz_u8(in);
	sp->retries = fz_u8(in) % 128;
	sp->timeout_ms = f & 2 ? fz_u16(in) : 0;
	sp->delay_ms = f & 4 ? fz_u8(in) : 0;
	switch ((f >> 3) % 4) {
	case 0: {
		Gsched__V1__Argv *av = pool_alloc(h, sizeof(*av));
		if (!av)
			return sp;
		gsched__v1__argv__init(av);
		av->n_args = fz_u8(in) % 4;
		av->args = pool_alloc(h, (av->n_args + 1) * sizeof(char *));
		if (!av->args)
			return sp;
		for (size_t i = 0; i < av->n_args; i++)
			av->args[i] = gen_str(h, in, 24);
		sp->argv = av;
		sp->body_case = GSCHED__V1__TASK_SPEC__BODY_ARGV;
		break;
	}
	case 1:
	case 2: {
		Gsched__V1__HandlerCall *hc = pool_alloc(h, sizeof(*hc));
		if (!hc)
			return sp;
		gsched__v1__handler_call__init(hc);
		hc->name = pick_str(h, in, handlers, 5);
		size_t len;
		const uint8_t *p = fz_bytes(in, f & 0x40 ? 3000 : 32, &len);
		hc->payload.data = (uint8_t *)p;
		hc->payload.len = len;
		sp->handler = hc;
		sp->body_case = GSCHED__V1__TASK_SPEC__BODY_HANDLER;
		break;
	}
	default:
		break; /* neither */
	}
	if (f & 0x80) {
		sp->n_labels = 1 + fz_u8(in) % 2;
		sp->labels = pool_alloc(h, sp->n_labels * sizeof(*sp->labels));
		if (!sp->labels) {
			sp->n_labels = 0;
			return sp;
		}
		for (size_t i = 0; i < sp->n_labels; i++) {
			Gsched__V1__TaskSpec__LabelsEntry *le = pool_alloc(h, sizeof(*le));
			if (!le) {
				sp->n_labels = i;
				break;
			}
			gsched__v1__task_spec__labels_entry__init(le);
			le->key = gen_str(h, in, 16);
			le->value = gen_str(h, in, 16);
			sp->labels[i] = le;
		}
	}
	return sp;
}

static void op_submit(struct h *h, struct fz_in *in)
{
	Gsched__V1__SubmitRequest r = GSCHED__V1__SUBMIT_REQUEST__INIT;
	r.n_tasks = fz_u8(in) % 5; /* 0 is refused */
	r.tasks = pool_alloc(h, (r.n_tasks + 1) * sizeof(*r.tasks));
	if (!r.tasks)
		return;
	for (size_t i = 0; i < r.n_tasks; i++)
		if (!(r.tasks[i] = gen_spec(h, in)))
			return;
	struct slot *sl = open_call(h, K_SUBMIT);
	if (!sl)
		return;
	deliver(h, sl, &r.base);
	FZ_CHECK(fake_rpc_over(sl->c), "Submit left its call open");
	if (sl->c->finished && sl->c->code == GS_RPC_OK) {
		Gsched__V1__SubmitResponse *resp_m =
		    gsched__v1__submit_response__unpack(NULL, sl->c->out_len, sl->c->out);
		FZ_CHECK(resp_m && resp_m->n_ids == r.n_tasks,
		         "Submit of %zu tasks answered %zu ids", r.n_tasks,
		         resp_m ? resp_m->n_ids : 0);
		gsched__v1__submit_response__free_unpacked(resp_m, NULL);
	}
}

static void op_stream(struct h *h, struct fz_in *in)
{
	Gsched__V1__SubmitStreamIn m = GSCHED__V1__SUBMIT_STREAM_IN__INIT;
	m.n_submits = fz_u8(in) % 4;
	m.submits = pool_alloc(h, (m.n_submits + 1) * sizeof(*m.submits));
	if (!m.submits)
		return;
	for (size_t i = 0; i < m.n_submits; i++) {
		Gsched__V1__SubmitItem *it = pool_alloc(h, sizeof(*it));
		if (!it)
			return;
		gsched__v1__submit_item__init(it);
		it->client_seq = fz_u8(in);
		it->task = fz_u8(in) < 240 ? gen_spec(h, in) : NULL;
		m.submits[i] = it;
	}
	struct slot *sl = call_of(h, in, K_STREAM, true);
	if (sl)
		deliver(h, sl, &m.base);
}

static uint64_t *gen_ids(struct h *h, struct fz_in *in, size_t *n)
{
	*n = fz_u8(in) % 5;
	uint64_t *ids = pool_alloc(h, (*n + 1) * sizeof(*ids));
	if (!ids) {
		*n = 0;
		return NULL;
	}
	for (size_t i = 0; i < *n; i++)
		ids[i] = pick_id(h, in);
	return ids;
}

static void op_ids(struct h *h, struct fz_in *in, int kind)
{
	uint8_t f = fz_u8(in);
	struct slot *sl = open_call(h, kind);
	if (!sl)
		return;
	if (kind == K_WAIT) {
		Gsched__V1__WaitRequest r = GSCHED__V1__WAIT_REQUEST__INIT;
		r.ids = gen_ids(h, in, &r.n_ids);
		r.timeout_ms = f & 1 ? fz_u16(in) : 0;
		r.mode = (f >> 1) & 1;
		deliver(h, sl, &r.base);
	} else if (kind == K_GET) {
		Gsched__V1__GetRequest r = GSCHED__V1__GET_REQUEST__INIT;
		r.ids = gen_ids(h, in, &r.n_ids);
		r.include_output = f & 1;
		deliver(h, sl, &r.base);
	} else if (kind == K_CANCEL) {
		Gsched__V1__CancelRequest r = GSCHED__V1__CANCEL_REQUEST__INIT;
		r.ids = gen_ids(h, in, &r.n_ids);
		deliver(h, sl, &r.base);
	} else {
		Gsched__V1__WatchRequest r = GSCHED__V1__WATCH_REQUEST__INIT;
		r.ids = gen_ids(h, in, &r.n_ids);
		r.include_output = f & 1;
		r.queue = (f & 2) ? gen_str(h, in, 16) : (char *)"";
		deliver(h, sl, &r.base);
	}
}

static void op_register(struct h *h, struct fz_in *in)
{
	Gsched__V1__Register reg = GSCHED__V1__REGISTER__INIT, *rp = &reg;
	uint8_t f = fz_u8(in);
	reg.name = gen_str(h, in, 80);
	reg.slots = f & 0x80 ? fz_u32(in) : f % 4; /* 0 is refused */
	reg.n_queues = fz_u8(in) % 3;
	reg.queues = pool_alloc(h, (reg.n_queues + 1) * sizeof(char *));
	if (!reg.queues)
		return;
	for (size_t i = 0; i < reg.n_queues; i++)
		reg.queues[i] = pick_str(h, in, queues, 4);
	reg.n_handlers = fz_u8(in) % 3;
	reg.handlers = pool_alloc(h, (reg.n_handlers + 1) * sizeof(char *));
	if (!reg.handlers)
		return;
	for (size_t i = 0; i < reg.n_handlers; i++)
		reg.handlers[i] = pick_str(h, in, handlers, 5);
	reg.runs_argv = f & 8;
	Gsched__V1__WorkerUp up = GSCHED__V1__WORKER_UP__INIT;
	up.n_register_ = (f & 0x40) ? 2 : 1; /* two is a protocol error */
	Gsched__V1__Register *two[2] = {rp, rp};
	up.register_ = two;
	struct slot *sl = open_call(h, K_WORKER);
	if (sl)
		deliver(h, sl, &up.base);
}

/* Results, starts and a heartbeat from a worker, for attempts it was given
 * (or not: other workers', other attempts, unknown IDs). */
static void op_results(struct h *h, struct fz_in *in)
{
	struct slot *sl = call_of(h, in, K_WORKER, false);
	if (!sl)
		return;
	size_t known = h->n_asg < MAX_IDS ? h->n_asg : MAX_IDS;
	Gsched__V1__WorkerUp up = GSCHED__V1__WORKER_UP__INIT;
	up.n_results = fz_u8(in) % 4;
	up.n_started = fz_u8(in) % 3;
	up.results = pool_alloc(h, (up.n_results + 1) * sizeof(*up.results));
	up.started = pool_alloc(h, (up.n_started + 1) * sizeof(*up.started));
	if (!up.results || !up.started)
		return;
	for (size_t i = 0; i < up.n_results + up.n_started; i++) {
		uint8_t f = fz_u8(in);
		uint64_t id = pick_id(h, in);
		uint32_t attempt = fz_u8(in) % 3;
		if (known && f < 224) {
			/* Prefer this worker's own assignments. */
			const struct asg *a = &h->asg[fz_u8(in) % known];
			for (size_t k = 0; k < known && f < 192; k++)
				if (h->asg[k].w == sl->c && fz_u8(in) & 1)
					a = &h->asg[k];
			id = a->id;
			attempt = a->attempt + (f & 3) - (f & 4 ? 1 : 0) * ((f & 3) != 0);
			if ((f & 3) == 3)
				attempt = a->attempt;
		}
		if (i < up.n_results) {
			Gsched__V1__WorkResult *r = pool_alloc(h, sizeof(*r));
			if (!r)
				return;
			gsched__v1__work_result__init(r);
			r->id = id;
			r->attempt = attempt;
			r->state = fz_u8(in) % 10;
			r->exit_code = (int32_t)fz_u32(in);
			size_t len;
			const uint8_t *p = fz_bytes(in, f & 0x10 ? 5000 : 48, &len);
			r->output.data = (uint8_t *)p;
			r->output.len = len;
			r->output_truncated = f & 0x20;
			r->error = gen_str(h, in, f & 0x40 ? 3000 : 24);
			r->started_us = f & 0x80 ? fz_u64(in) : 0;
			r->finished_us = f & 0x80 ? fz_u64(in) : 0;
			up.results[i] = r;
		} else {
			Gsched__V1__Started *s = pool_alloc(h, sizeof(*s));
			if (!s)
				return;
			gsched__v1__started__init(s);
			s->id = id;
			s->attempt = attempt;
			s->started_us = f & 0x80 ? fz_u64(in) : 0;
			up.started[i - up.n_results] = s;
		}
	}
	Gsched__V1__Heartbeat hb = GSCHED__V1__HEARTBEAT__INIT, *hbp = &hb;
	if (fz_u8(in) & 1) {
		hb.free_slots = fz_u8(in);
		up.n_heartbeat = 1;
		up.heartbeat = &hbp;
	}
	deliver(h, sl, &up.base);
}

static void op_admin(struct h *h, struct fz_in *in)
{
	uint8_t f = fz_u8(in);
	int kind = K_LIST + f % 3;
	struct slot *sl = open_call(h, kind);
	if (!sl)
		return;
	if (kind == K_LIST) {
		Gsched__V1__ListWorkersRequest r = GSCHED__V1__LIST_WORKERS_REQUEST__INIT;
		r.include_dead = f & 4;
		deliver(h, sl, &r.base);
	} else if (kind == K_STATS) {
		Gsched__V1__StatsRequest r = GSCHED__V1__STATS_REQUEST__INIT;
		deliver(h, sl, &r.base);
	} else {
		Gsched__V1__DrainRequest r = GSCHED__V1__DRAIN_REQUEST__INIT;
		size_t known = h->n_wids < 8 ? h->n_wids : 8;
		uint8_t b = fz_u8(in);
		r.worker_id = known && b < 200 ? h->wids[b % known] : fz_u64(in);
		deliver(h, sl, &r.base);
	}
}

/* Raw bytes to any method: the decoders themselves. */
static void op_raw(struct h *h, struct fz_in *in)
{
	int kind = fz_u8(in) % K_N;
	size_t len;
	const uint8_t *p = fz_bytes(in, 4096, &len);
	struct slot *sl;
	if (kind == K_STREAM || kind == K_WORKER)
		sl = call_of(h, in, kind, true);
	else
		sl = open_call(h, kind);
	if (sl)
		fake_rpc_message(sl->c, p, len);
}

/* --- the target ------------------------------------------------------------- */

static struct h *setup(void)
{
	struct h *h = calloc(1, sizeof(*h));
	FZ_CHECK(h != NULL, "out of memory");
	gs_engine_opts eo = {
	    .segment_name = NULL,
	    .geom = {
	        .max_tasks = 64, .max_workers = 4, .max_payload = 2048, .arena_bytes = 64 * 1024}};
	FZ_CHECK(gs_engine_create(&eo, &h->e) == GS_OK, "engine create");
	gs_service_opts so = {.heartbeat_ms = 500,
	                      .worker_timeout_ms = 3000,
	                      .result_ttl_ms = 10000,
	                      .max_batch = 16};
	FZ_CHECK(gs_service_create(h->e, &so, &h->s) == GS_OK, "service create");
	FZ_CHECK(gs_service_register(h->s, &h->srv) == GS_OK, "service register");
	gs_service_thread_online(h->s);
	return h;
}

static void teardown(struct h *h)
{
	for (size_t i = 0; i < MAX_CALLS; i++)
		if (h->calls[i].c)
			fake_rpc_peer_cancel(h->calls[i].c);
	pump(h);
	gs_service_thread_offline(h->s);
	gs_service_destroy(h->s); /* waits for the worker table's frees */
	FZ_CHECK(atomic_load(&fake_rpc_live_calls) == 0, "%ld calls never freed",
	         atomic_load(&fake_rpc_live_calls));
	char msg[256] = "";
	FZ_CHECK(gs_engine_check(h->e, msg, sizeof(msg)) == GS_OK, "final check: %s", msg);
	gs_engine_close(h->e, false);
	pool_free(h);
	free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size, 0};
	struct h *h = setup();
	for (int steps = 0; fz_more(&in) && steps < 64; steps++) {
		uint8_t op = fz_u8(&in);
		switch (op % 16) {
		case 0:
		case 1:
			op_submit(h, &in);
			break;
		case 2:
			op_stream(h, &in);
			break;
		case 3: {
			struct slot *sl =
			    call_of(h, &in, fz_u8(&in) & 1 ? K_STREAM : K_WORKER, false);
			if (sl)
				fake_rpc_half_close(sl->c);
			break;
		}
		case 4: {
			size_t i = fz_u8(&in) % MAX_CALLS;
			if (h->calls[i].c)
				fake_rpc_peer_cancel(h->calls[i].c);
			break;
		}
		case 5:
			op_ids(h, &in, K_WAIT + fz_u8(&in) % 4);
			break;
		case 6:
		case 7:
			op_register(h, &in);
			break;
		case 8:
		case 9:
			op_results(h, &in);
			break;
		case 10:
			op_admin(h, &in);
			break;
		case 11:
		case 12:
			op_raw(h, &in);
			break;
		case 13: {
			uint64_t next = 0;
			h->now_off += (uint64_t)fz_u8(&in) * 1000;
			gs_service_schedule(h->s, gs_now_us() + h->now_off, &next);
			break;
		}
		case 14:
			h->now_off += (uint64_t)fz_u16(&in) * 1000;
			gs_service_tick(h->s, gs_now_us() + h->now_off);
			break;
		case 15:
			if (fz_u8(&in) == 0xA5)
				gs_service_begin_shutdown(h->s);
			break;
		}
		pump(h);
		pool_free(h);
	}
	teardown(h);
	return 0;
}
