/* idem_table.c - idempotency keys in the segment (see idem_table.h). */
#include "idem_table.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gs_error.h"

#define TAG_MASK 0x1fffffffu

static inline uint32_t w_state(uint64_t w)
{
	return (uint32_t)(w & 7u);
}
static inline uint32_t w_tag(uint64_t w)
{
	return (uint32_t)((w >> 3) & TAG_MASK);
}
static inline uint32_t w_h32(uint64_t w)
{
	return (uint32_t)(w >> 32);
}
static inline uint64_t w_make(uint32_t h32, uint32_t tag, uint32_t state)
{
	return ((uint64_t)h32 << 32) | ((uint64_t)(tag & TAG_MASK) << 3) | (state & 7u);
}

static uint64_t key_hash(uint64_t seed, const uint8_t *k, uint32_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed ^ n; /* FNV-1a, then a final mix */
	for (uint32_t i = 0; i < n; i++) {
		h ^= k[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

uint64_t gs_idem_region_bytes(const gs_geom *g)
{
	return sizeof(struct gs_idem_hdr) + (uint64_t)g->max_keys * sizeof(struct gs_idem_entry);
}

void gs_idem_bind(gs_idem_table *t, void *region, const gs_geom *g, const gs_task_table *tt,
                  gs_arena *arena, bool format)
{
	t->hdr = region;
	t->ent = (struct gs_idem_entry *)((uint8_t *)region + sizeof(struct gs_idem_hdr));
	t->tt = tt;
	t->arena = arena;
	if (format) {
		/* Entries are zero (EMPTY) in a new mapping: only the header is written. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		t->hdr->capacity = g->max_keys;
		t->hdr->window = g->max_keys < GS_IDEM_WINDOW ? g->max_keys : GS_IDEM_WINDOW;
		t->hdr->seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
		               ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)region;
	}
	t->mask = t->hdr->capacity - 1;
	t->window = t->hdr->window;
}

uint32_t gs_idem_capacity(const gs_idem_table *t)
{
	return t->mask + 1;
}

uint32_t gs_idem_max_ids(const gs_idem_table *t)
{
	uint32_t n = t->arena->page_size / 8u;
	return n > GS_IDEM_INLINE_IDS ? n : GS_IDEM_INLINE_IDS;
}

/* Whether a task ID still names a task (RESERVED counts: being published). */
static bool task_alive(const gs_task_table *tt, uint64_t id)
{
	uint32_t ix = gs_task_id_slot(id);
	if (ix >= tt->max_tasks || gs_task_id_gen(id) == 0)
		return false;
	uint64_t w = atomic_load_explicit(&tt->slots[ix].word, memory_order_acquire);
	uint32_t st = gs_word_state(w);
	return gs_word_gen(w) == gs_task_id_gen(id) && st != GS_TASK_FREE && st != GS_TASK_RELEASED;
}

/* The entry's IDs (inline or in its arena block); n read with them. */
/* The entry's IDs, or NULL when ref (read without holding the entry) names
 * no block of the arena: a torn read of an entry being reused. */
static const uint64_t *ids_of(const gs_idem_table *t, const struct gs_idem_entry *e, uint32_t n,
                              uint32_t ref)
{
	if (n <= GS_IDEM_INLINE_IDS)
		return e->ids;
	uint64_t blocks = (uint64_t)t->arena->n_pages * t->arena->page_size / GS_ARENA_MIN_BLOCK;
	if (ref == GS_REF_NONE || ref > blocks ||
	    ((uint64_t)ref - 1) * GS_ARENA_MIN_BLOCK + (uint64_t)n * 8u >
	        (uint64_t)t->arena->n_pages * t->arena->page_size)
		return NULL;
	return (const uint64_t *)(const void *)gs_arena_ptr(t->arena, ref);
}

static bool any_alive(const gs_idem_table *t, const uint64_t *ids, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (task_alive(t->tt, ids[i]))
			return true;
	return false;
}

/* True when the entry's word is still w: what was read since is consistent. */
static bool unchanged(const struct gs_idem_entry *e, uint64_t w)
{
	/* A read-don't-modify-write (fetch_or 0) instead of an acquire fence
	 * and a load: its release half keeps the plain field reads above
	 * before it, and as an RMW it reads the latest word, so an unchanged
	 * word proves they saw no later writer.  (ThreadSanitizer models no
	 * fences; this costs a line write on a path taken only by keyed
	 * submits.) */
	return atomic_fetch_or_explicit(&((struct gs_idem_entry *)e)->word, 0,
	                                memory_order_acq_rel) == w;
}

enum { M_NO, M_YES, M_TORN };

/* Does the KEYED/LIVE entry read in word w hold this key? */
static int key_match(const struct gs_idem_entry *e, uint64_t w, uint64_t h, const void *key,
                     uint32_t len)
{
	uint32_t kl = e->key_len;
	bool same =
	    e->hash == h && kl == len && kl <= GS_IDEM_MAX_KEY && memcmp(e->key, key, len) == 0;
	if (!unchanged(e, w))
		return M_TORN;
	return same ? M_YES : M_NO;
}

/* LIVE -> DEAD; the winner of the CAS frees the entry's arena block. */
static void kill_entry(gs_idem_table *t, struct gs_idem_entry *e, uint64_t w)
{
	uint32_t n = e->n, ref = e->ids_ref; /* valid if the CAS below succeeds */
	uint64_t dead = w_make(w_h32(w), w_tag(w), GS_IDEM_DEAD);
	/* acq_rel: the reads above happen before the entry can be reused. */
	if (atomic_compare_exchange_strong_explicit(&e->word, &w, dead, memory_order_acq_rel,
	                                            memory_order_relaxed) &&
	    n > GS_IDEM_INLINE_IDS && ref != GS_REF_NONE)
		gs_arena_free(t->arena, ref, n * 8u);
}

static void fill_info(const struct gs_idem_entry *e, gs_idem_info *info)
{
	if (!info)
		return;
	uint32_t kl = e->key_len <= GS_IDEM_MAX_KEY ? e->key_len : GS_IDEM_MAX_KEY;
	info->key_len = kl;
	memcpy(info->key, e->key, kl);
	info->digest = e->digest;
	info->created_us = e->created_us;
	info->n = e->n;
}

/* Frees LIVE entries of the window none of whose tasks is left; returns how many. */
static uint32_t reap_window(gs_idem_table *t, uint32_t start)
{
	uint32_t reaped = 0;
	for (uint32_t k = 0; k < t->window; k++) {
		struct gs_idem_entry *e = &t->ent[(start + k) & t->mask];
		uint64_t w = atomic_load_explicit(&e->word, memory_order_acquire);
		if (w_state(w) != GS_IDEM_LIVE)
			continue;
		uint32_t n = e->n, ref = e->ids_ref;
		if (n == 0 || n > gs_idem_max_ids(t))
			continue; /* torn: the word check below would fail anyway */
		const uint64_t *src = ids_of(t, e, n, ref);
		if (!src)
			continue; /* torn */
		bool alive = any_alive(t, src, n);
		if (!unchanged(e, w) || alive)
			continue;
		kill_entry(t, e, w);
		reaped++;
	}
	return reaped;
}

enum { LIVE_OK, LIVE_MISMATCH, LIVE_DEAD, LIVE_TORN };

/* A LIVE entry holding the key: copy its IDs if they match the request. */
static int read_live(const gs_idem_table *t, const struct gs_idem_entry *e, uint64_t w,
                     uint64_t digest, uint32_t n, uint64_t *ids, gs_idem_info *info)
{
	uint32_t en = e->n, ref = e->ids_ref;
	uint64_t ed = e->digest;
	if (en == 0 || en > gs_idem_max_ids(t))
		return unchanged(e, w) ? LIVE_DEAD : LIVE_TORN;
	const uint64_t *src = ids_of(t, e, en, ref);
	if (!src)
		return LIVE_TORN;
	bool alive = any_alive(t, src, en);
	bool match = en == n && ed == digest;
	if (match)
		memcpy(ids, src, (size_t)n * 8u);
	else
		fill_info(e, info);
	if (!unchanged(e, w))
		return LIVE_TORN;
	if (!alive)
		return LIVE_DEAD;
	return match ? LIVE_OK : LIVE_MISMATCH;
}

int gs_idem_begin(gs_idem_table *t, const void *key, uint32_t key_len, uint64_t digest, uint32_t n,
                  uint64_t now_us, uint64_t *ids, bool *existing, uint32_t *slot,
                  gs_idem_info *info)
{
	if (!t || !key || key_len == 0 || key_len > GS_IDEM_MAX_KEY || n == 0 || !ids ||
	    !existing || !slot)
		return GS_EINVAL;
	*existing = false;
	if (n > gs_idem_max_ids(t))
		return GS_ETOOBIG;
	uint64_t h = key_hash(t->hdr->seed, key, key_len);
	uint32_t h32 = (uint32_t)(h >> 32), start = (uint32_t)h & t->mask;
restart:
	for (;;) {
		int32_t free_ix = -1;
		uint64_t free_w = 0;
		bool busy = false;
		/* 1. Is the key there?  Remember the first free entry. */
		for (uint32_t k = 0; k < t->window; k++) {
			uint32_t i = (start + k) & t->mask;
			struct gs_idem_entry *e = &t->ent[i];
			/* acquire: an entry's fields are visible with KEYED/LIVE. */
			uint64_t w = atomic_load_explicit(&e->word, memory_order_acquire);
			uint32_t st = w_state(w);
			if (st == GS_IDEM_EMPTY || st == GS_IDEM_DEAD) {
				if (free_ix < 0) {
					free_ix = (int32_t)i;
					free_w = w;
				}
				continue;
			}
			if (w_h32(w) != h32)
				continue;
			if (st == GS_IDEM_CLAIMED) {
				busy = true; /* maybe ours, key not written yet */
				continue;
			}
			int m = key_match(e, w, h, key, key_len);
			if (m == M_TORN)
				goto restart;
			if (m == M_NO)
				continue;
			if (st == GS_IDEM_KEYED) {
				busy = true; /* ours, being submitted right now */
				continue;
			}
			switch (read_live(t, e, w, digest, n, ids, info)) {
			case LIVE_OK:
				*existing = true;
				return GS_OK;
			case LIVE_MISMATCH:
				*existing = true;
				return GS_ESTATE;
			case LIVE_DEAD:
				kill_entry(t, e, w); /* its tasks are gone: so is the key */
				goto restart;
			default:
				goto restart;
			}
		}
		if (busy)
			return GS_EBUSY;
		if (free_ix < 0) {
			if (reap_window(t, start) > 0)
				continue;
			return GS_EFULL;
		}

		/* 2. Claim the free entry.  seq_cst: ordered before the loads of
		 * step 3 for every inserter (see the header: store-load order). */
		struct gs_idem_entry *e = &t->ent[free_ix];
		uint64_t mine = w_make(h32, w_tag(free_w) + 1, GS_IDEM_CLAIMED);
		if (!atomic_compare_exchange_strong_explicit(
		        &e->word, &free_w, mine, memory_order_seq_cst, memory_order_relaxed))
			continue;
#ifndef __SANITIZE_THREAD__
		/* Orders the claim before the field stores below for a reader on
		 * another CPU (a seqlock writer's fence): on a weakly ordered CPU
		 * a later plain store may otherwise become visible before the
		 * CAS's store, and a reader could see new fields with the old
		 * word.  A no-op on x86.  (gcc refuses fences under TSan, which
		 * runs on x86 only here.) */
		atomic_thread_fence(memory_order_release);
#endif
		e->hash = h;
		e->digest = digest;
		e->created_us = now_us;
		e->n = n;
		e->ids_ref = GS_REF_NONE;
		e->key_len = (uint16_t)key_len;
		memcpy(e->key, key, key_len);
		uint64_t keyed = w_make(h32, w_tag(mine), GS_IDEM_KEYED);
		/* seq_cst (a release too): the key above is visible with KEYED. */
		atomic_store_explicit(&e->word, keyed, memory_order_seq_cst);

		/* 3. Did another inserter of this key claim meanwhile? */
		bool conflict = false, live_twin = false;
		for (uint32_t k = 0; k < t->window && !conflict; k++) {
			uint32_t i = (start + k) & t->mask;
			if (i == (uint32_t)free_ix)
				continue;
			struct gs_idem_entry *o = &t->ent[i];
			/* seq_cst: pairs with the other inserter's claim (step 2). */
			uint64_t w = atomic_load_explicit(&o->word, memory_order_seq_cst);
			uint32_t st = w_state(w);
			if (w_h32(w) != h32 || st == GS_IDEM_EMPTY || st == GS_IDEM_DEAD)
				continue;
			if (st == GS_IDEM_CLAIMED) {
				conflict = true;
				continue;
			}
			int m = key_match(o, w, h, key, key_len);
			if (m != M_NO) {
				conflict = true; /* a torn read counts: back off to be safe */
				live_twin = m == M_YES && st == GS_IDEM_LIVE;
			}
		}
		if (conflict) {
			/* release: nothing of ours is read after DEAD. */
			atomic_store_explicit(&e->word, w_make(h32, w_tag(mine), GS_IDEM_DEAD),
			                      memory_order_release);
			if (live_twin)
				continue; /* it is there now: answer from it */
			return GS_EBUSY;
		}

		/* 4. Room for the IDs. */
		if (n > GS_IDEM_INLINE_IDS) {
			uint32_t ref;
			if (gs_arena_alloc(t->arena, n * 8u, &ref) != GS_OK) {
				atomic_store_explicit(&e->word,
				                      w_make(h32, w_tag(mine), GS_IDEM_DEAD),
				                      memory_order_release);
				return GS_EFULL;
			}
			e->ids_ref = ref;
		}
		*slot = (uint32_t)free_ix;
		return GS_OK;
	}
}

void gs_idem_commit(gs_idem_table *t, uint32_t slot, const uint64_t *ids)
{
	struct gs_idem_entry *e = &t->ent[slot & t->mask];
	uint64_t *dst = (uint64_t *)(void *)ids_of(t, e, e->n, e->ids_ref);
	memcpy(dst, ids, (size_t)e->n * 8u);
	uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
	/* release: the IDs above are visible with LIVE. */
	atomic_store_explicit(&e->word, w_make(w_h32(w), w_tag(w), GS_IDEM_LIVE),
	                      memory_order_release);
}

void gs_idem_abort(gs_idem_table *t, uint32_t slot)
{
	struct gs_idem_entry *e = &t->ent[slot & t->mask];
	if (e->n > GS_IDEM_INLINE_IDS && e->ids_ref != GS_REF_NONE)
		gs_arena_free(t->arena, e->ids_ref, e->n * 8u);
	e->ids_ref = GS_REF_NONE;
	uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
	/* release: our writes happen before anyone reuses the entry. */
	atomic_store_explicit(&e->word, w_make(w_h32(w), w_tag(w), GS_IDEM_DEAD),
	                      memory_order_release);
}

int gs_idem_at(const gs_idem_table *t, uint32_t index, gs_idem_info *info, uint64_t *ids,
               size_t cap)
{
	if (!t || !info || index > t->mask)
		return GS_ENOTFOUND;
	const struct gs_idem_entry *e = &t->ent[index];
	/* acquire: the fields are visible with LIVE. */
	uint64_t w = atomic_load_explicit(&e->word, memory_order_acquire);
	if (w_state(w) != GS_IDEM_LIVE)
		return GS_ENOTFOUND;
	fill_info(e, info);
	uint32_t n = info->n, ref = e->ids_ref;
	if (n == 0 || n > gs_idem_max_ids(t))
		return unchanged(e, w) ? GS_ENOTFOUND : GS_EBUSY;
	const uint64_t *src = ids_of(t, e, n, ref);
	if (!src)
		return GS_EBUSY; /* torn */
	bool alive = any_alive(t, src, n);
	if (ids)
		memcpy(ids, src, (n < cap ? n : cap) * 8u);
	if (!unchanged(e, w))
		return GS_EBUSY;
	return alive ? GS_OK : GS_ENOTFOUND;
}

int gs_idem_restore(gs_idem_table *t, const void *key, uint32_t key_len, uint64_t digest,
                    uint64_t created_us, const uint64_t *ids, uint32_t n)
{
	if (!t || !key || key_len == 0 || key_len > GS_IDEM_MAX_KEY || n == 0 || !ids)
		return GS_EINVAL;
	if (n > gs_idem_max_ids(t))
		return GS_ETOOBIG;
	if (!any_alive(t, ids, n))
		return GS_ENOTFOUND;
	/* Quiescent: the insert path, with nobody to race. */
	uint64_t *scratch = malloc((size_t)n * 8u);
	if (!scratch)
		return GS_ENOMEM;
	bool existing = false;
	uint32_t slot;
	int rc =
	    gs_idem_begin(t, key, key_len, digest, n, created_us, scratch, &existing, &slot, NULL);
	free(scratch);
	if (existing)
		return GS_ESTATE;
	if (rc != GS_OK)
		return rc;
	gs_idem_commit(t, slot, ids);
	return GS_OK;
}

void gs_idem_each_live(const gs_idem_table *t,
                       void (*fn)(const uint64_t *ids, uint32_t n, void *arg), void *arg)
{
	for (uint32_t i = 0; i <= t->mask; i++) {
		const struct gs_idem_entry *e = &t->ent[i];
		uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
		uint32_t n = e->n;
		if (w_state(w) != GS_IDEM_LIVE || n == 0 || n > gs_idem_max_ids(t))
			continue;
		const uint64_t *ids = ids_of(t, e, n, e->ids_ref);
		if (ids)
			fn(ids, n, arg);
	}
}

uint32_t gs_idem_repair(gs_idem_table *t, void (*mark)(uint32_t ref, void *arg), void *arg)
{
	uint32_t live = 0;
	for (uint32_t i = 0; i <= t->mask; i++) {
		struct gs_idem_entry *e = &t->ent[i];
		uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
		uint32_t st = w_state(w);
		uint64_t dead = w_make(w_h32(w), w_tag(w), GS_IDEM_DEAD);
		if (st == GS_IDEM_CLAIMED || st == GS_IDEM_KEYED) {
			/* Never committed: its tasks were never published. */
			atomic_store_explicit(&e->word, dead, memory_order_relaxed);
			continue;
		}
		if (st != GS_IDEM_LIVE)
			continue;
		uint32_t n = e->n;
		const uint64_t *ids =
		    n && n <= gs_idem_max_ids(t) ? ids_of(t, e, n, e->ids_ref) : NULL;
		if (!ids || e->key_len == 0 || e->key_len > GS_IDEM_MAX_KEY ||
		    !any_alive(t, ids, n)) {
			/* Its block (if any) is not marked: the arena rebuild frees it. */
			atomic_store_explicit(&e->word, dead, memory_order_relaxed);
			continue;
		}
		if (n > GS_IDEM_INLINE_IDS && mark)
			mark(e->ids_ref, arg);
		live++;
	}
	return live;
}
