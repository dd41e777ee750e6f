/* engine.c - the operations of the PLM, the Main Scheduler and the Register. */
#include "engine.h"
#include "engine_impl.h"

#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "gs_error.h"
#include "task_heap.h"
#include "worker_heap.h"

#define RESULT_DROPPED 0x1u

/* --- lifecycle ------------------------------------------------------- */

static void bind_all(gs_engine *e, bool format)
{
	const gs_layout *L = &e->seg.hdr->layout;
	const gs_geom *g = &e->seg.hdr->geom;
	uint8_t *b = e->seg.base;
	e->geom = *g;
	gs_task_table_bind(&e->tt, b + L->tasks, g->max_tasks, format);
	gs_task_heap_bind(&e->th, b + L->nodes, b + L->levels, b + L->queues, g->max_tasks, format);
	gs_arena_bind(&e->arena, b + L->pages, b + L->arena, g, format);
	gs_worker_pool_bind(&e->wp, b + L->workers, b + L->dirty, g->max_workers, format);
	gs_worker_heap_bind(&e->wh, b + L->wheap, g->max_workers, format);
	gs_idem_bind(&e->it, b + L->keys, g, &e->tt, &e->arena, format);
	gs_roles_bind(&e->roles, b + L->roles, format);
}

int gs_engine_create(const gs_engine_opts *o, gs_engine **out)
{
	if (!o || !out)
		return GS_EINVAL;
	gs_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return GS_ENOMEM;
	int rc = gs_seg_create(o->segment_name, &o->geom, o->replace, &e->seg);
	if (rc != GS_OK) {
		free(e);
		return rc;
	}
	bind_all(e, true);
	uint32_t q;
	gs_task_heap_queue(&e->th, "default", true, &q);
	/* release: every region is formatted before an attacher sees ready. */
	atomic_store_explicit(&e->seg.hdr->ready, 1, memory_order_release);
	gs_seg_made(&e->seg);
	*out = e;
	return GS_OK;
}

int gs_engine_attach(const char *name, gs_engine **out, bool *owner_dead)
{
	if (!out)
		return GS_EINVAL;
	gs_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return GS_ENOMEM;
	int rc = gs_seg_attach(name, &e->seg);
	if (rc != GS_OK) {
		free(e);
		return rc;
	}
	if (!atomic_load_explicit(&e->seg.hdr->ready, memory_order_acquire)) {
		/* Being made right now, or its creator died before it was ready:
		 * nothing was ever in it (gs_engine_create makes it again). */
		gs_seg_detach(&e->seg);
		free(e);
		return GS_ENOTFOUND;
	}
	bind_all(e, false);
	if (owner_dead)
		*owner_dead = gs_seg_owner_dead(&e->seg);
	*out = e;
	return GS_OK;
}

void gs_engine_close(gs_engine *e, bool unlink_name)
{
	if (!e)
		return;
	if (unlink_name && e->seg.named)
		gs_seg_unlink(e->seg.name);
	gs_seg_detach(&e->seg);
	free(e);
}

const gs_geom *gs_engine_geom(const gs_engine *e)
{
	return &e->geom;
}

uint32_t gs_engine_tasks_in_use(const gs_engine *e)
{
	return atomic_load_explicit(&e->tt.hdr->in_use, memory_order_relaxed);
}

gs_seg *gs_engine_segment(gs_engine *e)
{
	return &e->seg;
}

gs_roles *gs_engine_roles(gs_engine *e)
{
	return &e->roles;
}

/* --- queues --------------------------------------------------------- */

int gs_engine_queue(gs_engine *e, const char *name, bool create, uint32_t *qid)
{
	return gs_task_heap_queue(&e->th, name, create, qid);
}

const char *gs_engine_queue_name(const gs_engine *e, uint32_t qid)
{
	return gs_task_heap_queue_name(&e->th, qid);
}

int gs_engine_queue_stats(const gs_engine *e, uint32_t qid, gs_queue_stats *out)
{
	if (!gs_task_heap_queue_name(&e->th, qid))
		return GS_ENOTFOUND;
	const struct gs_queue_counters *c = &e->th.queues[qid].c;
	out->queued = atomic_load_explicit(&c->queued, memory_order_relaxed);
	out->submitted = atomic_load_explicit(&c->submitted, memory_order_relaxed);
	out->assigned = atomic_load_explicit(&c->assigned, memory_order_relaxed);
	out->done = atomic_load_explicit(&c->done, memory_order_relaxed);
	out->failed = atomic_load_explicit(&c->failed, memory_order_relaxed);
	out->cancelled = atomic_load_explicit(&c->cancelled, memory_order_relaxed);
	out->requeued = atomic_load_explicit(&c->requeued, memory_order_relaxed);
	out->delayed = atomic_load_explicit(&c->delayed, memory_order_relaxed);
	out->running = atomic_load_explicit(&c->running, memory_order_relaxed);
	return GS_OK;
}

static inline void count(gs_engine *e, uint32_t q, size_t field_offset, int64_t delta)
{
	_Atomic uint64_t *c = (_Atomic uint64_t *)((uint8_t *)&e->th.queues[q].c + field_offset);
	atomic_fetch_add_explicit(c, (uint64_t)delta, memory_order_relaxed);
}
#define COUNT(e, q, field, d) count((e), (q), offsetof(struct gs_queue_counters, field), (d))

/* --- slot helpers ------------------------------------------------------ */

static uint32_t inline_used(const struct gs_task_slot *s)
{
	return s->payload_ref == GS_REF_INLINE ? s->payload_len : 0;
}

static void slot_release_bytes(gs_engine *e, struct gs_task_slot *s)
{
	if (s->payload_ref != GS_REF_INLINE && s->payload_ref != GS_REF_NONE)
		gs_arena_free(&e->arena, s->payload_ref, s->payload_len);
	if (s->result_ref != GS_REF_INLINE && s->result_ref != GS_REF_NONE)
		gs_arena_free(&e->arena, s->result_ref, s->result_len);
	s->payload_ref = s->result_ref = GS_REF_NONE;
	s->payload_len = s->result_len = 0;
}

/* Frees a slot held exclusively in word w (RESERVED, RELEASED, or final unlinked). */
static int slot_free(gs_engine *e, uint32_t ix, uint64_t w)
{
	slot_release_bytes(e, &e->tt.slots[ix]);
	return gs_task_table_free(&e->tt, ix, w);
}

