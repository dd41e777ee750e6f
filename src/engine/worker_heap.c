/* worker_heap.c - per-queue binary min-heaps of worker keys. */
#include "worker_heap.h"

#include "gs_error.h"

uint64_t gs_worker_heap_region_bytes(const gs_geom *g)
{
	return GS_MAX_QUEUES * (4ull + (uint64_t)g->max_workers * (8 + 4));
}

void gs_worker_heap_bind(gs_worker_heap *h, void *region, uint32_t max_workers, bool format)
{
	h->max_workers = max_workers;
	h->entries = region;
	h->pos = (uint32_t *)(h->entries + (uint64_t)GS_MAX_QUEUES * max_workers);
	h->size = h->pos + (uint64_t)GS_MAX_QUEUES * max_workers;
	if (format)
		for (uint32_t q = 0; q < GS_MAX_QUEUES; q++)
			h->size[q] = 0; /* pos[] is zero in a fresh mapping */
}

static inline uint32_t key_slot(uint64_t key)
{
	return (uint32_t)key;
}

static uint64_t key_of(const struct gs_worker_slot *w, uint32_t slot)
{
	uint32_t load = atomic_load_explicit(&w->load, memory_order_acquire);
	uint64_t ratio = load >= w->slots ? GS_WORKER_KEY_FULL : ((uint64_t)load << 20) / w->slots;
	return (ratio << 32) | slot;
}

static void place(gs_worker_heap *h, uint32_t q, uint32_t i, uint64_t key)
{
	h->entries[(uint64_t)q * h->max_workers + i] = key;
	h->pos[(uint64_t)q * h->max_workers + key_slot(key)] = i + 1;
}

static void sift_up(gs_worker_heap *h, uint32_t q, uint32_t i)
{
	uint64_t *e = h->entries + (uint64_t)q * h->max_workers;
	uint64_t key = e[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (e[parent] <= key)
			break;
		place(h, q, i, e[parent]);
		i = parent;
	}
	place(h, q, i, key);
}

static void sift_down(gs_worker_heap *h, uint32_t q, uint32_t i)
{
	uint64_t *e = h->entries + (uint64_t)q * h->max_workers;
	uint32_t n = h->size[q];
	uint64_t key = e[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && e[c + 1] < e[c])
			c++;
		if (key <= e[c])
			break;
		place(h, q, i, e[c]);
		i = c;
	}
	place(h, q, i, key);
}

static void heap_remove(gs_worker_heap *h, uint32_t q, uint32_t slot)
{
	uint32_t *pos = &h->pos[(uint64_t)q * h->max_workers + slot];
	if (*pos == 0)
		return;
	uint32_t i = *pos - 1;
	*pos = 0;
	uint32_t last = --h->size[q];
	if (i == last)
		return;
	uint64_t moved = h->entries[(uint64_t)q * h->max_workers + last];
	place(h, q, i, moved);
	sift_up(h, q, i);
	sift_down(h, q, h->pos[(uint64_t)q * h->max_workers + key_slot(moved)] - 1);
}

static void heap_upsert(gs_worker_heap *h, uint32_t q, uint32_t slot, uint64_t key)
{
	uint32_t pos = h->pos[(uint64_t)q * h->max_workers + slot];
	uint32_t i;
	if (pos == 0) {
		i = h->size[q]++;
	} else {
		i = pos - 1;
	}
	place(h, q, i, key);
	sift_up(h, q, i);
	sift_down(h, q, h->pos[(uint64_t)q * h->max_workers + slot] - 1);
}

struct sync_arg {
	gs_worker_heap *h;
	gs_worker_pool *p;
};

static void rekey(uint32_t slot, void *arg)
{
	struct sync_arg *a = arg;
	if (slot >= a->h->max_workers)
		return;
	const struct gs_worker_slot *w = &a->p->slots[slot];
	uint64_t word = atomic_load_explicit(&w->word, memory_order_acquire);
	bool alive = (word & 0xff) == GS_WORKER_ALIVE;
	uint64_t key = alive ? key_of(w, slot) : 0;
	if (!alive) {
		for (uint32_t q = 0; q < GS_MAX_QUEUES; q++)
			heap_remove(a->h, q, slot);
		return;
	}
	/* The slot may have died and been re-registered with another mask
	 * since the last sync (its dirty marks merge into one): leave the
	 * heaps of queues it no longer serves, then re-key its own. */
	uint64_t mask = w->queue_mask;
	for (uint32_t q = 0; q < GS_MAX_QUEUES; q++) {
		if (mask >> q & 1)
			heap_upsert(a->h, q, slot, key);
		else
			heap_remove(a->h, q, slot);
	}
}

void gs_worker_heap_sync(gs_worker_heap *h, gs_worker_pool *p)
{
	struct sync_arg a = {h, p};
	gs_worker_pool_take_dirty(p, rekey, &a);
}

int gs_worker_heap_peek(const gs_worker_heap *h, uint32_t q, uint32_t *slot)
{
	if (q >= GS_MAX_QUEUES)
		return GS_EINVAL;
	if (h->size[q] == 0)
		return GS_EEMPTY;
	uint64_t top = h->entries[(uint64_t)q * h->max_workers];
	if ((top >> 32) >= GS_WORKER_KEY_FULL)
		return GS_EEMPTY;
	*slot = key_slot(top);
	return GS_OK;
}

void gs_worker_heap_rebuild(gs_worker_heap *h, gs_worker_pool *p)
{
	for (uint32_t q = 0; q < GS_MAX_QUEUES; q++) {
		for (uint32_t i = 0; i < h->size[q]; i++)
			h->pos[(uint64_t)q * h->max_workers +
			       key_slot(h->entries[(uint64_t)q * h->max_workers + i])] = 0;
		h->size[q] = 0;
	}
	/* Positions of workers absent from every heap may be garbage after a
	 * crash mid-sift: clear them all. */
	for (uint64_t i = 0; i < (uint64_t)GS_MAX_QUEUES * h->max_workers; i++)
		h->pos[i] = 0;
	struct sync_arg a = {h, p};
	gs_worker_pool_take_dirty(p, rekey, &a); /* drop stale marks */
	for (uint32_t s = 0; s < h->max_workers; s++)
		rekey(s, &a);
}
