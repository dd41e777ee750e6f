/*
 * test_restore.c - putting tasks back under their old IDs (what a server
 * does with its write-ahead log after a machine restart):
 * gs_engine_restore, gs_engine_restore_finish, gs_engine_gen_high and
 * gs_engine_task_at.  An engine is driven through a history, its live tasks
 * are read slot by slot, and a fresh engine gets them back: restored IDs
 * resolve with their state, payload and result; released IDs do not; no new
 * ID equals any ID the first engine issued; restored QUEUED tasks dispatch
 * in priority, then FIFO order; bad input changes nothing.
 */
#include "test_util.h"

#include <stdlib.h>

#define NOW  1000000u
#define MAXT 256u

/* A live task as read from an engine: what a log would remember. */
struct saved {
	gs_restore_task t;
	uint8_t spec[512], res[512];
	char queue[48];
};

static uint64_t submit_p(gs_engine *e, uint32_t q, uint32_t prio, const void *p, uint32_t len)
{
	gs_task_spec s = gs_test_spec(q, prio, p, len);
	s.max_retries = 2;
	uint64_t id = 0;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &id), GS_OK);
	return id;
}

/* Reads every live task of e, in slot order, into out; returns how many. */
static size_t save_all(gs_engine *e, struct saved *out, size_t max)
{
	size_t n = 0;
	for (uint32_t slot = 0; slot < gs_engine_geom(e)->max_tasks; slot++) {
		gs_task_info ti;
		if (gs_engine_task_at(e, slot, &ti) != GS_OK)
			continue;
		assert_true(n < max);
		struct saved *s = &out[n++];
		memset(s, 0, sizeof(*s));
		const uint8_t *p;
		uint32_t len;
		assert_int_equal(gs_engine_task_payload(e, ti.id, &p, &len), GS_OK);
		assert_true(len <= sizeof(s->spec));
		if (len)
			memcpy(s->spec, p, len);
		s->t = (gs_restore_task){.id = ti.id,
		                         .state = ti.state,
		                         .queue = ti.queue,
		                         .priority = ti.priority,
		                         .max_retries = ti.max_retries,
		                         .timeout_ms = ti.timeout_ms,
		                         .submitted_us = ti.submitted_us,
		                         .not_before_us = ti.not_before_us,
		                         .payload = s->spec,
		                         .payload_len = len,
		                         .attempt = ti.attempt,
		                         .status = ti.status,
		                         .reason = ti.reason,
		                         .finished_us = ti.finished_us};
		if (ti.state == GS_TASK_DONE || ti.state == GS_TASK_FAILED ||
		    ti.state == GS_TASK_CANCELLED) {
			assert_int_equal(gs_engine_task_result(e, ti.id, &p, &len), GS_OK);
			assert_true(len <= sizeof(s->res));
			if (len)
				memcpy(s->res, p, len);
			s->t.result = s->res;
			s->t.result_len = len;
		}
	}
	return n;
}

static gs_engine *fresh(void)
{
	return gs_test_engine(MAXT, 8, 4096, 1u << 20);
}

static uint64_t worker(gs_engine *e, uint32_t slots)
{
	uint64_t w = 0;
	assert_int_equal(gs_engine_worker_register(e, slots, 1ull << DQ, NOW, &w), GS_OK);
	return w;
}

