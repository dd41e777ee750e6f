/*
 * test_histogram.c - gs_histogram: percentiles against exact ones on random
 * data (<= 1% relative error from 1 us to 60 s), bucket layout, edge values,
 * merge.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gs_error.h"
#include "histogram.h"

#define N_RANDOM 200000

static uint64_t rng_next(uint64_t *s)
{
	/* splitmix64: deterministic, so a failure reproduces. */
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static gs_histogram *new_hist(void)
{
	gs_histogram *h = malloc(sizeof(*h));
	assert_non_null(h);
	assert_int_equal(gs_histogram_init(h), GS_OK);
	return h;
}

/* Exact nearest-rank percentile of sorted v[n]. */
static uint64_t exact_pct(const uint64_t *v, size_t n, double p)
{
	if (p >= 100.0)
		return v[n - 1];
	double r = ceil(p / 100.0 * (double)n);
	size_t rank = r < 1.0 ? 1 : (size_t)r;
	return v[rank - 1];
}

static void check_against_exact(uint64_t *v, size_t n)
{
	gs_histogram *h = new_hist();
	for (size_t i = 0; i < n; i++)
		assert_int_equal(gs_histogram_record(h, v[i]), GS_OK);
	qsort(v, n, sizeof(*v), cmp_u64);
	static const double ps[] = {0, 0.1, 1, 10, 25, 50, 75, 90, 99.0, 99.9, 99.99, 99.999, 100};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		uint64_t got, want = exact_pct(v, n, ps[i]);
		assert_int_equal(gs_histogram_percentile(h, ps[i], &got), GS_OK);
		double err = fabs((double)got - (double)want) / (double)(want ? want : 1);
		if (err > 0.01)
			fail_msg("p%g: got %llu, exact %llu (%.3f%%)", ps[i],
			         (unsigned long long)got, (unsigned long long)want, err * 100);
		/* The layout promises better: half a bucket, 1/256. */
		assert_true(err <= 1.0 / 256.0 + 1e-12);
	}
	assert_int_equal(h->count, n);
	assert_int_equal(h->min, v[0]);
	assert_int_equal(h->max, v[n - 1]);
	free(h);
}

/* Log-uniform over 1 us .. 60 s: every decade of the range equally hit. */
static void test_random_log_uniform(void **state)
{
	(void)state;
	uint64_t seed = 42, *v = malloc(N_RANDOM * sizeof(*v));
	assert_non_null(v);
	for (size_t i = 0; i < N_RANDOM; i++)
		v[i] = (uint64_t)exp(rng_unit(&seed) * log(60e6));
	check_against_exact(v, N_RANDOM);
	free(v);
}

/* Latency-like: a body around 80 us plus a long tail up to seconds. */
static void test_random_latency_like(void **state)
{
	(void)state;
	uint64_t seed = 7, *v = malloc(N_RANDOM * sizeof(*v));
	assert_non_null(v);
	for (size_t i = 0; i < N_RANDOM; i++) {
		double u = rng_unit(&seed);
		double x = 60.0 + 40.0 * rng_unit(&seed);
		if (u > 0.99)
			x += -log(1.0 - rng_unit(&seed)) * 20000.0;
		v[i] = (uint64_t)x;
	}
	check_against_exact(v, N_RANDOM);
	free(v);
}

/* Narrow data (few distinct values) must come out exact below 128. */
static void test_small_values_exact(void **state)
{
	(void)state;
	uint64_t seed = 3, *v = malloc(10000 * sizeof(*v));
	assert_non_null(v);
	for (size_t i = 0; i < 10000; i++)
		v[i] = rng_next(&seed) % 128;
	gs_histogram *h = new_hist();
	for (size_t i = 0; i < 10000; i++)
		gs_histogram_record(h, v[i]);
	qsort(v, 10000, sizeof(*v), cmp_u64);
	for (double p = 0; p <= 100; p += 0.5)
		assert_int_equal(gs_histogram_value_at(h, p), exact_pct(v, 10000, p));
	free(h);
	free(v);
}

