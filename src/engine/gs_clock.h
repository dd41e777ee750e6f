/*
 * gs_clock.h - deadlines for timed waits: "ms milliseconds from now" as the
 * absolute struct timespec that pthread_cond_timedwait and its kin take.
 * Header only, no state; any thread.  A negative ms counts as 0.
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

#endif /* GS_CLOCK_H */
