/* worker_pool.c - worker slots, loads and dirty marks. */
#include "worker_pool.h"

#include "gs_error.h"

_Static_assert(sizeof(struct gs_worker_slot) == GS_CACHELINE, "a worker slot is one line");

#define W_STATE(w)      ((uint32_t)((w)&0xffu))
#define W_GEN(w)        ((uint32_t)((w) >> 32))
#define W_MAKE(gen, st) (((uint64_t)(gen) << 32) | (st))

static uint32_t leaf_words(uint32_t max_workers)
{
	return (max_workers + 63) / 64;
}

uint64_t gs_worker_pool_slots_bytes(const gs_geom *g)
{
	return (uint64_t)g->max_workers * sizeof(struct gs_worker_slot);
}

uint64_t gs_worker_pool_dirty_bytes(const gs_geom *g)
{
	uint32_t lw = leaf_words(g->max_workers);
	return ((uint64_t)lw + (lw + 63) / 64) * 8;
}

void gs_worker_pool_bind(gs_worker_pool *p, void *slots, void *dirty, uint32_t max_workers,
                         bool format)
{
	p->slots = slots;
	p->max_workers = max_workers;
	p->leaf_words = leaf_words(max_workers);
	p->summary_words = (p->leaf_words + 63) / 64;
	p->dirty_leaf = dirty;
	p->dirty_summary = (_Atomic uint64_t *)dirty + p->leaf_words;
	if (!format)
		return;
	for (uint32_t i = 0; i < max_workers; i++) {
		atomic_init(&p->slots[i].word, W_MAKE(1, GS_WORKER_FREE));
		atomic_init(&p->slots[i].load, 0);
		atomic_init(&p->slots[i].last_seen_us, 0);
		atomic_init(&p->slots[i].assigned_total, 0);
		atomic_init(&p->slots[i].finished_total, 0);
	}
	for (uint32_t i = 0; i < p->leaf_words + p->summary_words; i++)
		atomic_init(&p->dirty_leaf[i], 0);
}

void gs_worker_pool_mark_dirty(gs_worker_pool *p, uint32_t slot)
{
	uint32_t lw = slot / 64;
	uint64_t bit = 1ull << (slot % 64);
	/* seq_cst: the leaf bit, then the summary bit.  The scheduler swaps the
	 * summary to zero before the leaves, so a mark is never lost: either it
	 * sees the summary bit now, or it sees it on the next call. */
	if (!(atomic_load_explicit(&p->dirty_leaf[lw], memory_order_seq_cst) & bit))
		atomic_fetch_or_explicit(&p->dirty_leaf[lw], bit, memory_order_seq_cst);
	uint64_t sbit = 1ull << (lw % 64);
	if (!(atomic_load_explicit(&p->dirty_summary[lw / 64], memory_order_seq_cst) & sbit))
		atomic_fetch_or_explicit(&p->dirty_summary[lw / 64], sbit, memory_order_seq_cst);
}

void gs_worker_pool_take_dirty(gs_worker_pool *p, void (*fn)(uint32_t slot, void *arg), void *arg)
{
	for (uint32_t s = 0; s < p->summary_words; s++) {
		if (!atomic_load_explicit(&p->dirty_summary[s], memory_order_relaxed))
			continue;
		uint64_t sum =
		    atomic_exchange_explicit(&p->dirty_summary[s], 0, memory_order_seq_cst);
		while (sum) {
			uint32_t lw = s * 64 + (uint32_t)__builtin_ctzll(sum);
			sum &= sum - 1;
			uint64_t bits =
			    atomic_exchange_explicit(&p->dirty_leaf[lw], 0, memory_order_seq_cst);
			while (bits) {
				uint32_t slot = lw * 64 + (uint32_t)__builtin_ctzll(bits);
				bits &= bits - 1;
				fn(slot, arg);
			}
		}
	}
}