/* Buckets tile the whole range, in order, each within 1/128 of its low end. */
static void test_bucket_layout(void **state)
{
	(void)state;
	uint64_t prev_hi = 0;
	for (unsigned i = 0; i < GS_HIST_BUCKETS; i++) {
		uint64_t lo, hi;
		gs_histogram_bucket_range(i, &lo, &hi);
		if (i > 0)
			assert_true(lo == prev_hi + 1);
		assert_true(hi >= lo);
		assert_int_equal(gs_histogram_bucket_of(lo), i);
		assert_int_equal(gs_histogram_bucket_of(hi), i);
		if (lo > 0)
			assert_true((double)(hi - lo) / (double)lo <= 1.0 / 128.0);
		prev_hi = hi;
	}
	assert_true(prev_hi == UINT64_MAX);
	/* Every value 1 us .. 60 s, sampled densely: the midpoint is within 1%. */
	for (uint64_t v = 1; v <= 60000000ull; v += 1 + v / 1000) {
		uint64_t lo, hi;
		gs_histogram_bucket_range(gs_histogram_bucket_of(v), &lo, &hi);
		assert_true(lo <= v && v <= hi);
		uint64_t mid = lo + (hi - lo) / 2;
		assert_true(fabs((double)mid - (double)v) / (double)v <= 0.01);
	}
}

static void test_edges(void **state)
{
	(void)state;
	gs_histogram *h = new_hist();
	uint64_t out = 123;
	assert_int_equal(gs_histogram_percentile(h, 50, &out), GS_EEMPTY);
	assert_int_equal(gs_histogram_value_at(h, 50), 0);
	assert_true(gs_histogram_mean(h) == 0.0);
	assert_int_equal(gs_histogram_percentile(h, -1, &out), GS_EINVAL);
	assert_int_equal(gs_histogram_percentile(h, 100.5, &out), GS_EINVAL);
	assert_int_equal(gs_histogram_percentile(h, NAN, &out), GS_EINVAL);
	assert_int_equal(gs_histogram_percentile(NULL, 50, &out), GS_EINVAL);
	assert_int_equal(gs_histogram_record(NULL, 1), GS_EINVAL);
	assert_int_equal(gs_histogram_merge(NULL, h), GS_EINVAL);
	assert_int_equal(gs_histogram_init(NULL), GS_EINVAL);

	/* One value: every percentile is that value, exactly (clamped to min/max). */
	gs_histogram_record(h, 60000000);
	for (double p = 0; p <= 100; p += 10)
		assert_int_equal(gs_histogram_value_at(h, p), 60000000);

	/* 0 and the largest value. */
	gs_histogram_init(h);
	gs_histogram_record(h, 0);
	gs_histogram_record(h, UINT64_MAX);
	assert_int_equal(gs_histogram_value_at(h, 0), 0);
	assert_int_equal(gs_histogram_value_at(h, 50), 0);
	assert_true(gs_histogram_value_at(h, 100) == UINT64_MAX);
	assert_true(gs_histogram_value_at(h, 75) >= UINT64_MAX - UINT64_MAX / 128);
	assert_true(h->sum == UINT64_MAX); /* saturated, not wrapped */

	/* record_n is n records. */
	gs_histogram *g = new_hist();
	gs_histogram_init(h);
	gs_histogram_record_n(h, 1000, 5);
	gs_histogram_record_n(h, 7, 0);
	for (int i = 0; i < 5; i++)
		gs_histogram_record(g, 1000);
	assert_memory_equal(h, g, sizeof(*h));
	assert_true(gs_histogram_mean(h) == 1000.0);
	free(g);
	free(h);
}

static void test_merge(void **state)
{
	(void)state;
	gs_histogram *a = new_hist(), *b = new_hist(), *all = new_hist(), *empty = new_hist();
	uint64_t seed = 99;
	for (int i = 0; i < 50000; i++) {
		uint64_t v = (uint64_t)exp(rng_unit(&seed) * log(60e6));
		gs_histogram_record(i % 3 ? a : b, v);
		gs_histogram_record(all, v);
	}
	assert_int_equal(gs_histogram_merge(a, empty), GS_OK);
	assert_int_equal(gs_histogram_merge(a, b), GS_OK);
	assert_memory_equal(a, all, sizeof(*a));
	assert_int_equal(gs_histogram_merge(empty, all), GS_OK);
	assert_memory_equal(empty, all, sizeof(*a));
	for (double p = 0; p <= 100; p += 0.1)
		assert_int_equal(gs_histogram_value_at(a, p), gs_histogram_value_at(all, p));
	free(a);
	free(b);
	free(all);
	free(empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_random_log_uniform),
	    cmocka_unit_test(test_random_latency_like),
	    cmocka_unit_test(test_small_values_exact),
	    cmocka_unit_test(test_bucket_layout),
	    cmocka_unit_test(test_edges),
	    cmocka_unit_test(test_merge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
