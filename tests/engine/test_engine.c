/*
 * test_engine.c - the task state machine through the engine API: every legal
 * transition, illegal ones refused without change, stale IDs, capacity,
 * payloads and results, queues, delayed tasks, stats and the worker calls.
 */
#include "test_util.h"

#include <unistd.h>

#include "delay_timer.h"
#include "task_heap.h"
#include "task_table.h"

#define NOW 1000000u

static uint64_t submit1(gs_engine *e, uint32_t q, uint32_t prio, uint32_t retries)
{
	gs_task_spec s = gs_test_spec(q, prio, NULL, 0);
	s.max_retries = retries;
	uint64_t id = 0;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &id), GS_OK);
	assert_int_not_equal(id, GS_TASK_ID_NONE);
	return id;
}

static uint32_t state_of(gs_engine *e, uint64_t id)
{
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, id, &ti), GS_OK);
	return ti.state;
}

static uint64_t worker(gs_engine *e, uint32_t slots)
{
	uint64_t w = 0;
	assert_int_equal(gs_engine_worker_register(e, slots, 1ull << DQ, NOW, &w), GS_OK);
	return w;
}

static uint32_t load_of(gs_engine *e, uint64_t w)
{
	gs_worker_info wi;
	assert_int_equal(gs_engine_worker_info(e, w, &wi), GS_OK);
	return wi.load;
}

static gs_outcome outcome(bool failed, int32_t status, const void *res, uint32_t len)
{
	gs_outcome o;
	memset(&o, 0, sizeof(o));
	o.failed = failed;
	o.status = status;
	o.result = res;
	o.result_len = len;
	return o;
}

/* --- the transition table ----------------------------------------------- */

static void t_transition_table(void **st)
{
	(void)st;
	/* The edges of task_table.h's diagram, nothing else. */
	static const uint32_t edges[][2] = {
	    {GS_TASK_FREE, GS_TASK_RESERVED},      {GS_TASK_RESERVED, GS_TASK_QUEUED},
	    {GS_TASK_RESERVED, GS_TASK_DELAYED},   {GS_TASK_RESERVED, GS_TASK_FREE},
	    {GS_TASK_DELAYED, GS_TASK_QUEUED},     {GS_TASK_DELAYED, GS_TASK_CANCELLED},
	    {GS_TASK_QUEUED, GS_TASK_ASSIGNED},    {GS_TASK_QUEUED, GS_TASK_CANCELLED},
	    {GS_TASK_ASSIGNED, GS_TASK_RUNNING},   {GS_TASK_ASSIGNED, GS_TASK_COMPLETING},
	    {GS_TASK_ASSIGNED, GS_TASK_QUEUED},    {GS_TASK_ASSIGNED, GS_TASK_FAILED},
	    {GS_TASK_ASSIGNED, GS_TASK_CANCELLED}, {GS_TASK_RUNNING, GS_TASK_COMPLETING},
	    {GS_TASK_RUNNING, GS_TASK_QUEUED},     {GS_TASK_RUNNING, GS_TASK_FAILED},
	    {GS_TASK_RUNNING, GS_TASK_CANCELLED},  {GS_TASK_COMPLETING, GS_TASK_DONE},
	    {GS_TASK_COMPLETING, GS_TASK_FAILED},  {GS_TASK_DONE, GS_TASK_FREE},
	    {GS_TASK_DONE, GS_TASK_RELEASED},      {GS_TASK_FAILED, GS_TASK_FREE},
	    {GS_TASK_FAILED, GS_TASK_RELEASED},    {GS_TASK_CANCELLED, GS_TASK_FREE},
	    {GS_TASK_CANCELLED, GS_TASK_RELEASED}, {GS_TASK_RELEASED, GS_TASK_FREE},
	};
	size_t n_edges = sizeof(edges) / sizeof(edges[0]), legal = 0;
	for (uint32_t from = 0; from < 16; from++) {
		for (uint32_t to = 0; to < 16; to++) {
			bool want = false;
			for (size_t i = 0; i < n_edges; i++)
				if (edges[i][0] == from && edges[i][1] == to)
					want = true;
			if (gs_task_transition_legal(from, to) != want)
				fail_msg("transition %s -> %s: legal=%d, want %d",
				         gs_task_state_name(from), gs_task_state_name(to), !want,
				         want);
			legal += want;
		}
	}
	assert_int_equal(legal, n_edges);
	assert_string_equal(gs_task_state_name(GS_TASK_COMPLETING), "COMPLETING");
	assert_string_equal(gs_task_state_name(99), "INVALID");
}

/* --- the normal paths ------------------------------------------------------ */

