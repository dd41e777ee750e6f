/*
 * recovery.c - repairs what dead processes left half-done, and checks the
 * engine's invariants.  Both need quiescence: no other thread or process
 * operating on the segment (the server runs recovery before it serves).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "engine.h"
#include "engine_impl.h"
#include "gs_error.h"
#include "task_heap.h"
#include "worker_heap.h"

struct reach {
	gs_engine *e;
	uint8_t *seen; /* per slot: nodes naming it with its current generation */
	uint32_t stale;
};

/* Marks (bit 7 of seen[]) the RESERVED slots a live idempotency key names:
 * filled, their key committed, not yet published when the process died. */
#define KEYED_RESERVED 0x80u

static void mark_keyed(const uint64_t *ids, uint32_t n, void *arg)
{
	struct reach *r = arg;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t ix = gs_task_id_slot(ids[i]);
		if (ix >= r->e->geom.max_tasks)
			continue;
		uint64_t w = atomic_load_explicit(&r->e->tt.slots[ix].word, memory_order_relaxed);
		if (gs_word_state(w) == GS_TASK_RESERVED &&
		    gs_word_gen(w) == gs_task_id_gen(ids[i]))
			r->seen[ix] |= KEYED_RESERVED;
	}
}

static void mark_node(uint32_t q, uint32_t p, uint64_t id, void *arg)
{
	(void)q;
	(void)p;
	struct reach *r = arg;
	uint32_t ix = gs_task_id_slot(id);
	if (ix >= r->e->geom.max_tasks) {
		r->stale++;
		return;
	}
	uint64_t w = atomic_load_explicit(&r->e->tt.slots[ix].word, memory_order_relaxed);
	if (gs_word_gen(w) != gs_task_id_gen(id)) {
		r->stale++;
		return;
	}
	if (r->seen[ix] < 127) /* bit 7: the inbox mark of gs_engine_check() */
		r->seen[ix]++;
}

struct used_map {
	uint64_t *bits;
};

static bool block_used(uint32_t ref, void *arg)
{
	struct used_map *u = arg;
	return (u->bits[ref / 64] >> (ref % 64)) & 1;
}

static void mark_block(struct used_map *u, uint32_t ref)
{
	if (ref != GS_REF_NONE && ref != GS_REF_INLINE)
		u->bits[ref / 64] |= 1ull << (ref % 64);
}

static void mark_ref(uint32_t ref, void *arg)
{
	mark_block(arg, ref);
}

static void set_word(struct gs_task_slot *s, uint64_t w)
{
	atomic_store_explicit(&s->word, w, memory_order_relaxed);
}

/* Rebuilds the free list, the queues' links, the delayed inbox, the arena,
 * the loads and the counters from the slots' words (quiescent). */
