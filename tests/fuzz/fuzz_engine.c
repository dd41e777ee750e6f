/*
 * fuzz_engine.c - random sequences of engine operations over a small
 * anonymous engine (64 tasks, 8 workers, 2 KiB payloads, a 64 KiB arena),
 * with the engine's invariants (gs_engine_check) and a reference model
 * checked after every operation.
 *
 * The input is a program: an op byte and its arguments.  Ops: submit
 * batches (bad queues, priorities over 255, retries over 100, payloads over
 * the limit, delayed tasks), pop_assign, dispatch, start and finish with the
 * right or a wrong worker/attempt, cancel, release, worker register
 * (bad slot counts) / heartbeat / drain / dead, the delay timer, queue
 * creation with fuzzed names, expiry scans, payload and result reads.
 *
 * The model knows each task the fuzzer created: state, worker, attempt,
 * queue, priority, payload bytes; each worker: state and load.  After each
 * op every known task must read back as the model says (released ones must
 * not resolve), every worker's load must equal its model tasks, and a pop or
 * dispatch must return the model's highest-priority queued task.
 */
#include <stdlib.h>
#include <string.h>

#include "delay_timer.h"
#include "engine.h"
#include "fuzz_common.h"
#include "gs_error.h"

#define MT 64 /* tasks */
#define MW 8  /* workers */
#define MP 2048
#define T0 1000000000000ull

enum { S_DELAYED, S_QUEUED, S_ASSIGNED, S_RUNNING, S_DONE, S_FAILED, S_CANCELLED, S_GONE };

struct mt {
	uint64_t id;
	int st;
	uint32_t q, prio, retries, attempt, plen, seed;
	int w; /* model worker while ASSIGNED/RUNNING, else -1 */
	uint64_t not_before;
};

struct mw {
	uint64_t id;
	bool used, draining;
	uint32_t slots;
	uint64_t mask;
};

static struct {
	gs_engine *e;
	gs_delay_timer timer;
	struct mt t[1024];
	size_t nt;
	struct mw w[MW];
	uint32_t qids[GS_MAX_QUEUES];
	size_t nq;
	uint64_t now;
} M;

static uint8_t pbyte(uint32_t seed, uint32_t i)
{
	return (uint8_t)(seed * 131u + i * 17u + (i >> 7));
}

static const uint32_t estate[] = {GS_TASK_DELAYED,  GS_TASK_QUEUED, GS_TASK_ASSIGNED,
                                  GS_TASK_RUNNING,  GS_TASK_DONE,   GS_TASK_FAILED,
                                  GS_TASK_CANCELLED};

static int widx(uint64_t id)
{
	for (int i = 0; i < MW; i++)
		if (M.w[i].used && M.w[i].id == id)
			return i;
	return -1;
}

static bool final(int st)
{
	return st == S_DONE || st == S_FAILED || st == S_CANCELLED;
}

/* A known task (sometimes one long gone) or an unknown ID. */
static struct mt *pick_task(struct fz_in *in, uint64_t *id)
{
	uint8_t b = fz_u8(in);
	if (M.nt && b < 240) {
		/* Mostly live ones: scan from a random point. */
		size_t start = (size_t)fz_u8(in) * M.nt / 256;
		for (size_t k = 0; k < M.nt; k++) {
			struct mt *t = &M.t[(start + k) % M.nt];
			if (t->st != S_GONE || b >= 200) {
				*id = t->id;
				return t;
			}
		}
	}
	*id = b & 1 ? fz_u64(in) : 0;
	return NULL;
}

static int pick_worker(struct fz_in *in, uint64_t *id)
{
	uint8_t b = fz_u8(in);
	int i = b % MW;
	if (b < 240 && M.w[i].used) {
		*id = M.w[i].id;
		return i;
	}
	*id = b < 248 ? fz_u64(in) : 0;
	return widx(*id);
}

static uint32_t pick_queue(struct fz_in *in)
{
	uint8_t b = fz_u8(in);
	if (b < 250)
		return M.qids[b % M.nq];
	return b == 255 ? fz_u32(in) : GS_MAX_QUEUES + b;
}

static uint32_t model_load(int w)
{
	uint32_t n = 0;
	for (size_t i = 0; i < M.nt; i++)
		n += (M.t[i].st == S_ASSIGNED || M.t[i].st == S_RUNNING) && M.t[i].w == w;
	return n;
}

static void check_all(void)
{
	char msg[256] = "";
	int rc = gs_engine_check(M.e, msg, sizeof(msg));
	FZ_CHECK(rc == GS_OK, "gs_engine_check: %s", msg);
	for (size_t i = 0; i < M.nt; i++) {
		struct mt *t = &M.t[i];
		gs_task_info info;
		rc = gs_engine_task_info(M.e, t->id, &info);
		if (t->st == S_GONE) {
			FZ_CHECK(rc == GS_ENOTFOUND, "released task %zu resolves (rc %d state %u)",
			         i, rc, info.state);
			continue;
		}
		FZ_CHECK(rc == GS_OK, "task %zu (model state %d) does not resolve: %d", i, t->st,
		         rc);
		FZ_CHECK(info.state == estate[t->st], "task %zu: state %u, model %d", i, info.state,
		         t->st);
		FZ_CHECK(info.attempt == t->attempt, "task %zu: attempt %u, model %u", i,
		         info.attempt, t->attempt);
		FZ_CHECK(info.queue == t->q && info.priority == t->prio, "task %zu: queue/priority",
		         i);
		if (t->st == S_ASSIGNED || t->st == S_RUNNING)
			FZ_CHECK(info.worker == M.w[t->w].id, "task %zu: worker", i);
		const uint8_t *p;
		uint32_t len;
		rc = gs_engine_task_payload(M.e, t->id, &p, &len);
		FZ_CHECK(rc == GS_OK && len == t->plen,
		         "task %zu: payload (rc %d len %u, model %u)", i, rc, len, t->plen);
		for (uint32_t k = 0; k < len; k++)
			FZ_CHECK(p[k] == pbyte(t->seed, k), "task %zu: payload byte %u", i, k);
	}
	for (int w = 0; w < MW; w++) {
		if (!M.w[w].used)
			continue;
		gs_worker_info wi;
		rc = gs_engine_worker_info(M.e, M.w[w].id, &wi);
		FZ_CHECK(rc == GS_OK, "worker %d does not resolve", w);
		FZ_CHECK(wi.load == model_load(w), "worker %d: load %u, model %u", w, wi.load,
		         model_load(w));
		FZ_CHECK(wi.state == (M.w[w].draining ? GS_WORKER_DRAINING : GS_WORKER_ALIVE),
		         "worker %d: state %u", w, wi.state);
	}
}

/* The task a pop/dispatch of queue q must take: highest priority. */
static void check_popped(const gs_assignment *a, uint32_t q)
{
	uint32_t best = 0;
	bool any = false;
	struct mt *got = NULL;
	for (size_t i = 0; i < M.nt; i++) {
		struct mt *t = &M.t[i];
		if (t->id == a->task)
			got = t;
		if (t->st == S_QUEUED && t->q == q && (!any || t->prio > best)) {
			best = t->prio;
			any = true;
		}
	}
	FZ_CHECK(got && got->st == S_QUEUED && got->q == q,
	         "popped a task that is not queued in q");
	FZ_CHECK(got->prio == best, "popped priority %u while %u is queued", got->prio, best);
	FZ_CHECK(a->attempt >= 1 && a->attempt >= got->attempt, "attempt %u after %u", a->attempt,
	         got->attempt);
	int w = widx(a->worker);
	FZ_CHECK(w >= 0, "assigned to an unknown worker");
	got->st = S_ASSIGNED;
	got->w = w;
	got->attempt = a->attempt;
}

