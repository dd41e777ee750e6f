/*
 * peer_stats.c - monotonic clock, 16-byte workload encoding, latency
 * percentiles (nearest rank over the sorted samples) and the JSON line.
 */
#include "peer_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t peer_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void peer_payload(unsigned char *buf, uint64_t t_ns, uint64_t seq)
{
	memcpy(buf, &t_ns, 8);
	memcpy(buf + 8, &seq, 8);
}

void peer_payload_read(const unsigned char *buf, uint64_t *t_ns, uint64_t *seq)
{
	memcpy(t_ns, buf, 8);
	memcpy(seq, buf + 8, 8);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double pct_us(const uint64_t *s, size_t n, double p)
{
	if (n == 0)
		return 0.0;
	size_t rank = (size_t)(p * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)s[rank - 1] / 1000.0;
}

void peer_report(const char *peer, const char *mode, const char *measure, uint64_t tasks,
                 unsigned window, double elapsed_s, uint64_t *lat_ns, size_t n_lat)
{
	if (n_lat > 0)
		qsort(lat_ns, n_lat, sizeof(*lat_ns), cmp_u64);
	printf("{\"peer\":\"%s\",\"mode\":\"%s\",\"tasks\":%llu,\"window\":%u,"
	       "\"tasks_per_s\":%.0f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
	       "\"p999_us\":%.1f,\"max_us\":%.1f,\"measure\":\"%s\"}\n",
	       peer, mode, (unsigned long long)tasks, window,
	       elapsed_s > 0 ? (double)tasks / elapsed_s : 0.0, pct_us(lat_ns, n_lat, 0.50),
	       pct_us(lat_ns, n_lat, 0.90), pct_us(lat_ns, n_lat, 0.99),
	       pct_us(lat_ns, n_lat, 0.999), pct_us(lat_ns, n_lat, 1.0), measure);
	fflush(stdout);
}

unsigned long peer_parse_ulong(const char *opt, const char *val)
{
	char *end = NULL;
	unsigned long v = val ? strtoul(val, &end, 10) : 0;
	if (!val || *val == '\0' || *end != '\0' || v == 0) {
		fprintf(stderr, "%s needs a positive integer\n", opt);
		exit(2);
	}
	return v;
}