static int repair(gs_engine *e, gs_recovery_report *rep)
{

	uint32_t hw = atomic_load_explicit(&e->tt.hdr->high_water, memory_order_relaxed);
	if (hw > e->geom.max_tasks)
		hw = e->geom.max_tasks;
	struct reach r = {e, calloc(e->geom.max_tasks, 1), 0};
	uint32_t *loads = calloc(e->geom.max_workers, sizeof(uint32_t));
	struct used_map used = {calloc(e->geom.arena_bytes / GS_ARENA_MIN_BLOCK / 64 + 2, 8)};
	if (!r.seen || !loads || !used.bits) {
		free(r.seen);
		free(loads);
		free(used.bits);
		return GS_ENOMEM;
	}

	/* 1. Which slots do the queues name?  (Also repairs lagging tails.) */
	gs_task_heap_walk(&e->th, mark_node, &r);
	/* 2. Nodes no list reaches go back to the pool; bitmaps recomputed. */
	gs_task_heap_rebuild(&e->th);

	/* 3. Workers: a half-registered one is freed; the rest keep their state. */
	for (uint32_t i = 0; i < e->geom.max_workers; i++) {
		uint64_t ww = atomic_load_explicit(&e->wp.slots[i].word, memory_order_relaxed);
		if ((ww & 0xff) == GS_WORKER_CLAIMED) {
			uint32_t gen = (uint32_t)(ww >> 32) + 1;
			atomic_store_explicit(&e->wp.slots[i].word,
			                      ((uint64_t)(gen ? gen : 1) << 32) | GS_WORKER_FREE,
			                      memory_order_relaxed);
			rep->workers_freed++;
		}
	}

	/* 3b. Tasks of a committed key the dying process had not published. */
	gs_idem_each_live(&e->it, mark_keyed, &r);

	/* 4. Every slot: finish or undo what a dead process left half-done. */
	uint64_t queued[GS_MAX_QUEUES] = {0}, delayed[GS_MAX_QUEUES] = {0};
	uint64_t assigned[GS_MAX_QUEUES] = {0}, running[GS_MAX_QUEUES] = {0};
	atomic_store_explicit(&e->tt.hdr->free_head, 0, memory_order_relaxed);
	atomic_store_explicit(&e->tt.hdr->delayed, 0, memory_order_relaxed);
	uint32_t in_use = 0;
	for (uint32_t ix = hw; ix-- > 0;) {
		struct gs_task_slot *s = &e->tt.slots[ix];
		uint64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
		uint32_t st = gs_word_state(w);
		bool keyed = (r.seen[ix] & KEYED_RESERVED) != 0;
		bool reached = (r.seen[ix] & ~KEYED_RESERVED) > 0;
		uint64_t id = gs_task_id(ix, gs_word_gen(w));

		if (st == GS_TASK_RESERVED && keyed) {
			/* Publish it, as submit_publish would have: the branches
			 * below link it (queue or delayed inbox). */
			w = gs_word_make(gs_word_gen(w), 0, 1, false,
			                 s->not_before ? GS_TASK_DELAYED : GS_TASK_QUEUED);
			set_word(s, w);
			st = gs_word_state(w);
			atomic_fetch_add_explicit(&e->th.queues[s->queue].c.submitted, 1,
			                          memory_order_relaxed);
			rep->keyed_published++;
		}
		if (st == GS_TASK_RESERVED || (st == GS_TASK_RELEASED && !reached)) {
			if (st == GS_TASK_RESERVED)
				rep->reserved_freed++;
			else
				rep->released_freed++;
			uint32_t gen = gs_word_gen(w) + 1;
			set_word(s, gs_word_make(gen ? gen : 1, 0, 0, false, GS_TASK_FREE));
			st = GS_TASK_FREE;
		}
		if (st == GS_TASK_FREE) {
			/* Push on the free list (quiescent: plain stores suffice). */
			uint64_t head =
			    atomic_load_explicit(&e->tt.hdr->free_head, memory_order_relaxed);
			atomic_store_explicit(&s->link, (uint32_t)head, memory_order_relaxed);
			atomic_store_explicit(&e->tt.hdr->free_head,
			                      ((head >> 32) + 1) << 32 | (ix + 1),
			                      memory_order_relaxed);
			continue;
		}
		in_use++;
		if (st == GS_TASK_COMPLETING) {
			/* The result was half-written: drop it; the task is again
			 * its worker's, which will report it (or die). */
			s->result_ref = GS_REF_NONE;
			s->result_len = 0;
			w = gs_word_with_state(w, gs_word_worker(w) ? GS_TASK_ASSIGNED
			                                            : GS_TASK_FAILED);
			st = gs_word_state(w);
			rep->completing_undone++;
		}
		if ((st == GS_TASK_ASSIGNED || st == GS_TASK_RUNNING)) {
			uint32_t w1 = gs_word_worker(w);
			uint64_t ww = w1 && w1 <= e->geom.max_workers
			                  ? atomic_load_explicit(&e->wp.slots[w1 - 1].word,
			                                         memory_order_relaxed)
			                  : 0;
			uint32_t wst = (uint32_t)(ww & 0xff);
			if (wst == GS_WORKER_ALIVE || wst == GS_WORKER_DRAINING ||
			    wst == GS_WORKER_DEAD) {
				loads[w1 - 1]++;
			} else {
				/* Its worker is gone: run it again, an attempt that
				 * counts against no retry (the server went away). */
				uint32_t a = gs_word_attempt(w);
				uint16_t fa =
				    atomic_load_explicit(&s->free_attempts, memory_order_relaxed);
				if (a < GS_MAX_ATTEMPT && fa < UINT16_MAX)
					atomic_store_explicit(&s->free_attempts, (uint16_t)(fa + 1),
					                      memory_order_relaxed);
				w = gs_word_make(gs_word_gen(w), 0,
				                 a < GS_MAX_ATTEMPT ? a + 1 : GS_MAX_ATTEMPT, false,
				                 GS_TASK_QUEUED);
				st = GS_TASK_QUEUED;
				reached = false;
				rep->orphans_requeued++;
			}
		}
		if (st == GS_TASK_QUEUED) {
			queued[s->queue]++;
			if (!reached) {
				set_word(s, gs_word_with_linked(w, true));
				gs_task_heap_push(&e->th, s->queue, s->priority, id);
				rep->requeued_unlinked++;
			} else {
				set_word(s, gs_word_with_linked(w, true));
			}
		} else {
			/* linked iff a node names it, or (DELAYED) the inbox does:
			 * every DELAYED task goes back on the inbox below. */
			set_word(s, gs_word_with_linked(w, reached || st == GS_TASK_DELAYED));
			if (st == GS_TASK_DELAYED) {
				uint32_t head =
				    atomic_load_explicit(&e->tt.hdr->delayed, memory_order_relaxed);
				atomic_store_explicit(&s->link, head, memory_order_relaxed);
				atomic_store_explicit(&e->tt.hdr->delayed, ix + 1,
				                      memory_order_relaxed);
			}
		}
		mark_block(&used, s->payload_ref);
		uint32_t fin = gs_word_state(atomic_load_explicit(&s->word, memory_order_relaxed));
		if (fin == GS_TASK_DELAYED)
			delayed[s->queue]++;
		else if (fin == GS_TASK_ASSIGNED)
			assigned[s->queue]++;
		else if (fin == GS_TASK_RUNNING)
			running[s->queue]++;
		if (fin == GS_TASK_DONE || fin == GS_TASK_FAILED || fin == GS_TASK_CANCELLED ||
		    fin == GS_TASK_RELEASED)
			mark_block(&used, s->result_ref);
		else if (s->result_ref != GS_REF_INLINE)
			s->result_ref = GS_REF_NONE;
	}
	atomic_store_explicit(&e->tt.hdr->in_use, in_use, memory_order_relaxed);

	/* 4b. Idempotency keys: half-inserted ones and those none of whose
	 * tasks is left go; the ID lists of the others keep their blocks. */
	gs_idem_repair(&e->it, mark_ref, &used);

	/* 5. Arena: every block no live slot or key refers to is free. */
	gs_arena_rebuild(&e->arena, block_used, &used);

	/* 6. Loads and counters recomputed; the scheduler's heaps rebuilt. */
	for (uint32_t i = 0; i < e->geom.max_workers; i++)
		atomic_store_explicit(&e->wp.slots[i].load, loads[i], memory_order_relaxed);
	for (uint32_t q = 0; q < GS_MAX_QUEUES; q++) {
		struct gs_queue_counters *c = &e->th.queues[q].c;
		atomic_store_explicit(&c->queued, queued[q], memory_order_relaxed);
		atomic_store_explicit(&c->delayed, delayed[q], memory_order_relaxed);
		atomic_store_explicit(&c->assigned, assigned[q], memory_order_relaxed);
		atomic_store_explicit(&c->running, running[q], memory_order_relaxed);
	}
	gs_worker_heap_rebuild(&e->wh, &e->wp);

	free(r.seen);
	free(loads);
	free(used.bits);
	return GS_OK;
}

