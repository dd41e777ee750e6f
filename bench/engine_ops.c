/* engine_ops.c - benchmark bodies over the C engine (see engine_ops.h). */
#include "engine_ops.h"

#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "gs_error.h"
#include "mutex_heap.h"
#include "task_heap.h"
#include "worker_heap.h"
#include "worker_pool.h"

#define BAD        (-100) /* an unexpected result (wrong ID, spurious empty) */
#define MAX_THREAD 64u
#define REFILL     4096u /* tasks queued per dispatch refill */

static const uint8_t payload16[16] = "gsched-bench-16";

static void *zalloc(uint64_t bytes)
{
	size_t n = (size_t)((bytes + 63) / 64 * 64);
	void *p = aligned_alloc(64, n ? n : 64);
	if (p)
		memset(p, 0, n);
	return p;
}

static gs_engine *engine_new(uint32_t max_tasks, uint32_t max_workers, uint32_t *qid)
{
	gs_engine_opts o = {0};
	o.geom.max_tasks = max_tasks;
	o.geom.max_workers = max_workers;
	o.geom.max_payload = 65536;
	o.geom.arena_bytes = 1u << 20;
	gs_engine *e;
	if (gs_engine_create(&o, &e) != GS_OK)
		return NULL;
	if (gs_engine_queue(e, "default", false, qid) != GS_OK) {
		gs_engine_close(e, false);
		return NULL;
	}
	return e;
}

static void spec_fill(gs_task_spec *sp, size_t n, uint32_t qid)
{
	for (size_t i = 0; i < n; i++) {
		memset(&sp[i], 0, sizeof(sp[i]));
		sp[i].queue = qid;
		sp[i].priority = GS_BENCH_PRIO;
		sp[i].payload = payload16;
		sp[i].payload_len = sizeof(payload16);
	}
}

/* --- 1. lock-free task heap ------------------------------------------- */

struct theap {
	gs_task_heap h;
	void *nodes, *levels, *queues;
	uint32_t qid;
};

void *gs_bench_theap_new(uint32_t prefill)
{
	struct theap *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	gs_geom g = {0};
	g.max_tasks = prefill + MAX_THREAD; /* a node per task in flight */
	t->nodes = zalloc(gs_task_heap_nodes_bytes(&g));
	t->levels = zalloc(gs_task_heap_levels_bytes(&g));
	t->queues = zalloc(gs_task_heap_queues_bytes(&g));
	if (!t->nodes || !t->levels || !t->queues) {
		gs_bench_theap_free(t);
		return NULL;
	}
	gs_task_heap_bind(&t->h, t->nodes, t->levels, t->queues, g.max_tasks, true);
	if (gs_task_heap_queue(&t->h, "bench", true, &t->qid) != GS_OK) {
		gs_bench_theap_free(t);
		return NULL;
	}
	for (uint32_t i = 0; i < prefill; i++)
		gs_task_heap_push(&t->h, t->qid, GS_BENCH_PRIO, (uint64_t)1 << 40 | i);
	return t;
}

int gs_bench_theap_pair(void *ctx, uint64_t id)
{
	struct theap *t = ctx;
	uint64_t out;
	int rc = gs_task_heap_push(&t->h, t->qid, GS_BENCH_PRIO, id);
	if (rc != GS_OK)
		return rc;
	rc = gs_task_heap_pop(&t->h, t->qid, &out);
	return rc == GS_EEMPTY ? BAD : rc;
}

void gs_bench_theap_free(void *ctx)
{
	struct theap *t = ctx;
	if (!t)
		return;
	free(t->nodes);
	free(t->levels);
	free(t->queues);
	free(t);
}

/* --- 2. mutex heap ------------------------------------------------------ */

void *gs_bench_mheap_new(uint32_t prefill)
{
	gs_mutex_heap *h = gs_mutex_heap_create(prefill + MAX_THREAD);
	if (!h)
		return NULL;
	for (uint32_t i = 0; i < prefill; i++)
		gs_mutex_heap_push(h, GS_BENCH_PRIO, (uint64_t)1 << 40 | i);
	return h;
}

int gs_bench_mheap_pair(void *ctx, uint64_t id)
{
	uint64_t out;
	if (gs_mutex_heap_push(ctx, GS_BENCH_PRIO, id) != 0)
		return GS_EFULL;
	return gs_mutex_heap_pop(ctx, &out) == 0 ? GS_OK : BAD;
}