int gs_worker_pool_register(gs_worker_pool *p, uint32_t slots, uint64_t queue_mask, uint64_t now_us,
                            uint64_t *id)
{
	if (slots == 0 || slots > GS_WORKER_MAX_SLOTS || queue_mask == 0)
		return GS_EINVAL;
	for (uint32_t i = 0; i < p->max_workers; i++) {
		struct gs_worker_slot *w = &p->slots[i];
		uint64_t word = atomic_load_explicit(&w->word, memory_order_acquire);
		if (W_STATE(word) != GS_WORKER_FREE)
			continue;
		uint32_t gen = W_GEN(word);
		if (!atomic_compare_exchange_strong_explicit(
		        &w->word, &word, W_MAKE(gen, GS_WORKER_CLAIMED), memory_order_acq_rel,
		        memory_order_relaxed))
			continue;
		w->slots = slots;
		w->queue_mask = queue_mask;
		atomic_store_explicit(&w->load, 0, memory_order_relaxed);
		atomic_store_explicit(&w->last_seen_us, now_us, memory_order_relaxed);
		/* release: slots and mask are visible to whoever sees ALIVE. */
		atomic_store_explicit(&w->word, W_MAKE(gen, GS_WORKER_ALIVE), memory_order_release);
		gs_worker_pool_mark_dirty(p, i);
		*id = gs_worker_id(i, gen);
		return GS_OK;
	}
	return GS_EFULL;
}

int gs_worker_pool_lookup(const gs_worker_pool *p, uint64_t id, uint32_t *slot, uint32_t *state)
{
	uint32_t ix = (uint32_t)id;
	if (ix >= p->max_workers)
		return GS_ENOTFOUND;
	uint64_t word = atomic_load_explicit(&p->slots[ix].word, memory_order_acquire);
	uint32_t st = W_STATE(word);
	if (W_GEN(word) != (uint32_t)(id >> 32) || st == GS_WORKER_FREE || st == GS_WORKER_CLAIMED)
		return GS_ENOTFOUND;
	*slot = ix;
	*state = st;
	return GS_OK;
}

int gs_worker_pool_transition(gs_worker_pool *p, uint64_t id, uint32_t from, uint32_t to)
{
	uint32_t ix = (uint32_t)id, gen = (uint32_t)(id >> 32);
	if (ix >= p->max_workers)
		return GS_ENOTFOUND;
	uint64_t expect = W_MAKE(gen, from);
	uint32_t ngen = to == GS_WORKER_FREE ? gen + 1 : gen;
	if (ngen == 0)
		ngen = 1;
	if (!atomic_compare_exchange_strong_explicit(&p->slots[ix].word, &expect, W_MAKE(ngen, to),
	                                             memory_order_acq_rel, memory_order_acquire))
		return W_GEN(expect) != gen || W_STATE(expect) == GS_WORKER_FREE ? GS_ENOTFOUND
		                                                                 : GS_ESTATE;
	gs_worker_pool_mark_dirty(p, ix);
	return GS_OK;
}

int gs_worker_pool_heartbeat(gs_worker_pool *p, uint64_t id, uint64_t now_us)
{
	uint32_t slot, st;
	int rc = gs_worker_pool_lookup(p, id, &slot, &st);
	if (rc != GS_OK)
		return rc;
	if (st == GS_WORKER_DEAD)
		return GS_ESTATE;
	atomic_store_explicit(&p->slots[slot].last_seen_us, now_us, memory_order_relaxed);
	return GS_OK;
}

void gs_worker_pool_load_add(gs_worker_pool *p, uint32_t slot, int32_t delta)
{
	if (slot >= p->max_workers)
		return;
	if (delta < 0) {
		/* Never below zero, even if a report is counted twice. */
		uint32_t cur = atomic_load_explicit(&p->slots[slot].load, memory_order_relaxed);
		uint32_t want;
		do {
			want = cur >= (uint32_t)-delta ? cur - (uint32_t)-delta : 0;
		} while (!atomic_compare_exchange_weak_explicit(
		    &p->slots[slot].load, &cur, want, memory_order_release, memory_order_relaxed));
		atomic_fetch_add_explicit(&p->slots[slot].finished_total, (uint64_t)-delta,
		                          memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&p->slots[slot].load, (uint32_t)delta,
		                          memory_order_release);
		atomic_fetch_add_explicit(&p->slots[slot].assigned_total, (uint64_t)delta,
		                          memory_order_relaxed);
	}
	gs_worker_pool_mark_dirty(p, slot);
}