int gs_engine_recover(gs_engine *e, gs_recovery_report *rep)
{
	gs_recovery_report local;
	if (!rep)
		rep = &local;
	memset(rep, 0, sizeof(*rep));
	gs_seg_take_ownership(&e->seg);
	int rc = repair(e, rep);
	if (rc == GS_OK)
		atomic_fetch_add_explicit(&e->seg.hdr->recoveries, 1, memory_order_relaxed);
	return rc;
}

int gs_engine_restore_finish(gs_engine *e, uint32_t gen_floor, gs_recovery_report *rep)
{
	gs_recovery_report local;
	if (!e)
		return GS_EINVAL;
	if (!rep)
		rep = &local;
	memset(rep, 0, sizeof(*rep));
	/* Restored QUEUED tasks are already in their queues (in restore order);
	 * repair links DELAYED ones onto the inbox and frees the rest. */
	int rc = repair(e, rep);
	if (rc != GS_OK)
		return rc;
	uint32_t cur = atomic_load_explicit(&e->tt.hdr->gen_floor, memory_order_relaxed);
	if (gen_floor < cur)
		gen_floor = cur;
	atomic_store_explicit(&e->tt.hdr->gen_floor, gen_floor ? gen_floor : 1,
	                      memory_order_release);
	return GS_OK;
}

