/* arena.c - size-classed block allocator over pages of the segment. */
#include "arena.h"

#include "gs_error.h"

#define REF_CNT(r) ((uint32_t)((r) >> 32))
#define REF_OF(r)  ((uint32_t)(r))
#define TAG(c, r)  (((uint64_t)(c) << 32) | (uint32_t)(r))

uint32_t gs_arena_page_size(const gs_geom *g)
{
	uint32_t p = 64u * 1024u;
	while (p < g->max_payload)
		p <<= 1;
	return p;
}

uint64_t gs_arena_meta_bytes(const gs_geom *g)
{
	uint64_t pages = g->arena_bytes / gs_arena_page_size(g);
	return sizeof(struct gs_arena_hdr) + pages;
}

void gs_arena_bind(gs_arena *a, void *meta, void *data, const gs_geom *g, bool format)
{
	a->hdr = meta;
	a->page_class = (_Atomic uint8_t *)((uint8_t *)meta + sizeof(struct gs_arena_hdr));
	a->data = data;
	a->page_size = gs_arena_page_size(g);
	a->n_pages = (uint32_t)(g->arena_bytes / a->page_size);
	if (format) {
		for (uint32_t c = 0; c < GS_ARENA_CLASSES; c++)
			atomic_init(&a->hdr->free_head[c], 0);
		atomic_init(&a->hdr->next_page, 0);
		a->hdr->page_size = a->page_size;
		a->hdr->n_pages = a->n_pages;
		atomic_init(&a->hdr->bytes_in_use, 0);
		for (uint32_t p = 0; p < a->n_pages; p++)
			atomic_init(&a->page_class[p], 0);
	}
}

static uint32_t class_of(uint32_t len)
{
	uint32_t c = 0, sz = GS_ARENA_MIN_BLOCK;
	while (sz < len) {
		sz <<= 1;
		c++;
	}
	return c;
}

static inline _Atomic uint32_t *link_of(gs_arena *a, uint32_t ref)
{
	return (_Atomic uint32_t *)gs_arena_ptr(a, ref);
}

static void push(gs_arena *a, uint32_t c, uint32_t ref)
{
	_Atomic uint64_t *head = &a->hdr->free_head[c];
	uint64_t h = atomic_load_explicit(head, memory_order_relaxed);
	for (;;) {
		atomic_store_explicit(link_of(a, ref), REF_OF(h), memory_order_relaxed);
		/* release: the link is visible to the popper that acquires it. */
		if (atomic_compare_exchange_weak_explicit(head, &h, TAG(REF_CNT(h) + 1, ref),
		                                          memory_order_release,
		                                          memory_order_relaxed))
			return;
	}
}

static uint32_t pop(gs_arena *a, uint32_t c)
{
	_Atomic uint64_t *head = &a->hdr->free_head[c];
	uint64_t h = atomic_load_explicit(head, memory_order_acquire);
	for (;;) {
		uint32_t ref = REF_OF(h);
		if (ref == 0)
			return 0;
		/* Stale if the block was taken and given back meanwhile: the
		 * count then fails the CAS. */
		uint32_t next = atomic_load_explicit(link_of(a, ref), memory_order_relaxed);
		if (atomic_compare_exchange_weak_explicit(head, &h, TAG(REF_CNT(h) + 1, next),
		                                          memory_order_acquire,
		                                          memory_order_acquire))
			return ref;
	}
}

static void carve(gs_arena *a, uint32_t page, uint32_t c, uint32_t keep_first)
{
	uint32_t bsz = GS_ARENA_MIN_BLOCK << c;
	uint32_t per_page = a->page_size / bsz;
	uint32_t first = (uint32_t)((uint64_t)page * a->page_size / GS_ARENA_MIN_BLOCK) + 1;
	for (uint32_t i = per_page; i > keep_first; i--)
		push(a, c, first + (i - 1) * (bsz / GS_ARENA_MIN_BLOCK));
}

int gs_arena_alloc(gs_arena *a, uint32_t len, uint32_t *ref)
{
	if (len == 0 || len > a->page_size)
		return GS_ETOOBIG;
	uint32_t c = class_of(len);
	uint32_t r = pop(a, c);
	if (r == 0) {
		uint32_t page =
		    atomic_fetch_add_explicit(&a->hdr->next_page, 1, memory_order_relaxed);
		if (page >= a->n_pages) {
			atomic_store_explicit(&a->hdr->next_page, a->n_pages, memory_order_relaxed);
			/* Another thread may have carved a page for this class. */
			r = pop(a, c);
			if (r == 0)
				return GS_EFULL;
		} else {
			atomic_store_explicit(&a->page_class[page], (uint8_t)(c + 1),
			                      memory_order_release);
			carve(a, page, c, 1);
			r = (uint32_t)((uint64_t)page * a->page_size / GS_ARENA_MIN_BLOCK) + 1;
		}
	}
	atomic_fetch_add_explicit(&a->hdr->bytes_in_use, GS_ARENA_MIN_BLOCK << c,
	                          memory_order_relaxed);
	*ref = r;
	return GS_OK;
}

void gs_arena_free(gs_arena *a, uint32_t ref, uint32_t len)
{
	if (ref == 0 || len == 0 || len > a->page_size)
		return;
	uint32_t c = class_of(len);
	atomic_fetch_sub_explicit(&a->hdr->bytes_in_use, GS_ARENA_MIN_BLOCK << c,
	                          memory_order_relaxed);
	push(a, c, ref);
}

int gs_arena_rebuild(gs_arena *a, bool (*used)(uint32_t ref, void *arg), void *arg)
{
	uint32_t pages = atomic_load_explicit(&a->hdr->next_page, memory_order_relaxed);
	if (pages > a->n_pages)
		pages = a->n_pages;
	for (uint32_t c = 0; c < GS_ARENA_CLASSES; c++)
		atomic_store_explicit(&a->hdr->free_head[c], 0, memory_order_relaxed);
	uint64_t in_use = 0;
	for (uint32_t p = 0; p < pages; p++) {
		uint32_t c1 = atomic_load_explicit(&a->page_class[p], memory_order_acquire);
		if (c1 == 0) {
			/* Its taker died before naming the class: give it a class
			 * and carve it as free. */
			c1 = 1;
			atomic_store_explicit(&a->page_class[p], 1, memory_order_relaxed);
		}
		uint32_t c = c1 - 1, bsz = GS_ARENA_MIN_BLOCK << c;
		uint32_t first = (uint32_t)((uint64_t)p * a->page_size / GS_ARENA_MIN_BLOCK) + 1;
		for (uint32_t i = a->page_size / bsz; i > 0; i--) {
			uint32_t ref = first + (i - 1) * (bsz / GS_ARENA_MIN_BLOCK);
			if (used(ref, arg))
				in_use += bsz;
			else
				push(a, c, ref);
		}
	}
	atomic_store_explicit(&a->hdr->bytes_in_use, in_use, memory_order_relaxed);
	return GS_OK;
}
