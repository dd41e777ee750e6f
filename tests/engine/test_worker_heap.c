/*
 * test_worker_heap.c - dispatch follows capacity: the least-loaded (load /
 * slots) alive worker serving the queue with a free slot gets the task;
 * draining and dead workers get nothing; verified against a brute-force scan.
 */
#include "test_util.h"

#include "task_table.h"
#include "worker_pool.h"

#define NOW 5000000u

static uint64_t reg(gs_engine *e, uint32_t slots, uint64_t mask)
{
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(e, slots, mask, NOW, &w), GS_OK);
	return w;
}

static uint32_t load_of(gs_engine *e, uint64_t w)
{
	gs_worker_info wi;
	assert_int_equal(gs_engine_worker_info(e, w, &wi), GS_OK);
	return wi.load;
}

/*
 * Dispatches one task of queue q and checks the choice against a scan of
 * every worker slot.  Returns the assignment's worker, or 0 on GS_EEMPTY
 * (which must then be right too).
 */
static uint64_t dispatch_checked(gs_engine *e, uint32_t q, gs_assignment *a)
{
	const gs_geom *g = gs_engine_geom(e);
	bool any = false;
	uint32_t best_l = 0, best_s = 1;
	for (uint32_t i = 0; i < g->max_workers; i++) {
		gs_worker_info wi;
		if (gs_engine_worker_at(e, i, &wi) != GS_OK)
			continue;
		assert_true(wi.load <= wi.slots);
		if (wi.state != GS_WORKER_ALIVE || !(wi.queue_mask >> q & 1) || wi.load >= wi.slots)
			continue;
		if (!any || (uint64_t)wi.load * best_s < (uint64_t)best_l * wi.slots) {
			best_l = wi.load;
			best_s = wi.slots;
			any = true;
		}
	}
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, q, &qs), GS_OK);
	int rc = gs_engine_dispatch(e, q, NOW, a);
	if (!any || qs.queued == 0) {
		if (rc != GS_EEMPTY)
			fail_msg("dispatch gave a task to %#llx with %s",
			         (unsigned long long)a->worker,
			         any ? "nothing queued" : "no eligible worker");
		return 0;
	}
	if (rc != GS_OK)
		fail_msg("dispatch: %d with an eligible worker and %llu queued", rc,
		         (unsigned long long)qs.queued);
	gs_worker_info wi;
	assert_int_equal(gs_engine_worker_info(e, a->worker, &wi), GS_OK);
	assert_int_equal(wi.state, GS_WORKER_ALIVE);
	assert_true(wi.queue_mask >> q & 1);
	uint32_t before = wi.load - 1;
	if ((uint64_t)before * best_s != (uint64_t)best_l * wi.slots)
		fail_msg("dispatch chose a worker at %u/%u, the least loaded is at %u/%u", before,
		         wi.slots, best_l, best_s);
	return a->worker;
}

static void submit_n(gs_engine *e, uint32_t q, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		gs_task_spec s = gs_test_spec(q, 0, NULL, 0);
		s.max_retries = 1;
		uint64_t id;
		assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &id), GS_OK);
	}
}

static void finish(gs_engine *e, const gs_assignment *a)
{
	gs_outcome o;
	memset(&o, 0, sizeof(o));
	assert_int_equal(gs_engine_finish(e, a->task, a->worker, a->attempt, &o, NOW), GS_OK);
	assert_int_equal(gs_engine_release(e, a->task), GS_OK);
}