static void t_path_done(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 8, 4096, 0);
	uint64_t w = worker(e, 2);
	const char pl[] = "hello";
	gs_task_spec s = gs_test_spec(DQ, 7, pl, sizeof(pl));
	s.timeout_ms = 1234;
	uint64_t id;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &id), GS_OK);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_QUEUED);
	assert_int_equal(ti.attempt, 1);
	assert_int_equal(ti.priority, 7);
	assert_int_equal(ti.timeout_ms, 1234);
	assert_int_equal(ti.submitted_us, NOW);
	assert_int_equal(ti.worker, 0);
	/* No result before the end. */
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_result(e, id, &p, &len), GS_ESTATE);

	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW + 1, &a), GS_OK);
	assert_int_equal(a.task, id);
	assert_int_equal(a.worker, w);
	assert_int_equal(a.attempt, 1);
	assert_int_equal(a.priority, 7);
	assert_int_equal(a.timeout_ms, 1234);
	assert_int_equal(state_of(e, id), GS_TASK_ASSIGNED);
	assert_int_equal(load_of(e, w), 1);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_EEMPTY);

	assert_int_equal(gs_engine_start(e, id, w, 1, NOW + 2), GS_OK);
	assert_int_equal(state_of(e, id), GS_TASK_RUNNING);
	assert_int_equal(gs_engine_start(e, id, w, 1, NOW + 3), GS_OK); /* repeated */

	const char res[] = "result bytes";
	gs_outcome o = outcome(false, 0, res, sizeof(res));
	assert_int_equal(gs_engine_finish(e, id, w, 1, &o, NOW + 4), GS_OK);
	assert_int_equal(gs_engine_task_info(e, id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_DONE);
	assert_int_equal(ti.reason, GS_REASON_EXIT);
	assert_int_equal(ti.worker, w);
	assert_int_equal(ti.assigned_us, NOW + 1);
	assert_int_equal(ti.started_us, NOW + 2);
	assert_int_equal(ti.finished_us, NOW + 4);
	assert_int_equal(ti.result_len, sizeof(res));
	assert_int_equal(load_of(e, w), 0);
	assert_int_equal(gs_engine_task_result(e, id, &p, &len), GS_OK);
	assert_int_equal(len, sizeof(res));
	assert_memory_equal(p, res, len);
	assert_int_equal(gs_engine_task_payload(e, id, &p, &len), GS_OK);
	assert_int_equal(len, sizeof(pl));
	assert_memory_equal(p, pl, len);

	/* Finishing twice: stale, nothing changes. */
	gs_outcome o2 = outcome(true, 9, NULL, 0);
	assert_int_equal(gs_engine_finish(e, id, w, 1, &o2, NOW + 5), GS_ESTALE);
	assert_int_equal(gs_engine_task_info(e, id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_DONE);
	assert_int_equal(ti.status, 0);
	/* Start after the end: stale.  Cancel a DONE task: state. */
	assert_int_equal(gs_engine_start(e, id, w, 1, NOW), GS_ESTALE);
	assert_int_equal(gs_engine_cancel(e, id, NOW, NULL, NULL), GS_ESTATE);
	assert_int_equal(state_of(e, id), GS_TASK_DONE);
	GS_CHECK(e);

	assert_int_equal(gs_engine_release(e, id), GS_OK);
	assert_int_equal(gs_engine_task_info(e, id, &ti), GS_ENOTFOUND);
	assert_int_equal(gs_engine_release(e, id), GS_ENOTFOUND);
	assert_int_equal(gs_engine_task_payload(e, id, &p, &len), GS_ENOTFOUND);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_path_failed_dispatch(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 8, 4096, 0);
	uint64_t w = worker(e, 1);
	uint64_t id = submit1(e, DQ, 0, 0);
	gs_assignment a;
	assert_int_equal(gs_engine_dispatch(e, DQ, NOW, &a), GS_OK);
	assert_int_equal(a.task, id);
	assert_int_equal(a.worker, w);
	/* ASSIGNED -> FAILED directly (no start), with a status. */
	gs_outcome o = outcome(true, 3, NULL, 0);
	o.started_us = NOW + 77;
	o.finished_us = NOW + 88;
	assert_int_equal(gs_engine_finish(e, id, w, 1, &o, NOW), GS_OK);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_FAILED);
	assert_int_equal(ti.status, 3);
	assert_int_equal(ti.reason, GS_REASON_EXIT);
	assert_int_equal(ti.started_us, NOW + 77);
	assert_int_equal(ti.finished_us, NOW + 88);
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_result(e, id, &p, &len), GS_OK);
	assert_int_equal(len, 0);
	assert_int_equal(gs_engine_cancel(e, id, NOW, NULL, NULL), GS_ESTATE);
	assert_int_equal(gs_engine_release(e, id), GS_OK);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_wrong_worker_attempt(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 8, 4096, 0);
	uint64_t w1 = worker(e, 4), w2 = worker(e, 4);
	uint64_t id = submit1(e, DQ, 0, 0);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w1, NOW, &a), GS_OK);
	gs_outcome o = outcome(false, 0, NULL, 0);
	assert_int_equal(gs_engine_start(e, id, w2, 1, NOW), GS_ESTALE);
	assert_int_equal(gs_engine_start(e, id, w1, 2, NOW), GS_ESTALE);
	assert_int_equal(gs_engine_finish(e, id, w2, 1, &o, NOW), GS_ESTALE);
	assert_int_equal(gs_engine_finish(e, id, w1, 2, &o, NOW), GS_ESTALE);
	/* Right slot, wrong worker generation. */
	uint64_t w1_stale = w1 + (1ull << 32);
	assert_int_equal(gs_engine_finish(e, id, w1_stale, 1, &o, NOW), GS_ESTALE);
	assert_int_equal(state_of(e, id), GS_TASK_ASSIGNED);
	assert_int_equal(load_of(e, w1), 1);
	assert_int_equal(load_of(e, w2), 0);
	/* Bad arguments change nothing either. */
	gs_outcome bad = outcome(false, 0, NULL, 5);
	assert_int_equal(gs_engine_finish(e, id, w1, 1, &bad, NOW), GS_EINVAL);
	assert_int_equal(gs_engine_finish(e, id, w1, 1, NULL, NOW), GS_EINVAL);
	assert_int_equal(state_of(e, id), GS_TASK_ASSIGNED);
	assert_int_equal(gs_engine_finish(e, id, w1, 1, &o, NOW), GS_OK);
	assert_int_equal(load_of(e, w1), 0);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* --- cancel and release ---------------------------------------------------- */

static void t_cancel(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 8, 4096, 0);
	uint64_t w = worker(e, 8);
	uint64_t wk;
	uint32_t att;

	/* QUEUED: nobody to tell, and a pop skips it. */
	uint64_t q = submit1(e, DQ, 5, 0);
	assert_int_equal(gs_engine_cancel(e, q, NOW + 9, &wk, &att), GS_OK);
	assert_int_equal(wk, 0);
	assert_int_equal(att, 0);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, q, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_CANCELLED);
	assert_int_equal(ti.reason, GS_REASON_CANCELLED);
	assert_int_equal(ti.finished_us, NOW + 9);
	GS_CHECK(e);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_EEMPTY);
	assert_int_equal(gs_engine_cancel(e, q, NOW, &wk, &att), GS_ESTATE);
	GS_CHECK(e);
	assert_int_equal(gs_engine_release(e, q), GS_OK);

	/* ASSIGNED: says whom to tell; the worker's late reports are stale. */
	uint64_t as = submit1(e, DQ, 0, 0);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(load_of(e, w), 1);
	assert_int_equal(gs_engine_cancel(e, as, NOW, &wk, &att), GS_OK);
	assert_int_equal(wk, w);
	assert_int_equal(att, 1);
	assert_int_equal(load_of(e, w), 0);
	assert_int_equal(gs_engine_start(e, as, w, 1, NOW), GS_ESTALE);
	gs_outcome o = outcome(false, 0, NULL, 0);
	assert_int_equal(gs_engine_finish(e, as, w, 1, &o, NOW), GS_ESTALE);
	assert_int_equal(state_of(e, as), GS_TASK_CANCELLED);
	assert_int_equal(load_of(e, w), 0);
	GS_CHECK(e);

	/* RUNNING. */
	uint64_t run = submit1(e, DQ, 0, 0);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_start(e, run, w, 1, NOW), GS_OK);
	assert_int_equal(gs_engine_cancel(e, run, NOW, &wk, &att), GS_OK);
	assert_int_equal(wk, w);
	assert_int_equal(att, 1);
	assert_int_equal(state_of(e, run), GS_TASK_CANCELLED);
	assert_int_equal(load_of(e, w), 0);

	/* DELAYED. */
	gs_task_spec s = gs_test_spec(DQ, 0, NULL, 0);
	s.not_before_us = NOW + 1000;
	uint64_t d;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &d), GS_OK);
	assert_int_equal(state_of(e, d), GS_TASK_DELAYED);
	assert_int_equal(gs_engine_cancel(e, d, NOW, &wk, &att), GS_OK);
	assert_int_equal(state_of(e, d), GS_TASK_CANCELLED);
	assert_int_equal(gs_engine_delayed_release(e, d, NOW + 2000), GS_ESTATE);
	assert_int_equal(state_of(e, d), GS_TASK_CANCELLED);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_EEMPTY);

	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.cancelled, 4);
	assert_int_equal(qs.queued, 0);
	GS_CHECK(e);
	assert_int_equal(gs_engine_release(e, as), GS_OK);
	assert_int_equal(gs_engine_release(e, run), GS_OK);
	assert_int_equal(gs_engine_release(e, d), GS_OK);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_release_illegal(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 8, 4096, 0);
	uint64_t w = worker(e, 8);
	uint64_t id = submit1(e, DQ, 0, 0);
	assert_int_equal(gs_engine_release(e, id), GS_ESTATE);
	assert_int_equal(state_of(e, id), GS_TASK_QUEUED);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_release(e, id), GS_ESTATE);
	assert_int_equal(state_of(e, id), GS_TASK_ASSIGNED);
	assert_int_equal(gs_engine_start(e, id, w, 1, NOW), GS_OK);
	assert_int_equal(gs_engine_release(e, id), GS_ESTATE);
	assert_int_equal(state_of(e, id), GS_TASK_RUNNING);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* A cancelled task still in a queue keeps its slot until a pop drops it. */
