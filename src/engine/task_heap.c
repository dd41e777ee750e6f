/* task_heap.c - per-priority Michael-Scott queues threaded through a node pool. */
#include "task_heap.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "gs_error.h"

_Static_assert(sizeof(struct gs_qnode) == 16, "a queue node is 16 bytes");
_Static_assert(sizeof(struct gs_level) == 2 * GS_CACHELINE, "a level is two lines");
_Static_assert(sizeof(struct gs_queue_info) == 3 * GS_CACHELINE, "queue info is three lines");

/* Counted references: count << 32 | (index + 1); index + 1 == 0 is nil. */
#define REF_NIL          0u
#define REF_IX1(r)       ((uint32_t)(r))
#define REF_CNT(r)       ((uint32_t)((r) >> 32))
#define REF_MAKE(cnt, ix1) (((uint64_t)(cnt) << 32) | (uint32_t)(ix1))

#define LEVELS (GS_MAX_QUEUES * GS_PRIORITIES)

static inline struct gs_level *level_of(gs_task_heap *h, uint32_t qid, uint32_t prio)
{
	return &h->levels[qid * GS_PRIORITIES + prio];
}

static inline struct gs_qnode *node_at(gs_task_heap *h, uint32_t ix1)
{
	return &h->nodes[ix1 - 1];
}

uint64_t gs_task_heap_nodes_bytes(const gs_geom *g)
{
	return sizeof(struct gs_task_heap_hdr) +
	       ((uint64_t)g->max_tasks + LEVELS) * sizeof(struct gs_qnode);
}

uint64_t gs_task_heap_levels_bytes(const gs_geom *g)
{
	(void)g;
	return (uint64_t)LEVELS * sizeof(struct gs_level);
}

uint64_t gs_task_heap_queues_bytes(const gs_geom *g)
{
	(void)g;
	return (uint64_t)GS_MAX_QUEUES * sizeof(struct gs_queue_info);
}

/* --- node pool: a Treiber stack linked through the nodes' task field ----- */

static uint32_t pool_pop(gs_task_heap *h)
{
	uint64_t head = atomic_load_explicit(&h->hdr->node_free, memory_order_acquire);
	for (;;) {
		uint32_t ix1 = REF_IX1(head);
		if (ix1 == REF_NIL)
			return REF_NIL;
		/* Possibly stale if the node was popped and pushed meanwhile;
		 * the count makes the CAS fail in that case. */
		uint64_t next = atomic_load_explicit(&node_at(h, ix1)->task, memory_order_relaxed);
		if (atomic_compare_exchange_weak_explicit(&h->hdr->node_free, &head,
							  REF_MAKE(REF_CNT(head) + 1, next),
							  memory_order_acquire,
							  memory_order_acquire))
			return ix1;
	}
}

static void pool_push(gs_task_heap *h, uint32_t ix1)
{
	uint64_t head = atomic_load_explicit(&h->hdr->node_free, memory_order_relaxed);
	for (;;) {
		atomic_store_explicit(&node_at(h, ix1)->task, REF_IX1(head), memory_order_relaxed);
		/* release: the link store above is visible to whoever pops it. */
		if (atomic_compare_exchange_weak_explicit(&h->hdr->node_free, &head,
							  REF_MAKE(REF_CNT(head) + 1, ix1),
							  memory_order_release,
							  memory_order_relaxed))
			return;
	}
}

static void pool_reset(gs_task_heap *h, const uint8_t *reachable)
{
	atomic_store_explicit(&h->hdr->node_free, REF_NIL, memory_order_relaxed);
	for (uint32_t i = h->n_nodes; i > 0; i--)
		if (!reachable || !reachable[i - 1])
			pool_push(h, i);
}