static bool in(const uint64_t *v, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

/* The whole story: history in A, restore into B, check B. */
static void t_restore_roundtrip(void **st)
{
	(void)st;
	gs_engine *a = fresh();
	uint64_t issued[4096];
	size_t n_issued = 0;
	uint8_t big[300];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	/* Churn first so generations move on: submit + finish + release. */
	uint64_t w = worker(a, 64);
	for (int r = 0; r < 50; r++) {
		uint64_t id = submit_p(a, DQ, 1, "x", 1);
		issued[n_issued++] = id;
		gs_assignment as;
		assert_int_equal(gs_engine_pop_assign(a, DQ, w, NOW, &as), GS_OK);
		gs_outcome o = {.result = "r", .result_len = 1};
		assert_int_equal(gs_engine_finish(a, id, w, as.attempt, &o, NOW), GS_OK);
		assert_int_equal(gs_engine_release(a, id), GS_OK);
	}
	/* Live: queued at mixed priorities (some big payloads), one assigned,
	 * one done with a small result, one failed with a big one, one cancelled. */
	uint64_t q_ids[12];
	uint32_t prios[12] = {1, 5, 1, 9, 5, 1, 9, 0, 5, 1, 0, 9};
	for (int i = 0; i < 12; i++) {
		char p[16];
		int len = snprintf(p, sizeof(p), "q%d", i);
		q_ids[i] = i % 4 == 3 ? submit_p(a, DQ, prios[i], big, sizeof(big))
		                      : submit_p(a, DQ, prios[i], p, (uint32_t)len);
		issued[n_issued++] = q_ids[i];
	}
	uint64_t running = submit_p(a, DQ, 200, "run", 3);
	uint64_t done = submit_p(a, DQ, 200, "done", 4);
	uint64_t failed = submit_p(a, DQ, 200, big, sizeof(big));
	uint64_t cancelled = submit_p(a, DQ, 200, "c", 1);
	uint64_t released = submit_p(a, DQ, 200, "gone", 4);
	issued[n_issued++] = running;
	issued[n_issued++] = done;
	issued[n_issued++] = failed;
	issued[n_issued++] = cancelled;
	issued[n_issued++] = released;
	gs_assignment as[5];
	for (int i = 0; i < 5; i++)
		assert_int_equal(gs_engine_pop_assign(a, DQ, w, NOW, &as[i]), GS_OK);
	assert_int_equal(as[0].task, running);
	assert_int_equal(gs_engine_start(a, running, w, 1, NOW + 5), GS_OK);
	gs_outcome od = {.status = 0, .result = "ok!", .result_len = 3};
	assert_int_equal(gs_engine_finish(a, done, w, 1, &od, NOW + 10), GS_OK);
	gs_outcome of = {.failed = true, .status = 3, .result = big, .result_len = sizeof(big)};
	assert_int_equal(gs_engine_finish(a, failed, w, 1, &of, NOW + 11), GS_OK);
	assert_int_equal(gs_engine_cancel(a, cancelled, NOW + 12, NULL, NULL), GS_OK);
	gs_outcome orl = {.result = "x", .result_len = 1};
	assert_int_equal(gs_engine_finish(a, released, w, 1, &orl, NOW + 13), GS_OK);
	assert_int_equal(gs_engine_release(a, released), GS_OK);
	GS_CHECK(a);

	static struct saved sv[MAXT];
	size_t n = save_all(a, sv, MAXT);
	assert_int_equal(n, 12 + 4);
	uint32_t high = gs_engine_gen_high(a);
	for (size_t i = 0; i < n_issued; i++)
		assert_true(gs_task_id_gen(issued[i]) <= high);

	/* B: restored in submission order (here: ID issue order). */
	gs_engine *b = fresh();
	for (size_t k = 0; k < n_issued; k++) {
		for (size_t i = 0; i < n; i++) {
			if (sv[i].t.id != issued[k])
				continue;
			assert_int_equal(gs_engine_restore(b, &sv[i].t, NOW + 100), GS_OK);
		}
	}
	assert_int_equal(gs_engine_restore_finish(b, high + 1, NULL), GS_OK);
	GS_CHECK(b);

	/* Every restored ID resolves, with its bytes; on-worker came back QUEUED. */
	for (size_t i = 0; i < n; i++) {
		gs_task_info ti;
		assert_int_equal(gs_engine_task_info(b, sv[i].t.id, &ti), GS_OK);
		const uint8_t *p;
		uint32_t len;
		assert_int_equal(gs_engine_task_payload(b, sv[i].t.id, &p, &len), GS_OK);
		assert_int_equal(len, sv[i].t.payload_len);
		assert_memory_equal(p, sv[i].spec, len);
		assert_int_equal(ti.priority, sv[i].t.priority);
		assert_int_equal(ti.max_retries, 2);
		if (sv[i].t.id == running) {
			assert_int_equal(ti.state, GS_TASK_QUEUED);
			assert_int_equal(ti.attempt, 2);
		} else {
			assert_int_equal(ti.state, sv[i].t.state);
		}
	}
	/* Final ones keep status, reason and result. */
	const uint8_t *p;
	uint32_t len;
	gs_task_info ti;
	assert_int_equal(gs_engine_task_result(b, done, &p, &len), GS_OK);
	assert_int_equal(len, 3);
	assert_memory_equal(p, "ok!", 3);
	assert_int_equal(gs_engine_task_info(b, failed, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_FAILED);
	assert_int_equal(ti.status, 3);
	assert_int_equal(ti.finished_us, NOW + 11);
	assert_int_equal(gs_engine_task_result(b, failed, &p, &len), GS_OK);
	assert_int_equal(len, sizeof(big));
	assert_memory_equal(p, big, sizeof(big));
	assert_int_equal(gs_engine_task_info(b, cancelled, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_CANCELLED);
	assert_int_equal(ti.reason, GS_REASON_CANCELLED);

	/* Released IDs (the churn, `released`) stay gone. */
	assert_int_equal(gs_engine_task_info(b, released, &ti), GS_ENOTFOUND);
	for (size_t i = 0; i < 50; i++)
		assert_int_equal(gs_engine_task_info(b, issued[i], &ti), GS_ENOTFOUND);

	/* Dispatch order: priority, then FIFO; the requeued task first (200). */
	uint64_t wb = worker(b, 64);
	gs_assignment ab;
	assert_int_equal(gs_engine_pop_assign(b, DQ, wb, NOW, &ab), GS_OK);
	assert_int_equal(ab.task, running);
	assert_int_equal(ab.attempt, 2);
	uint32_t last_prio = 255;
	size_t last_idx = 0;
	for (int k = 0; k < 12; k++) {
		assert_int_equal(gs_engine_pop_assign(b, DQ, wb, NOW, &ab), GS_OK);
		size_t idx = 0;
		while (q_ids[idx] != ab.task)
			idx++;
		assert_true(prios[idx] <= last_prio);
		if (prios[idx] == last_prio)
			assert_true(idx > last_idx); /* FIFO within a priority */
		last_prio = prios[idx];
		last_idx = idx;
	}
	assert_int_equal(gs_engine_pop_assign(b, DQ, wb, NOW, &ab), GS_EEMPTY);

	/* New IDs never equal an old one, released or live, across much churn. */
	for (int r = 0; r < 2000; r++) {
		uint64_t id = submit_p(b, DQ, 1, "n", 1);
		assert_false(in(issued, n_issued, id));
		assert_true(gs_task_id_gen(id) > high);
		assert_int_equal(gs_engine_pop_assign(b, DQ, wb, NOW, &ab), GS_OK);
		gs_outcome o = {.result = "r", .result_len = 1};
		assert_int_equal(gs_engine_finish(b, id, wb, 1, &o, NOW), GS_OK);
		assert_int_equal(gs_engine_release(b, id), GS_OK);
	}
	/* Restored final tasks release like any other. */
	assert_int_equal(gs_engine_release(b, done), GS_OK);
	assert_int_equal(gs_engine_release(b, failed), GS_OK);
	assert_int_equal(gs_engine_release(b, cancelled), GS_OK);
	GS_CHECK(b);
	gs_engine_close(a, false);
	gs_engine_close(b, false);
}

static void t_restore_delayed(void **st)
{
	(void)st;
	gs_engine *b = fresh();
	gs_restore_task t = {.id = gs_task_id(7, 3),
	                     .state = GS_TASK_QUEUED,
	                     .queue = DQ,
	                     .submitted_us = NOW,
	                     .not_before_us = NOW + 5000000};
	assert_int_equal(gs_engine_restore(b, &t, NOW + 1000), GS_OK);
	gs_restore_task due = t;
	due.id = gs_task_id(3, 9);
	due.not_before_us = NOW + 10;
	assert_int_equal(gs_engine_restore(b, &due, NOW + 1000), GS_OK);
	assert_int_equal(gs_engine_restore_finish(b, 10, NULL), GS_OK);
	GS_CHECK(b);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(b, t.id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_DELAYED);
	assert_int_equal(ti.not_before_us, NOW + 5000000);
	assert_int_equal(gs_engine_task_info(b, due.id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_QUEUED);
	uint64_t ids[4];
	assert_int_equal(gs_engine_delayed_take(b, ids, 4), 1);
	assert_int_equal(ids[0], t.id);
	assert_int_equal(gs_engine_delayed_release(b, t.id, NOW + 5000000), GS_OK);
	assert_int_equal(gs_engine_task_info(b, t.id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_QUEUED);
	GS_CHECK(b);
	/* Slots below the restored ones are free and get generation >= 10. */
	for (int i = 0; i < 20; i++) {
		uint64_t id = submit_p(b, DQ, 0, NULL, 0);
		assert_true(gs_task_id_gen(id) >= 10);
		assert_true(id != t.id && id != due.id);
	}
	gs_engine_close(b, false);
}

/* A task that was on a worker when the server went down comes back with the
 * next attempt number, and that attempt costs it no retry: with 1 retry it
 * still survives one real worker loss. */
static void t_restore_retry_free(void **st)
{
	(void)st;
	gs_engine *b = fresh();
	gs_restore_task t = {.id = gs_task_id(5, 2),
	                     .state = GS_TASK_RUNNING,
	                     .queue = DQ,
	                     .max_retries = 1,
	                     .submitted_us = NOW,
	                     .attempt = 1};
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_OK);
	assert_int_equal(gs_engine_restore_finish(b, 10, NULL), GS_OK);
	uint64_t w = 0;
	assert_int_equal(gs_engine_worker_register(b, 1, 1ull << DQ, NOW, &w), GS_OK);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(b, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.attempt, 2);
	assert_int_equal(gs_engine_worker_dead(b, w, NOW, NULL, NULL), GS_OK);
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(b, t.id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_QUEUED);
	assert_int_equal(ti.attempt, 3);
	/* The next loss is its second real one: its retry is spent. */
	assert_int_equal(gs_engine_worker_register(b, 1, 1ull << DQ, NOW, &w), GS_OK);
	assert_int_equal(gs_engine_pop_assign(b, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_worker_dead(b, w, NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_task_info(b, t.id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_FAILED);
	GS_CHECK(b);
	gs_engine_close(b, false);
}

static void t_restore_bad_input(void **st)
{
	(void)st;
	gs_engine *b = fresh();
	gs_restore_task ok = {.id = gs_task_id(5, 2), .state = GS_TASK_QUEUED, .queue = DQ};
	gs_restore_task t = ok;
	t.id = gs_task_id(5, 0);
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_EINVAL);
	t = ok;
	t.id = gs_task_id(MAXT, 1);
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_EFULL);
	t = ok;
	t.state = GS_TASK_FREE;
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_EINVAL);
	t.state = GS_TASK_COMPLETING;
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_EINVAL);
	t = ok;
	t.queue = 63; /* no such queue */
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_EINVAL);
	t = ok;
	t.priority = 256;
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_EINVAL);
	t = ok;
	t.payload_len = 5000;
	t.payload = calloc(1, 5000);
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_ETOOBIG);
	free((void *)t.payload);
	t = ok;
	t.payload_len = 3; /* bytes missing */
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_EINVAL);
	t = ok;
	t.state = GS_TASK_DONE;
	t.result_len = 5000;
	t.result = "x";
	assert_int_equal(gs_engine_restore(b, &t, NOW), GS_ETOOBIG);
	assert_int_equal(gs_engine_restore(b, NULL, NOW), GS_EINVAL);
	/* Nothing of the refused ones is there. */
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(b, ok.id, &ti), GS_ENOTFOUND);
	assert_int_equal(gs_engine_restore(b, &ok, NOW), GS_OK);
	gs_restore_task dup = ok;
	dup.id = gs_task_id(5, 7); /* the same slot again */
	assert_int_equal(gs_engine_restore(b, &dup, NOW), GS_ESTATE);
	assert_int_equal(gs_engine_restore_finish(b, 0, NULL), GS_OK);
	GS_CHECK(b);
	assert_int_equal(gs_engine_task_info(b, ok.id, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_QUEUED);
	assert_int_equal(gs_engine_task_info(b, dup.id, &ti), GS_ENOTFOUND);
	gs_engine_close(b, false);
}

