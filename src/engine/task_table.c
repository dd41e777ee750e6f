/* task_table.c - task slots, their free list and the state machine. */
#include "task_table.h"

#include <string.h>

#include "gs_error.h"

_Static_assert(sizeof(struct gs_task_slot) == 112, "a task slot is 112 bytes");
_Static_assert(sizeof(struct gs_task_table_hdr) == 2 * GS_CACHELINE, "header is two lines");

#define TAG_IDX(t)        ((uint32_t)(t))
#define TAG_CNT(t)        ((uint32_t)((t) >> 32))
#define TAG_MAKE(cnt, ix) (((uint64_t)(cnt) << 32) | (uint32_t)(ix))

static const char *const state_names[] = {
    "FREE",       "RESERVED", "DELAYED", "QUEUED",    "ASSIGNED", "RUNNING",
    "COMPLETING", "DONE",     "FAILED",  "CANCELLED", "RELEASED",
};

const char *gs_task_state_name(uint32_t state)
{
	if (state < sizeof(state_names) / sizeof(state_names[0]))
		return state_names[state];
	return "INVALID";
}

bool gs_task_transition_legal(uint32_t from, uint32_t to)
{
	switch (from) {
	case GS_TASK_FREE:
		return to == GS_TASK_RESERVED;
	case GS_TASK_RESERVED:
		return to == GS_TASK_QUEUED || to == GS_TASK_DELAYED || to == GS_TASK_FREE;
	case GS_TASK_DELAYED:
		return to == GS_TASK_QUEUED || to == GS_TASK_CANCELLED;
	case GS_TASK_QUEUED:
		return to == GS_TASK_ASSIGNED || to == GS_TASK_CANCELLED;
	case GS_TASK_ASSIGNED:
		return to == GS_TASK_RUNNING || to == GS_TASK_COMPLETING || to == GS_TASK_QUEUED ||
		       to == GS_TASK_FAILED || to == GS_TASK_CANCELLED;
	case GS_TASK_RUNNING:
		return to == GS_TASK_COMPLETING || to == GS_TASK_QUEUED || to == GS_TASK_FAILED ||
		       to == GS_TASK_CANCELLED;
	case GS_TASK_COMPLETING:
		return to == GS_TASK_DONE || to == GS_TASK_FAILED;
	case GS_TASK_DONE:
	case GS_TASK_FAILED:
	case GS_TASK_CANCELLED:
		return to == GS_TASK_FREE || to == GS_TASK_RELEASED;
	case GS_TASK_RELEASED:
		return to == GS_TASK_FREE;
	default:
		return false;
	}
}

uint64_t gs_task_table_region_bytes(const gs_geom *g)
{
	return sizeof(struct gs_task_table_hdr) +
	       (uint64_t)g->max_tasks * sizeof(struct gs_task_slot);
}

void gs_task_table_bind(gs_task_table *t, void *region, uint32_t max_tasks, bool format)
{
	t->hdr = region;
	t->slots = (struct gs_task_slot *)((uint8_t *)region + sizeof(struct gs_task_table_hdr));
	t->max_tasks = max_tasks;
	if (format) {
		/* Slots above high_water are zero (FREE, generation 0) in a fresh
		 * mapping and are handed out without touching the rest. */
		atomic_init(&t->hdr->free_head, 0);
		atomic_init(&t->hdr->high_water, 0);
		atomic_init(&t->hdr->in_use, 0);
		atomic_init(&t->hdr->gen_floor, 0);
	}
}

/* Pops the free list (Treiber stack).  The tag's count defeats ABA: a slot
 * popped and pushed back between our read and CAS changes the count. */
static uint32_t free_list_pop(gs_task_table *t)
{
	uint64_t head = atomic_load_explicit(&t->hdr->free_head, memory_order_acquire);
	for (;;) {
		uint32_t ix1 = TAG_IDX(head);
		if (ix1 == 0)
			return UINT32_MAX;
		/* May read a link that a concurrent pop+push rewrote; the CAS
		 * below then fails on the count, so the value is never used. */
		uint32_t next = atomic_load_explicit(&t->slots[ix1 - 1].link, memory_order_relaxed);
		uint64_t want = TAG_MAKE(TAG_CNT(head) + 1, next);
		/* acquire: the slot's fields written before it was pushed. */
		if (atomic_compare_exchange_weak_explicit(&t->hdr->free_head, &head, want,
		                                          memory_order_acquire,
		                                          memory_order_acquire))
			return ix1 - 1;
	}
}

