# Thin wrapper over CMake for the README's commands.  All real build logic is
# in CMakeLists.txt; all package installation is in scripts/setup.sh.

JOBS   ?= 2
CMAKE  ?= cmake
BUILD  := build

.PHONY: all setup build build-sanitize run test bench-engine bench format clean

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

run: build
	@$(BUILD)/gsched local --demo

test: build build-sanitize
	@cd $(BUILD) && ctest --output-on-failure

bench-engine: build
	@$(BUILD)/bench/bench_engine --benchmark_repetitions=5 \
		--benchmark_report_aggregates_only=true

format:
	@clang-format -i $$(git ls-files '*.c' '*.h' '*.cc')

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan
