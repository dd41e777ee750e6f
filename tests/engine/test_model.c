/*
 * test_model.c - 100,000 random operations against a reference model.
 *
 * The model keeps, per queue and priority, a FIFO of the tasks the engine's
 * queue nodes name (including cancelled and released ones a pop has not yet
 * dropped), every task's state, attempt and worker, and every worker's load.
 * Each engine result is compared with the model's: every pop and dispatch
 * must return exactly the model's next task (strict priority, FIFO within a
 * level) and dispatch the model's least-loaded worker; capacity errors come
 * exactly when the model is full.  gs_engine_check() runs periodically.
 */
#include "test_util.h"

#include "task_table.h"
#include "worker_pool.h"

#define NQ        3
#define MAX_TASKS 2048u
#define MAX_WORK  16u
#define MAX_PAY   2048u
#define NOW       1000000u

enum { M_FREE, M_QUEUED, M_ASSIGNED, M_RUNNING, M_DONE, M_FAILED, M_CANCELLED, M_GHOST };

struct mtask {
	uint64_t id;
	uint32_t q, prio, retries, attempt, plen, seed;
	int state;
	bool linked;
	int worker;   /* model worker index while ASSIGNED/RUNNING */
	int64_t next; /* next task in its level, -1 */
	int64_t act;  /* index in the active list, -1 */
};

struct mworker {
	uint64_t id;
	bool used, draining;
	uint32_t slots, load;
	uint64_t mask; /* engine queue IDs */
};

struct level {
	int64_t head, tail;
};

static struct {
	gs_engine *e;
	uint32_t qid[NQ];
	struct mtask *t;
	size_t nt, capt;
	int64_t *active; /* tasks not FREE */
	size_t nactive;
	uint64_t dead_ids[64];
	size_t ndead;
	struct mworker w[MAX_WORK];
	struct level lv[NQ][256];
	uint32_t occupied;
	uint64_t rng;
	uint64_t pops, empties, dispatches, fulls;
} M;

static const uint32_t prios[] = {0, 1, 2, 5, 128, 254, 255};

static uint8_t pbyte(uint32_t seed, uint32_t i)
{
	return (uint8_t)(seed * 131u + i * 17u + (i >> 7));
}

static void act_add(int64_t t)
{
	M.t[t].act = (int64_t)M.nactive;
	M.active[M.nactive++] = t;
}

static void act_del(int64_t t)
{
	int64_t i = M.t[t].act, last = M.active[--M.nactive];
	M.active[i] = last;
	M.t[last].act = i;
	M.t[t].act = -1;
}

static void set_free(int64_t t)
{
	M.t[t].state = M_FREE;
	M.occupied--;
	act_del(t);
	M.dead_ids[M.ndead++ % 64] = M.t[t].id;
}

static void lv_push(int64_t t)
{
	struct mtask *k = &M.t[t];
	struct level *l = &M.lv[k->q][k->prio];
	k->next = -1;
	k->linked = true;
	if (l->tail >= 0)
		M.t[l->tail].next = t;
	else
		l->head = t;
	l->tail = t;
}

static int64_t lv_pop(struct level *l)
{
	int64_t t = l->head;
	l->head = M.t[t].next;
	if (l->head < 0)
		l->tail = -1;
	M.t[t].linked = false;
	return t;
}

/* The model's pop: drops cancelled/released nodes, returns the task or -1. */
static int64_t model_pop(uint32_t qi)
{
	for (int p = 255; p >= 0; p--) {
		struct level *l = &M.lv[qi][p];
		while (l->head >= 0) {
			int64_t t = lv_pop(l);
			if (M.t[t].state == M_QUEUED)
				return t;
			if (M.t[t].state == M_GHOST)
				set_free(t);
		}
	}
	return -1;
}

static int qindex(uint32_t qid)
{
	for (int i = 0; i < NQ; i++)
		if (M.qid[i] == qid)
			return i;
	fail_msg("unknown queue %u", qid);
	return -1;
}

static int64_t pick_active(void)
{
	if (!M.nactive)
		return -1;
	return M.active[gs_test_below(&M.rng, (uint32_t)M.nactive)];
}

static int pick_worker(bool used)
{
	int n = 0, idx[MAX_WORK];
	for (int i = 0; i < (int)MAX_WORK; i++)
		if (M.w[i].used == used)
			idx[n++] = i;
	return n ? idx[gs_test_below(&M.rng, (uint32_t)n)] : -1;
}

