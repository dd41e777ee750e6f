/*
 * pair_overlap.c - the 2-thread push+pop pair, counted only while both
 * threads really ran at once.
 *
 * On 2 shared vCPUs a google-benchmark repetition at 2 threads is often
 * partly serialized (one thread descheduled), which hides contention.  Here
 * two threads pinned to CPUs 0 and 1 run pairs in batches of BATCH and stamp
 * each batch's start and end.  A batch counts as parallel when the other
 * thread ran back-to-back batches (gaps under GAP_NS, none of them much
 * slower than ours) for its whole span.  Prints the quartiles of wall ns per
 * pair over the parallel batches (2 threads: batch time / BATCH / 2).
 *
 * usage: pair_overlap lockfree|mutex PREFILL SECONDS
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_ops.h"

#define BATCH  128
#define MAXB   400000
#define GAP_NS 500u

struct run {
	int (*pair)(void *, uint64_t);
	void *ctx;
	double secs;
	atomic_int ready;
	atomic_int failed;
	uint64_t *st[2], *en[2];
	size_t nb[2];
};

struct arg {
	struct run *r;
	int tid;
};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void *worker(void *p)
{
	struct arg *a = p;
	struct run *r = a->r;
	cpu_set_t cs;
	CPU_ZERO(&cs);
	CPU_SET(a->tid, &cs);
	pthread_setaffinity_np(pthread_self(), sizeof(cs), &cs);
	atomic_fetch_add(&r->ready, 1);
	while (atomic_load(&r->ready) < 2)
		;
	uint64_t id = (uint64_t)(a->tid + 1) << 48;
	uint64_t t = now_ns(), end = t + (uint64_t)(r->secs * 1e9);
	size_t n = 0;
	while (t < end && n < MAXB && !atomic_load(&r->failed)) {
		r->st[a->tid][n] = t;
		for (int i = 0; i < BATCH; i++)
			if (r->pair(r->ctx, id++) != 0)
				atomic_store(&r->failed, 1);
		t = now_ns();
		r->en[a->tid][n++] = t;
	}
	r->nb[a->tid] = n;
	return NULL;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

/* Is batch i of thread a covered by back-to-back batches of thread o? */
static int parallel(const struct run *r, int a, size_t i, size_t *j)
{
	int o = 1 - a;
	uint64_t s = r->st[a][i], e = r->en[a][i], most = 0;
	while (*j < r->nb[o] && r->en[o][*j] < s)
		(*j)++;
	size_t k = *j;
	if (k >= r->nb[o] || r->st[o][k] > s)
		return 0;
	for (;; k++) {
		if (k >= r->nb[o])
			return 0;
		if (r->en[o][k] - r->st[o][k] > most)
			most = r->en[o][k] - r->st[o][k];
		if (r->en[o][k] >= e)
			break;
		if (k + 1 >= r->nb[o] || r->st[o][k + 1] - r->en[o][k] > GAP_NS)
			return 0;
	}
	/* A much slower batch of the other thread was preempted meanwhile. */
	return most <= 4 * (e - s) + 20000;
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "lockfree") && strcmp(argv[1], "mutex"))) {
		fprintf(stderr, "usage: pair_overlap lockfree|mutex PREFILL SECONDS\n");
		return 2;
	}
	int lf = strcmp(argv[1], "lockfree") == 0;
	uint32_t prefill = (uint32_t)strtoul(argv[2], NULL, 10);
	static struct run r;
	r.secs = atof(argv[3]);
	r.ctx = lf ? gs_bench_theap_new(prefill) : gs_bench_mheap_new(prefill);
	r.pair = lf ? gs_bench_theap_pair : gs_bench_mheap_pair;
	double *par = malloc(2 * MAXB * sizeof(*par));
	for (int t = 0; t < 2; t++) {
		r.st[t] = malloc(MAXB * sizeof(uint64_t));
		r.en[t] = malloc(MAXB * sizeof(uint64_t));
	}
	if (!r.ctx || !par || !r.st[0] || !r.st[1] || !r.en[0] || !r.en[1]) {
		fprintf(stderr, "pair_overlap: out of memory\n");
		return 1;
	}
	pthread_t th[2];
	struct arg args[2] = {{&r, 0}, {&r, 1}};
	for (int t = 0; t < 2; t++)
		pthread_create(&th[t], NULL, worker, &args[t]);
	for (int t = 0; t < 2; t++)
		pthread_join(th[t], NULL);
	if (atomic_load(&r.failed)) {
		fprintf(stderr, "pair_overlap: push/pop failed\n");
		return 1;
	}
	size_t np = 0, total = 0;
	for (int a = 0; a < 2; a++) {
		size_t j = 0;
		for (size_t i = 0; i < r.nb[a]; i++, total++)
			if (parallel(&r, a, i, &j))
				par[np++] = (double)(r.en[a][i] - r.st[a][i]) / BATCH / 2;
	}
	qsort(par, np, sizeof(*par), cmp_double);
	printf("%s prefill=%u parallel batches %zu/%zu: wall ns/pair p25 %.1f median %.1f "
	       "p75 %.1f\n",
	       lf ? "lockfree" : "mutex", prefill, np, total, np ? par[np / 4] : 0.0,
	       np ? par[np / 2] : 0.0, np ? par[3 * np / 4] : 0.0);
	return 0;
}
