/*
 * test_recovery.c - gs_engine_recover() repairs each half-done step a killed
 * process can leave, built here by hand with the engine's internals, and
 * gs_engine_check() notices a broken invariant.
 */
#include "test_util.h"

#include "arena.h"
#include "engine_impl.h"
#include "task_heap.h"
#include "task_table.h"
#include "worker_pool.h"

#define NOW 1000000u

static uint64_t submit(gs_engine *e, uint32_t prio, uint32_t len, uint64_t not_before)
{
	uint8_t buf[256];
	memset(buf, (int)prio, sizeof(buf));
	gs_task_spec s = gs_test_spec(DQ, prio, buf, len);
	s.not_before_us = not_before;
	uint64_t id;
	assert_int_equal(gs_engine_submit(e, &s, 1, NOW, &id), GS_OK);
	return id;
}

static uint32_t state_of(gs_engine *e, uint64_t id)
{
	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, id, &ti), GS_OK);
	return ti.state;
}

static void t_half_done(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 4, 4096, 4 * 65536);
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(e, 8, 1ull << DQ, NOW, &w), GS_OK);

	/* 1. A slot reserved by a submit that never published it. */
	uint64_t reserved;
	assert_int_equal(gs_task_table_reserve(&e->tt, &reserved), GS_OK);

	/* 2. A QUEUED task whose node a popper took before it died. */
	uint64_t popped = submit(e, 9, 100, 0), id;
	assert_int_equal(gs_task_heap_pop(&e->th, DQ, &id), GS_OK);
	assert_int_equal(id, popped);

	/* 3. A result half-recorded (COMPLETING) by a dying finisher. */
	uint64_t completing = submit(e, 1, 0, 0);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, completing);
	struct gs_task_slot *s = &e->tt.slots[gs_task_id_slot(completing)];
	uint64_t word = atomic_load(&s->word);
	atomic_store(&s->word, gs_word_with_state(word, GS_TASK_COMPLETING));
	uint32_t leaked_result;
	assert_int_equal(gs_arena_alloc(&e->arena, 1000, &leaked_result), GS_OK);
	s->result_ref = leaked_result;
	s->result_len = 1000;

	/* 4. A task of a worker whose slot was freed under it. */
	uint64_t orphan = submit(e, 1, 0, 0);
	uint64_t w2;
	assert_int_equal(gs_engine_worker_register(e, 8, 1ull << DQ, NOW, &w2), GS_OK);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w2, NOW, &a), GS_OK);
	assert_int_equal(a.task, orphan);
	atomic_store(&e->wp.slots[(uint32_t)w2].word, ((w2 >> 32) + 1) << 32 | GS_WORKER_FREE);

	/* 5. A worker slot claimed by a dying register. */
	atomic_store(&e->wp.slots[3].word, (uint64_t)1 << 32 | GS_WORKER_CLAIMED);

	/* 6. Arena blocks allocated and never stored. */
	uint32_t leaked;
	assert_int_equal(gs_arena_alloc(&e->arena, 100, &leaked), GS_OK);

	/* 7. Delayed tasks, one taken by a timer that died with it. */
	uint64_t delayed = submit(e, 0, 0, NOW + 100), lost_delayed;
	uint64_t ids[4];
	assert_int_equal(gs_engine_delayed_take(e, ids, 4), 1);
	lost_delayed = ids[0];
	assert_int_equal(lost_delayed, delayed);
	uint64_t delayed2 = submit(e, 0, 0, NOW + 100);

	/* 8. A worker's load counted wrong. */
	atomic_store(&e->wp.slots[(uint32_t)w].load, 5);

	char msg[256];
	assert_int_equal(gs_engine_check(e, msg, sizeof(msg)), GS_ESTATE);

	gs_recovery_report rep;
	assert_int_equal(gs_engine_recover(e, &rep), GS_OK);
	assert_int_equal(rep.reserved_freed, 1);
	assert_int_equal(rep.requeued_unlinked, 1 + 1); /* the popped one, the orphan */
	assert_int_equal(rep.completing_undone, 1);
	assert_int_equal(rep.orphans_requeued, 1);
	assert_int_equal(rep.workers_freed, 1);
	GS_CHECK(e);

	gs_task_info ti;
	assert_int_equal(gs_engine_task_info(e, reserved, &ti), GS_ENOTFOUND);
	assert_int_equal(state_of(e, popped), GS_TASK_QUEUED);
	assert_int_equal(state_of(e, completing), GS_TASK_ASSIGNED);
	assert_int_equal(gs_engine_task_info(e, orphan, &ti), GS_OK);
	assert_int_equal(ti.state, GS_TASK_QUEUED);
	assert_int_equal(ti.attempt, 2);
	gs_worker_info wi;
	assert_int_equal(gs_engine_worker_info(e, w, &wi), GS_OK);
	assert_int_equal(wi.load, 1);
	assert_int_equal(gs_engine_worker_at(e, 3, &wi), GS_ENOTFOUND);

	/* The worker reports the half-finished task again: it is recorded. */
	gs_outcome o;
	memset(&o, 0, sizeof(o));
	o.result = "again";
	o.result_len = 5;
	assert_int_equal(gs_engine_finish(e, completing, w, 1, &o, NOW), GS_OK);
	const uint8_t *p;
	uint32_t len;
	assert_int_equal(gs_engine_task_result(e, completing, &p, &len), GS_OK);
	assert_int_equal(len, 5);
	assert_memory_equal(p, "again", 5);

	/* Queued tasks pop in order, payload intact. */
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, popped);
	assert_int_equal(gs_engine_task_payload(e, popped, &p, &len), GS_OK);
	assert_int_equal(len, 100);
	for (uint32_t i = 0; i < len; i++)
		assert_int_equal(p[i], 9);
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(a.task, orphan);
	assert_int_equal(a.attempt, 2);

	/* Both delayed tasks are back in the inbox for the new timer. */
	size_t n = gs_engine_delayed_take(e, ids, 4);
	assert_int_equal(n, 2);
	assert_true((ids[0] == delayed && ids[1] == delayed2) ||
	            (ids[0] == delayed2 && ids[1] == delayed));
	for (int i = 0; i < 2; i++)
		assert_int_equal(gs_engine_delayed_release(e, ids[i], NOW + 100), GS_OK);

	/* The leaked arena blocks are free again: the whole arena can be used. */
	gs_arena *ar = &e->arena;
	uint64_t in_use = atomic_load(&ar->hdr->bytes_in_use);
	assert_int_equal(in_use, 128); /* the 100-byte payload (the result is inline) */
	GS_CHECK(e);
	gs_engine_close(e, false);
}