static void t_release_linked(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(2, 4, 4096, 0);
	uint64_t w = worker(e, 8);
	uint64_t a_id = submit1(e, DQ, 9, 0);
	assert_int_equal(gs_engine_cancel(e, a_id, NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_release(e, a_id), GS_OK);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, a_id, &ti), GS_ENOTFOUND);
	assert_int_equal(gs_engine_release(e, a_id), GS_ENOTFOUND);
	assert_int_equal(gs_engine_cancel(e, a_id, NOW, NULL, NULL), GS_ENOTFOUND);
	GS_CHECK(e);
	uint64_t b = submit1(e, DQ, 1, 0);
	gs_task_spec s = gs_test_spec(DQ, 0, NULL, 0);
	uint64_t c;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &c), GS_EFULL);
	gs_assignment as;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &as), GS_OK);
	assert_int_equal(as.task, b);
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &c), GS_OK);
	assert_int_not_equal(c, a_id);
	assert_int_equal(gs_engine_task_info(e, a_id, &ti), GS_ENOTFOUND);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_stale_ids(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(1, 4, 4096, 0);
	uint64_t w = worker(e, 8);
	uint64_t old = submit1(e, DQ, 0, 0);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	gs_outcome o = outcome(false, 0, NULL, 0);
	assert_int_equal(gs_engine_finish(e, old, w, 1, &o, NOW), GS_OK);
	assert_int_equal(gs_engine_release(e, old), GS_OK);
	/* The only slot is reused: the new ID differs, the old one is dead. */
	uint64_t neu = submit1(e, DQ, 0, 0);
	assert_int_equal(gs_task_id_slot(neu), gs_task_id_slot(old));
	assert_int_not_equal(neu, old);
	gs_task_info ti;
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_info(e, old, &ti), GS_ENOTFOUND);
	assert_int_equal(gs_engine_task_payload(e, old, &p, &len), GS_ENOTFOUND);
	assert_int_equal(gs_engine_cancel(e, old, NOW, NULL, NULL), GS_ENOTFOUND);
	assert_int_equal(gs_engine_release(e, old), GS_ENOTFOUND);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, neu);
	assert_int_equal(gs_engine_start(e, old, w, 1, NOW), GS_ENOTFOUND);
	assert_int_equal(gs_engine_finish(e, old, w, 1, &o, NOW), GS_ENOTFOUND);
	assert_int_equal(state_of(e, neu), GS_TASK_ASSIGNED);
	/* IDs that never existed. */
	assert_int_equal(gs_engine_task_info(e, 0, &ti), GS_ENOTFOUND);
	assert_int_equal(gs_engine_task_info(e, gs_task_id(5, 1), &ti), GS_ENOTFOUND);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* --- workers lost ------------------------------------------------------------- */

struct events {
	uint64_t task[8];
	uint32_t state[8];
	int n;
};

static void on_event(uint64_t task, uint32_t new_state, void *arg)
{
	struct events *ev = arg;
	if (ev->n < 8) {
		ev->task[ev->n] = task;
		ev->state[ev->n] = new_state;
	}
	ev->n++;
}

static void t_worker_dead(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 8, 4096, 0);
	uint64_t w1 = worker(e, 4), w2 = worker(e, 4);
	uint64_t once = submit1(e, DQ, 5, 1);  /* one retry */
	uint64_t never = submit1(e, DQ, 4, 0); /* no retry */
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w1, NOW, &a), GS_OK);
	assert_int_equal(a.task, once);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w1, NOW, &a), GS_OK);
	assert_int_equal(a.task, never);
	assert_int_equal(gs_engine_start(e, once, w1, 1, NOW), GS_OK);

	struct events ev = {0};
	assert_int_equal(gs_engine_worker_dead(e, w1, NOW + 5, on_event, &ev), GS_OK);
	assert_int_equal(ev.n, 2);
	for (int i = 0; i < 2; i++) {
		if (ev.task[i] == once)
			assert_int_equal(ev.state[i], GS_TASK_QUEUED);
		else if (ev.task[i] == never)
			assert_int_equal(ev.state[i], GS_TASK_FAILED);
		else
			fail_msg("event for an unknown task");
	}
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, once, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_QUEUED);
	assert_int_equal(ti.attempt, 2);
	assert_int_equal(ti.worker, 0);
	assert_int_equal(gs_engine_task_info(e, never, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_FAILED);
	assert_int_equal(ti.reason, GS_REASON_WORKER_LOST);
	assert_int_equal(ti.finished_us, NOW + 5);
	gs_worker_info wi;
	assert_int_equal(gs_engine_worker_info(e, w1, &wi), GS_ENOTFOUND);
	assert_int_equal(gs_engine_worker_dead(e, w1, NOW, NULL, NULL), GS_ENOTFOUND);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w1, NOW, &a), GS_ENOTFOUND);
	GS_CHECK(e);

	/* The dead worker's late report of attempt 1 is refused. */
	gs_outcome o = outcome(false, 0, NULL, 0);
	assert_int_equal(gs_engine_finish(e, once, w1, 1, &o, NOW), GS_ESTALE);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w2, NOW, &a), GS_OK);
	assert_int_equal(a.task, once);
	assert_int_equal(a.attempt, 2);
	assert_int_equal(gs_engine_finish(e, once, w2, 1, &o, NOW), GS_ESTALE);
	/* Retries spent: the second loss fails it. */
	ev.n = 0;
	assert_int_equal(gs_engine_worker_dead(e, w2, NOW, on_event, &ev), GS_OK);
	assert_int_equal(ev.n, 1);
	assert_int_equal(ev.state[0], GS_TASK_FAILED);
	assert_int_equal(gs_engine_task_info(e, once, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_FAILED);
	assert_int_equal(ti.reason, GS_REASON_WORKER_LOST);
	assert_int_equal(ti.attempt, 2);

	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.requeued, 1);
	assert_int_equal(qs.failed, 2);
	assert_int_equal(qs.assigned, 0); /* gauges: nothing is on a worker now */
	assert_int_equal(qs.running, 0);
	assert_int_equal(qs.queued, 0);
	GS_CHECK(e);
	assert_int_equal(gs_engine_release(e, once), GS_OK);
	assert_int_equal(gs_engine_release(e, never), GS_OK);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* A worker orphaned (its server went away) costs its tasks no retry: a task
 * of 1 retry survives an orphaning and then one real loss, not two; one of
 * 0 retries is requeued by an orphaning all the same; at GS_MAX_ATTEMPT an
 * orphaned task keeps its attempt number and stays queued. */