/* An arena too small for what is restored: GS_EFULL, nothing leaked. */
static void t_restore_arena_full(void **st)
{
	(void)st;
	gs_engine *b = gs_test_engine(64, 4, 4096, 64u << 10); /* one page */
	static uint8_t big[4000];
	gs_restore_task t = {
	    .state = GS_TASK_QUEUED, .queue = DQ, .payload = big, .payload_len = 4000};
	int rc = GS_OK;
	uint32_t k = 0;
	for (; k < 64 && rc == GS_OK; k++) {
		t.id = gs_task_id(k, 1);
		rc = gs_engine_restore(b, &t, NOW);
	}
	assert_int_equal(rc, GS_EFULL);
	assert_int_equal(gs_engine_restore_finish(b, 2, NULL), GS_OK);
	GS_CHECK(b);
	gs_engine_close(b, false);
}

/* task_at lists exactly the live tasks; gen_high covers every issued ID. */
static void t_task_at(void **st)
{
	(void)st;
	gs_engine *e = fresh();
	uint64_t a = submit_p(e, DQ, 0, NULL, 0), b = submit_p(e, DQ, 0, NULL, 0);
	assert_int_equal(gs_engine_cancel(e, a, NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_release(e, a), GS_OK); /* linked: RELEASED */
	gs_task_info ti;
	assert_int_equal(gs_engine_task_at(e, gs_task_id_slot(a), &ti), GS_ENOTFOUND);
	assert_int_equal(gs_engine_task_at(e, gs_task_id_slot(b), &ti), GS_OK);
	assert_int_equal(ti.id, b);
	assert_int_equal(gs_engine_task_at(e, MAXT, &ti), GS_ENOTFOUND);
	assert_int_equal(gs_engine_task_at(e, 100, &ti), GS_ENOTFOUND);
	assert_true(gs_engine_gen_high(e) >= gs_task_id_gen(b));
	gs_engine_close(e, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_restore_roundtrip), cmocka_unit_test(t_restore_delayed),
	    cmocka_unit_test(t_restore_bad_input), cmocka_unit_test(t_restore_arena_full),
	    cmocka_unit_test(t_task_at),           cmocka_unit_test(t_restore_retry_free),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