static bool queued_in(uint32_t q)
{
	for (size_t i = 0; i < M.nt; i++)
		if (M.t[i].st == S_QUEUED && M.t[i].q == q)
			return true;
	return false;
}

static void op_submit(struct fz_in *in)
{
	gs_task_spec specs[4];
	uint64_t ids[4];
	uint8_t f = fz_u8(in);
	size_t n = f % 5; /* 0 is refused */
	for (size_t i = 0; i < n; i++) {
		uint8_t g = fz_u8(in);
		uint32_t seed = fz_u8(in);
		uint32_t plen = g & 1 ? fz_u16(in) % (MP + 64) : fz_u8(in) % 96;
		uint8_t *p = malloc(plen ? plen : 1);
		FZ_CHECK(p != NULL, "out of memory");
		for (uint32_t k = 0; k < plen; k++)
			p[k] = pbyte(seed, k);
		specs[i] = (gs_task_spec){
		    .queue = pick_queue(in),
		    .priority = g & 2 ? fz_u16(in) % 300 : fz_u8(in) % 4,
		    .max_retries = g & 4 ? fz_u8(in) : fz_u8(in) % 3,
		    .timeout_ms = fz_u16(in),
		    .not_before_us = g & 8 ? M.now + (uint64_t)fz_u8(in) * 1000 : 0,
		    .payload = p,
		    .payload_len = plen,
		};
		ids[i] = seed; /* carry the seed to the model below */
	}
	uint32_t seeds[4];
	for (size_t i = 0; i < n; i++)
		seeds[i] = (uint32_t)ids[i];
	int rc = gs_engine_submit(M.e, specs, n, M.now, ids);
	if (rc == GS_OK) {
		FZ_CHECK(n > 0, "a submit of nothing succeeded");
		for (size_t i = 0; i < n; i++) {
			FZ_CHECK(specs[i].priority <= 255 &&
			             specs[i].max_retries <= GS_MAX_RETRIES &&
			             specs[i].payload_len <= MP,
			         "a bad spec was accepted");
			if (M.nt == sizeof(M.t) / sizeof(M.t[0]))
				abort(); /* bounded by the step limit */
			gs_task_info info;
			FZ_CHECK(gs_engine_task_info(M.e, ids[i], &info) == GS_OK,
			         "new task missing");
			FZ_CHECK(info.state == GS_TASK_QUEUED || info.state == GS_TASK_DELAYED,
			         "new task in state %u", info.state);
			FZ_CHECK(specs[i].not_before_us || info.state == GS_TASK_QUEUED,
			         "an undelayed task is DELAYED");
			M.t[M.nt++] = (struct mt){
			    .id = ids[i],
			    .st = info.state == GS_TASK_QUEUED ? S_QUEUED : S_DELAYED,
			    .q = specs[i].queue,
			    .prio = specs[i].priority,
			    .retries = specs[i].max_retries,
			    .attempt = info.attempt,
			    .plen = specs[i].payload_len,
			    .seed = seeds[i],
			    .w = -1,
			    .not_before = specs[i].not_before_us,
			};
		}
	}
	for (size_t i = 0; i < n; i++)
		free((void *)specs[i].payload);
}