static void t_worker_orphaned(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 8, 4096, 0);
	uint64_t once = submit1(e, DQ, 5, 1), never = submit1(e, DQ, 4, 0);
	uint64_t w1 = worker(e, 4);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w1, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w1, NOW, &a), GS_OK);
	struct events ev = {0};
	assert_int_equal(gs_engine_worker_orphaned(e, w1, NOW, on_event, &ev), GS_OK);
	assert_int_equal(ev.n, 2);
	assert_int_equal(ev.state[0], GS_TASK_QUEUED);
	assert_int_equal(ev.state[1], GS_TASK_QUEUED);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, never, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_QUEUED);
	assert_int_equal(ti.attempt, 2);
	GS_CHECK(e);
	/* One real loss: `once` still has its retry, `never` has none. */
	uint64_t w2 = worker(e, 4);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w2, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w2, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_worker_dead(e, w2, NOW, NULL, NULL), GS_OK);
	assert_int_equal(state_of(e, once), GS_TASK_QUEUED);
	assert_int_equal(gs_engine_task_info(e, never, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_FAILED);
	assert_int_equal(ti.reason, GS_REASON_WORKER_LOST);
	/* A second real loss spends `once`'s only retry. */
	uint64_t w3 = worker(e, 4);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w3, NOW, &a), GS_OK);
	assert_int_equal(a.task, once);
	assert_int_equal(a.attempt, 3);
	assert_int_equal(gs_engine_worker_dead(e, w3, NOW, NULL, NULL), GS_OK);
	assert_int_equal(state_of(e, once), GS_TASK_FAILED);
	GS_CHECK(e);
	/* Orphaned again and again: queued for good, the attempt capped. */
	uint64_t t = submit1(e, DQ, 3, 0);
	for (uint32_t i = 0; i < GS_MAX_ATTEMPT + 5; i++) {
		uint64_t w = worker(e, 1);
		assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
		assert_int_equal(a.task, t);
		assert_int_equal(gs_engine_worker_orphaned(e, w, NOW, NULL, NULL), GS_OK);
		assert_int_equal(state_of(e, t), GS_TASK_QUEUED);
	}
	assert_int_equal(gs_engine_task_info(e, t, &ti), GS_OK);
	assert_int_equal(ti.attempt, GS_MAX_ATTEMPT);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* --- capacity ------------------------------------------------------------------ */

static void t_table_full(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(8, 4, 4096, 0);
	uint64_t w = worker(e, 8);
	gs_task_spec specs[8];
	uint64_t ids[8];
	for (int i = 0; i < 8; i++)
		specs[i] = gs_test_spec(DQ, (uint32_t)i, NULL, 0);
	assert_int_equal(gs_engine_submit(e, specs, 5, NOW, ids), GS_OK);
	/* 4 more do not fit: none is submitted. */
	uint64_t more[4] = {0};
	assert_int_equal(gs_engine_submit(e, specs, 4, NOW, more), GS_EFULL);
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.submitted, 5);
	assert_int_equal(qs.queued, 5);
	for (int i = 0; i < 4; i++) {
		gs_task_info ti;
		if (more[i])
			assert_int_equal(gs_engine_task_info(e, more[i], &ti), GS_ENOTFOUND);
	}
	GS_CHECK(e);
	assert_int_equal(gs_engine_submit(e, specs, 3, NOW, more), GS_OK);
	assert_int_equal(gs_engine_submit(e, specs, 1, NOW, more + 3), GS_EFULL);
	/* All 8 pop in priority order (5 of prio 0..4, 3 of prio 0..2). */
	uint32_t last = 255;
	for (int i = 0; i < 8; i++) {
		gs_assignment a;
		assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
		assert_true(a.priority <= last);
		last = a.priority;
	}
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_EEMPTY);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_bad_specs(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(16, 4, 100, 0);
	uint64_t ids[2];
	gs_task_spec s[2] = {gs_test_spec(DQ, 0, NULL, 0), gs_test_spec(DQ, 0, NULL, 0)};
	assert_int_equal(gs_engine_submit(e, s, 0, NOW, ids), GS_EINVAL);
	s[1].priority = 256;
	assert_int_equal(gs_engine_submit(e, s, 2, NOW, ids), GS_EINVAL);
	s[1].priority = 255;
	s[1].max_retries = GS_MAX_RETRIES + 1;
	assert_int_equal(gs_engine_submit(e, s, 2, NOW, ids), GS_EINVAL);
	s[1].max_retries = GS_MAX_RETRIES;
	s[1].queue = (DQ + 1) % GS_MAX_QUEUES; /* unnamed */
	assert_int_equal(gs_engine_submit(e, s, 2, NOW, ids), GS_EINVAL);
	s[1].queue = 64;
	assert_int_equal(gs_engine_submit(e, s, 2, NOW, ids), GS_EINVAL);
	s[1].queue = DQ;
	s[1].payload_len = 3; /* NULL payload */
	assert_int_equal(gs_engine_submit(e, s, 2, NOW, ids), GS_EINVAL);
	char big[101] = {0};
	s[1].payload = big;
	s[1].payload_len = 101;
	assert_int_equal(gs_engine_submit(e, s, 2, NOW, ids), GS_ETOOBIG);
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.submitted, 0);
	s[1].payload_len = 100;
	assert_int_equal(gs_engine_submit(e, s, 2, NOW, ids), GS_OK);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* --- payloads and results --------------------------------------------------------- */

