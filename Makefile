# Thin wrapper over CMake for the README's commands.  All real build logic is
# in CMakeLists.txt; all package installation is in scripts/setup.sh.

JOBS   ?= 2
CMAKE  ?= cmake
BUILD  := build

.PHONY: all setup build build-sanitize build-fuzz run test bench-engine bench bench-durability bench-roles format clean \
	fuzz chaos soak

all: build

setup:
	@scripts/setup.sh

build: setup
	@$(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

# The instrumented trees whose tests the main tree's ctest runs (label sanitize).
build-sanitize: setup
	@$(CMAKE) -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DGS_SANITIZE=address \
		-DGS_BUILD_BENCH=OFF >/dev/null
	@$(CMAKE) --build $(BUILD)-asan -j $(JOBS)
	@$(CMAKE) -S . -B $(BUILD)-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGS_SANITIZE=thread \
		-DGS_BUILD_BENCH=OFF >/dev/null
	@$(CMAKE) --build $(BUILD)-tsan -j $(JOBS)
	@$(MAKE) --no-print-directory build-fuzz

# The libFuzzer tree (clang; tests/fuzz, docs/FUZZING.md): only the fuzz targets
# are built; the main tree's ctest runs their short runs (test fuzz-short).
build-fuzz: setup
	@CC=clang CXX=clang++ $(CMAKE) -S . -B $(BUILD)-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DGS_SANITIZE=address -DGS_FUZZ=ON -DGS_BUILD_BENCH=OFF >/dev/null
	@$(CMAKE) --build $(BUILD)-fuzz -j $(JOBS) --target gs_fuzz_all

# Every fuzz target for FUZZ_SECONDS, two at a time (docs/FUZZING.md).
FUZZ_SECONDS ?= 600
fuzz: build-fuzz
	@tests/fuzz/run_fuzz.sh $(BUILD)-fuzz $(FUZZ_SECONDS) 2

# The "Nothing lost" chaos test, full size (tests/chaos/chaos.c, docs/DURABILITY.md):
# 100,000 tasks, a worker SIGKILLed every ~0.5 s, the server 5 times (2 of them
# replaying the log); then the same with the server's roles as separate
# processes, 9 role kills (3 per role).  ctest runs short variants (tests
# `chaos`, `chaos_roles`).
CHAOS_ARGS ?= --tasks 100000 --server-kills 5 --replay-kills 2 --worker-kill-ms 500
CHAOS_ROLES_ARGS ?= --roles processes --tasks 100000 --server-kills 9 --worker-kill-ms 500
chaos: build
	@$(BUILD)/tests/chaos/chaos --bin $(BUILD)/gsched $(CHAOS_ARGS)
	@$(BUILD)/tests/chaos/chaos --bin $(BUILD)/gsched $(CHAOS_ROLES_ARGS)

# The soak test (tests/soak/soak.c, docs/BENCHMARKS.md "Soak"): one server, 200
# client streams and 50 worker agents in separate processes, a steady load for
# SOAK_SECONDS; nothing lost or doubled, the server's RSS flat.  ctest runs a
# 40 s variant (test soak_short).
SOAK_SECONDS ?= 600
soak: build
	@$(BUILD)/tests/soak/gs_soak run --gsched $(BUILD)/gsched --seconds $(SOAK_SECONDS)

run: build
	@$(BUILD)/gsched local --demo

test: build build-sanitize
	@cd $(BUILD) && ctest --output-on-failure

bench-engine: build
	@$(BUILD)/bench/bench_engine --benchmark_repetitions=5 \
		--benchmark_report_aggregates_only=true

# Throughput with the write-ahead log on and off, beside beanstalkd with its
# binlog on and off, interleaved, medians of 3 (docs/BENCHMARKS.md "Durability").
bench-durability: build
	@$(CMAKE) -S . -B $(BUILD) -DGS_BUILD_BENCH=ON -DGS_BUILD_NODE=ON >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)
	@BUILD=$(BUILD) bench/durability.sh

# The roles as threads of one process against the roles as three processes
# (bench/roles.sh; docs/BENCHMARKS.md, "Roles as processes").
bench-roles: build
	@BUILD=$(BUILD) bench/roles.sh

# Engine micro-benchmarks, then gsched against beanstalkd and gearmand (3 runs
# each, medians), one side-by-side table, plots in docs/img/, and the
# "End-to-end" section of docs/BENCHMARKS.md regenerated (bench/run_all.sh).
# The benchmarks and the node must be on in $(BUILD) whatever its cache says.
bench: build
	@$(CMAKE) -S . -B $(BUILD) -DGS_BUILD_BENCH=ON -DGS_BUILD_NODE=ON >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)
	@BUILD=$(BUILD) bench/run_all.sh

format:
	@clang-format -i $$(git ls-files '*.c' '*.h' '*.cc')

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-fuzz
