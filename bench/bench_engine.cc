// bench_engine.cc - google-benchmark registrations; the bodies are C
// (engine_ops.c).  Shared state is built by thread 0 before the timed loop
// and freed after it (the loop's start and end are barriers for all threads).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>

#include "engine_ops.h"

namespace
{

void *g_ctx;

void need(void *ctx, const char *what)
{
	if (!ctx) {
		std::fprintf(stderr, "bench_engine: %s setup failed\n", what);
		std::abort();
	}
}

uint64_t id_base(const benchmark::State &state)
{
	return (uint64_t)(state.thread_index() + 1) << 48;
}

template <void *(*New)(uint32_t), int (*Pair)(void *, uint64_t), void (*Free)(void *)>
void pair_bench(benchmark::State &state, const char *what)
{
	if (state.thread_index() == 0) {
		g_ctx = New((uint32_t)state.range(0));
		need(g_ctx, what);
	}
	uint64_t id = id_base(state);
	for (auto _ : state) {
		if (Pair(g_ctx, id++) != 0) {
			state.SkipWithError("push/pop failed");
			break;
		}
	}
	state.SetItemsProcessed(state.iterations());
	if (state.thread_index() == 0)
		Free(g_ctx);
}

// 1. push + pop on the lock-free gs_task_heap (no task table involved).
void BM_TaskHeapPair(benchmark::State &state)
{
	pair_bench<gs_bench_theap_new, gs_bench_theap_pair, gs_bench_theap_free>(state,
	                                                                         "task heap");
}

// 2. the same on the mutex-protected binary heap.
void BM_MutexHeapPair(benchmark::State &state)
{
	pair_bench<gs_bench_mheap_new, gs_bench_mheap_pair, gs_bench_mheap_free>(state,
	                                                                         "mutex heap");
}

// 3. gs_engine_submit(64 specs) then pop_assign + finish + release each.
void BM_BatchSubmitDrain(benchmark::State &state)
{
	if (state.thread_index() == 0) {
		g_ctx = gs_bench_batch_new((uint32_t)state.threads());
		need(g_ctx, "batch");
	}
	uint32_t tid = (uint32_t)state.thread_index();
	for (auto _ : state) {
		if (gs_bench_batch_step(g_ctx, tid) != 0) {
			state.SkipWithError("batch step failed");
			break;
		}
	}
	state.SetItemsProcessed(state.iterations() * GS_BENCH_BATCH);
	if (state.thread_index() == 0)
		gs_bench_batch_free(g_ctx);
}

// 4. gs_engine_dispatch + gs_engine_finish (64 tasks in flight); the queue is
// refilled with the timer paused every 4096 dispatches.
void BM_DispatchFinish(benchmark::State &state)
{
	void *ctx = gs_bench_dispatch_new((uint32_t)state.range(0));
	need(ctx, "dispatch");
	for (auto _ : state) {
		if (gs_bench_dispatch_step(ctx) != 0) {
			state.SkipWithError("dispatch step failed");
			break;
		}
		if (gs_bench_dispatch_low(ctx)) {
			state.PauseTiming();
			if (gs_bench_dispatch_refill(ctx) != 0)
				state.SkipWithError("refill failed");
			state.ResumeTiming();
		}
	}
	state.SetItemsProcessed(state.iterations());
	gs_bench_dispatch_free(ctx);
}

// 4b. selection alone: one load -1, gs_worker_heap_sync, gs_worker_heap_peek,
// one load +1 (the worker-heap work of one dispatch + one finish).
void BM_SelectWorker(benchmark::State &state)
{
	void *ctx = gs_bench_select_new((uint32_t)state.range(0));
	need(ctx, "select");
	for (auto _ : state) {
		if (gs_bench_select_step(ctx) != 0) {
			state.SkipWithError("select step failed");
			break;
		}
	}
	state.SetItemsProcessed(state.iterations());
	gs_bench_select_free(ctx);
}

} // namespace

BENCHMARK(BM_TaskHeapPair)
    ->ArgName("prefill")
    ->Arg(0)
    ->Arg(1024)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_MutexHeapPair)
    ->ArgName("prefill")
    ->Arg(0)
    ->Arg(1024)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK(BM_BatchSubmitDrain)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DispatchFinish)->ArgName("workers")->Arg(1)->Arg(100)->Arg(10000);
BENCHMARK(BM_SelectWorker)->ArgName("workers")->Arg(1)->Arg(100)->Arg(10000);

BENCHMARK_MAIN();