static void fill(uint8_t *b, uint32_t len, uint32_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		b[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 8));
}

static void check_payload(gs_engine *e, uint64_t id, uint32_t len, uint32_t seed)
{
	uint8_t want[256];
	const uint8_t *p;
	uint32_t n;
	assert_int_equal(gs_engine_task_payload(e, id, &p, &n), GS_OK);
	assert_int_equal(n, len);
	for (uint32_t i = 0; i < len; i += sizeof(want)) {
		uint32_t k = len - i < sizeof(want) ? len - i : (uint32_t)sizeof(want);
		for (uint32_t j = 0; j < k; j++)
			want[j] = (uint8_t)(seed * 31u + (i + j) * 7u + ((i + j) >> 8));
		assert_memory_equal(p + i, want, k);
	}
}

/* Inline up to GS_INLINE_BYTES: those never use the arena, one more byte does. */
static void t_payload_inline_vs_arena(void **st)
{
	(void)st;
	/* One 64 KiB arena page: 1024 blocks of 64 bytes (GS_INLINE_BYTES + 1 <= 64). */
	gs_engine *e = gs_test_engine(8192, 4, 4096, 65536);
	uint8_t buf[GS_INLINE_BYTES + 1];
	uint64_t id;
	for (uint32_t i = 0; i < 3000; i++) {
		fill(buf, GS_INLINE_BYTES, i);
		gs_task_spec s = gs_test_spec(DQ, 0, buf, GS_INLINE_BYTES);
		assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &id), GS_OK);
		if (i == 2999)
			check_payload(e, id, GS_INLINE_BYTES, i);
	}
	uint64_t first = 0;
	for (uint32_t i = 0; i < 1024; i++) {
		fill(buf, GS_INLINE_BYTES + 1, i);
		gs_task_spec s = gs_test_spec(DQ, 1, buf, GS_INLINE_BYTES + 1);
		assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &id), GS_OK);
		if (i == 0)
			first = id;
	}
	check_payload(e, first, GS_INLINE_BYTES + 1, 0);
	check_payload(e, id, GS_INLINE_BYTES + 1, 1023);
	gs_task_spec s = gs_test_spec(DQ, 1, buf, GS_INLINE_BYTES + 1);
	uint64_t x;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &x), GS_EFULL);
	/* Inline still works with the arena full. */
	s.payload_len = GS_INLINE_BYTES;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &x), GS_OK);
	/* Freed with the task: cancel + pop (drops it) + release. */
	assert_int_equal(gs_engine_cancel(e, first, NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_release(e, first), GS_OK);
	uint64_t w = worker(e, 1);
	gs_assignment a;
	/* prio 1 first: the 1023 left of the one-byte-over ones, then the new one. */
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	check_payload(e, a.task, GS_INLINE_BYTES + 1, 1);
	s.payload_len = GS_INLINE_BYTES + 1;
	fill(buf, GS_INLINE_BYTES + 1, 77);
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &x), GS_OK);
	check_payload(e, x, GS_INLINE_BYTES + 1, 77);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

static void t_payload_max(void **st)
{
	(void)st;
	const uint32_t max = 65536;
	gs_engine *e = gs_test_engine(64, 4, max, 2 * 65536);
	uint8_t *buf = malloc(max + 1);
	assert_non_null(buf);
	fill(buf, max + 1, 5);
	gs_task_spec s = gs_test_spec(DQ, 0, buf, max + 1);
	uint64_t a, b, c;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &a), GS_ETOOBIG);
	s.payload_len = max;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &b), GS_OK);
	check_payload(e, a, max, 5);
	check_payload(e, b, max, 5);
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &c), GS_EFULL);
	/* A batch whose second element does not fit changes nothing. */
	uint64_t w = worker(e, 4);
	gs_assignment as;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &as), GS_OK);
	gs_outcome o = outcome(false, 0, NULL, 0);
	assert_int_equal(gs_engine_finish(e, as.task, w, 1, &o, NOW), GS_OK);
	assert_int_equal(gs_engine_release(e, as.task), GS_OK);
	uint8_t small[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	gs_task_spec batch[3] = {gs_test_spec(DQ, 0, small, 8), s, s};
	uint64_t ids[3];
	assert_int_equal(gs_engine_submit(e, batch, 3, NOW, ids), GS_EFULL);
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.queued, 1);
	assert_int_equal(qs.submitted, 2);
	GS_CHECK(e);
	/* The page the failed batch took for a moment is free again. */
	assert_int_equal(gs_engine_submit(e, batch, 2, NOW, ids), GS_OK);
	check_payload(e, ids[1], max, 5);
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_payload(e, ids[0], &p, &len), GS_OK);
	assert_int_equal(len, 8);
	assert_memory_equal(p, small, 8);
	/* Empty payload. */
	gs_task_spec z = gs_test_spec(DQ, 0, NULL, 0);
	assert_int_equal(gs_engine_submit(e, &z, 1, NOW, &c), GS_OK);
	assert_int_equal(gs_engine_task_payload(e, c, &p, &len), GS_OK);
	assert_int_equal(len, 0);
	GS_CHECK(e);
	free(buf);
	gs_engine_close(e, false);
}

static void finish_with(gs_engine *e, uint64_t w, uint64_t *id, uint32_t plen, uint32_t rlen,
                        uint32_t seed)
{
	uint8_t pl[64], res[64];
	fill(pl, plen, seed);
	fill(res, rlen, seed + 1000);
	gs_task_spec s = gs_test_spec(DQ, 0, pl, plen);
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, id), GS_OK);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, *id);
	gs_outcome o = outcome(false, (int32_t)seed, res, rlen);
	assert_int_equal(gs_engine_finish(e, *id, w, 1, &o, NOW), GS_OK);
	check_payload(e, *id, plen, seed);
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_result(e, *id, &p, &len), GS_OK);
	assert_int_equal(len, rlen);
	assert_memory_equal(p, res, rlen);
}

