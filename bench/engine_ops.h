/*
 * engine_ops.h - the benchmark bodies, in C, behind plain functions.
 *
 * The engine headers use C11 <stdatomic.h>, which C++ cannot include, so
 * bench_engine.cc sees only these opaque handles and calls.  Each *_new()
 * builds the shared state of one benchmark run (called by thread 0 before
 * the timed loop); each step function is one timed iteration and returns 0,
 * or a negative code (a gs_status, or -100 for an unexpected result).
 *
 * Thread-safety: the heap and batch steps may run on several threads at
 * once (each with its own `tid`); the dispatch and select steps are the
 * scheduler's, one thread only.
 */
#ifndef GS_BENCH_ENGINE_OPS_H
#define GS_BENCH_ENGINE_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GS_BENCH_PRIO     100u /* the priority the pair benchmarks push at */
#define GS_BENCH_BATCH    64u  /* tasks per gs_engine_submit call */
#define GS_BENCH_INFLIGHT 64u  /* tasks on workers during the dispatch benchmark */

/* 1. lock-free task heap (gs_task_heap bound on heap memory, no task table). */
void *gs_bench_theap_new(uint32_t prefill);
int gs_bench_theap_pair(void *ctx, uint64_t id); /* push then pop */
void gs_bench_theap_free(void *ctx);

/* 2. the mutex-protected binary heap, same operations. */
void *gs_bench_mheap_new(uint32_t prefill);
int gs_bench_mheap_pair(void *ctx, uint64_t id);
void gs_bench_mheap_free(void *ctx);

/* 3. gs_engine_submit of 64 specs, then pop_assign + finish + release each. */
void *gs_bench_batch_new(uint32_t threads);
int gs_bench_batch_step(void *ctx, uint32_t tid);
void gs_bench_batch_free(void *ctx);

/* 4. gs_engine_dispatch + gs_engine_finish of the oldest in-flight task. */
void *gs_bench_dispatch_new(uint32_t workers);
int gs_bench_dispatch_step(void *ctx);
int gs_bench_dispatch_low(const void *ctx); /* the queue needs a refill */
int gs_bench_dispatch_refill(void *ctx);    /* release finished, submit more */
void gs_bench_dispatch_free(void *ctx);

/* 4b. selection alone: two load changes, gs_worker_heap_sync + _peek. */
void *gs_bench_select_new(uint32_t workers);
int gs_bench_select_step(void *ctx);
void gs_bench_select_free(void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* GS_BENCH_ENGINE_OPS_H */
