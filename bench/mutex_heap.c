/* mutex_heap.c - pthread mutex + array binary heap (the benchmark baseline). */
#include "mutex_heap.h"

#include <pthread.h>
#include <stdlib.h>

struct entry {
	uint64_t key; /* (255 - prio) << 56 | sequence: smaller runs first */
	uint64_t id;
};

struct gs_mutex_heap {
	pthread_mutex_t mu;
	uint64_t seq;
	uint32_t size, cap;
	struct entry *e;
};

gs_mutex_heap *gs_mutex_heap_create(uint32_t capacity)
{
	gs_mutex_heap *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->e = calloc(capacity ? capacity : 1, sizeof(*h->e));
	if (!h->e || pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h->e);
		free(h);
		return NULL;
	}
	h->cap = capacity;
	return h;
}

void gs_mutex_heap_destroy(gs_mutex_heap *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->mu);
	free(h->e);
	free(h);
}

int gs_mutex_heap_push(gs_mutex_heap *h, uint32_t prio, uint64_t id)
{
	pthread_mutex_lock(&h->mu);
	if (h->size == h->cap) {
		pthread_mutex_unlock(&h->mu);
		return -1;
	}
	struct entry x = {
	    ((uint64_t)(255u - (prio & 0xffu)) << 56) | (h->seq++ & ((1ull << 56) - 1)), id};
	uint32_t i = h->size++;
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (h->e[parent].key <= x.key)
			break;
		h->e[i] = h->e[parent];
		i = parent;
	}
	h->e[i] = x;
	pthread_mutex_unlock(&h->mu);
	return 0;
}

int gs_mutex_heap_pop(gs_mutex_heap *h, uint64_t *id)
{
	pthread_mutex_lock(&h->mu);
	if (h->size == 0) {
		pthread_mutex_unlock(&h->mu);
		return -1;
	}
	*id = h->e[0].id;
	struct entry x = h->e[--h->size];
	uint32_t n = h->size, i = 0;
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && h->e[c + 1].key < h->e[c].key)
			c++;
		if (x.key <= h->e[c].key)
			break;
		h->e[i] = h->e[c];
		i = c;
	}
	if (n > 0)
		h->e[i] = x;
	pthread_mutex_unlock(&h->mu);
	return 0;
}