static void t_results(void **st)
{
	(void)st;
	/* Three arena pages: the 32 B class, the 64 B class, one 64 KiB block. */
	gs_engine *e = gs_test_engine(64, 4, 65536, 3 * 65536);
	uint64_t w = worker(e, 64);
	uint64_t ids[6];
	finish_with(e, w, &ids[0], 10, 14, 1);                  /* both inline */
	finish_with(e, w, &ids[1], 10, GS_INLINE_BYTES - 9, 2); /* result to the arena */
	finish_with(e, w, &ids[2], GS_INLINE_BYTES + 1, 10, 3); /* payload in the arena */
	finish_with(e, w, &ids[3], GS_INLINE_BYTES + 1, 60, 4); /* both in the arena */
	finish_with(e, w, &ids[4], 0, GS_INLINE_BYTES, 5);      /* result fills inline */
	finish_with(e, w, &ids[5], GS_INLINE_BYTES, 1, 6);      /* payload fills inline */

	/* Result over the maximum: refused, nothing changed. */
	uint64_t x = submit1(e, DQ, 0, 0), y = submit1(e, DQ, 0, 0);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	uint8_t *big = malloc(65537);
	assert_non_null(big);
	fill(big, 65537, 9);
	gs_outcome o = outcome(false, 0, big, 65537);
	assert_int_equal(gs_engine_finish(e, x, w, 1, &o, NOW), GS_ETOOBIG);
	assert_int_equal(state_of(e, x), GS_TASK_ASSIGNED);
	/* The largest result takes the last page... */
	o.result_len = 65536;
	assert_int_equal(gs_engine_finish(e, x, w, 1, &o, NOW), GS_OK);
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_result(e, x, &p, &len), GS_OK);
	assert_int_equal(len, 65536);
	assert_memory_equal(p, big, 65536);
	/* ...so the next one is dropped, and the task still finishes. */
	assert_int_equal(gs_engine_finish(e, y, w, 1, &o, NOW), GS_OK);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, y, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_DONE);
	assert_true(ti.result_dropped);
	assert_int_equal(ti.result_len, 0);
	assert_int_equal(gs_engine_task_result(e, y, &p, &len), GS_OK);
	assert_int_equal(len, 0);
	assert_int_equal(gs_engine_task_info(e, x, &ti), GS_OK);
	assert_false(ti.result_dropped);
	GS_CHECK(e);
	for (int i = 0; i < 6; i++)
		assert_int_equal(gs_engine_release(e, ids[i]), GS_OK);
	/* Released with its task: the page takes the next big result. */
	assert_int_equal(gs_engine_release(e, x), GS_OK);
	assert_int_equal(gs_engine_release(e, y), GS_OK);
	uint64_t z = submit1(e, DQ, 0, 0);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_finish(e, z, w, 1, &o, NOW), GS_OK);
	assert_int_equal(gs_engine_task_info(e, z, &ti), GS_OK);
	assert_false(ti.result_dropped);
	assert_int_equal(ti.result_len, 65536);
	free(big);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* --- queues ----------------------------------------------------------------------- */

static void t_queues(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 4, 4096, 0);
	uint32_t def, q1, q1b, x;
	assert_int_equal(gs_engine_queue(e, "default", false, &def), GS_OK);
	assert_string_equal(gs_engine_queue_name(e, def), "default");
	assert_int_equal(gs_engine_queue(e, "q1", false, &x), GS_ENOTFOUND);
	assert_int_equal(gs_engine_queue(e, "q1", true, &q1), GS_OK);
	assert_int_not_equal(q1, def);
	assert_int_equal(gs_engine_queue(e, "q1", true, &q1b), GS_OK);
	assert_int_equal(q1, q1b);
	assert_int_equal(gs_engine_queue(e, "q1", false, &q1b), GS_OK);
	assert_int_equal(q1, q1b);
	assert_string_equal(gs_engine_queue_name(e, q1), "q1");
	const char *bad[] = {"",  "a b",   "a/b",
	                     "é", "tab\t", "0123456789012345678901234567890123456789012345678"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(gs_engine_queue(e, bad[i], true, &x), GS_EINVAL);
	assert_int_equal(gs_engine_queue(e, NULL, true, &x), GS_EINVAL);
	char longest[GS_QUEUE_NAME_MAX];
	memset(longest, 'z', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = 0;
	assert_int_equal(gs_engine_queue(e, longest, true, &x), GS_OK);
	assert_string_equal(gs_engine_queue_name(e, x), longest);
	/* 64 in all. */
	uint32_t made = 3, qids[64];
	for (uint32_t i = 0; made < GS_MAX_QUEUES; i++, made++) {
		char name[16];
		snprintf(name, sizeof(name), "A-b_c.%u", i);
		assert_int_equal(gs_engine_queue(e, name, true, &qids[i]), GS_OK);
	}
	assert_int_equal(gs_engine_queue(e, "one-too-many", true, &x), GS_EFULL);
	assert_int_equal(gs_engine_queue(e, "one-too-many", false, &x), GS_ENOTFOUND);
	assert_int_equal(gs_engine_queue(e, "q1", false, &x), GS_OK);
	assert_int_equal(x, q1);
	/* Every qid named exactly once. */
	for (uint32_t q = 0; q < GS_MAX_QUEUES; q++) {
		const char *n = gs_engine_queue_name(e, q);
		assert_non_null(n);
		assert_int_equal(gs_engine_queue(e, n, false, &x), GS_OK);
		assert_int_equal(x, q);
	}
	assert_null(gs_engine_queue_name(e, GS_MAX_QUEUES));
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, GS_MAX_QUEUES, &qs), GS_ENOTFOUND);
	/* Tasks keep to their queue. */
	uint64_t w = worker(e, 8), t1 = submit1(e, q1, 0, 0);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, def, w, NOW, &a), GS_EEMPTY);
	assert_int_equal(gs_engine_pop_assign(e, q1, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, t1);
	assert_int_equal(a.queue, q1);
	assert_int_equal(gs_engine_pop_assign(e, GS_MAX_QUEUES, w, NOW, &a), GS_EINVAL);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* --- delayed tasks ------------------------------------------------------------------ */

static void t_delayed(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 4, 4096, 0);
	uint64_t w = worker(e, 8);
	gs_delay_timer t;
	gs_delay_timer_init(&t);
	uint64_t ids[4];
	uint64_t due[4] = {NOW + 300, NOW + 100, NOW + 200, NOW + 100};
	for (int i = 0; i < 4; i++) {
		gs_task_spec s = gs_test_spec(DQ, 0, NULL, 0);
		s.not_before_us = due[i];
		assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &ids[i]), GS_OK);
		assert_int_equal(state_of(e, ids[i]), GS_TASK_DELAYED);
	}
	/* A not_before in the past queues at once. */
	gs_task_spec past = gs_test_spec(DQ, 0, NULL, 0);
	past.not_before_us = NOW - 1;
	uint64_t now_id;
	assert_int_equal(gs_engine_submit(e, &past, 1, NOW, &now_id), GS_OK);
	assert_int_equal(state_of(e, now_id), GS_TASK_QUEUED);
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.delayed, 4);
	assert_int_equal(qs.queued, 1);
	GS_CHECK(e);

	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, now_id);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_EEMPTY);
	uint64_t next;
	size_t rel;
	assert_int_equal(gs_delay_timer_poll(&t, e, NOW, &next, &rel), GS_OK);
	assert_int_equal(rel, 0);
	assert_int_equal(next, NOW + 100);
	assert_int_equal(gs_engine_cancel(e, ids[3], NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_delay_timer_poll(&t, e, NOW + 99, &next, &rel), GS_OK);
	assert_int_equal(rel, 0);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_EEMPTY);
	assert_int_equal(gs_delay_timer_poll(&t, e, NOW + 100, &next, &rel), GS_OK);
	assert_int_equal(rel, 1); /* ids[1]; ids[3] was cancelled */
	assert_int_equal(next, NOW + 200);
	assert_int_equal(state_of(e, ids[1]), GS_TASK_QUEUED);
	assert_int_equal(state_of(e, ids[3]), GS_TASK_CANCELLED);
	assert_int_equal(state_of(e, ids[0]), GS_TASK_DELAYED);
	assert_int_equal(gs_engine_delayed_release(e, ids[1], NOW), GS_ESTATE);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, ids[1]);
	assert_int_equal(a.attempt, 1);
	assert_int_equal(gs_delay_timer_poll(&t, e, NOW + 1000, &next, &rel), GS_OK);
	assert_int_equal(rel, 2);
	assert_int_equal(next, 0);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, ids[2]); /* due first, released first */
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, ids[0]);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_EEMPTY);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, ids[0], &ti), GS_OK);
	assert_int_equal(ti.not_before_us, NOW + 300);
	/* `delayed` and `assigned` are gauges: all released (one cancelled),
	 * the four others on the worker. */
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.delayed, 0);
	assert_int_equal(qs.submitted, 5);
	assert_int_equal(qs.assigned, 4);
	assert_int_equal(qs.cancelled, 1);
	GS_CHECK(e);
	gs_delay_timer_free(&t);
	gs_engine_close(e, false);
}