static int queue_task(gs_engine *e, struct gs_task_slot *s, uint64_t *w, uint64_t desired,
                      uint64_t id)
{
	/* Read before the CAS: once pushed, the task may be popped, finished,
	 * released and its slot reused (rewritten) by another submit.  If the
	 * slot changed before the CAS, the CAS fails and the values are unused. */
	uint32_t q = s->queue, prio = s->priority;
	/* Counted before a pop or cancel can see it, so `queued` never dips
	 * below zero; taken back if the CAS fails. */
	COUNT(e, q, queued, 1);
	if (!gs_task_table_cas(s, w, desired)) {
		COUNT(e, q, queued, -1);
		return GS_ESTATE;
	}
	gs_task_heap_push(&e->th, q, prio, id);
	return GS_OK;
}

/* --- submit ------------------------------------------------------------ */

static int spec_check(const gs_engine *e, const gs_task_spec *sp)
{
	if (sp->queue >= GS_MAX_QUEUES || !gs_task_heap_queue_name(&e->th, sp->queue))
		return GS_EINVAL;
	if (sp->priority >= GS_PRIORITIES || sp->max_retries > GS_MAX_RETRIES)
		return GS_EINVAL;
	if (sp->payload_len > e->geom.max_payload)
		return GS_ETOOBIG;
	if (sp->payload_len > 0 && !sp->payload)
		return GS_EINVAL;
	return GS_OK;
}

static void submit_undo(gs_engine *e, const uint64_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t ix = gs_task_id_slot(ids[i]);
		uint64_t w = atomic_load_explicit(&e->tt.slots[ix].word, memory_order_relaxed);
		slot_free(e, ix, w);
	}
}

/* Checks every spec: the first error, or GS_OK. */
static int specs_check(const gs_engine *e, const gs_task_spec *specs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = spec_check(e, &specs[i]);
		if (rc != GS_OK)
			return rc;
	}
	return GS_OK;
}

/* Reserves and fills n slots (RESERVED, not yet visible); all or nothing. */
static int submit_fill(gs_engine *e, const gs_task_spec *specs, size_t n, uint64_t now_us,
                       uint64_t *ids)
{
	for (size_t i = 0; i < n; i++) {
		const gs_task_spec *sp = &specs[i];
		int rc = gs_task_table_reserve(&e->tt, &ids[i]);
		if (rc != GS_OK) {
			submit_undo(e, ids, i);
			return rc;
		}
		struct gs_task_slot *s = &e->tt.slots[gs_task_id_slot(ids[i])];
		s->queue = (uint16_t)sp->queue;
		s->priority = (uint8_t)sp->priority;
		s->max_retries = (uint8_t)sp->max_retries;
		atomic_store_explicit(&s->free_attempts, 0, memory_order_relaxed);
		s->timeout_ms = sp->timeout_ms;
		s->payload_len = sp->payload_len;
		s->result_len = 0;
		s->result_ref = GS_REF_NONE;
		s->flags = 0;
		atomic_store_explicit(&s->status, 0, memory_order_relaxed);
		atomic_store_explicit(&s->reason, GS_REASON_NONE, memory_order_relaxed);
		s->t_submit_us = now_us;
		atomic_store_explicit(&s->t_assign, 0, memory_order_relaxed);
		atomic_store_explicit(&s->t_start, 0, memory_order_relaxed);
		atomic_store_explicit(&s->t_finish, 0, memory_order_relaxed);
		s->not_before =
		    sp->not_before_us > now_us ? gs_ts_pack(now_us, sp->not_before_us) : 0;
		if (sp->payload_len == 0) {
			s->payload_ref = GS_REF_NONE;
		} else if (sp->payload_len <= GS_INLINE_BYTES) {
			s->payload_ref = GS_REF_INLINE;
			memcpy(s->inline_data, sp->payload, sp->payload_len);
		} else {
			uint32_t ref;
			s->payload_ref = GS_REF_NONE; /* nothing to free if alloc fails */
			rc = gs_arena_alloc(&e->arena, sp->payload_len, &ref);
			if (rc != GS_OK) {
				submit_undo(e, ids, i + 1);
				return rc == GS_ETOOBIG ? GS_ETOOBIG : GS_EFULL;
			}
			memcpy(gs_arena_ptr(&e->arena, ref), sp->payload, sp->payload_len);
			s->payload_ref = ref;
		}
	}
	return GS_OK;
}

/* Publishes the slots submit_fill() filled.  Nothing here can fail. */
static void submit_publish(gs_engine *e, const uint64_t *ids, size_t n)
{
	/* Every slot is filled: publish them.  Nothing below can fail. */
	for (size_t i = 0; i < n; i++) {
		uint32_t ix = gs_task_id_slot(ids[i]);
		struct gs_task_slot *s = &e->tt.slots[ix];
		uint32_t gen = gs_task_id_gen(ids[i]);
		uint64_t w = gs_word_make(gen, 0, 0, false, GS_TASK_RESERVED);
		COUNT(e, s->queue, submitted, 1);
		if (s->not_before) {
			/* linked: the inbox refers to the slot until delayed_take
			 * unlinks it, so a cancel + release cannot free (and
			 * reuse) it while it is still on the inbox's chain. */
			gs_task_table_cas(s, &w, gs_word_make(gen, 0, 1, true, GS_TASK_DELAYED));
			COUNT(e, s->queue, delayed, 1);
			/* Inbox push (consumers only swap the whole list out, so a
			 * plain CAS push has no ABA).  release: the slot's fields. */
			uint32_t head =
			    atomic_load_explicit(&e->tt.hdr->delayed, memory_order_relaxed);
			do {
				atomic_store_explicit(&s->link, head, memory_order_relaxed);
			} while (!atomic_compare_exchange_weak_explicit(
			    &e->tt.hdr->delayed, &head, ix + 1, memory_order_release,
			    memory_order_relaxed));
		} else {
			queue_task(e, s, &w, gs_word_make(gen, 0, 1, true, GS_TASK_QUEUED), ids[i]);
		}
	}
}

int gs_engine_submit(gs_engine *e, const gs_task_spec *specs, size_t n, uint64_t now_us,
                     uint64_t *ids)
{
	if (!e || !specs || !ids || n == 0)
		return GS_EINVAL;
	int rc = specs_check(e, specs, n);
	if (rc == GS_OK)
		rc = submit_fill(e, specs, n, now_us, ids);
	if (rc == GS_OK)
		submit_publish(e, ids, n);
	return rc;
}