int gs_engine_check(gs_engine *e, char *msg, size_t msg_len)
{
	uint32_t hw = atomic_load_explicit(&e->tt.hdr->high_water, memory_order_relaxed);
	struct reach r = {e, calloc(e->geom.max_tasks, 1), 0};
	uint32_t *loads = calloc(e->geom.max_workers, sizeof(uint32_t));
	int rc = GS_OK;
	if (!r.seen || !loads) {
		free(r.seen);
		free(loads);
		return GS_ENOMEM;
	}
	gs_task_heap_walk(&e->th, mark_node, &r);
	/* The DELAYED inbox links its slots too: mark them (bit 7). */
	uint32_t steps = 0;
	for (uint32_t h = atomic_load_explicit(&e->tt.hdr->delayed, memory_order_relaxed);
	     h && rc == GS_OK;
	     h = atomic_load_explicit(&e->tt.slots[h - 1].link, memory_order_relaxed)) {
		if (h > hw || (r.seen[h - 1] & 0x80) || ++steps > hw) {
			snprintf(msg, msg_len, "the delayed inbox is corrupt at slot %u", h - 1);
			rc = GS_ESTATE;
		} else {
			r.seen[h - 1] |= 0x80;
		}
	}
	/* queued, delayed, assigned, running per queue (the gauges) */
	uint64_t gauge[GS_MAX_QUEUES][4];
	memset(gauge, 0, sizeof(gauge));
	for (uint32_t ix = 0; ix < hw && rc == GS_OK; ix++) {
		bool inbox = r.seen[ix] & 0x80;
		r.seen[ix] &= 0x7f;
		uint64_t w = atomic_load_explicit(&e->tt.slots[ix].word, memory_order_relaxed);
		uint32_t st = gs_word_state(w);
		if (r.seen[ix] > 1) {
			snprintf(msg, msg_len, "slot %u is in the queues %u times", ix, r.seen[ix]);
			rc = GS_ESTATE;
		} else if (gs_word_linked(w) != (r.seen[ix] == 1 || inbox)) {
			snprintf(msg, msg_len, "slot %u (%s) linked=%d but reached=%d inbox=%d", ix,
			         gs_task_state_name(st), gs_word_linked(w), r.seen[ix], inbox);
			rc = GS_ESTATE;
		} else if (inbox && r.seen[ix]) {
			snprintf(msg, msg_len, "slot %u is in a queue and in the inbox", ix);
			rc = GS_ESTATE;
		} else if (st == GS_TASK_QUEUED && r.seen[ix] != 1) {
			snprintf(msg, msg_len, "QUEUED slot %u is in no queue", ix);
			rc = GS_ESTATE;
		} else if (st == GS_TASK_RESERVED || st == GS_TASK_COMPLETING) {
			snprintf(msg, msg_len, "slot %u held in %s", ix, gs_task_state_name(st));
			rc = GS_ESTATE;
		}
		uint32_t sq = e->tt.slots[ix].queue;
		if (st == GS_TASK_QUEUED)
			gauge[sq][0]++;
		else if (st == GS_TASK_DELAYED)
			gauge[sq][1]++;
		else if (st == GS_TASK_ASSIGNED)
			gauge[sq][2]++;
		else if (st == GS_TASK_RUNNING)
			gauge[sq][3]++;
		if ((st == GS_TASK_ASSIGNED || st == GS_TASK_RUNNING) && gs_word_worker(w))
			loads[gs_word_worker(w) - 1]++;
	}
	for (uint32_t i = 0; i < e->geom.max_workers && rc == GS_OK; i++) {
		uint32_t l = atomic_load_explicit(&e->wp.slots[i].load, memory_order_relaxed);
		if (l != loads[i]) {
			snprintf(msg, msg_len, "worker %u load %u but %u tasks assigned", i, l,
			         loads[i]);
			rc = GS_ESTATE;
		}
	}
	static const char *const gauge_name[4] = {"queued", "delayed", "assigned", "running"};
	for (uint32_t q = 0; q < GS_MAX_QUEUES && rc == GS_OK; q++) {
		const struct gs_queue_counters *qc = &e->th.queues[q].c;
		uint64_t c[4] = {atomic_load_explicit(&qc->queued, memory_order_relaxed),
		                 atomic_load_explicit(&qc->delayed, memory_order_relaxed),
		                 atomic_load_explicit(&qc->assigned, memory_order_relaxed),
		                 atomic_load_explicit(&qc->running, memory_order_relaxed)};
		for (int g = 0; g < 4 && rc == GS_OK; g++) {
			if (c[g] != gauge[q][g]) {
				snprintf(msg, msg_len, "queue %u counts %llu %s but has %llu", q,
				         (unsigned long long)c[g], gauge_name[g],
				         (unsigned long long)gauge[q][g]);
				rc = GS_ESTATE;
			}
		}
	}
	free(r.seen);
	free(loads);
	return rc;
}
