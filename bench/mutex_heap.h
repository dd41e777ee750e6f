/*
 * mutex_heap.h - the baseline the lock-free task heap is measured against:
 * one pthread mutex around an array binary min-heap keyed by
 * (255 - priority, sequence), so strict priority and FIFO within a priority,
 * like gs_task_heap.  Benchmarks only; not part of the engine.
 *
 * Thread-safety: every function but create/destroy takes the mutex.
 * Errors: push returns -1 when full, pop returns -1 when empty, else 0.
 */
#ifndef GS_MUTEX_HEAP_H
#define GS_MUTEX_HEAP_H

#include <stdint.h>

typedef struct gs_mutex_heap gs_mutex_heap;

gs_mutex_heap *gs_mutex_heap_create(uint32_t capacity);
void gs_mutex_heap_destroy(gs_mutex_heap *h);
int gs_mutex_heap_push(gs_mutex_heap *h, uint32_t prio, uint64_t id);
int gs_mutex_heap_pop(gs_mutex_heap *h, uint64_t *id);

#endif /* GS_MUTEX_HEAP_H */
