/* task_heap.c - per-priority Michael-Scott queues over a node pool and per-level node reuse. */
#include "task_heap.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "gs_error.h"

_Static_assert(sizeof(struct gs_qnode) == 16, "a queue node is 16 bytes");
_Static_assert(sizeof(struct gs_level) == GS_CACHELINE, "a level is one line");
_Static_assert(GS_LEVEL_NODES * sizeof(struct gs_qnode) == GS_CACHELINE,
               "a level's own nodes fill one line");
_Static_assert(sizeof(struct gs_queue_info) == 4 * GS_CACHELINE, "queue info is four lines");

/* Counted references: count << 32 | (index + 1); index + 1 == 0 is nil. */
#define REF_NIL            0u
#define REF_IX1(r)         ((uint32_t)(r))
#define REF_CNT(r)         ((uint32_t)((r) >> 32))
#define REF_MAKE(cnt, ix1) (((uint64_t)(cnt) << 32) | (uint32_t)(ix1))

#define LEVELS         (GS_MAX_QUEUES * GS_PRIORITIES)
#define NODES_PER_LINE (GS_CACHELINE / sizeof(struct gs_qnode))

/* Pool nodes for max_tasks slots: whole lines, so the levels' own nodes
 * (which follow) start on a line boundary. */
static inline uint32_t pool_nodes(uint32_t max_tasks)
{
	return (uint32_t)((max_tasks + NODES_PER_LINE - 1) / NODES_PER_LINE * NODES_PER_LINE);
}

/* The first of level l's own nodes (index + 1).  At format time the last
 * one is the level's sentinel and the others its reclaim chain. */
static inline uint32_t level_node(const gs_task_heap *h, uint32_t l)
{
	return h->level_base + l * GS_LEVEL_NODES + 1;
}

/*
 * Bounded exponential backoff after a failed CAS on a shared word, so that
 * the winner finishes its next steps on lines it holds.  It only delays the
 * loser's retry and never waits for another thread, so a killed process
 * costs nothing here.  At 2 threads it rarely fires (about 1 pair in 1,000
 * fails a CAS: the cost there is line transfers, not retries); it is for
 * more contenders.  One PAUSE is ~55 ns on the benchmark machine.
 */
#define BACKOFF_MIN 1u
#define BACKOFF_MAX 64u

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline void backoff(uint32_t *b)
{
	for (uint32_t i = 0; i < *b; i++)
		cpu_relax();
	if (*b < BACKOFF_MAX)
		*b *= 2;
}

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
	       ((uint64_t)pool_nodes(g->max_tasks) + (uint64_t)LEVELS * GS_LEVEL_NODES) *
	           sizeof(struct gs_qnode);
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
	uint32_t b = BACKOFF_MIN;
	for (;;) {
		uint32_t ix1 = REF_IX1(head);
		if (ix1 == REF_NIL)
			return REF_NIL;
		/* Possibly stale if the node was popped and pushed meanwhile;
		 * the count makes the CAS fail in that case. */
		uint64_t next = atomic_load_explicit(&node_at(h, ix1)->task, memory_order_relaxed);
		if (atomic_compare_exchange_weak_explicit(
		        &h->hdr->node_free, &head, REF_MAKE(REF_CNT(head) + 1, next),
		        memory_order_acquire, memory_order_acquire))
			return ix1;
		backoff(&b);
	}
}

static void pool_push(gs_task_heap *h, uint32_t ix1)
{
	uint64_t head = atomic_load_explicit(&h->hdr->node_free, memory_order_relaxed);
	uint32_t b = BACKOFF_MIN;
	for (;;) {
		atomic_store_explicit(&node_at(h, ix1)->task, REF_IX1(head), memory_order_relaxed);
		/* release: the link store above is visible to whoever pops it. */
		if (atomic_compare_exchange_weak_explicit(
		        &h->hdr->node_free, &head, REF_MAKE(REF_CNT(head) + 1, ix1),
		        memory_order_release, memory_order_relaxed))
			return;
		backoff(&b);
	}
}

/* --- per-level reuse of dequeued nodes ---------------------------------- */

/*
 * Takes the oldest dequeued node of level lv (the head of its reclaim
 * chain), or returns REF_NIL when the chain is empty (reclaim == head).
 *
 * reclaim never passes head (it only moves while it differs from head, to
 * that node's successor), and head never moves back.  So if reclaim still
 * holds r (same count) at the CAS, r differed from a head we read after r:
 * r was dequeued, its `next` (read while it was the chain's first) is fixed
 * (only a list's last node gets linked onto), and no one else took r.
 */