void gs_bench_mheap_free(void *ctx)
{
	gs_mutex_heap_destroy(ctx);
}

/* --- 3. batch submit + drain ------------------------------------------- */

struct batch_thread {
	uint64_t worker;
	gs_task_spec specs[GS_BENCH_BATCH];
	uint64_t ids[GS_BENCH_BATCH];
	gs_assignment asg[GS_BENCH_BATCH];
	uint8_t pad[64];
};

struct batch {
	gs_engine *e;
	uint32_t qid, threads;
	struct batch_thread *t;
};

void gs_bench_batch_free(void *ctx)
{
	struct batch *b = ctx;
	if (!b)
		return;
	if (b->e)
		gs_engine_close(b->e, false);
	free(b->t);
	free(b);
}

void *gs_bench_batch_new(uint32_t threads)
{
	if (threads == 0 || threads > MAX_THREAD)
		return NULL;
	struct batch *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->threads = threads;
	b->t = zalloc((uint64_t)threads * sizeof(*b->t));
	b->e = engine_new(4096, 64, &b->qid);
	if (!b->t || !b->e) {
		gs_bench_batch_free(b);
		return NULL;
	}
	for (uint32_t i = 0; i < threads; i++) {
		spec_fill(b->t[i].specs, GS_BENCH_BATCH, b->qid);
		if (gs_engine_worker_register(b->e, GS_WORKER_MAX_SLOTS, 1ull << b->qid, 1,
		                              &b->t[i].worker) != GS_OK) {
			gs_bench_batch_free(b);
			return NULL;
		}
	}
	return b;
}

int gs_bench_batch_step(void *ctx, uint32_t tid)
{
	struct batch *b = ctx;
	struct batch_thread *t = &b->t[tid];
	gs_outcome done = {0};
	int rc = gs_engine_submit(b->e, t->specs, GS_BENCH_BATCH, 1, t->ids);
	if (rc != GS_OK)
		return rc;
	/* Each thread pops as many as it pushed, so the queue never looks
	 * empty to it (another thread may take this thread's tasks). */
	for (uint32_t i = 0; i < GS_BENCH_BATCH; i++) {
		rc = gs_engine_pop_assign(b->e, b->qid, t->worker, 2, &t->asg[i]);
		if (rc != GS_OK)
			return rc == GS_EEMPTY ? BAD : rc;
	}
	for (uint32_t i = 0; i < GS_BENCH_BATCH; i++) {
		const gs_assignment *a = &t->asg[i];
		rc = gs_engine_finish(b->e, a->task, a->worker, a->attempt, &done, 3);
		if (rc == GS_OK)
			rc = gs_engine_release(b->e, a->task);
		if (rc != GS_OK)
			return rc;
	}
	return GS_OK;
}

/* --- 4. dispatch ----------------------------------------------------------- */

struct dispatch {
	gs_engine *e;
	uint32_t qid;
	uint32_t queued; /* tasks this benchmark has queued and not dispatched */
	uint32_t head;
	gs_assignment ring[GS_BENCH_INFLIGHT]; /* in flight, oldest at head */
	uint64_t *done;
	uint32_t n_done;
	gs_task_spec specs[GS_BENCH_BATCH];
	uint64_t ids[GS_BENCH_BATCH];
};

void gs_bench_dispatch_free(void *ctx)
{
	struct dispatch *d = ctx;
	if (!d)
		return;
	if (d->e)
		gs_engine_close(d->e, false);
	free(d->done);
	free(d);
}

int gs_bench_dispatch_low(const void *ctx)
{
	return ((const struct dispatch *)ctx)->queued == 0;
}

int gs_bench_dispatch_refill(void *ctx)
{
	struct dispatch *d = ctx;
	for (uint32_t i = 0; i < d->n_done; i++) {
		int rc = gs_engine_release(d->e, d->done[i]);
		if (rc != GS_OK)
			return rc;
	}
	d->n_done = 0;
	for (uint32_t n = 0; n < REFILL; n += GS_BENCH_BATCH) {
		int rc = gs_engine_submit(d->e, d->specs, GS_BENCH_BATCH, 1, d->ids);
		if (rc != GS_OK)
			return rc;
	}
	d->queued += REFILL;
	return GS_OK;
}

