/* delay_timer.c - binary min-heap of delayed task IDs by due time. */
#include "delay_timer.h"

#include <stdlib.h>

#include "gs_error.h"

struct gs_delay_entry {
	uint64_t due_us;
	uint64_t task;
};

void gs_delay_timer_init(gs_delay_timer *t)
{
	t->heap = NULL;
	t->len = t->cap = 0;
}

void gs_delay_timer_free(gs_delay_timer *t)
{
	free(t->heap);
	gs_delay_timer_init(t);
}

static int push(gs_delay_timer *t, uint64_t due, uint64_t task)
{
	if (t->len == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct gs_delay_entry *h = realloc(t->heap, cap * sizeof(*h));
		if (!h)
			return GS_ENOMEM;
		t->heap = h;
		t->cap = cap;
	}
	size_t i = t->len++;
	while (i > 0 && t->heap[(i - 1) / 2].due_us > due) {
		t->heap[i] = t->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	t->heap[i] = (struct gs_delay_entry){due, task};
	return GS_OK;
}

static struct gs_delay_entry pop(gs_delay_timer *t)
{
	struct gs_delay_entry top = t->heap[0], last = t->heap[--t->len];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= t->len)
			break;
		if (c + 1 < t->len && t->heap[c + 1].due_us < t->heap[c].due_us)
			c++;
		if (last.due_us <= t->heap[c].due_us)
			break;
		t->heap[i] = t->heap[c];
		i = c;
	}
	if (t->len)
		t->heap[i] = last;
	return top;
}

int gs_delay_timer_poll(gs_delay_timer *t, gs_engine *e, uint64_t now_us, uint64_t *next_due_us,
                        size_t *released)
{
	uint64_t ids[256];
	size_t n;
	int rc = GS_OK;
	*released = 0;
	while ((n = gs_engine_delayed_take(e, ids, 256)) > 0) {
		for (size_t i = 0; i < n; i++) {
			gs_task_info info;
			if (gs_engine_task_info(e, ids[i], &info) != GS_OK ||
			    info.state != GS_TASK_DELAYED)
				continue; /* cancelled meanwhile */
			if (push(t, info.not_before_us, ids[i]) != GS_OK) {
				/* Out of memory: release it early rather than lose it. */
				gs_engine_delayed_release(e, ids[i], now_us);
				rc = GS_ENOMEM;
			}
		}
	}
	while (t->len && t->heap[0].due_us <= now_us) {
		struct gs_delay_entry d = pop(t);
		if (gs_engine_delayed_release(e, d.task, now_us) == GS_OK)
			(*released)++;
	}
	*next_due_us = t->len ? t->heap[0].due_us : 0;
	return rc;
}