static uint32_t reclaim_take(gs_task_heap *h, struct gs_level *lv)
{
	/* acquire (here and on a failed CAS): see the `next` link written
	 * before r was linked, and the pop that passed r. */
	uint64_t r = atomic_load_explicit(&lv->reclaim, memory_order_acquire);
	uint32_t b = BACKOFF_MIN;
	for (;;) {
		/* acquire: pairs with the popper's acq_rel head CAS, so its
		 * reads of r (the old sentinel) happen before we rewrite r. */
		uint64_t hd = atomic_load_explicit(&lv->head, memory_order_acquire);
		if (REF_IX1(r) == REF_IX1(hd))
			return REF_NIL;
		uint64_t nx =
		    atomic_load_explicit(&node_at(h, REF_IX1(r))->next, memory_order_relaxed);
		if (atomic_compare_exchange_weak_explicit(
		        &lv->reclaim, &r, REF_MAKE(REF_CNT(r) + 1, REF_IX1(nx)),
		        memory_order_acquire, memory_order_acquire))
			return REF_IX1(r);
		backoff(&b);
	}
}

static void pool_reset(gs_task_heap *h, const uint8_t *reachable)
{
	atomic_store_explicit(&h->hdr->node_free, REF_NIL, memory_order_relaxed);
	for (uint32_t i = h->n_nodes; i > 0; i--)
		if (!reachable || !reachable[i - 1])
			pool_push(h, i);
}

/*
 * The pool is empty: move every level's reclaim chain into it and return
 * one node (REF_NIL if there was none).  Runs only when the table is nearly
 * full and the free nodes sit in other levels' chains, so the scan of all
 * levels is rare and its cost is spread over the nodes it moves.
 */
static uint32_t reclaim_drain(gs_task_heap *h)
{
	uint32_t got = REF_NIL;
	for (uint32_t l = 0; l < LEVELS; l++) {
		uint32_t ix1;
		while ((ix1 = reclaim_take(h, &h->levels[l])) != REF_NIL) {
			if (got == REF_NIL)
				got = ix1;
			else
				pool_push(h, ix1);
		}
	}
	return got;
}

void gs_task_heap_bind(gs_task_heap *h, void *nodes, void *levels, void *queues, uint32_t max_tasks,
                       bool format)
{
	h->hdr = nodes;
	h->nodes = (struct gs_qnode *)((uint8_t *)nodes + sizeof(struct gs_task_heap_hdr));
	h->levels = levels;
	h->queues = queues;
	h->level_base = pool_nodes(max_tasks);
	h->n_nodes = h->level_base + LEVELS * GS_LEVEL_NODES;
	if (!format)
		return;
	/* Level l's own line of nodes: the last is its sentinel, the others
	 * its reclaim chain, linked in order up to the sentinel.  The first
	 * level_base nodes form the pool. */
	for (uint32_t l = 0; l < LEVELS; l++) {
		struct gs_level *lv = &h->levels[l];
		uint32_t ix1 = level_node(h, l), s = ix1 + GS_LEVEL_NODES - 1;
		for (uint32_t i = ix1; i <= s; i++) {
			atomic_init(&node_at(h, i)->next, i < s ? REF_MAKE(0, i + 1) : REF_NIL);
			atomic_init(&node_at(h, i)->task, 0);
		}
		atomic_init(&lv->reclaim, REF_MAKE(0, ix1));
		atomic_init(&lv->head, REF_MAKE(0, s));
		atomic_init(&lv->tail, REF_MAKE(0, s));
	}
	atomic_init(&h->hdr->node_free, REF_NIL);
	for (uint32_t i = h->level_base; i > 0; i--) {
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
			if (atomic_compare_exchange_strong_explicit(
			        &qi->state, &st, 1, memory_order_acq_rel, memory_order_acquire)) {
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
	uint32_t b = BACKOFF_MIN;
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
			backoff(&b);
		} else {
			/* The tail lags (a pusher stopped or died here): help it on. */
			atomic_compare_exchange_weak_explicit(
			    &lv->tail, &tail, REF_MAKE(REF_CNT(tail) + 1, REF_IX1(next)),
			    memory_order_release, memory_order_relaxed);
		}
	}
	atomic_compare_exchange_strong_explicit(&lv->tail, &tail, REF_MAKE(REF_CNT(tail) + 1, ix1),
	                                        memory_order_release, memory_order_relaxed);
}

