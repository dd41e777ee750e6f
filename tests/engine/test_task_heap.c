/*
 * test_task_heap.c - the task heap's free nodes: a level's pops leave their
 * nodes in the level's reclaim chain, a push on another level drains those
 * chains when the pool is empty, and gs_task_heap_rebuild() neither loses
 * nor duplicates a free node.  White-box: a gs_task_heap on plain memory.
 */
#include "test_util.h"

#include "task_heap.h"

#define MAX_TASKS 10u
#define ID(i)     ((uint64_t)1 << 40 | (i))

struct heap {
	gs_task_heap h;
	void *nodes, *levels, *queues;
	uint32_t q;
};

static void *zalloc(uint64_t bytes)
{
	size_t n = (size_t)((bytes + 63) / 64 * 64);
	void *p = aligned_alloc(64, n);
	assert_non_null(p);
	memset(p, 0, n);
	return p;
}

static void heap_new(struct heap *t)
{
	gs_geom g = {0};
	g.max_tasks = MAX_TASKS;
	t->nodes = zalloc(gs_task_heap_nodes_bytes(&g));
	t->levels = zalloc(gs_task_heap_levels_bytes(&g));
	t->queues = zalloc(gs_task_heap_queues_bytes(&g));
	gs_task_heap_bind(&t->h, t->nodes, t->levels, t->queues, MAX_TASKS, true);
	assert_int_equal(gs_task_heap_queue(&t->h, "q", true, &t->q), GS_OK);
}

static void heap_free(struct heap *t)
{
	free(t->nodes);
	free(t->levels);
	free(t->queues);
}

static void push_n(struct heap *t, uint32_t prio, uint32_t from, uint32_t n)
{
	for (uint32_t i = from; i < from + n; i++)
		assert_int_equal(gs_task_heap_push(&t->h, t->q, prio, ID(i)), GS_OK);
}

static void pop_n(struct heap *t, uint32_t from, uint32_t n)
{
	uint64_t id;
	for (uint32_t i = from; i < from + n; i++) {
		assert_int_equal(gs_task_heap_pop(&t->h, t->q, &id), GS_OK);
		assert_int_equal(id, ID(i));
	}
}

/* How many tasks fit before the free nodes run out (then empties it again). */
static uint32_t capacity(struct heap *t, uint32_t prio)
{
	uint32_t n = 0;
	while (gs_task_heap_push(&t->h, t->q, prio, ID(n)) == GS_OK)
		n++;
	pop_n(t, 0, n);
	uint64_t id;
	assert_int_equal(gs_task_heap_pop(&t->h, t->q, &id), GS_EEMPTY);
	return n;
}

/* Nodes popped on one level serve pushes on another once the pool is dry. */
static void t_reclaim_across_levels(void **st)
{
	(void)st;
	struct heap t;
	heap_new(&t);
	/* Every free node: the pool (MAX_TASKS rounded up to whole lines) and
	 * every level's own nodes but its sentinel. */
	uint32_t all = t.h.n_nodes - GS_MAX_QUEUES * GS_PRIORITIES;
	/* Level 5's own 3 nodes, then the pool's 12: the pool is empty and,
	 * once popped, all 15 sit in level 5's reclaim chain. */
	push_n(&t, 5, 0, 15);
	pop_n(&t, 0, 15);
	push_n(&t, 7, 100, 40);
	push_n(&t, 9, 200, 3);
	pop_n(&t, 200, 3); /* strict priority */
	pop_n(&t, 100, 40);
	assert_int_equal(capacity(&t, 11), all);
	assert_int_equal(capacity(&t, 5), all);
	heap_free(&t);
}

/* After a rebuild every free node is free exactly once. */
static void t_rebuild_keeps_free_nodes(void **st)
{
	(void)st;
	struct heap t;
	heap_new(&t);
	uint32_t all = t.h.n_nodes - GS_MAX_QUEUES * GS_PRIORITIES;
	push_n(&t, 3, 0, 30);
	pop_n(&t, 0, 20);
	push_n(&t, 4, 100, 5);
	gs_task_heap_rebuild(&t.h);
	pop_n(&t, 100, 5);
	pop_n(&t, 20, 10);
	gs_task_heap_rebuild(&t.h);
	assert_int_equal(capacity(&t, 3), all);
	assert_int_equal(capacity(&t, 200), all);
	heap_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_reclaim_across_levels),
	    cmocka_unit_test(t_rebuild_keeps_free_nodes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