/* Recovery is idempotent and keeps a consistent engine as it is. */
static void t_idempotent(void **st)
{
	(void)st;
	gs_engine *e = gs_test_engine(64, 4, 4096, 65536);
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(e, 8, 1ull << DQ, NOW, &w), GS_OK);
	uint64_t ids[6];
	for (int i = 0; i < 6; i++)
		ids[i] = submit(e, (uint32_t)i % 3, 40, 0);
	gs_assignment a;
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
	assert_int_equal(gs_engine_cancel(e, ids[1], NOW, NULL, NULL), GS_OK);
	assert_int_equal(gs_engine_release(e, ids[1]), GS_OK); /* RELEASED, linked */
	for (int r = 0; r < 3; r++) {
		gs_recovery_report rep;
		assert_int_equal(gs_engine_recover(e, &rep), GS_OK);
		assert_int_equal(rep.reserved_freed + rep.requeued_unlinked +
		                     rep.completing_undone + rep.orphans_requeued +
		                     rep.workers_freed,
		                 0);
		GS_CHECK(e);
	}
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.queued, 4);
	uint32_t last = 3;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_OK);
		assert_true(a.priority <= last);
		last = a.priority;
	}
	assert_int_equal(gs_engine_pop_assign(e, DQ, w, NOW, &a), GS_EEMPTY);
	GS_CHECK(e);
	gs_engine_close(e, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_half_done),
	    cmocka_unit_test(t_idempotent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
