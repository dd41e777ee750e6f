/*
 * test_memory.c - a segment holding 1,000,000 queued tasks with 16-byte
 * payloads takes at most 128 MiB, both as mapped and as resident.
 */
#include "test_util.h"

#include <sys/mman.h>
#include <unistd.h>

#define LIMIT 134217728ull /* 128 MiB */

static void t_million(void **st)
{
	(void)st;
	const uint32_t n = 1000000;
	gs_engine *e = gs_test_engine(n, 64, 65536, 1u << 20);
	gs_seg *seg = gs_engine_segment(e);
	gs_task_spec specs[1000];
	uint64_t ids[1000];
	uint8_t pl[1000][16];
	uint64_t t0 = gs_test_mono_us();
	for (uint32_t i = 0; i < n; i += 1000) {
		for (uint32_t j = 0; j < 1000; j++) {
			uint32_t k = i + j;
			memset(pl[j], 0, 16);
			memcpy(pl[j], &k, sizeof(k));
			specs[j] = gs_test_spec(DQ, k % 4, pl[j], 16);
		}
		assert_int_equal(gs_engine_submit(e, specs, 1000, 1, ids), GS_OK);
	}
	uint64_t t1 = gs_test_mono_us();
	gs_queue_stats qs;
	assert_int_equal(gs_engine_queue_stats(e, DQ, &qs), GS_OK);
	assert_int_equal(qs.queued, n);
	/* The table is full. */
	uint64_t x;
	assert_int_equal(gs_engine_submit(e, specs, 1, 1, &x), GS_EFULL);

	/* Resident pages of the mapping. */
	long page = sysconf(_SC_PAGESIZE);
	size_t pages = (seg->size + (size_t)page - 1) / (size_t)page;
	unsigned char *vec = malloc(pages);
	assert_non_null(vec);
	assert_int_equal(mincore(seg->base, seg->size, vec), 0);
	size_t resident = 0;
	for (size_t i = 0; i < pages; i++)
		resident += vec[i] & 1;
	free(vec);
	uint64_t rbytes = (uint64_t)resident * (uint64_t)page;
	printf("memory: %u queued tasks: segment %zu bytes (%.1f MiB, %.1f bytes/task), "
	       "resident %llu bytes (%.1f bytes/task); submit %.2f s\n",
	       n, seg->size, (double)seg->size / 1048576.0, (double)seg->size / n,
	       (unsigned long long)rbytes, (double)rbytes / n, (double)(t1 - t0) / 1e6);
	assert_true(seg->size <= LIMIT);
	assert_true(rbytes <= LIMIT);
	assert_true(rbytes <= seg->size);
	/* Every one is there: check a few by popping the top level (prio 3). */
	uint64_t w;
	assert_int_equal(gs_engine_worker_register(e, 1, 1ull << DQ, 1, &w), GS_OK);
	gs_assignment a;
	for (uint32_t k = 3; k < 3 + 4 * 100; k += 4) {
		assert_int_equal(gs_engine_pop_assign(e, DQ, w, 1, &a), GS_OK);
		const uint8_t *p;
		uint32_t len, got;
		assert_int_equal(gs_engine_task_payload(e, a.task, &p, &len), GS_OK);
		assert_int_equal(len, 16);
		memcpy(&got, p, sizeof(got));
		assert_int_equal(got, k);
	}
	GS_CHECK(e);
	gs_engine_close(e, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_million),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
