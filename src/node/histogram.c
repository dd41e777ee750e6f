/*
 * histogram.c - gs_histogram: log-linear buckets (see histogram.h).
 */
#include <math.h>
#include <string.h>

#include "histogram.h"

unsigned gs_histogram_bucket_of(uint64_t v)
{
	if (v < GS_HIST_SUB)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
	unsigned shift = e - GS_HIST_SUB_BITS;
	/* v >> shift is in [SUB, 2 SUB): its low SUB_BITS pick the bucket. */
	return (shift + 1u) * GS_HIST_SUB + (unsigned)((v >> shift) - GS_HIST_SUB);
}

void gs_histogram_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi)
{
	unsigned block = idx / GS_HIST_SUB, m = idx % GS_HIST_SUB;
	if (block == 0) {
		*lo = *hi = m;
		return;
	}
	unsigned shift = block - 1u;
	*lo = ((uint64_t)GS_HIST_SUB + m) << shift;
	*hi = *lo + ((((uint64_t)1) << shift) - 1u);
}

int gs_histogram_init(gs_histogram *h)
{
	if (!h)
		return GS_EINVAL;
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
	return GS_OK;
}

int gs_histogram_record_n(gs_histogram *h, uint64_t v, uint64_t n)
{
	if (!h)
		return GS_EINVAL;
	if (n == 0)
		return GS_OK;
	h->buckets[gs_histogram_bucket_of(v)] += n;
	h->count += n;
	uint64_t add;
	if (__builtin_mul_overflow(v, n, &add) || __builtin_add_overflow(h->sum, add, &h->sum))
		h->sum = UINT64_MAX;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	return GS_OK;
}

int gs_histogram_record(gs_histogram *h, uint64_t v)
{
	return gs_histogram_record_n(h, v, 1);
}

int gs_histogram_merge(gs_histogram *dst, const gs_histogram *src)
{
	if (!dst || !src)
		return GS_EINVAL;
	if (src->count == 0)
		return GS_OK;
	for (unsigned i = 0; i < GS_HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	if (__builtin_add_overflow(dst->sum, src->sum, &dst->sum))
		dst->sum = UINT64_MAX;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	return GS_OK;
}

int gs_histogram_percentile(const gs_histogram *h, double p, uint64_t *out)
{
	if (!h || !out || !(p >= 0.0 && p <= 100.0))
		return GS_EINVAL;
	if (h->count == 0)
		return GS_EEMPTY;
	if (p >= 100.0) {
		*out = h->max;
		return GS_OK;
	}
	/* Nearest rank: ceil(p/100 * count), at least 1. */
	double r = ceil(p / 100.0 * (double)h->count);
	uint64_t rank = r < 1.0 ? 1 : r >= (double)h->count ? h->count : (uint64_t)r;
	uint64_t seen = 0;
	unsigned idx = 0;
	for (; idx < GS_HIST_BUCKETS; idx++) {
		seen += h->buckets[idx];
		if (seen >= rank)
			break;
	}
	uint64_t lo, hi;
	gs_histogram_bucket_range(idx < GS_HIST_BUCKETS ? idx : GS_HIST_BUCKETS - 1, &lo, &hi);
	uint64_t v = lo + (hi - lo) / 2;
	if (v < h->min)
		v = h->min;
	if (v > h->max)
		v = h->max;
	*out = v;
	return GS_OK;
}

uint64_t gs_histogram_value_at(const gs_histogram *h, double p)
{
	uint64_t v = 0;
	return gs_histogram_percentile(h, p, &v) == GS_OK ? v : 0;
}

double gs_histogram_mean(const gs_histogram *h)
{
	return h && h->count ? (double)h->sum / (double)h->count : 0.0;
}