static void check_payload(int64_t t)
{
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_payload(M.e, M.t[t].id, &p, &len), GS_OK);
	assert_int_equal(len, M.t[t].plen);
	for (uint32_t i = 0; i < len; i++)
		if (p[i] != pbyte(M.t[t].seed, i))
			fail_msg("payload byte %u of task %lld differs", i, (long long)t);
}

static void check_assignment(int64_t t, int wi, const gs_assignment *a)
{
	if (t < 0)
		fail_msg("engine assigned %#llx, the model has nothing queued",
		         (unsigned long long)a->task);
	struct mtask *k = &M.t[t];
	if (a->task != k->id)
		fail_msg("engine assigned %#llx (prio %u), the model expects %#llx (prio %u)",
		         (unsigned long long)a->task, a->priority, (unsigned long long)k->id,
		         k->prio);
	assert_int_equal(a->worker, M.w[wi].id);
	assert_int_equal(a->attempt, k->attempt);
	assert_int_equal(a->priority, k->prio);
	assert_int_equal(a->queue, M.qid[k->q]);
	k->state = M_ASSIGNED;
	k->worker = wi;
	M.w[wi].load++;
	check_payload(t);
	M.pops++;
}

/* --- operations ---------------------------------------------------------------- */

static void op_submit(void)
{
	uint32_t n = gs_test_below(&M.rng, 4) == 0 ? 1 + gs_test_below(&M.rng, 8) : 1;
	gs_task_spec specs[8];
	uint8_t *bufs[8];
	uint32_t seeds[8], qs[8];
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = gs_test_below(&M.rng, 10);
		uint32_t len = r < 3   ? gs_test_below(&M.rng, 25)
		               : r < 8 ? 25 + gs_test_below(&M.rng, 200)
		                       : gs_test_below(&M.rng, MAX_PAY + 1);
		seeds[i] = (uint32_t)gs_test_rand(&M.rng);
		bufs[i] = malloc(len + 1);
		assert_non_null(bufs[i]);
		for (uint32_t j = 0; j < len; j++)
			bufs[i][j] = pbyte(seeds[i], j);
		qs[i] = gs_test_below(&M.rng, NQ);
		specs[i] = gs_test_spec(
		    M.qid[qs[i]], prios[gs_test_below(&M.rng, sizeof(prios) / sizeof(prios[0]))],
		    bufs[i], len);
		specs[i].max_retries = gs_test_below(&M.rng, 3);
	}
	uint64_t ids[8];
	int rc = gs_engine_submit(M.e, specs, n, NOW, ids);
	for (uint32_t i = 0; i < n; i++)
		free(bufs[i]);
	if (M.occupied + n > MAX_TASKS) {
		assert_int_equal(rc, GS_EFULL);
		M.fulls++;
		return;
	}
	assert_int_equal(rc, GS_OK);
	for (uint32_t i = 0; i < n; i++) {
		if (M.nt == M.capt) {
			M.capt *= 2;
			M.t = realloc(M.t, M.capt * sizeof(*M.t));
			assert_non_null(M.t);
		}
		int64_t t = (int64_t)M.nt++;
		M.t[t] = (struct mtask){.id = ids[i],
		                        .q = qs[i],
		                        .prio = specs[i].priority,
		                        .retries = specs[i].max_retries,
		                        .attempt = 1,
		                        .plen = specs[i].payload_len,
		                        .seed = seeds[i],
		                        .state = M_QUEUED,
		                        .worker = -1};
		M.occupied++;
		act_add(t);
		lv_push(t);
	}
}

static void op_pop_assign(void)
{
	uint32_t qi = gs_test_below(&M.rng, NQ);
	int wi = pick_worker(true);
	gs_assignment a;
	if (wi < 0 || gs_test_below(&M.rng, 50) == 0) {
		uint64_t bogus = wi < 0 ? gs_worker_id(3, 77) : M.w[wi].id + (1ull << 32);
		assert_int_equal(gs_engine_pop_assign(M.e, M.qid[qi], bogus, NOW, &a),
		                 GS_ENOTFOUND);
		return;
	}
	int rc = gs_engine_pop_assign(M.e, M.qid[qi], M.w[wi].id, NOW, &a);
	if (M.w[wi].draining) {
		assert_int_equal(rc, GS_ESTATE);
		return;
	}
	int64_t t = model_pop(qi);
	if (t < 0) {
		assert_int_equal(rc, GS_EEMPTY);
		M.empties++;
		return;
	}
	assert_int_equal(rc, GS_OK);
	check_assignment(t, wi, &a);
}