void gs_task_heap_bind(gs_task_heap *h, void *nodes, void *levels, void *queues,
		       uint32_t max_tasks, bool format)
{
	h->hdr = nodes;
	h->nodes = (struct gs_qnode *)((uint8_t *)nodes + sizeof(struct gs_task_heap_hdr));
	h->levels = levels;
	h->queues = queues;
	h->n_nodes = max_tasks + LEVELS;
	if (!format)
		return;
	/* Level L starts with node max_tasks + L as its sentinel; the first
	 * max_tasks nodes form the pool. */
	for (uint32_t l = 0; l < LEVELS; l++) {
		uint32_t ix1 = max_tasks + l + 1;
		atomic_init(&node_at(h, ix1)->next, REF_NIL);
		atomic_init(&node_at(h, ix1)->task, 0);
		atomic_init(&h->levels[l].head, REF_MAKE(0, ix1));
		atomic_init(&h->levels[l].tail, REF_MAKE(0, ix1));
	}
	atomic_init(&h->hdr->node_free, REF_NIL);
	for (uint32_t i = max_tasks; i > 0; i--) {
		atomic_init(&node_at(h, i)->next, REF_NIL);
		pool_push(h, i);
	}
	for (uint32_t q = 0; q < GS_MAX_QUEUES; q++) {
		memset(&h->queues[q], 0, sizeof(h->queues[q]));
	}
}

/* --- queue names ------------------------------------------------------- */

