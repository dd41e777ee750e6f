/*
 * delay_timer.h - the scheduler's timer of delayed tasks.
 *
 * Owns: a process-local binary min-heap of (due time, task ID).  The engine
 * keeps a delayed task in state DELAYED and hands its ID over through
 * gs_engine_delayed_take(); the timer releases it into the task heap
 * (gs_engine_delayed_release) once due.  A cancelled task is skipped when its
 * time comes.  After a restart, gs_engine_recover() puts every DELAYED task
 * back in the engine's inbox, so the timer is rebuilt by the same path.
 *
 * Thread-safety: one thread (the Main Scheduler) owns a timer.
 * Errors: GS_ENOMEM.
 */
#ifndef GS_DELAY_TIMER_H
#define GS_DELAY_TIMER_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

typedef struct gs_delay_timer {
	struct gs_delay_entry *heap; /* owned */
	size_t len, cap;
} gs_delay_timer;

void gs_delay_timer_init(gs_delay_timer *t);
void gs_delay_timer_free(gs_delay_timer *t);

/*
 * Takes newly delayed tasks from the engine, releases every due one, and
 * returns how many were released; *next_due_us receives the earliest
 * remaining due time (0: none).
 */
int gs_delay_timer_poll(gs_delay_timer *t, gs_engine *e, uint64_t now_us, uint64_t *next_due_us,
                        size_t *released);

#endif /* GS_DELAY_TIMER_H */