static uint64_t key_of(const struct mworker *w)
{
	uint64_t ratio = w->load >= w->slots ? (1ull << 20) : ((uint64_t)w->load << 20) / w->slots;
	return (ratio << 32) | (uint32_t)w->id;
}

static void op_dispatch(void)
{
	uint32_t qi = gs_test_below(&M.rng, NQ);
	int best = -1;
	uint64_t best_key = 0;
	for (int i = 0; i < (int)MAX_WORK; i++) {
		const struct mworker *w = &M.w[i];
		if (!w->used || w->draining || !(w->mask >> M.qid[qi] & 1) || w->load >= w->slots)
			continue;
		uint64_t k = key_of(w);
		if (best < 0 || k < best_key) {
			best = i;
			best_key = k;
		}
	}
	gs_assignment a;
	int rc = gs_engine_dispatch(M.e, M.qid[qi], NOW, &a);
	if (best < 0) {
		if (rc != GS_EEMPTY)
			fail_msg("dispatch gave %#llx to %#llx; no worker has room",
			         (unsigned long long)a.task, (unsigned long long)a.worker);
		return;
	}
	int64_t t = model_pop(qi);
	if (t < 0) {
		assert_int_equal(rc, GS_EEMPTY);
		return;
	}
	assert_int_equal(rc, GS_OK);
	if (a.worker != M.w[best].id)
		fail_msg("dispatch chose worker %#llx, the model %#llx",
		         (unsigned long long)a.worker, (unsigned long long)M.w[best].id);
	check_assignment(t, best, &a);
	M.dispatches++;
}

static int64_t pick_on_worker(void)
{
	for (int tries = 0; tries < 16; tries++) {
		int64_t t = pick_active();
		if (t >= 0 && (M.t[t].state == M_ASSIGNED || M.t[t].state == M_RUNNING))
			return t;
	}
	return -1;
}

static void op_start(void)
{
	int64_t t = pick_on_worker();
	if (t < 0)
		return;
	struct mtask *k = &M.t[t];
	uint64_t wid = M.w[k->worker].id;
	assert_int_equal(gs_engine_start(M.e, k->id, wid, k->attempt + 1, NOW), GS_ESTALE);
	assert_int_equal(gs_engine_start(M.e, k->id, wid, k->attempt, NOW), GS_OK);
	k->state = M_RUNNING;
}

static void op_finish(void)
{
	int64_t t = pick_on_worker();
	if (t < 0)
		return;
	struct mtask *k = &M.t[t];
	uint8_t res[64];
	uint32_t rlen = gs_test_below(&M.rng, sizeof(res) + 1);
	for (uint32_t i = 0; i < rlen; i++)
		res[i] = pbyte(k->seed + 1, i);
	gs_outcome o;
	memset(&o, 0, sizeof(o));
	o.failed = gs_test_below(&M.rng, 4) == 0;
	o.status = (int32_t)k->seed;
	o.result = res;
	o.result_len = rlen;
	uint64_t wid = M.w[k->worker].id;
	int other = pick_worker(true);
	if (other >= 0 && other != k->worker)
		assert_int_equal(gs_engine_finish(M.e, k->id, M.w[other].id, k->attempt, &o, NOW),
		                 GS_ESTALE);
	assert_int_equal(gs_engine_finish(M.e, k->id, wid, k->attempt, &o, NOW), GS_OK);
	assert_int_equal(gs_engine_finish(M.e, k->id, wid, k->attempt, &o, NOW), GS_ESTALE);
	M.w[k->worker].load--;
	k->worker = -1;
	k->state = o.failed ? M_FAILED : M_DONE;
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_result(M.e, k->id, &p, &len), GS_OK);
	assert_int_equal(len, rlen);
	if (rlen)
		assert_memory_equal(p, res, rlen);
	check_payload(t);
}