static bool name_ok(const char *name)
{
	size_t n = 0;
	for (; name[n]; n++) {
		char c = name[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
		if (!ok || n + 1 >= GS_QUEUE_NAME_MAX)
			return false;
	}
	return n > 0;
}

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

int gs_task_heap_queue(gs_task_heap *h, const char *name, bool create, uint32_t *qid)
{
	if (!name || !name_ok(name))
		return GS_EINVAL;
	/* Linear probing from the name's hash: two creators of one name meet
	 * at the same first unnamed entry and only one CAS wins it. */
	uint32_t start = name_hash(name) % GS_MAX_QUEUES;
	for (uint32_t i = 0; i < GS_MAX_QUEUES; i++) {
		uint32_t q = (start + i) % GS_MAX_QUEUES;
		struct gs_queue_info *qi = &h->queues[q];
		uint32_t st = atomic_load_explicit(&qi->state, memory_order_acquire);
		if (st == 0) {
			if (!create)
				return GS_ENOTFOUND;
			if (atomic_compare_exchange_strong_explicit(&qi->state, &st, 1,
								    memory_order_acq_rel,
								    memory_order_acquire)) {
				strncpy(qi->name, name, GS_QUEUE_NAME_MAX - 1);
				/* release: the name is complete before state 2 is seen. */
				atomic_store_explicit(&qi->state, 2, memory_order_release);
				*qid = q;
				return GS_OK;
			}
		}
		/* Another creator is naming this entry: wait, bounded. */
		for (int spin = 0; st == 1 && spin < 1000000; spin++) {
			sched_yield();
			st = atomic_load_explicit(&qi->state, memory_order_acquire);
		}
		if (st == 1)
			return GS_EBUSY; /* its creator died mid-naming; recovery clears it */
		if (strcmp(qi->name, name) == 0) {
			*qid = q;
			return GS_OK;
		}
	}
	return create ? GS_EFULL : GS_ENOTFOUND;
}

const char *gs_task_heap_queue_name(const gs_task_heap *h, uint32_t qid)
{
	if (qid >= GS_MAX_QUEUES ||
	    atomic_load_explicit(&h->queues[qid].state, memory_order_acquire) != 2)
		return NULL;
	return h->queues[qid].name;
}

/* --- Michael-Scott queue ------------------------------------------------ */

static void ms_enqueue(gs_task_heap *h, struct gs_level *lv, uint32_t ix1, uint64_t id)
{
	struct gs_qnode *n = node_at(h, ix1);
	atomic_store_explicit(&n->task, id, memory_order_relaxed);
	uint64_t old = atomic_load_explicit(&n->next, memory_order_relaxed);
	/* A fresh count: an enqueuer still holding this node's old `next` as a
	 * nil link of some list's tail cannot CAS onto it (ABA). */
	atomic_store_explicit(&n->next, REF_MAKE(REF_CNT(old) + 1, REF_NIL), memory_order_relaxed);

	uint64_t tail;
	for (;;) {
		tail = atomic_load_explicit(&lv->tail, memory_order_acquire);
		struct gs_qnode *t = node_at(h, REF_IX1(tail));
		uint64_t next = atomic_load_explicit(&t->next, memory_order_acquire);
		if (tail != atomic_load_explicit(&lv->tail, memory_order_acquire))
			continue;
		if (REF_IX1(next) == REF_NIL) {
			/* release: n's task and next are visible before n is reachable. */
			if (atomic_compare_exchange_weak_explicit(
				    &t->next, &next, REF_MAKE(REF_CNT(next) + 1, ix1),
				    memory_order_release, memory_order_relaxed))
				break;
		} else {
			/* The tail lags (a pusher stopped or died here): help it on. */
			atomic_compare_exchange_weak_explicit(
				&lv->tail, &tail, REF_MAKE(REF_CNT(tail) + 1, REF_IX1(next)),
				memory_order_release, memory_order_relaxed);
		}
	}
	atomic_compare_exchange_strong_explicit(&lv->tail, &tail,
						REF_MAKE(REF_CNT(tail) + 1, ix1),
						memory_order_release, memory_order_relaxed);
}

/* Returns 1 and the task ID when a node was taken, 0 when the list is empty. */
static int ms_dequeue(gs_task_heap *h, struct gs_level *lv, uint64_t *id)
{
	for (;;) {
		uint64_t head = atomic_load_explicit(&lv->head, memory_order_acquire);
		uint64_t tail = atomic_load_explicit(&lv->tail, memory_order_acquire);
		uint64_t next = atomic_load_explicit(&node_at(h, REF_IX1(head))->next,
						     memory_order_acquire);
		if (head != atomic_load_explicit(&lv->head, memory_order_acquire))
			continue;
		if (REF_IX1(next) == REF_NIL)
			return 0;
		if (REF_IX1(head) == REF_IX1(tail)) {
			atomic_compare_exchange_weak_explicit(
				&lv->tail, &tail, REF_MAKE(REF_CNT(tail) + 1, REF_IX1(next)),
				memory_order_release, memory_order_relaxed);
			continue;
		}
		/* Read before the CAS: once head moves, the node may be recycled. */
		uint64_t task = atomic_load_explicit(&node_at(h, REF_IX1(next))->task,
						     memory_order_relaxed);
		/* acq_rel: we own the old sentinel after this, and see the task
		 * slot's QUEUED word published before the node was linked. */
		if (atomic_compare_exchange_weak_explicit(&lv->head, &head,
							  REF_MAKE(REF_CNT(head) + 1, REF_IX1(next)),
							  memory_order_acq_rel, memory_order_relaxed)) {
			pool_push(h, REF_IX1(head));
			*id = task;
			return 1;
		}
	}
}

static bool level_nonempty(gs_task_heap *h, struct gs_level *lv)
{
	uint64_t head = atomic_load_explicit(&lv->head, memory_order_seq_cst);
	uint64_t next = atomic_load_explicit(&node_at(h, REF_IX1(head))->next,
					     memory_order_seq_cst);
	return REF_IX1(next) != REF_NIL;
}

int gs_task_heap_push(gs_task_heap *h, uint32_t qid, uint32_t prio, uint64_t id)
{
	if (qid >= GS_MAX_QUEUES || prio >= GS_PRIORITIES)
		return GS_EINVAL;
	uint32_t ix1 = pool_pop(h);
	if (ix1 == REF_NIL)
		return GS_EFULL; /* impossible while the one-node-per-slot rule holds */
	ms_enqueue(h, level_of(h, qid, prio), ix1, id);
	/* seq_cst, after the link: a popper that clears this bit and then
	 * re-checks the level (also seq_cst) either sees our node or sees the
	 * bit we set after its clear. */
	_Atomic uint64_t *word = &h->queues[qid].bitmap[prio / 64];
	uint64_t bit = 1ull << (prio % 64);
	if (!(atomic_load_explicit(word, memory_order_seq_cst) & bit))
		atomic_fetch_or_explicit(word, bit, memory_order_seq_cst);
	return GS_OK;
}

int gs_task_heap_top_level(const gs_task_heap *h, uint32_t qid)
{
	if (qid >= GS_MAX_QUEUES)
		return -1;
	for (int w = GS_PRIORITIES / 64 - 1; w >= 0; w--) {
		uint64_t bits = atomic_load_explicit(&h->queues[qid].bitmap[w], memory_order_seq_cst);
		if (bits)
			return w * 64 + 63 - __builtin_clzll(bits);
	}
	return -1;
}

int gs_task_heap_pop(gs_task_heap *h, uint32_t qid, uint64_t *id)
{
	if (qid >= GS_MAX_QUEUES)
		return GS_EINVAL;
	/* Each round either takes a node or clears one level's bit: bounded by
	 * the levels, plus re-sets caused by concurrent pushes. */
	for (;;) {
		int p = gs_task_heap_top_level(h, qid);
		if (p < 0)
			return GS_EEMPTY;
		struct gs_level *lv = level_of(h, qid, (uint32_t)p);
		if (ms_dequeue(h, lv, id))
			return GS_OK;
		_Atomic uint64_t *word = &h->queues[qid].bitmap[p / 64];
		uint64_t bit = 1ull << (p % 64);
		atomic_fetch_and_explicit(word, ~bit, memory_order_seq_cst);
		/* Re-check after the clear: a push that linked before our clear
		 * and saw its bit still set must not stay invisible. */
		if (level_nonempty(h, lv))
			atomic_fetch_or_explicit(word, bit, memory_order_seq_cst);
	}
}

/* --- quiescent maintenance --------------------------------------------- */

void gs_task_heap_walk(gs_task_heap *h,
		       void (*fn)(uint32_t qid, uint32_t prio, uint64_t id, void *arg), void *arg)
{
	for (uint32_t l = 0; l < LEVELS; l++) {
		struct gs_level *lv = &h->levels[l];
		uint64_t head = atomic_load_explicit(&lv->head, memory_order_acquire);
		uint32_t ix1 = REF_IX1(head), last = ix1;
		uint32_t guard = 0;
		for (;;) {
			uint64_t next = atomic_load_explicit(&node_at(h, ix1)->next,
							     memory_order_acquire);
			if (REF_IX1(next) == REF_NIL || ++guard > h->n_nodes)
				break;
			ix1 = REF_IX1(next);
			last = ix1;
			if (fn)
				fn(l / GS_PRIORITIES, l % GS_PRIORITIES,
				   atomic_load_explicit(&node_at(h, ix1)->task, memory_order_relaxed),
				   arg);
		}
		uint64_t tail = atomic_load_explicit(&lv->tail, memory_order_relaxed);
		if (REF_IX1(tail) != last)
			atomic_store_explicit(&lv->tail, REF_MAKE(REF_CNT(tail) + 1, last),
					      memory_order_relaxed);
	}
}

void gs_task_heap_rebuild(gs_task_heap *h)
{
	uint8_t *reach = calloc(h->n_nodes, 1);
	for (uint32_t l = 0; l < LEVELS; l++) {
		struct gs_level *lv = &h->levels[l];
		uint32_t ix1 = REF_IX1(atomic_load_explicit(&lv->head, memory_order_acquire));
		bool any = false;
		for (uint32_t guard = 0; guard <= h->n_nodes; guard++) {
			if (reach)
				reach[ix1 - 1] = 1;
			uint64_t next = atomic_load_explicit(&node_at(h, ix1)->next,
							     memory_order_acquire);
			if (REF_IX1(next) == REF_NIL)
				break;
			any = true;
			ix1 = REF_IX1(next);
		}
		uint64_t tail = atomic_load_explicit(&lv->tail, memory_order_relaxed);
		if (REF_IX1(tail) != ix1)
			atomic_store_explicit(&lv->tail, REF_MAKE(REF_CNT(tail) + 1, ix1),
					      memory_order_relaxed);
		uint32_t q = l / GS_PRIORITIES, p = l % GS_PRIORITIES;
		uint64_t bit = 1ull << (p % 64);
		if (any)
			atomic_fetch_or(&h->queues[q].bitmap[p / 64], bit);
		else
			atomic_fetch_and(&h->queues[q].bitmap[p / 64], ~bit);
	}
	if (reach)
		pool_reset(h, reach);
	/* Without memory for the mark array the pool is left as it is: a node
	 * lost to a crash stays lost, which costs capacity, never a task. */
	free(reach);
	for (uint32_t q = 0; q < GS_MAX_QUEUES; q++) {
		uint32_t one = 1;
		atomic_compare_exchange_strong(&h->queues[q].state, &one, 0);
	}
}