static void op_finish(struct fz_in *in, bool start)
{
	uint64_t id, wid;
	struct mt *t = pick_task(in, &id);
	uint8_t f = fz_u8(in);
	uint32_t attempt = t ? t->attempt : 1;
	int w = t && t->w >= 0 && (f & 1) ? t->w : pick_worker(in, &wid);
	if (t && t->w >= 0 && (f & 1))
		wid = M.w[t->w].id;
	if (f & 2)
		attempt += (f & 4) ? 1 : (uint32_t)-1;
	bool match = t && (t->st == S_ASSIGNED || t->st == S_RUNNING) && w >= 0 && t->w == w &&
	             attempt == t->attempt;
	int rc;
	if (start) {
		rc = gs_engine_start(M.e, id, wid, attempt, M.now);
		if (rc == GS_OK) {
			FZ_CHECK(match, "start of a wrong worker/attempt succeeded");
			t->st = S_RUNNING;
		}
		return;
	}
	uint32_t rlen = f & 8 ? fz_u16(in) % (MP + 64) : fz_u8(in) % 64;
	uint8_t *r = malloc(rlen ? rlen : 1);
	FZ_CHECK(r != NULL, "out of memory");
	memset(r, 0x5A, rlen);
	gs_outcome o = {.failed = f & 16,
	                .status = (int32_t)fz_u32(in),
	                .reason = fz_u8(in) % 6,
	                .result = r,
	                .result_len = rlen,
	                .started_us = f & 32 ? fz_u64(in) : 0};
	rc = gs_engine_finish(M.e, id, wid, attempt, &o, M.now);
	if (rc == GS_OK) {
		FZ_CHECK(match, "finish of a wrong worker/attempt succeeded");
		FZ_CHECK(rlen <= MP, "a result over max_payload was accepted");
		t->st = o.failed ? S_FAILED : S_DONE;
		t->w = -1;
		gs_task_info info;
		FZ_CHECK(gs_engine_task_info(M.e, id, &info) == GS_OK, "finished task missing");
		const uint8_t *p;
		uint32_t len;
		FZ_CHECK(gs_engine_task_result(M.e, id, &p, &len) == GS_OK, "result read");
		FZ_CHECK(info.result_dropped ? len == 0 : len == rlen, "result length %u of %u",
		         len, rlen);
		for (uint32_t k = 0; k < len; k++)
			FZ_CHECK(p[k] == 0x5A, "result byte %u", k);
	} else if (match && rlen <= MP) {
		FZ_CHECK(rc != GS_ESTALE, "the right attempt's result was called stale");
	}
	free(r);
}

static void op_cancel(struct fz_in *in)
{
	uint64_t id, wid = 0;
	uint32_t att = 0;
	struct mt *t = pick_task(in, &id);
	int rc = gs_engine_cancel(M.e, id, M.now, &wid, &att);
	if (rc == GS_OK) {
		FZ_CHECK(t && t->st != S_GONE && !final(t->st), "cancel of a final/unknown task");
		bool on_worker = t->st == S_ASSIGNED || t->st == S_RUNNING;
		FZ_CHECK(on_worker ? wid == M.w[t->w].id && att == t->attempt : wid == 0,
		         "cancel named the wrong worker");
		t->st = S_CANCELLED;
		t->w = -1;
	} else if (t && t->st != S_GONE) {
		FZ_CHECK(final(t->st), "cancel of a live task failed: %d", rc);
	}
}

static void op_release(struct fz_in *in)
{
	uint64_t id;
	struct mt *t = pick_task(in, &id);
	int rc = gs_engine_release(M.e, id);
	if (rc == GS_OK) {
		FZ_CHECK(t && final(t->st), "release of a task that is not final");
		t->st = S_GONE;
	} else if (t) {
		FZ_CHECK(!final(t->st), "release of a final task failed: %d", rc);
	}
}

struct dead_ctx {
	uint64_t task[MT * 2];
	uint32_t st[MT * 2];
	size_t n;
};

static void on_moved(uint64_t task, uint32_t st, void *arg)
{
	struct dead_ctx *c = arg;
	FZ_CHECK(c->n < MT * 2, "too many moves");
	c->task[c->n] = task;
	c->st[c->n++] = st;
}