int gs_engine_submit_idem(gs_engine *e, const gs_idem_req *k, const gs_task_spec *specs, size_t n,
                          uint64_t now_us, uint64_t *ids, enum gs_idem_outcome *outcome)
{
	if (!e || !k || !specs || !ids || !outcome || n == 0 || n > UINT32_MAX)
		return GS_EINVAL;
	*outcome = GS_IDEM_NEW;
	int rc = specs_check(e, specs, n);
	if (rc != GS_OK)
		return rc;
	bool existing = false;
	uint32_t slot;
	rc = gs_idem_begin(&e->it, k->key, k->key_len, k->digest, (uint32_t)n, now_us, ids,
	                   &existing, &slot, NULL);
	if (existing) {
		if (rc == GS_OK)
			*outcome = GS_IDEM_EXISTING;
		return rc;
	}
	if (rc == GS_EFULL)
		*outcome = GS_IDEM_KEYS_FULL;
	if (rc != GS_OK)
		return rc;
	rc = submit_fill(e, specs, n, now_us, ids);
	if (rc != GS_OK) {
		gs_idem_abort(&e->it, slot);
		return rc;
	}
	/* The key is LIVE before any of its tasks is visible: a process killed
	 * once one is visible leaves the key with it (recovery keeps keys with a
	 * task left), so a retry never queues a second set beside the first. */
	gs_idem_commit(&e->it, slot, ids);
	submit_publish(e, ids, n);
	return GS_OK;
}

uint32_t gs_engine_idem_capacity(const gs_engine *e)
{
	return gs_idem_capacity(&e->it);
}

uint32_t gs_engine_idem_max_ids(const gs_engine *e)
{
	return gs_idem_max_ids(&e->it);
}

int gs_engine_idem_at(const gs_engine *e, uint32_t index, gs_idem_info *info, uint64_t *ids,
                      size_t cap)
{
	if (!e)
		return GS_EINVAL;
	return gs_idem_at(&e->it, index, info, ids, cap);
}

int gs_engine_idem_restore(gs_engine *e, const gs_idem_req *k, uint64_t created_us,
                           const uint64_t *ids, size_t n)
{
	if (!e || !k || n > UINT32_MAX)
		return GS_EINVAL;
	return gs_idem_restore(&e->it, k->key, k->key_len, k->digest, created_us, ids, (uint32_t)n);
}

/* --- assignment -------------------------------------------------------- */

/*
 * Claims the task a popped node names: QUEUED|linked -> ASSIGNED(worker) in
 * one CAS.  A node whose task was cancelled or released meanwhile is dropped
 * here: clear `linked`, and free a RELEASED slot.  Returns GS_OK when claimed.
 */
static int claim(gs_engine *e, uint64_t id, uint32_t wslot, uint64_t now_us, gs_assignment *out)
{
	uint32_t ix = gs_task_id_slot(id);
	if (ix >= e->geom.max_tasks)
		return GS_ESTATE;
	struct gs_task_slot *s = &e->tt.slots[ix];
	uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
	for (;;) {
		if (gs_word_gen(w) != gs_task_id_gen(id) || !gs_word_linked(w))
			return GS_ESTATE; /* not ours: cannot happen while one node per slot */
		uint32_t st = gs_word_state(w);
		if (st == GS_TASK_QUEUED) {
			/* Fields read before the CAS (see queue_task): once ASSIGNED
			 * the task may be cancelled, released and the slot reused. */
			uint32_t q = s->queue, prio = s->priority, timeout = s->timeout_ms;
			uint64_t want = gs_word_make(gs_word_gen(w), wslot + 1, gs_word_attempt(w),
			                             false, GS_TASK_ASSIGNED);
			if (!gs_task_table_cas(s, &w, want))
				continue;
			atomic_store_explicit(&s->t_assign, gs_ts_pack(s->t_submit_us, now_us),
			                      memory_order_relaxed);
			gs_worker_pool_load_add(&e->wp, wslot, 1);
			COUNT(e, q, queued, -1);
			COUNT(e, q, assigned, 1);
			out->task = id;
			out->attempt = gs_word_attempt(want);
			out->queue = q;
			out->priority = prio;
			out->timeout_ms = timeout;
			return GS_OK;
		}
		if (st == GS_TASK_RELEASED) {
			if (!gs_task_table_cas(s, &w, gs_word_with_linked(w, false)))
				continue;
			slot_free(e, ix, gs_word_with_linked(w, false));
			return GS_ESTATE;
		}
		/* CANCELLED (or any state that left the queue): just unlink. */
		if (gs_task_table_cas(s, &w, gs_word_with_linked(w, false)))
			return GS_ESTATE;
	}
}

static int assign_next(gs_engine *e, uint32_t queue, uint32_t wslot, uint64_t worker,
                       uint64_t now_us, gs_assignment *out)
{
	for (;;) {
		uint64_t id;
		int rc = gs_task_heap_pop(&e->th, queue, &id);
		if (rc != GS_OK)
			return rc;
		if (claim(e, id, wslot, now_us, out) == GS_OK) {
			out->worker = worker;
			return GS_OK;
		}
	}
}

int gs_engine_pop_assign(gs_engine *e, uint32_t queue, uint64_t worker, uint64_t now_us,
                         gs_assignment *out)
{
	uint32_t wslot, wstate;
	if (queue >= GS_MAX_QUEUES || !out)
		return GS_EINVAL;
	int rc = gs_worker_pool_lookup(&e->wp, worker, &wslot, &wstate);
	if (rc != GS_OK)
		return rc;
	if (wstate != GS_WORKER_ALIVE)
		return GS_ESTATE;
	return assign_next(e, queue, wslot, worker, now_us, out);
}