static void t_capacity(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(256, 16, 4096, 0);
	uint64_t m = 1ull << DQ;
	gs_assignment a, got[8];
	/* No worker: nothing dispatched, the task stays queued. */
	submit_n(e, DQ, 1);
	assert_int_equal(gs_engine_dispatch(e, DQ, NOW, &a), GS_EEMPTY);
	uint64_t w1 = reg(e, 1, m), w4 = reg(e, 4, m);
	submit_n(e, DQ, 5);
	uint32_t n1 = 0, n4 = 0;
	for (int i = 0; i < 5; i++) {
		uint64_t w = dispatch_checked(e, DQ, &got[i]);
		n1 += w == w1;
		n4 += w == w4;
	}
	assert_int_equal(n1, 1);
	assert_int_equal(n4, 4);
	assert_int_equal(load_of(e, w1), 1);
	assert_int_equal(load_of(e, w4), 4);
	/* Both full: the 6th waits. */
	assert_int_equal(dispatch_checked(e, DQ, &a), 0);
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.queued, 1);
	/* A finished task frees a slot of its worker. */
	int i4 = got[0].worker == w4 ? 0 : 1;
	finish(e, &got[i4]);
	assert_int_equal(load_of(e, w4), 3);
	assert_int_equal(dispatch_checked(e, DQ, &got[i4]), w4);
	int i1 = got[0].worker == w1 ? 0 : 1;
	finish(e, &got[i1]);
	assert_int_equal(load_of(e, w1), 0);
	submit_n(e, DQ, 1);
	assert_int_equal(dispatch_checked(e, DQ, &got[i1]), w1);
	GS_CHECK(e);

	/* 2 and 4 slots: the ratio decides, not the count. */
	uint64_t w2 = reg(e, 2, m), w8 = reg(e, 8, m);
	submit_n(e, DQ, 8);
	for (int i = 0; i < 8; i++)
		dispatch_checked(e, DQ, &a);
	assert_int_equal(load_of(e, w2), 2);
	assert_int_equal(load_of(e, w8), 6);

	/* Draining: nothing new even when least loaded. */
	finish(e, &got[i1]);
	assert_int_equal(gs_engine_worker_drain(e, w1), GS_OK);
	submit_n(e, DQ, 1);
	assert_int_not_equal(dispatch_checked(e, DQ, &a), w1);
	assert_int_equal(load_of(e, w1), 0);

	/* Dead: nothing; its tasks come back for the others. */
	assert_int_equal(gs_engine_worker_dead(e, w8, NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.queued, 7);
	for (int i = 0; i < 4; i++) {
		uint64_t w = dispatch_checked(e, DQ, &a);
		if (w == 0)
			break;
		assert_true(w != w8 && w != w1);
	}
	assert_int_equal(gs_engine_dispatch(e, DQ, NOW, &a), GS_EEMPTY);
	(void)w2;
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* A worker slot freed and reused by a worker of other queues must not stay
 * in the heaps of its former queues. */
static void t_reused_slot(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 1, 4096, 0);
	uint32_t q2;
	assert_int_equal(gs_engine_queue(e, "other", true, &q2), GS_OK);
	uint64_t w = reg(e, 4, 1ull << DQ);
	submit_n(e, DQ, 1);
	gs_assignment a;
	assert_int_equal(dispatch_checked(e, DQ, &a), w);
	assert_int_equal(gs_engine_worker_dead(e, w, NOW, NULL, NULL), GS_OK);
	/* No dispatch in between: the scheduler has not seen the death. */
	uint64_t v = reg(e, 4, 1ull << q2);
	assert_int_not_equal(v, w);
	submit_n(e, DQ, 1);
	if (gs_engine_dispatch(e, DQ, NOW, &a) != GS_EEMPTY)
		fail_msg("a worker of queue %u got a task of queue %u", q2, DQ);
	submit_n(e, q2, 1);
	assert_int_equal(dispatch_checked(e, q2, &a), v);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* 10,000 workers of mixed capacity and queues, loads changing at random. */
static void t_many(void **st)
{
	(void)st;
	const uint32_t W = 10000;
	uint32_t rounds = (uint32_t)gs_test_count(3000, 3);
	gs_engine *e = gs_test_engine(1u << 16, W, 4096, 0);
	uint32_t q2;
	assert_int_equal(gs_engine_queue(e, "q2", true, &q2), GS_OK);
	uint64_t seed = 7;
	uint64_t *ws = calloc(W, sizeof(*ws));
	gs_assignment *run = calloc(rounds + 16, sizeof(*run));
	assert_non_null(ws);
	assert_non_null(run);
	for (uint32_t i = 0; i < W; i++) {
		uint32_t k = gs_test_below(&seed, 4);
		uint64_t mask = k == 0   ? 1ull << q2
		                : k == 1 ? (1ull << DQ | 1ull << q2)
		                         : 1ull << DQ;
		ws[i] = reg(e, 1 + gs_test_below(&seed, 8), mask);
	}
	submit_n(e, DQ, rounds);
	size_t n_run = 0, dispatched = 0;
	for (uint32_t r = 0; r < rounds; r++) {
		uint32_t op = gs_test_below(&seed, 10);
		if (op < 6) {
			if (dispatch_checked(e, DQ, &run[n_run]))
				n_run++, dispatched++;
		} else if (op < 9 && n_run) {
			size_t k = gs_test_below(&seed, (uint32_t)n_run);
			gs_worker_info wi;
			if (gs_engine_worker_info(e, run[k].worker, &wi) == GS_OK) {
				uint32_t before = wi.load;
				finish(e, &run[k]);
				assert_int_equal(load_of(e, run[k].worker), before - 1);
			}
			run[k] = run[--n_run];
		} else {
			uint32_t k = gs_test_below(&seed, W);
			if (gs_test_below(&seed, 2))
				gs_engine_worker_drain(e, ws[k]);
			else if (gs_engine_worker_dead(e, ws[k], NOW, NULL, NULL) == GS_OK)
				ws[k] = reg(e, 1 + gs_test_below(&seed, 8), 1ull << DQ);
		}
	}
	assert_true(dispatched > rounds / 3);
	GS_CHECK(e);
	free(ws);
	free(run);
	gs_engine_close(e, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_capacity),
	    cmocka_unit_test(t_reused_slot),
	    cmocka_unit_test(t_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