/* Many delayed tasks: the timer takes them all and releases them in order. */
static void t_delayed_many(void **st)
{
	(void)st;
	const uint32_t n = 1000;
	gs_engine *e = gs_test_engine(2048, 4, 4096, 0);
	uint64_t w = worker(e, 8);
	uint64_t seed = 42;
	for (uint32_t i = 0; i < n; i++) {
		gs_task_spec s = gs_test_spec(DQ, 0, &i, sizeof(i));
		s.not_before_us = NOW + 1 + gs_test_below(&seed, 10000);
		uint64_t id;
		assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &id), GS_OK);
	}
	gs_delay_timer t;
	gs_delay_timer_init(&t);
	uint64_t next, last_nb = 0;
	size_t rel, total = 0;
	for (uint64_t now = NOW; now <= NOW + 10000 + 37; now += 37) {
		assert_int_equal(gs_delay_timer_poll(&t, e, now, &next, &rel), GS_OK);
		total += rel;
		gs_assignment a;
		while (gs_engine_pop_assign(e, DQ, w, now, &a) == GS_OK) {
			gs_task_info ti;
			assert_int_equal(gs_engine_task_info(e, a.task, &ti), GS_OK);
			assert_true(ti.not_before_us <= now);
			assert_true(ti.not_before_us + 37 > now);
			assert_true(ti.not_before_us >= last_nb);
			last_nb = ti.not_before_us;
		}
	}
	assert_int_equal(total, n);
	GS_CHECK(e);
	gs_delay_timer_free(&t);
	gs_engine_close(e, false);
}

/* A delayed task cancelled and released before the timer took it must not
 * break the inbox: the others are still released, and its reused slot is
 * handed to the timer once. */
static void t_delayed_cancel_release(void **st)
{
	(void)st;
	alarm(20); /* a looping inbox kills the test rather than hanging it */
	gs_engine *e = gs_test_engine(4, 4, 4096, 0);
	uint64_t w = worker(e, 8);
	gs_task_spec s = gs_test_spec(DQ, 0, NULL, 0);
	s.not_before_us = NOW + 100;
	uint64_t z, x, x2, y;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &z), GS_OK);
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &x), GS_OK);
	assert_int_equal(gs_engine_cancel(e, x, NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_release(e, x), GS_OK);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, x, &ti), GS_ENOTFOUND);
	GS_CHECK(e);
	/* The slot may be reused by another delayed task. */
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &x2), GS_OK);
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &y), GS_OK);
	GS_CHECK(e);
	gs_delay_timer t;
	gs_delay_timer_init(&t);
	uint64_t next;
	size_t rel;
	assert_int_equal(gs_delay_timer_poll(&t, e, NOW + 200, &next, &rel), GS_OK);
	assert_int_equal(rel, 3);
	assert_int_equal(next, 0);
	assert_int_equal(state_of(e, z), GS_TASK_QUEUED);
	assert_int_equal(state_of(e, x2), GS_TASK_QUEUED);
	assert_int_equal(state_of(e, y), GS_TASK_QUEUED);
	gs_assignment a;
	for (int i = 0; i < 3; i++)
		assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_EEMPTY);
	assert_int_equal(gs_delay_timer_poll(&t, e, NOW + 300, &next, &rel), GS_OK);
	assert_int_equal(rel, 0);
	/* The table is not leaking: 3 in use, one more fits. */
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &x), GS_OK);
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &x), GS_EFULL);
	GS_CHECK(e);
	gs_delay_timer_free(&t);
	gs_engine_close(e, false);
	alarm(0);
}

/* --- stats ---------------------------------------------------------------------------- */