static void op_worker(struct fz_in *in)
{
	uint8_t f = fz_u8(in);
	uint64_t wid;
	switch (f % 5) {
	case 0: {
		int free_i = -1;
		for (int i = 0; i < MW; i++)
			if (!M.w[i].used) {
				free_i = i;
				break;
			}
		uint32_t slots = f & 0x80 ? fz_u32(in) : fz_u8(in) % 4;
		uint64_t mask = f & 0x40 ? fz_u64(in) : (1ull << M.qids[fz_u8(in) % M.nq]);
		int rc = gs_engine_worker_register(M.e, slots, mask, M.now, &wid);
		if (rc == GS_OK) {
			FZ_CHECK(free_i >= 0, "registered past the worker table");
			FZ_CHECK(slots >= 1 && slots <= GS_WORKER_MAX_SLOTS,
			         "bad slot count accepted");
			M.w[free_i] =
			    (struct mw){.id = wid, .used = true, .slots = slots, .mask = mask};
		}
		break;
	}
	case 1: {
		int w = pick_worker(in, &wid);
		int rc = gs_engine_worker_heartbeat(M.e, wid, M.now);
		FZ_CHECK(w < 0 || rc == GS_OK, "heartbeat of a live worker: %d", rc);
		break;
	}
	case 2: {
		int w = pick_worker(in, &wid);
		int rc = gs_engine_worker_drain(M.e, wid);
		if (rc == GS_OK) {
			FZ_CHECK(w >= 0, "drain of an unknown worker");
			M.w[w].draining = true;
		}
		break;
	}
	case 3: {
		int w = pick_worker(in, &wid);
		struct dead_ctx c = {.n = 0};
		int rc = gs_engine_worker_dead(M.e, wid, M.now, on_moved, &c);
		if (rc != GS_OK) {
			FZ_CHECK(w < 0, "worker_dead of a live worker: %d", rc);
			FZ_CHECK(c.n == 0, "a failed worker_dead moved tasks");
			break;
		}
		FZ_CHECK(w >= 0, "worker_dead of an unknown worker");
		size_t expect = model_load(w);
		FZ_CHECK(c.n == expect, "worker_dead moved %zu of %zu tasks", c.n, expect);
		for (size_t k = 0; k < c.n; k++) {
			struct mt *t = NULL;
			for (size_t i = 0; i < M.nt; i++)
				if (M.t[i].id == c.task[k])
					t = &M.t[i];
			FZ_CHECK(t && (t->st == S_ASSIGNED || t->st == S_RUNNING) && t->w == w,
			         "worker_dead moved a task not on the worker");
			bool requeue = t->attempt <= t->retries;
			FZ_CHECK(c.st[k] == (requeue ? GS_TASK_QUEUED : GS_TASK_FAILED),
			         "attempt %u retries %u -> state %u", t->attempt, t->retries,
			         c.st[k]);
			t->st = requeue ? S_QUEUED : S_FAILED;
			t->w = -1;
			gs_task_info info;
			FZ_CHECK(gs_engine_task_info(M.e, t->id, &info) == GS_OK,
			         "moved task missing");
			FZ_CHECK(info.attempt >= t->attempt, "attempt went back");
			t->attempt = info.attempt;
		}
		M.w[w].used = false;
		break;
	}
	default: {
		uint64_t out[MW + 1];
		size_t n =
		    gs_engine_worker_expired(M.e, M.now, (uint64_t)fz_u16(in) * 1000, out, MW);
		FZ_CHECK(n <= MW, "expired returned %zu", n);
		for (size_t i = 0; i < n; i++)
			FZ_CHECK(widx(out[i]) >= 0, "expired named an unknown worker");
		break;
	}
	}
}

static void op_delay(struct fz_in *in)
{
	M.now += (uint64_t)fz_u8(in) * 1000;
	uint64_t next = 0;
	size_t released = 0;
	gs_delay_timer_poll(&M.timer, M.e, M.now, &next, &released);
	size_t moved = 0;
	for (size_t i = 0; i < M.nt; i++) {
		struct mt *t = &M.t[i];
		if (t->st != S_DELAYED)
			continue;
		gs_task_info info;
		FZ_CHECK(gs_engine_task_info(M.e, t->id, &info) == GS_OK, "delayed task missing");
		if (info.state == GS_TASK_QUEUED) {
			FZ_CHECK(t->not_before <= M.now, "released before its time");
			t->st = S_QUEUED;
			moved++;
		} else {
			FZ_CHECK(t->not_before > M.now, "due task still DELAYED after a poll");
		}
	}
	FZ_CHECK(moved == released, "timer released %zu, model %zu", released, moved);
}