static void op_cancel(void)
{
	if (M.ndead && gs_test_below(&M.rng, 8) == 0) {
		uint64_t id =
		    M.dead_ids[gs_test_below(&M.rng, (uint32_t)(M.ndead < 64 ? M.ndead : 64))];
		assert_int_equal(gs_engine_cancel(M.e, id, NOW, NULL, NULL), GS_ENOTFOUND);
		return;
	}
	int64_t t = pick_active();
	if (t < 0)
		return;
	struct mtask *k = &M.t[t];
	uint64_t w = 99;
	uint32_t att = 99;
	int rc = gs_engine_cancel(M.e, k->id, NOW, &w, &att);
	switch (k->state) {
	case M_QUEUED:
		assert_int_equal(rc, GS_OK);
		assert_int_equal(w, 0);
		k->state = M_CANCELLED;
		break;
	case M_ASSIGNED:
	case M_RUNNING:
		assert_int_equal(rc, GS_OK);
		assert_int_equal(w, M.w[k->worker].id);
		assert_int_equal(att, k->attempt);
		M.w[k->worker].load--;
		k->worker = -1;
		k->state = M_CANCELLED;
		break;
	case M_GHOST:
		assert_int_equal(rc, GS_ENOTFOUND);
		break;
	default:
		assert_int_equal(rc, GS_ESTATE);
	}
}

static void op_release(void)
{
	int64_t t = pick_active();
	if (t < 0)
		return;
	struct mtask *k = &M.t[t];
	int rc = gs_engine_release(M.e, k->id);
	switch (k->state) {
	case M_DONE:
	case M_FAILED:
	case M_CANCELLED:
		assert_int_equal(rc, GS_OK);
		if (k->linked) {
			k->state = M_GHOST;
		} else {
			set_free(t);
		}
		break;
	case M_GHOST:
		assert_int_equal(rc, GS_ENOTFOUND);
		break;
	default:
		assert_int_equal(rc, GS_ESTATE);
	}
	gs_task_info ti;
	if (k->state == M_GHOST || k->state == M_FREE)
		assert_int_equal(gs_engine_task_info(M.e, k->id, &ti), GS_ENOTFOUND);
}

static void op_register(void)
{
	int wi = pick_worker(false);
	uint32_t slots = 1 + gs_test_below(&M.rng, 4);
	uint64_t mask = 0;
	while (!mask)
		for (int i = 0; i < NQ; i++)
			if (gs_test_below(&M.rng, 2))
				mask |= 1ull << M.qid[i];
	uint64_t id;
	int rc = gs_engine_worker_register(M.e, slots, mask, NOW, &id);
	if (wi < 0) {
		assert_int_equal(rc, GS_EFULL);
		return;
	}
	assert_int_equal(rc, GS_OK);
	M.w[wi] = (struct mworker){.id = id, .used = true, .slots = slots, .mask = mask};
}

static int cmp_slot(const void *a, const void *b)
{
	uint32_t x = (uint32_t)M.t[*(const int64_t *)a].id;
	uint32_t y = (uint32_t)M.t[*(const int64_t *)b].id;
	return x < y ? -1 : x > y;
}

static void op_dead(void)
{
	int wi = pick_worker(true);
	if (wi < 0)
		return;
	/* Its tasks are requeued in slot order (the engine scans the table). */
	int64_t *mine = malloc(sizeof(int64_t) * (M.nactive + 1));
	assert_non_null(mine);
	size_t n = 0;
	for (size_t i = 0; i < M.nactive; i++) {
		int64_t t = M.active[i];
		if ((M.t[t].state == M_ASSIGNED || M.t[t].state == M_RUNNING) &&
		    M.t[t].worker == wi)
			mine[n++] = t;
	}
	qsort(mine, n, sizeof(*mine), cmp_slot);
	assert_int_equal(gs_engine_worker_dead(M.e, M.w[wi].id, NOW, NULL, NULL), GS_OK);
	for (size_t i = 0; i < n; i++) {
		struct mtask *k = &M.t[mine[i]];
		k->worker = -1;
		if (k->attempt < 1 + k->retries) {
			k->attempt++;
			k->state = M_QUEUED;
			lv_push(mine[i]);
		} else {
			k->state = M_FAILED;
		}
	}
	free(mine);
	M.w[wi].used = false;
	gs_worker_info wi_;
	assert_int_equal(gs_engine_worker_info(M.e, M.w[wi].id, &wi_), GS_ENOTFOUND);
}

static void op_drain(void)
{
	int wi = pick_worker(true);
	if (wi < 0)
		return;
	assert_int_equal(gs_engine_worker_drain(M.e, M.w[wi].id), GS_OK);
	M.w[wi].draining = true;
}