int gs_engine_dispatch(gs_engine *e, uint32_t queue, uint64_t now_us, gs_assignment *out)
{
	if (queue >= GS_MAX_QUEUES || !out)
		return GS_EINVAL;
	if (atomic_load_explicit(&e->th.queues[queue].c.queued, memory_order_relaxed) == 0 &&
	    gs_task_heap_top_level(&e->th, queue) < 0)
		return GS_EEMPTY;
	gs_worker_heap_sync(&e->wh, &e->wp);
	uint32_t wslot;
	int rc = gs_worker_heap_peek(&e->wh, queue, &wslot);
	if (rc != GS_OK)
		return rc;
	uint64_t word = atomic_load_explicit(&e->wp.slots[wslot].word, memory_order_acquire);
	uint64_t worker = gs_worker_id(wslot, (uint32_t)(word >> 32));
	return assign_next(e, queue, wslot, worker, now_us, out);
}

/* --- running and finishing -------------------------------------------- */

static int lookup_assigned(gs_engine *e, uint64_t task, uint64_t worker, uint32_t attempt,
                           struct gs_task_slot **s, uint64_t *w)
{
	int rc = gs_task_table_lookup(&e->tt, task, s, w);
	if (rc != GS_OK)
		return rc;
	uint32_t st = gs_word_state(*w);
	if (st != GS_TASK_ASSIGNED && st != GS_TASK_RUNNING)
		return GS_ESTALE;
	if (gs_word_worker(*w) != (uint32_t)worker + 1 || gs_word_attempt(*w) != attempt)
		return GS_ESTALE;
	/* The slot index matches; the worker's generation must too. */
	uint32_t wslot, wstate;
	if (gs_worker_pool_lookup(&e->wp, worker, &wslot, &wstate) != GS_OK)
		return GS_ESTALE;
	return GS_OK;
}

int gs_engine_start(gs_engine *e, uint64_t task, uint64_t worker, uint32_t attempt, uint64_t now_us)
{
	struct gs_task_slot *s;
	uint64_t w;
	int rc = lookup_assigned(e, task, worker, attempt, &s, &w);
	if (rc != GS_OK)
		return rc;
	if (gs_word_state(w) == GS_TASK_RUNNING)
		return GS_OK;  /* a repeated report */
	uint32_t q = s->queue; /* before the CAS: see queue_task */
	if (!gs_task_table_cas(s, &w, gs_word_with_state(w, GS_TASK_RUNNING)))
		return GS_ESTALE;
	atomic_store_explicit(&s->t_start, gs_ts_pack(s->t_submit_us, now_us),
	                      memory_order_relaxed);
	COUNT(e, q, assigned, -1);
	COUNT(e, q, running, 1);
	return GS_OK;
}

int gs_engine_finish(gs_engine *e, uint64_t task, uint64_t worker, uint32_t attempt,
                     const gs_outcome *o, uint64_t now_us)
{
	if (!o || (o->result_len > 0 && !o->result))
		return GS_EINVAL;
	if (o->result_len > e->geom.max_payload)
		return GS_ETOOBIG;
	struct gs_task_slot *s;
	uint64_t w;
	int rc = lookup_assigned(e, task, worker, attempt, &s, &w);
	if (rc != GS_OK)
		return rc;
	uint64_t held = gs_word_with_state(w, GS_TASK_COMPLETING);
	if (!gs_task_table_cas(s, &w, held))
		return GS_ESTALE;
	/* We hold the slot exclusively until the final store below. */
	uint32_t used = inline_used(s);
	s->flags &= (uint8_t)~RESULT_DROPPED;
	s->result_len = 0;
	s->result_ref = GS_REF_NONE;
	if (o->result_len > 0 && o->result_len <= GS_INLINE_BYTES - used) {
		memcpy(s->inline_data + used, o->result, o->result_len);
		s->result_ref = GS_REF_INLINE;
		s->result_len = o->result_len;
	} else if (o->result_len > 0) {
		uint32_t ref;
		if (gs_arena_alloc(&e->arena, o->result_len, &ref) == GS_OK) {
			memcpy(gs_arena_ptr(&e->arena, ref), o->result, o->result_len);
			s->result_ref = ref;
			s->result_len = o->result_len;
		} else {
			s->flags |= RESULT_DROPPED;
		}
	}
	atomic_store_explicit(&s->status, o->status, memory_order_relaxed);
	atomic_store_explicit(&s->reason, o->reason ? o->reason : GS_REASON_EXIT,
	                      memory_order_relaxed);
	if (o->started_us)
		atomic_store_explicit(&s->t_start, gs_ts_pack(s->t_submit_us, o->started_us),
		                      memory_order_relaxed);
	atomic_store_explicit(&s->t_finish,
	                      gs_ts_pack(s->t_submit_us, o->finished_us ? o->finished_us : now_us),
	                      memory_order_relaxed);
	uint32_t fin = o->failed ? GS_TASK_FAILED : GS_TASK_DONE;
	uint32_t q = s->queue; /* held: after the store below the slot may be reused */
	/* release: the result fields above are visible with the final state. */
	atomic_store_explicit(&s->word, gs_word_with_state(held, fin), memory_order_release);
	/* The worker may have been declared dead while we held the task (a
	 * dead worker's scan skips COMPLETING tasks): its slot was then reset,
	 * maybe reused, and this task is no longer in its load. */
	uint32_t wslot, wstate;
	if (gs_worker_pool_lookup(&e->wp, worker, &wslot, &wstate) == GS_OK &&
	    wstate != GS_WORKER_DEAD)
		gs_worker_pool_load_add(&e->wp, wslot, -1);
	if (o->failed)
		COUNT(e, q, failed, 1);
	else
		COUNT(e, q, done, 1);
	if (gs_word_state(w) == GS_TASK_RUNNING)
		COUNT(e, q, running, -1);
	else
		COUNT(e, q, assigned, -1);
	return GS_OK;
}