/* Returns 1 and the task ID when a node was taken, 0 when the list is empty. */
static int ms_dequeue(gs_task_heap *h, struct gs_level *lv, uint64_t *id)
{
	uint32_t b = BACKOFF_MIN;
	for (;;) {
		uint64_t head = atomic_load_explicit(&lv->head, memory_order_acquire);
		uint64_t tail = atomic_load_explicit(&lv->tail, memory_order_acquire);
		uint64_t next =
		    atomic_load_explicit(&node_at(h, REF_IX1(head))->next, memory_order_acquire);
		/* No re-check of head here (it would cost another trip for the
		 * head's line): the counted head CAS below fails unless head
		 * stayed put, and while it stays put its node is not recycled,
		 * so `next`, `tail` (which never falls behind head) and the
		 * task read were all taken from live nodes.  Only "empty" is
		 * decided without a CAS, so only it re-checks. */
		if (REF_IX1(next) == REF_NIL) {
			if (head != atomic_load_explicit(&lv->head, memory_order_acquire))
				continue;
			return 0;
		}
		if (REF_IX1(head) == REF_IX1(tail)) {
			atomic_compare_exchange_weak_explicit(
			    &lv->tail, &tail, REF_MAKE(REF_CNT(tail) + 1, REF_IX1(next)),
			    memory_order_release, memory_order_relaxed);
			continue;
		}
		/* Read before the CAS: once head moves, the node may be recycled. */
		uint64_t task =
		    atomic_load_explicit(&node_at(h, REF_IX1(next))->task, memory_order_relaxed);
		/* acq_rel: we own the old sentinel after this, and see the task
		 * slot's QUEUED word published before the node was linked. */
		if (atomic_compare_exchange_weak_explicit(
		        &lv->head, &head, REF_MAKE(REF_CNT(head) + 1, REF_IX1(next)),
		        memory_order_acq_rel, memory_order_relaxed)) {
			*id = task;
			return 1;
		}
		backoff(&b);
	}
}

static bool level_nonempty(gs_task_heap *h, struct gs_level *lv)
{
	uint64_t head = atomic_load_explicit(&lv->head, memory_order_seq_cst);
	uint64_t next =
	    atomic_load_explicit(&node_at(h, REF_IX1(head))->next, memory_order_seq_cst);
	return REF_IX1(next) != REF_NIL;
}

int gs_task_heap_push(gs_task_heap *h, uint32_t qid, uint32_t prio, uint64_t id)
{
	if (qid >= GS_MAX_QUEUES || prio >= GS_PRIORITIES)
		return GS_EINVAL;
	struct gs_level *lv = level_of(h, qid, prio);
	/* A node the level's pops freed first (its line is likely still
	 * here), else one from the shared pool. */
	uint32_t ix1 = reclaim_take(h, lv);
	/* A free node exists at every instant (one per linked slot), but it
	 * may move from a reclaim chain into the pool while we look: retry a
	 * few times before calling the pool empty. */
	for (int round = 0; ix1 == REF_NIL && round < 4; round++) {
		ix1 = pool_pop(h);
		if (ix1 == REF_NIL)
			ix1 = reclaim_drain(h);
	}
	if (ix1 == REF_NIL)
		return GS_EFULL; /* impossible while the one-node-per-slot rule holds */
	ms_enqueue(h, lv, ix1, id);
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
		uint64_t bits =
		    atomic_load_explicit(&h->queues[qid].bitmap[w], memory_order_seq_cst);
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
			uint64_t next =
			    atomic_load_explicit(&node_at(h, ix1)->next, memory_order_acquire);
			if (REF_IX1(next) == REF_NIL || ++guard > h->n_nodes)
				break;
			ix1 = REF_IX1(next);
			last = ix1;
			if (fn)
				fn(l / GS_PRIORITIES, l % GS_PRIORITIES,
				   atomic_load_explicit(&node_at(h, ix1)->task,
				                        memory_order_relaxed),
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
			uint64_t next =
			    atomic_load_explicit(&node_at(h, ix1)->next, memory_order_acquire);
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
	if (reach) {
		/* Every unreachable node is free.  A level's own ones become its
		 * new reclaim chain (linked up to its head, fresh counts); the
		 * old chains are dropped and all other free nodes go to the pool. */
		for (uint32_t l = 0; l < LEVELS; l++) {
			struct gs_level *lv = &h->levels[l];
			uint64_t hd = atomic_load_explicit(&lv->head, memory_order_relaxed);
			uint32_t first = REF_IX1(hd);
			for (uint32_t ix1 = level_node(h, l) + GS_LEVEL_NODES - 1;
			     ix1 >= level_node(h, l); ix1--) {
				if (reach[ix1 - 1])
					continue;
				reach[ix1 - 1] = 1;
				_Atomic uint64_t *nx = &node_at(h, ix1)->next;
				uint64_t o = atomic_load_explicit(nx, memory_order_relaxed);
				atomic_store_explicit(nx, REF_MAKE(REF_CNT(o) + 1, first),
				                      memory_order_relaxed);
				first = ix1;
			}
			uint64_t r = atomic_load_explicit(&lv->reclaim, memory_order_relaxed);
			atomic_store_explicit(&lv->reclaim, REF_MAKE(REF_CNT(r) + 1, first),
			                      memory_order_relaxed);
		}
		pool_reset(h, reach);
	}
	/* Without memory for the mark array the pool is left as it is: a node
	 * lost to a crash stays lost, which costs capacity, never a task. */
	free(reach);
	for (uint32_t q = 0; q < GS_MAX_QUEUES; q++) {
		uint32_t one = 1;
		atomic_compare_exchange_strong(&h->queues[q].state, &one, 0);
	}
}
