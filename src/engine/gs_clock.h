/*
 * gs_clock.h - deadlines for timed waits: "ms milliseconds from now" as the
 * absolute struct timespec that pthread_cond_timedwait and its kin take; the
 * monotonic clock in milliseconds; a sleep.  Header only, no state; any
 * thread.  A negative ms counts as 0.
 */
#ifndef GS_CLOCK_H
#define GS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline struct timespec gs_clock_after_ms(clockid_t clk, int64_t ms)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	if (ms < 0)
		ms = 0;
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* CLOCK_MONOTONIC in milliseconds (bounded loops' deadlines). */
static inline uint64_t gs_clock_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sleeps about ms milliseconds (a signal may end it early). */
static inline void gs_clock_sleep_ms(int64_t ms)
{
	if (ms < 0)
		ms = 0;
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

#endif /* GS_CLOCK_H */