int gs_engine_cancel(gs_engine *e, uint64_t task, uint64_t now_us, uint64_t *worker,
                     uint32_t *attempt)
{
	struct gs_task_slot *s;
	uint64_t w;
	int rc = gs_task_table_lookup(&e->tt, task, &s, &w);
	if (rc != GS_OK)
		return rc;
	if (worker)
		*worker = 0;
	if (attempt)
		*attempt = 0;
	for (;;) {
		uint32_t st = gs_word_state(w);
		if (st == GS_TASK_COMPLETING)
			return GS_EBUSY;
		if (st != GS_TASK_DELAYED && st != GS_TASK_QUEUED && st != GS_TASK_ASSIGNED &&
		    st != GS_TASK_RUNNING)
			return GS_ESTATE;
		if (gs_word_gen(w) != gs_task_id_gen(task))
			return GS_ENOTFOUND;
		uint32_t q = s->queue; /* before the CAS: see queue_task */
		if (!gs_task_table_cas(s, &w, gs_word_with_state(w, GS_TASK_CANCELLED)))
			continue;
		atomic_store_explicit(&s->reason, GS_REASON_CANCELLED, memory_order_relaxed);
		atomic_store_explicit(&s->t_finish, gs_ts_pack(s->t_submit_us, now_us),
		                      memory_order_relaxed);
		COUNT(e, q, cancelled, 1);
		if (st == GS_TASK_QUEUED)
			COUNT(e, q, queued, -1);
		else if (st == GS_TASK_DELAYED)
			COUNT(e, q, delayed, -1);
		else if (st == GS_TASK_ASSIGNED)
			COUNT(e, q, assigned, -1);
		else
			COUNT(e, q, running, -1);
		if (st == GS_TASK_ASSIGNED || st == GS_TASK_RUNNING) {
			uint32_t wslot = gs_word_worker(w) - 1;
			uint64_t ww =
			    atomic_load_explicit(&e->wp.slots[wslot].word, memory_order_acquire);
			if (worker)
				*worker = gs_worker_id(wslot, (uint32_t)(ww >> 32));
			if (attempt)
				*attempt = gs_word_attempt(w);
			gs_worker_pool_load_add(&e->wp, wslot, -1);
		}
		return GS_OK;
	}
}

int gs_engine_release(gs_engine *e, uint64_t task)
{
	struct gs_task_slot *s;
	uint64_t w;
	int rc = gs_task_table_lookup(&e->tt, task, &s, &w);
	if (rc != GS_OK)
		return rc;
	for (;;) {
		uint32_t st = gs_word_state(w);
		if (st != GS_TASK_DONE && st != GS_TASK_FAILED && st != GS_TASK_CANCELLED)
			return GS_ESTATE;
		if (gs_word_linked(w)) {
			/* A queue node still names it: the popper frees it. */
			if (gs_task_table_cas(s, &w, gs_word_with_state(w, GS_TASK_RELEASED)))
				return GS_OK;
			continue;
		}
		return slot_free(e, gs_task_id_slot(task), w);
	}
}

/* --- reading ----------------------------------------------------------- */

static uint64_t worker_id_of(const gs_engine *e, uint64_t w)
{
	uint32_t w1 = gs_word_worker(w);
	if (w1 == 0 || w1 > e->geom.max_workers)
		return 0;
	uint64_t ww = atomic_load_explicit(&e->wp.slots[w1 - 1].word, memory_order_acquire);
	return gs_worker_id(w1 - 1, (uint32_t)(ww >> 32));
}

