/*
 * engine_memory.c - bytes per task of a segment holding 1,000,000 queued
 * 16-byte tasks (geometry: max_tasks 1,000,000, max_workers 64, max_payload
 * 65536, arena 1 MiB).  Prints the segment's regions, its mapped size and
 * its resident size (mincore) once the tasks are queued, each per task.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine.h"
#include "gs_error.h"

#define N_TASKS 1000000u
#define BATCH   1000u

static uint64_t resident_bytes(const gs_seg *s)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t pages = (s->size + (size_t)page - 1) / (size_t)page;
	unsigned char *vec = malloc(pages);
	if (!vec || mincore(s->base, s->size, vec) != 0) {
		free(vec);
		return 0;
	}
	uint64_t n = 0;
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1u;
	free(vec);
	return n * (uint64_t)page;
}

static void row(const char *name, uint64_t bytes)
{
	printf("  %-28s %12llu B  %8.2f B/task\n", name, (unsigned long long)bytes,
	       (double)bytes / N_TASKS);
}

int main(void)
{
	gs_engine_opts o = {0};
	o.geom.max_tasks = N_TASKS;
	o.geom.max_workers = 64;
	o.geom.max_payload = 65536;
	o.geom.arena_bytes = 1u << 20;
	gs_engine *e;
	int rc = gs_engine_create(&o, &e);
	if (rc != GS_OK) {
		fprintf(stderr, "gs_engine_create: %s\n", gs_strerror(rc));
		return 1;
	}
	uint32_t q;
	gs_engine_queue(e, "default", false, &q);
	static const uint8_t payload[16] = "0123456789abcde";
	gs_task_spec specs[BATCH];
	uint64_t ids[BATCH];
	for (uint32_t i = 0; i < BATCH; i++) {
		memset(&specs[i], 0, sizeof(specs[i]));
		specs[i].queue = q;
		specs[i].priority = i % 256;
		specs[i].payload = payload;
		specs[i].payload_len = sizeof(payload);
	}
	for (uint32_t n = 0; n < N_TASKS; n += BATCH) {
		rc = gs_engine_submit(e, specs, BATCH, 1, ids);
		if (rc != GS_OK) {
			fprintf(stderr, "gs_engine_submit after %u: %s\n", n, gs_strerror(rc));
			return 1;
		}
	}
	gs_queue_stats st;
	gs_engine_queue_stats(e, q, &st);

	gs_seg *s = gs_engine_segment(e);
	const gs_layout *L = &s->hdr->layout;
	printf("engine_memory: %u queued tasks of 16 bytes (queued counter: %llu)\n", N_TASKS,
	       (unsigned long long)st.queued);
	printf("geometry: max_tasks %u, max_workers %u, max_payload %u, arena %llu B\n",
	       o.geom.max_tasks, o.geom.max_workers, o.geom.max_payload,
	       (unsigned long long)o.geom.arena_bytes);
	printf("regions (page-aligned):\n");
	row("header", L->tasks);
	row("task table", L->nodes - L->tasks);
	row("task heap nodes", L->levels - L->nodes);
	row("task heap levels", L->queues - L->levels);
	row("task heap queues", L->workers - L->queues);
	row("worker pool", L->wheap - L->workers);
	row("worker heap", L->dirty - L->wheap);
	row("dirty bitmaps", L->pages - L->dirty);
	row("arena page map", L->arena - L->pages);
	row("arena", L->keys - L->arena);
	row("idempotency keys", L->roles - L->keys);
	row("roles (rings)", L->total - L->roles);
	printf("totals:\n");
	row("segment mapped", L->total);
	row("segment resident", resident_bytes(s));
	row("mapped without arena", L->arena + (L->total - L->keys));
	gs_engine_close(e, false);
	return 0;
}