static void op_queue(struct fz_in *in)
{
	size_t len;
	const uint8_t *p = fz_bytes(in, 80, &len);
	char name[81];
	memcpy(name, p, len);
	name[len] = 0;
	uint32_t q;
	int rc = gs_engine_queue(M.e, name, fz_u8(in) & 1, &q);
	if (rc != GS_OK)
		return;
	FZ_CHECK(q < GS_MAX_QUEUES, "queue id %u", q);
	const char *back = gs_engine_queue_name(M.e, q);
	FZ_CHECK(back && strcmp(back, name) == 0, "queue name does not read back");
	bool known = false;
	for (size_t i = 0; i < M.nq; i++)
		known |= M.qids[i] == q;
	if (!known)
		M.qids[M.nq++] = q;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size, 0};
	memset(&M, 0, sizeof(M));
	gs_engine_opts eo = {
	    .geom = {
	        .max_tasks = MT, .max_workers = MW, .max_payload = MP, .arena_bytes = 64 * 1024}};
	FZ_CHECK(gs_engine_create(&eo, &M.e) == GS_OK, "engine create");
	gs_delay_timer_init(&M.timer);
	M.now = T0;
	FZ_CHECK(gs_engine_queue(M.e, "default", false, &M.qids[0]) == GS_OK, "default queue");
	M.nq = 1;
	for (int steps = 0; fz_more(&in) && steps < 200; steps++) {
		uint8_t op = fz_u8(&in);
		switch (op % 12) {
		case 0:
		case 1:
			op_submit(&in);
			break;
		case 2: {
			uint32_t q = pick_queue(&in);
			uint64_t wid;
			int w = pick_worker(&in, &wid);
			gs_assignment a;
			int rc = gs_engine_pop_assign(M.e, q, wid, M.now, &a);
			if (rc == GS_OK) {
				FZ_CHECK(w >= 0 && !M.w[w].draining,
				         "pop_assign to a worker not alive");
				check_popped(&a, q);
			} else if (rc == GS_EEMPTY) {
				FZ_CHECK(!queued_in(q), "pop_assign: EEMPTY with tasks queued");
			}
			break;
		}
		case 3: {
			uint32_t q = pick_queue(&in);
			gs_assignment a;
			int rc = gs_engine_dispatch(M.e, q, M.now, &a);
			if (rc == GS_OK) {
				int w = widx(a.worker);
				FZ_CHECK(w >= 0 && !M.w[w].draining && (M.w[w].mask >> q & 1) &&
				             model_load(w) < M.w[w].slots,
				         "dispatch to an ineligible worker");
				for (int k = 0; k < MW; k++)
					if (M.w[k].used && !M.w[k].draining &&
					    (M.w[k].mask >> q & 1) && model_load(k) < M.w[k].slots)
						FZ_CHECK(model_load(k) >= model_load(w),
						         "dispatch skipped a less loaded worker");
				check_popped(&a, q);
			}
			break;
		}
		case 4:
			op_finish(&in, true);
			break;
		case 5:
		case 6:
			op_finish(&in, false);
			break;
		case 7:
			op_cancel(&in);
			break;
		case 8:
			op_release(&in);
			break;
		case 9:
			op_worker(&in);
			break;
		case 10:
			op_delay(&in);
			break;
		case 11:
			if (op & 0x80)
				op_queue(&in);
			else
				M.now += (uint64_t)fz_u16(&in) * 1000;
			break;
		}
		check_all();
	}
	gs_delay_timer_free(&M.timer);
	gs_engine_close(M.e, false);
	return 0;
}