int gs_engine_task_info(const gs_engine *e, uint64_t task, gs_task_info *out)
{
	struct gs_task_slot *s;
	uint64_t w;
	int rc = gs_task_table_lookup(&e->tt, task, &s, &w);
	if (rc != GS_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	out->id = task;
	out->state = gs_word_state(w);
	out->attempt = gs_word_attempt(w);
	out->queue = s->queue;
	out->priority = s->priority;
	out->max_retries = s->max_retries;
	out->timeout_ms = s->timeout_ms;
	out->worker = worker_id_of(e, w);
	out->status = atomic_load_explicit(&s->status, memory_order_relaxed);
	out->reason = atomic_load_explicit(&s->reason, memory_order_relaxed);
	out->payload_len = s->payload_len;
	bool final = out->state == GS_TASK_DONE || out->state == GS_TASK_FAILED ||
	             out->state == GS_TASK_CANCELLED;
	out->result_len = final ? s->result_len : 0;
	out->result_dropped = final && (s->flags & RESULT_DROPPED);
	out->submitted_us = s->t_submit_us;
	out->assigned_us =
	    gs_ts_unpack(s->t_submit_us, atomic_load_explicit(&s->t_assign, memory_order_relaxed));
	out->started_us =
	    gs_ts_unpack(s->t_submit_us, atomic_load_explicit(&s->t_start, memory_order_relaxed));
	out->finished_us =
	    gs_ts_unpack(s->t_submit_us, atomic_load_explicit(&s->t_finish, memory_order_relaxed));
	out->not_before_us = gs_ts_unpack(s->t_submit_us, s->not_before);
	return GS_OK;
}

static const uint8_t *bytes_of(const gs_engine *e, const struct gs_task_slot *s, uint32_t ref,
                               uint32_t off)
{
	if (ref == GS_REF_INLINE)
		return s->inline_data + off;
	if (ref == GS_REF_NONE)
		return NULL;
	return gs_arena_ptr(&e->arena, ref);
}

int gs_engine_task_payload(const gs_engine *e, uint64_t task, const uint8_t **p, uint32_t *len)
{
	struct gs_task_slot *s;
	uint64_t w;
	int rc = gs_task_table_lookup(&e->tt, task, &s, &w);
	if (rc != GS_OK)
		return rc;
	*p = bytes_of(e, s, s->payload_ref, 0);
	*len = s->payload_len;
	return GS_OK;
}

int gs_engine_task_result(const gs_engine *e, uint64_t task, const uint8_t **p, uint32_t *len)
{
	struct gs_task_slot *s;
	uint64_t w;
	int rc = gs_task_table_lookup(&e->tt, task, &s, &w);
	if (rc != GS_OK)
		return rc;
	uint32_t st = gs_word_state(w);
	if (st != GS_TASK_DONE && st != GS_TASK_FAILED && st != GS_TASK_CANCELLED)
		return GS_ESTATE;
	*p = bytes_of(e, s, s->result_ref, inline_used(s));
	*len = s->result_len;
	return GS_OK;
}

/* --- delayed tasks ----------------------------------------------------- */

size_t gs_engine_delayed_take(gs_engine *e, uint64_t *ids, size_t max)
{
	size_t n = 0;
	while (n < max) {
		/* acquire: the fields of every slot on the list we take. */
		uint32_t head =
		    atomic_exchange_explicit(&e->tt.hdr->delayed, 0, memory_order_acquire);
		if (!head)
			break;
		while (head) {
			struct gs_task_slot *s = &e->tt.slots[head - 1];
			uint32_t next = atomic_load_explicit(&s->link, memory_order_relaxed);
			if (n >= max) {
				/* No room: put it back (still linked) for the next call. */
				uint32_t h2 =
				    atomic_load_explicit(&e->tt.hdr->delayed, memory_order_relaxed);
				do {
					atomic_store_explicit(&s->link, h2, memory_order_relaxed);
				} while (!atomic_compare_exchange_weak_explicit(
				    &e->tt.hdr->delayed, &h2, head, memory_order_release,
				    memory_order_relaxed));
				head = next;
				continue;
			}
			/* Off the inbox: clear `linked`.  A task cancelled meanwhile is
			 * dropped here, and one also released is freed here. */
			uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
			while (gs_word_linked(w) &&
			       !gs_task_table_cas(s, &w, gs_word_with_linked(w, false)))
				;
			uint32_t st = gs_word_state(w);
			if (gs_word_linked(w) && st == GS_TASK_DELAYED)
				ids[n++] = gs_task_id(head - 1, gs_word_gen(w));
			else if (gs_word_linked(w) && st == GS_TASK_RELEASED)
				slot_free(e, head - 1, gs_word_with_linked(w, false));
			head = next;
		}
	}
	return n;
}

int gs_engine_delayed_release(gs_engine *e, uint64_t task, uint64_t now_us)
{
	(void)now_us;
	struct gs_task_slot *s;
	uint64_t w;
	int rc = gs_task_table_lookup(&e->tt, task, &s, &w);
	if (rc != GS_OK)
		return rc;
	if (gs_word_state(w) != GS_TASK_DELAYED)
		return GS_ESTATE;
	if (gs_word_linked(w))
		return GS_EBUSY; /* still on the inbox: gs_engine_delayed_take() it first */
	uint64_t want = gs_word_make(gs_word_gen(w), 0, gs_word_attempt(w), true, GS_TASK_QUEUED);
	uint32_t q = s->queue; /* before the CAS: see queue_task */
	rc = queue_task(e, s, &w, want, task);
	if (rc == GS_OK)
		COUNT(e, q, delayed, -1);
	return rc;
}

/* --- workers ----------------------------------------------------------- */

int gs_engine_worker_register(gs_engine *e, uint32_t slots, uint64_t queue_mask, uint64_t now_us,
                              uint64_t *worker)
{
	if (!worker)
		return GS_EINVAL;
	for (uint64_t m = queue_mask; m; m &= m - 1)
		if (!gs_task_heap_queue_name(&e->th, (uint32_t)__builtin_ctzll(m)))
			return GS_EINVAL;
	return gs_worker_pool_register(&e->wp, slots, queue_mask, now_us, worker);
}

int gs_engine_worker_heartbeat(gs_engine *e, uint64_t worker, uint64_t now_us)
{
	return gs_worker_pool_heartbeat(&e->wp, worker, now_us);
}

int gs_engine_worker_drain(gs_engine *e, uint64_t worker)
{
	int rc = gs_worker_pool_transition(&e->wp, worker, GS_WORKER_ALIVE, GS_WORKER_DRAINING);
	if (rc == GS_ESTATE) {
		uint32_t slot, st;
		if (gs_worker_pool_lookup(&e->wp, worker, &slot, &st) == GS_OK &&
		    st == GS_WORKER_DRAINING)
			return GS_OK;
	}
	return rc;
}

/* Requeues or fails one task of a lost worker; the word must name it.
 * charge: the loss counts against the task's retries; else it is a free
 * attempt (free_attempts), and the task is requeued whatever its retries,
 * keeping its attempt number at GS_MAX_ATTEMPT (the lost worker's ID is
 * gone, so its late results stay stale all the same). */
static void requeue_lost(gs_engine *e, uint32_t ix, uint64_t w, bool charge, gs_task_event_fn fn,
                         void *arg, uint64_t now_us)
{
	struct gs_task_slot *s = &e->tt.slots[ix];
	uint64_t id = gs_task_id(ix, gs_word_gen(w));
	bool bumped = false;
	for (;;) {
		uint32_t st = gs_word_state(w);
		if (st != GS_TASK_ASSIGNED && st != GS_TASK_RUNNING)
			return; /* finished or cancelled meanwhile */
		uint32_t attempt = gs_word_attempt(w);
		uint32_t q = s->queue; /* before the CAS: see queue_task */
		uint32_t free_n = atomic_load_explicit(&s->free_attempts, memory_order_relaxed);
		uint32_t charged = attempt > free_n ? attempt - free_n : 1;
		if (!charge || (charged < 1u + s->max_retries && attempt < GS_MAX_ATTEMPT)) {
			uint32_t next = attempt < GS_MAX_ATTEMPT ? attempt + 1 : attempt;
			if (!charge && !bumped && next > attempt && free_n < UINT16_MAX) {
				/* Before the CAS that publishes QUEUED: whoever assigns
				 * and loses it next reads the new count. */
				atomic_store_explicit(&s->free_attempts, (uint16_t)(free_n + 1),
				                      memory_order_relaxed);
				bumped = true;
			}
			uint64_t want = gs_word_make(gs_word_gen(w), 0, next, true, GS_TASK_QUEUED);
			if (queue_task(e, s, &w, want, id) != GS_OK)
				continue;
			COUNT(e, q, requeued, 1);
			if (st == GS_TASK_RUNNING)
				COUNT(e, q, running, -1);
			else
				COUNT(e, q, assigned, -1);
			if (fn)
				fn(id, GS_TASK_QUEUED, arg);
			return;
		}
		uint64_t want = gs_word_with_state(w, GS_TASK_COMPLETING);
		if (!gs_task_table_cas(s, &w, want))
			continue;
		atomic_store_explicit(&s->status, -1, memory_order_relaxed);
		atomic_store_explicit(&s->reason, GS_REASON_WORKER_LOST, memory_order_relaxed);
		atomic_store_explicit(&s->t_finish, gs_ts_pack(s->t_submit_us, now_us),
		                      memory_order_relaxed);
		/* release: reason and time are visible with FAILED. */
		atomic_store_explicit(&s->word, gs_word_with_state(want, GS_TASK_FAILED),
		                      memory_order_release);
		COUNT(e, q, failed, 1);
		if (st == GS_TASK_RUNNING)
			COUNT(e, q, running, -1);
		else
			COUNT(e, q, assigned, -1);
		if (fn)
			fn(id, GS_TASK_FAILED, arg);
		return;
	}
}

static int worker_lost(gs_engine *e, uint64_t worker, uint64_t now_us, bool charge,
                       gs_task_event_fn fn, void *arg)
{
	uint32_t wslot, st;
	int rc = gs_worker_pool_lookup(&e->wp, worker, &wslot, &st);
	if (rc != GS_OK)
		return rc;
	if (st != GS_WORKER_DEAD) {
		rc = gs_worker_pool_transition(&e->wp, worker, st, GS_WORKER_DEAD);
		if (rc != GS_OK)
			return rc;
	}
	uint32_t hw = atomic_load_explicit(&e->tt.hdr->high_water, memory_order_acquire);
	for (uint32_t ix = 0; ix < hw; ix++) {
		uint64_t w = atomic_load_explicit(&e->tt.slots[ix].word, memory_order_acquire);
		if (gs_word_worker(w) == wslot + 1)
			requeue_lost(e, ix, w, charge, fn, arg, now_us);
	}
	atomic_store_explicit(&e->wp.slots[wslot].load, 0, memory_order_relaxed);
	return gs_worker_pool_transition(&e->wp, worker, GS_WORKER_DEAD, GS_WORKER_FREE);
}

int gs_engine_worker_dead(gs_engine *e, uint64_t worker, uint64_t now_us, gs_task_event_fn fn,
                          void *arg)
{
	return worker_lost(e, worker, now_us, true, fn, arg);
}

int gs_engine_worker_orphaned(gs_engine *e, uint64_t worker, uint64_t now_us, gs_task_event_fn fn,
                              void *arg)
{
	return worker_lost(e, worker, now_us, false, fn, arg);
}

size_t gs_engine_worker_expired(const gs_engine *e, uint64_t now_us, uint64_t timeout_us,
                                uint64_t *workers, size_t max)
{
	size_t n = 0;
	for (uint32_t i = 0; i < e->geom.max_workers && n < max; i++) {
		const struct gs_worker_slot *ws = &e->wp.slots[i];
		uint64_t word = atomic_load_explicit(&ws->word, memory_order_acquire);
		uint32_t st = (uint32_t)(word & 0xff);
		if (st != GS_WORKER_ALIVE && st != GS_WORKER_DRAINING && st != GS_WORKER_DEAD)
			continue;
		uint64_t seen = atomic_load_explicit(&ws->last_seen_us, memory_order_relaxed);
		if (st == GS_WORKER_DEAD || seen + timeout_us < now_us)
			workers[n++] = gs_worker_id(i, (uint32_t)(word >> 32));
	}
	return n;
}

int gs_engine_worker_tasks(const gs_engine *e, uint64_t worker, uint64_t *ids, size_t max,
                           size_t *n)
{
	uint32_t wslot, st;
	int rc = gs_worker_pool_lookup(&e->wp, worker, &wslot, &st);
	if (rc != GS_OK)
		return rc;
	*n = 0;
	uint32_t hw = atomic_load_explicit(&e->tt.hdr->high_water, memory_order_acquire);
	for (uint32_t ix = 0; ix < hw && *n < max; ix++) {
		uint64_t w = atomic_load_explicit(&e->tt.slots[ix].word, memory_order_acquire);
		uint32_t ts = gs_word_state(w);
		if (gs_word_worker(w) == wslot + 1 &&
		    (ts == GS_TASK_ASSIGNED || ts == GS_TASK_RUNNING || ts == GS_TASK_COMPLETING))
			ids[(*n)++] = gs_task_id(ix, gs_word_gen(w));
	}
	return GS_OK;
}

int gs_engine_worker_at(const gs_engine *e, uint32_t slot, gs_worker_info *out)
{
	if (slot >= e->geom.max_workers)
		return GS_ENOTFOUND;
	const struct gs_worker_slot *ws = &e->wp.slots[slot];
	uint64_t word = atomic_load_explicit(&ws->word, memory_order_acquire);
	uint32_t st = (uint32_t)(word & 0xff);
	if (st == GS_WORKER_FREE || st == GS_WORKER_CLAIMED)
		return GS_ENOTFOUND;
	out->id = gs_worker_id(slot, (uint32_t)(word >> 32));
	out->state = st;
	out->slots = ws->slots;
	out->load = atomic_load_explicit(&ws->load, memory_order_relaxed);
	out->queue_mask = ws->queue_mask;
	out->last_seen_us = atomic_load_explicit(&ws->last_seen_us, memory_order_relaxed);
	out->assigned_total = atomic_load_explicit(&ws->assigned_total, memory_order_relaxed);
	out->finished_total = atomic_load_explicit(&ws->finished_total, memory_order_relaxed);
	return GS_OK;
}

int gs_engine_worker_info(const gs_engine *e, uint64_t worker, gs_worker_info *out)
{
	uint32_t slot, st;
	int rc = gs_worker_pool_lookup(&e->wp, worker, &slot, &st);
	if (rc != GS_OK)
		return rc;
	return gs_engine_worker_at(e, slot, out);
}

/* --- restore ------------------------------------------------------------ */

/* Copies bytes into the slot: inline after `inline_off` if they fit, else the arena. */
static int slot_store(gs_engine *e, struct gs_task_slot *s, uint32_t inline_off, const void *p,
                      uint32_t len, uint32_t *ref)
{
	if (len == 0) {
		*ref = GS_REF_NONE;
		return GS_OK;
	}
	if (len <= GS_INLINE_BYTES - inline_off) {
		memcpy(s->inline_data + inline_off, p, len);
		*ref = GS_REF_INLINE;
		return GS_OK;
	}
	int rc = gs_arena_alloc(&e->arena, len, ref);
	if (rc != GS_OK)
		return rc == GS_ETOOBIG ? GS_ETOOBIG : GS_EFULL;
	memcpy(gs_arena_ptr(&e->arena, *ref), p, len);
	return GS_OK;
}

int gs_engine_restore(gs_engine *e, const gs_restore_task *t, uint64_t now_us)
{
	if (!e || !t)
		return GS_EINVAL;
	uint32_t ix = gs_task_id_slot(t->id), gen = gs_task_id_gen(t->id);
	if (gen == 0)
		return GS_EINVAL;
	if (ix >= e->geom.max_tasks)
		return GS_EFULL;
	bool final;
	switch (t->state) {
	case GS_TASK_QUEUED:
	case GS_TASK_DELAYED:
	case GS_TASK_ASSIGNED:
	case GS_TASK_RUNNING:
		final = false;
		break;
	case GS_TASK_DONE:
	case GS_TASK_FAILED:
	case GS_TASK_CANCELLED:
		final = true;
		break;
	default:
		return GS_EINVAL;
	}
	gs_task_spec sp = {.queue = t->queue,
	                   .priority = t->priority,
	                   .max_retries = t->max_retries,
	                   .timeout_ms = t->timeout_ms,
	                   .payload = t->payload,
	                   .payload_len = t->payload_len};
	int rc = spec_check(e, &sp);
	if (rc != GS_OK)
		return rc;
	if (t->reason > 255 || (t->result_len > 0 && !t->result))
		return GS_EINVAL;
	if (t->result_len > e->geom.max_payload)
		return GS_ETOOBIG;
	struct gs_task_slot *s = &e->tt.slots[ix];
	if (gs_word_state(atomic_load_explicit(&s->word, memory_order_relaxed)) != GS_TASK_FREE)
		return GS_ESTATE;

	/* Quiescent: plain writes; the word is stored last. */
	uint32_t pref, rref = GS_REF_NONE, rlen = 0;
	rc = slot_store(e, s, 0, t->payload, t->payload_len, &pref);
	if (rc != GS_OK)
		return rc;
	if (final && t->state != GS_TASK_CANCELLED && t->result_len > 0) {
		uint32_t used = pref == GS_REF_INLINE ? t->payload_len : 0; /* inline_used() */
		rc = slot_store(e, s, used, t->result, t->result_len, &rref);
		if (rc != GS_OK) {
			if (pref != GS_REF_INLINE && pref != GS_REF_NONE)
				gs_arena_free(&e->arena, pref, t->payload_len);
			return rc;
		}
		rlen = t->result_len;
	}
	s->queue = (uint16_t)t->queue;
	s->priority = (uint8_t)t->priority;
	s->max_retries = (uint8_t)t->max_retries;
	s->timeout_ms = t->timeout_ms;
	s->payload_len = t->payload_len;
	s->payload_ref = pref;
	s->result_len = rlen;
	s->result_ref = rref;
	s->flags = 0;
	uint64_t base = t->submitted_us ? t->submitted_us : now_us;
	s->t_submit_us = base;
	s->not_before = t->not_before_us > base ? gs_ts_pack(base, t->not_before_us) : 0;
	atomic_store_explicit(&s->t_assign, 0, memory_order_relaxed);
	atomic_store_explicit(&s->t_start, 0, memory_order_relaxed);
	atomic_store_explicit(&s->status, final ? t->status : 0, memory_order_relaxed);
	atomic_store_explicit(&s->reason, (uint8_t)(final ? t->reason : GS_REASON_NONE),
	                      memory_order_relaxed);
	atomic_store_explicit(
	    &s->t_finish, final ? gs_ts_pack(base, t->finished_us ? t->finished_us : now_us) : 0,
	    memory_order_relaxed);

	uint32_t attempt;
	if (final)
		attempt = t->attempt ? t->attempt : 1;
	else
		attempt = t->attempt + 1; /* a restart is not the task's fault */
	if (attempt > GS_MAX_ATTEMPT)
		attempt = GS_MAX_ATTEMPT;
	/* The log does not keep earlier free attempts: only this restart's. */
	atomic_store_explicit(&s->free_attempts, !final && t->attempt ? 1 : 0,
	                      memory_order_relaxed);
	COUNT(e, t->queue, submitted, 1);
	if (final) {
		atomic_store_explicit(&s->word, gs_word_make(gen, 0, attempt, false, t->state),
		                      memory_order_relaxed);
		if (t->state == GS_TASK_DONE)
			COUNT(e, t->queue, done, 1);
		else if (t->state == GS_TASK_FAILED)
			COUNT(e, t->queue, failed, 1);
		else
			COUNT(e, t->queue, cancelled, 1);
	} else if (t->not_before_us > now_us) {
		/* restore_finish puts it on the delayed inbox (and marks it linked). */
		atomic_store_explicit(&s->word,
		                      gs_word_make(gen, 0, attempt, false, GS_TASK_DELAYED),
		                      memory_order_relaxed);
		/* The gauges are recounted by gs_engine_restore_finish(). */
	} else {
		/* Pushed now, in call order: FIFO within a priority survives. */
		atomic_store_explicit(&s->word, gs_word_make(gen, 0, attempt, true, GS_TASK_QUEUED),
		                      memory_order_relaxed);
		gs_task_heap_push(&e->th, t->queue, t->priority, t->id);
	}
	uint32_t hw = atomic_load_explicit(&e->tt.hdr->high_water, memory_order_relaxed);
	if (ix >= hw)
		atomic_store_explicit(&e->tt.hdr->high_water, ix + 1, memory_order_relaxed);
	return GS_OK;
}

uint32_t gs_engine_gen_high(const gs_engine *e)
{
	uint32_t high = atomic_load_explicit(&e->tt.hdr->gen_floor, memory_order_relaxed);
	uint32_t hw = atomic_load_explicit(&e->tt.hdr->high_water, memory_order_acquire);
	if (hw > e->geom.max_tasks)
		hw = e->geom.max_tasks;
	for (uint32_t ix = 0; ix < hw; ix++) {
		uint32_t g =
		    gs_word_gen(atomic_load_explicit(&e->tt.slots[ix].word, memory_order_relaxed));
		if (g > high)
			high = g;
	}
	return high ? high : 1;
}

uint32_t gs_engine_task_slots_used(const gs_engine *e)
{
	uint32_t hw = atomic_load_explicit(&e->tt.hdr->high_water, memory_order_acquire);
	return hw < e->geom.max_tasks ? hw : e->geom.max_tasks;
}

int gs_engine_task_at(const gs_engine *e, uint32_t slot, gs_task_info *out)
{
	if (!e || !out || slot >= e->geom.max_tasks)
		return GS_ENOTFOUND;
	uint64_t w = atomic_load_explicit(&e->tt.slots[slot].word, memory_order_acquire);
	uint32_t st = gs_word_state(w);
	if (st == GS_TASK_FREE || st == GS_TASK_RESERVED || st == GS_TASK_RELEASED)
		return GS_ENOTFOUND;
	return gs_engine_task_info(e, gs_task_id(slot, gs_word_gen(w)), out);
}