static void verify_all(void)
{
	GS_CHECK(M.e);
	uint64_t queued[NQ] = {0};
	for (size_t i = 0; i < M.nactive; i++) {
		struct mtask *k = &M.t[M.active[i]];
		gs_task_info ti;
		int rc = gs_engine_task_info(M.e, k->id, &ti);
		if (k->state == M_GHOST) {
			assert_int_equal(rc, GS_ENOTFOUND);
			continue;
		}
		assert_int_equal(rc, GS_OK);
		static const uint32_t want[] = {GS_TASK_FREE,     GS_TASK_QUEUED, GS_TASK_ASSIGNED,
		                                GS_TASK_RUNNING,  GS_TASK_DONE,   GS_TASK_FAILED,
		                                GS_TASK_CANCELLED};
		if (ti.state != want[k->state])
			fail_msg("task %#llx is %s, the model says %s", (unsigned long long)k->id,
			         gs_task_state_name(ti.state), gs_task_state_name(want[k->state]));
		assert_int_equal(ti.attempt, k->attempt);
		if (k->state == M_QUEUED)
			queued[k->q]++;
	}
	for (int q = 0; q < NQ; q++) {
		gs_queue_stats qs;
		assert_int_equal(gs_engine_queue_stats(M.e, M.qid[q], &qs), GS_OK);
		assert_int_equal(qs.queued, queued[q]);
	}
	for (int i = 0; i < (int)MAX_WORK; i++) {
		if (!M.w[i].used)
			continue;
		gs_worker_info wi;
		assert_int_equal(gs_engine_worker_info(M.e, M.w[i].id, &wi), GS_OK);
		assert_int_equal(wi.load, M.w[i].load);
		assert_int_equal(wi.state, M.w[i].draining ? GS_WORKER_DRAINING : GS_WORKER_ALIVE);
	}
}

static void t_model(void **st)
{
	(void)st;
	uint64_t ops = gs_test_count(100000, 1);
	memset(&M, 0, sizeof(M));
	M.rng = 0x9e3779b97f4a7c15ull;
	if (getenv("GS_TEST_SEED"))
		M.rng = strtoull(getenv("GS_TEST_SEED"), NULL, 0);
	M.e = gs_test_engine(MAX_TASKS, MAX_WORK, MAX_PAY, 16u << 20);
	M.qid[0] = DQ;
	assert_int_equal(gs_engine_queue(M.e, "m1", true, &M.qid[1]), GS_OK);
	assert_int_equal(gs_engine_queue(M.e, "m2", true, &M.qid[2]), GS_OK);
	M.capt = 1024;
	M.t = malloc(M.capt * sizeof(*M.t));
	M.active = malloc((MAX_TASKS + 1) * sizeof(*M.active));
	assert_non_null(M.t);
	assert_non_null(M.active);
	for (int q = 0; q < NQ; q++)
		for (int p = 0; p < 256; p++)
			M.lv[q][p] = (struct level){-1, -1};
	(void)qindex;
	uint64_t t0 = gs_test_mono_us();
	for (uint64_t i = 0; i < ops; i++) {
		/* Phases: a filling phase and a draining phase, so both a full
		 * table and empty queues are visited. */
		bool fill = (i / 5000) % 2 == 0;
		uint32_t r = gs_test_below(&M.rng, 100);
		if (r < (fill ? 30u : 8u))
			op_submit();
		else if (r < 55)
			op_pop_assign();
		else if (r < 65)
			op_dispatch();
		else if (r < 70)
			op_start();
		else if (r < 80)
			op_finish();
		else if (r < 86)
			op_cancel();
		else if (r < 96)
			op_release();
		else if (r < 98)
			op_register();
		else if (r < 99)
			op_dead();
		else
			op_drain();
		if (i % 1000 == 999)
			verify_all();
		if (gs_test_mono_us() - t0 > 120000000u)
			fail_msg("model test over its time budget at op %llu",
			         (unsigned long long)i);
	}
	verify_all();
	printf("model: %llu ops, %llu pops (%llu by dispatch), %llu empty, %llu full, %zu "
	       "tasks, %.2f s\n",
	       (unsigned long long)ops, (unsigned long long)M.pops,
	       (unsigned long long)M.dispatches, (unsigned long long)M.empties,
	       (unsigned long long)M.fulls, M.nt, (double)(gs_test_mono_us() - t0) / 1e6);
	assert_true(M.pops > ops / 10);
	assert_true(M.fulls > 0);
	assert_true(M.dispatches > 0);
	free(M.t);
	free(M.active);
	gs_engine_close(M.e, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