void *gs_bench_dispatch_new(uint32_t workers)
{
	struct dispatch *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->done = calloc(2 * REFILL + GS_BENCH_INFLIGHT, sizeof(*d->done));
	d->e = engine_new(4 * REFILL, workers, &d->qid);
	if (!d->done || !d->e)
		goto fail;
	spec_fill(d->specs, GS_BENCH_BATCH, d->qid);
	for (uint32_t i = 0; i < workers; i++) {
		uint64_t w;
		if (gs_engine_worker_register(d->e, 2 * GS_BENCH_INFLIGHT, 1ull << d->qid, 1, &w) !=
		    GS_OK)
			goto fail;
	}
	if (gs_bench_dispatch_refill(d) != GS_OK)
		goto fail;
	for (uint32_t i = 0; i < GS_BENCH_INFLIGHT; i++) {
		if (gs_engine_dispatch(d->e, d->qid, 2, &d->ring[i]) != GS_OK)
			goto fail;
		d->queued--;
	}
	return d;
fail:
	gs_bench_dispatch_free(d);
	return NULL;
}

int gs_bench_dispatch_step(void *ctx)
{
	struct dispatch *d = ctx;
	static const gs_outcome ok = {0};
	gs_assignment a;
	int rc = gs_engine_dispatch(d->e, d->qid, 2, &a);
	if (rc != GS_OK)
		return rc;
	d->queued--;
	gs_assignment *old = &d->ring[d->head];
	rc = gs_engine_finish(d->e, old->task, old->worker, old->attempt, &ok, 3);
	if (rc != GS_OK)
		return rc;
	d->done[d->n_done++] = old->task;
	*old = a;
	d->head = (d->head + 1) % GS_BENCH_INFLIGHT;
	return GS_OK;
}

/* --- 4b. selection alone ------------------------------------------------------ */

struct select {
	gs_worker_pool p;
	gs_worker_heap h;
	void *slots, *dirty, *wheap;
	uint32_t head;
	uint32_t ring[GS_BENCH_INFLIGHT];
};

void gs_bench_select_free(void *ctx)
{
	struct select *s = ctx;
	if (!s)
		return;
	free(s->slots);
	free(s->dirty);
	free(s->wheap);
	free(s);
}

void *gs_bench_select_new(uint32_t workers)
{
	struct select *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	gs_geom g = {0};
	g.max_workers = workers;
	s->slots = zalloc(gs_worker_pool_slots_bytes(&g));
	s->dirty = zalloc(gs_worker_pool_dirty_bytes(&g));
	s->wheap = zalloc(gs_worker_heap_region_bytes(&g));
	if (!s->slots || !s->dirty || !s->wheap)
		goto fail;
	gs_worker_pool_bind(&s->p, s->slots, s->dirty, workers, true);
	gs_worker_heap_bind(&s->h, s->wheap, workers, true);
	for (uint32_t i = 0; i < workers; i++) {
		uint64_t id;
		if (gs_worker_pool_register(&s->p, 2 * GS_BENCH_INFLIGHT, 1, 1, &id) != GS_OK)
			goto fail;
	}
	gs_worker_heap_sync(&s->h, &s->p);
	for (uint32_t i = 0; i < GS_BENCH_INFLIGHT; i++) {
		if (gs_worker_heap_peek(&s->h, 0, &s->ring[i]) != GS_OK)
			goto fail;
		gs_worker_pool_load_add(&s->p, s->ring[i], 1);
		gs_worker_heap_sync(&s->h, &s->p);
	}
	return s;
fail:
	gs_bench_select_free(s);
	return NULL;
}

int gs_bench_select_step(void *ctx)
{
	struct select *s = ctx;
	uint32_t slot;
	/* The oldest assignment finishes, then the next worker is chosen and
	 * loaded: the heap work one dispatch + one finish cause. */
	gs_worker_pool_load_add(&s->p, s->ring[s->head], -1);
	gs_worker_heap_sync(&s->h, &s->p);
	int rc = gs_worker_heap_peek(&s->h, 0, &slot);
	if (rc != GS_OK)
		return rc;
	gs_worker_pool_load_add(&s->p, slot, 1);
	s->ring[s->head] = slot;
	s->head = (s->head + 1) % GS_BENCH_INFLIGHT;
	return GS_OK;
}