static void t_stats(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 4, 4096, 0);
	uint32_t q;
	assert_int_equal(gs_engine_queue(e, "stats", true, &q), GS_OK);
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(e, 8, 1ull << q, NOW, &w), GS_OK);
	uint64_t ids[6];
	for (int i = 0; i < 6; i++)
		ids[i] = submit1(e, q, 0, 1);
	gs_assignment a;
	for (int i = 0; i < 4; i++)
		assert_int_equal(gs_engine_pop_assign(e, q, w, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_start(e, ids[1], w, 1, NOW), GS_OK);
	assert_int_equal(gs_engine_start(e, ids[3], w, 1, NOW), GS_OK);
	assert_int_equal(gs_engine_start(e, ids[3], w, 1, NOW), GS_OK); /* repeated: once */
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, q, &qs), GS_OK);
	assert_int_equal(qs.queued, 2);
	assert_int_equal(qs.assigned, 2);
	assert_int_equal(qs.running, 2);
	GS_CHECK(e);
	gs_outcome ok = outcome(false, 0, NULL, 0), bad = outcome(true, 1, NULL, 0);
	assert_int_equal(gs_engine_finish(e, ids[0], w, 1, &ok, NOW), GS_OK);
	assert_int_equal(gs_engine_finish(e, ids[1], w, 1, &bad, NOW), GS_OK);
	assert_int_equal(gs_engine_cancel(e, ids[2], NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_cancel(e, ids[4], NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_worker_dead(e, w, NOW, NULL, NULL), GS_OK); /* ids[3] */
	assert_int_equal(gs_engine_queue_stats(e, q, &qs), GS_OK);
	assert_int_equal(qs.submitted, 6);
	assert_int_equal(qs.assigned, 0);
	assert_int_equal(qs.running, 0);
	assert_int_equal(qs.done, 1);
	assert_int_equal(qs.failed, 1);
	assert_int_equal(qs.cancelled, 2);
	assert_int_equal(qs.requeued, 1);
	assert_int_equal(qs.queued, 2); /* ids[3] again, ids[5] */
	assert_int_equal(qs.delayed, 0);
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.submitted, 0);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* --- the worker calls ------------------------------------------------------------------- */

static void t_workers(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 3, 4096, 0);
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(e, 0, 1ull << DQ, NOW, &w), GS_EINVAL);
	assert_int_equal(gs_engine_worker_register(e, GS_WORKER_MAX_SLOTS + 1, 1ull << DQ, NOW, &w),
	                 GS_EINVAL);
	assert_int_equal(gs_engine_worker_register(e, 1, 0, NOW, &w), GS_EINVAL);
	assert_int_equal(gs_engine_worker_register(e, 1, 1ull << ((DQ + 1) % 64), NOW, &w),
	                 GS_EINVAL);
	uint64_t ws[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(gs_engine_worker_register(e, 2, 1ull << DQ, NOW, &ws[i]), GS_OK);
	assert_int_equal(gs_engine_worker_register(e, 2, 1ull << DQ, NOW, &w), GS_EFULL);
	gs_worker_info wi;
	assert_int_equal(gs_engine_worker_info(e, ws[1], &wi), GS_OK);
	assert_int_equal(wi.id, ws[1]);
	assert_int_equal(wi.state, GS_WORKER_ALIVE);
	assert_int_equal(wi.slots, 2);
	assert_int_equal(wi.queue_mask, 1ull << DQ);
	assert_int_equal(wi.last_seen_us, NOW);

	/* Heartbeats and expiry. */
	assert_int_equal(gs_engine_worker_heartbeat(e, ws[0], NOW + 500), GS_OK);
	assert_int_equal(gs_engine_worker_heartbeat(e, ws[0] + (1ull << 32), NOW), GS_ENOTFOUND);
	uint64_t exp[4];
	size_t n = gs_engine_worker_expired(e, NOW + 300, 100, exp, 4);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++)
		assert_true(exp[i] == ws[1] || exp[i] == ws[2]);
	assert_int_equal(gs_engine_worker_expired(e, NOW + 300, 100, exp, 1), 1);
	assert_int_equal(gs_engine_worker_expired(e, NOW + 50, 100, exp, 4), 0);

	/* Tasks of a worker. */
	uint64_t t1 = submit1(e, DQ, 0, 0), t2 = submit1(e, DQ, 0, 0);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, ws[2], NOW, &a), GS_OK);
	assert_int_equal(gs_engine_pop_assign(e, DQ, ws[2], NOW, &a), GS_OK);
	uint64_t tids[4];
	assert_int_equal(gs_engine_worker_tasks(e, ws[2], tids, 4, &n), GS_OK);
	assert_int_equal(n, 2);
	assert_true((tids[0] == t1 && tids[1] == t2) || (tids[0] == t2 && tids[1] == t1));
	assert_int_equal(gs_engine_worker_tasks(e, ws[1], tids, 4, &n), GS_OK);
	assert_int_equal(n, 0);

	/* Draining: no new tasks, reports still count. */
	assert_int_equal(gs_engine_worker_drain(e, ws[2]), GS_OK);
	assert_int_equal(gs_engine_worker_drain(e, ws[2]), GS_OK);
	assert_int_equal(gs_engine_worker_info(e, ws[2], &wi), GS_OK);
	assert_int_equal(wi.state, GS_WORKER_DRAINING);
	submit1(e, DQ, 0, 0);
	assert_int_equal(gs_engine_pop_assign(e, DQ, ws[2], NOW, &a), GS_ESTATE);
	gs_outcome o = outcome(false, 0, NULL, 0);
	assert_int_equal(gs_engine_finish(e, t1, ws[2], 1, &o, NOW), GS_OK);
	assert_int_equal(gs_engine_worker_info(e, ws[2], &wi), GS_OK);
	assert_int_equal(wi.load, 1);
	assert_int_equal(wi.assigned_total, 2);
	assert_int_equal(wi.finished_total, 1);

	/* A freed worker slot is reused under a new ID. */
	assert_int_equal(gs_engine_worker_dead(e, ws[0], NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_worker_heartbeat(e, ws[0], NOW), GS_ENOTFOUND);
	assert_int_equal(gs_engine_worker_drain(e, ws[0]), GS_ENOTFOUND);
	assert_int_equal(gs_engine_worker_register(e, 2, 1ull << DQ, NOW, &w), GS_OK);
	assert_int_not_equal(w, ws[0]);
	assert_int_equal(gs_engine_worker_info(e, ws[0], &wi), GS_ENOTFOUND);
	assert_int_equal(gs_engine_worker_at(e, 99, &wi), GS_ENOTFOUND);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_transition_table),
	    cmocka_unit_test(t_path_done),
	    cmocka_unit_test(t_path_failed_dispatch),
	    cmocka_unit_test(t_wrong_worker_attempt),
	    cmocka_unit_test(t_cancel),
	    cmocka_unit_test(t_release_illegal),
	    cmocka_unit_test(t_release_linked),
	    cmocka_unit_test(t_stale_ids),
	    cmocka_unit_test(t_worker_dead),
	    cmocka_unit_test(t_table_full),
	    cmocka_unit_test(t_bad_specs),
	    cmocka_unit_test(t_payload_inline_vs_arena),
	    cmocka_unit_test(t_payload_max),
	    cmocka_unit_test(t_results),
	    cmocka_unit_test(t_queues),
	    cmocka_unit_test(t_delayed),
	    cmocka_unit_test(t_delayed_many),
	    cmocka_unit_test(t_delayed_cancel_release),
	    cmocka_unit_test(t_stats),
	    cmocka_unit_test(t_workers),
	    cmocka_unit_test(t_worker_orphaned),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
