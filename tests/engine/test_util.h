/*
 * test_util.h - helpers shared by the engine tests: engines of a given
 * geometry, clocks, a small PRNG, and iteration scaling for sanitizer builds.
 */
#ifndef GS_TEST_UTIL_H
#define GS_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine.h"
#include "gs_error.h"

/* TSan slows these tests 10-50x: they run scaled-down counts there.  ASan
 * costs about 2x here, so its build runs the full counts. */
#if defined(__SANITIZE_THREAD__)
#define GS_TEST_SCALED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GS_TEST_SCALED 1
#endif
#endif
#ifndef GS_TEST_SCALED
#define GS_TEST_SCALED 0
#endif

/* Full count in the normal and ASan builds, full/div under TSan or when
 * GS_TEST_SCALE_DOWN is set in the environment. */
static inline uint64_t gs_test_count(uint64_t full, uint64_t div)
{
	if (GS_TEST_SCALED || getenv("GS_TEST_SCALE_DOWN"))
		return full / div ? full / div : 1;
	return full;
}

static inline uint64_t gs_test_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* xorshift64* */
static inline uint64_t gs_test_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static inline uint32_t gs_test_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(gs_test_rand(s) % n);
}

/* The "default" queue's ID in the last engine made by gs_test_engine(): not
 * necessarily 0 (queue IDs come from a hash of the name). */
static uint32_t DQ;

static inline gs_engine *gs_test_engine(uint32_t max_tasks, uint32_t max_workers,
                                        uint32_t max_payload, uint64_t arena_bytes)
{
	gs_engine_opts o;
	memset(&o, 0, sizeof(o));
	o.geom.max_tasks = max_tasks;
	o.geom.max_workers = max_workers;
	o.geom.max_payload = max_payload;
	o.geom.arena_bytes = arena_bytes;
	gs_engine *e = NULL;
	int rc = gs_engine_create(&o, &e);
	assert_int_equal(rc, GS_OK);
	assert_non_null(e);
	assert_int_equal(gs_engine_queue(e, "default", false, &DQ), GS_OK);
	return e;
}

#define GS_CHECK(e)                                                                                \
	do {                                                                                       \
		char msg_[256] = "";                                                               \
		int rc_ = gs_engine_check((e), msg_, sizeof(msg_));                                \
		if (rc_ != GS_OK)                                                                  \
			fail_msg("gs_engine_check: %s (%d)", msg_, rc_);                           \
	} while (0)

static inline gs_task_spec gs_test_spec(uint32_t queue, uint32_t prio, const void *payload,
                                        uint32_t len)
{
	gs_task_spec s;
	memset(&s, 0, sizeof(s));
	s.queue = queue;
	s.priority = prio;
	s.payload = payload;
	s.payload_len = len;
	return s;
}

#endif /* GS_TEST_UTIL_H */