static void free_list_push(gs_task_table *t, uint32_t slot)
{
	uint64_t head = atomic_load_explicit(&t->hdr->free_head, memory_order_relaxed);
	for (;;) {
		atomic_store_explicit(&t->slots[slot].link, TAG_IDX(head), memory_order_relaxed);
		uint64_t want = TAG_MAKE(TAG_CNT(head) + 1, slot + 1);
		/* release: the link and the FREE word are visible to the popper. */
		if (atomic_compare_exchange_weak_explicit(&t->hdr->free_head, &head, want,
		                                          memory_order_release,
		                                          memory_order_relaxed))
			return;
	}
}

int gs_task_table_reserve(gs_task_table *t, uint64_t *id)
{
	uint32_t slot = free_list_pop(t);
	if (slot == UINT32_MAX) {
		uint32_t hw = atomic_load_explicit(&t->hdr->high_water, memory_order_relaxed);
		do {
			if (hw >= t->max_tasks)
				return GS_EFULL;
		} while (!atomic_compare_exchange_weak_explicit(
		    &t->hdr->high_water, &hw, hw + 1, memory_order_relaxed, memory_order_relaxed));
		slot = hw;
	}
	struct gs_task_slot *s = &t->slots[slot];
	uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
	/* Generation 0 is never used in an ID, so ID 0 means "no task"; none
	 * below the floor either (IDs issued before a restart). */
	uint32_t gen = gs_word_gen(w);
	uint32_t floor = atomic_load_explicit(&t->hdr->gen_floor, memory_order_relaxed);
	if (gen < floor)
		gen = floor;
	if (gen == 0)
		gen = 1;
	uint64_t want = gs_word_make(gen, 0, 0, false, GS_TASK_RESERVED);
	if (gs_word_state(w) != GS_TASK_FREE || !gs_task_table_cas(s, &w, want))
		return GS_ESTATE; /* only after a corrupt free list; recovery rebuilds it */
	atomic_fetch_add_explicit(&t->hdr->in_use, 1, memory_order_relaxed);
	*id = gs_task_id(slot, gen);
	return GS_OK;
}

int gs_task_table_free(gs_task_table *t, uint32_t slot, uint64_t expect)
{
	if (slot >= t->max_tasks)
		return GS_ENOTFOUND;
	uint32_t st = gs_word_state(expect);
	if (st != GS_TASK_RESERVED && st != GS_TASK_RELEASED && st != GS_TASK_DONE &&
	    st != GS_TASK_FAILED && st != GS_TASK_CANCELLED)
		return GS_ESTATE;
	uint32_t gen = gs_word_gen(expect) + 1;
	if (gen == 0)
		gen = 1;
	struct gs_task_slot *s = &t->slots[slot];
	if (!gs_task_table_cas(s, &expect, gs_word_make(gen, 0, 0, false, GS_TASK_FREE)))
		return GS_ESTATE;
	atomic_fetch_sub_explicit(&t->hdr->in_use, 1, memory_order_relaxed);
	free_list_push(t, slot);
	return GS_OK;
}

int gs_task_table_lookup(const gs_task_table *t, uint64_t id, struct gs_task_slot **slot,
                         uint64_t *word)
{
	uint32_t ix = gs_task_id_slot(id);
	if (ix >= t->max_tasks || gs_task_id_gen(id) == 0)
		return GS_ENOTFOUND;
	struct gs_task_slot *s = &t->slots[ix];
	uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
	uint32_t st = gs_word_state(w);
	if (gs_word_gen(w) != gs_task_id_gen(id) || st == GS_TASK_FREE || st == GS_TASK_RESERVED ||
	    st == GS_TASK_RELEASED)
		return GS_ENOTFOUND;
	*slot = s;
	*word = w;
	return GS_OK;
}
