#!/usr/bin/env bash
# run_fuzz.sh BUILD_DIR SECONDS [JOBS] - runs every fuzz target for SECONDS,
# JOBS at a time (default 2), over the build tree's corpus seeded with the
# checked-in corpus and the regression inputs.  Logs and crash artifacts go to
# BUILD_DIR/fuzz-logs/; prints one summary line per target (execs, coverage,
# features, corpus); exits non-zero if any target found a crash, leak or
# sanitizer report.  Used by `make fuzz` (docs/FUZZING.md).
set -uo pipefail
build=${1:?build dir}
secs=${2:-600}
jobs=${3:-2}
src=$(cd "$(dirname "$0")" && pwd)
bin=$build/tests/fuzz
logs=$build/fuzz-logs
mkdir -p "$logs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

targets=(fuzz_server fuzz_engine fuzz_worker fuzz_codec)
run() {
	local t=$1
	# A run is judged by its own findings: artifacts of an earlier run (kept
	# as regressions once fixed) would otherwise fail every later one.
	rm -rf "$logs/$t-artifacts"
	mkdir -p "$bin/corpus/$t" "$logs/$t-artifacts"
	"$bin/$t" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$logs/$t-artifacts/" \
		"$bin/corpus/$t" "$src/corpus/$t" "$src/regressions/$t" >"$logs/$t.log" 2>&1
	echo $? >"$logs/$t.rc"
}
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
	for t in "${targets[@]:i:jobs}"; do run "$t" & done
	wait
done

fail=0
for t in "${targets[@]}"; do
	rc=$(cat "$logs/$t.rc")
	done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$logs/$t.log" | tail -1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log")
	crashes=$(find "$logs/$t-artifacts" -type f | wc -l)
	printf '%-12s rc=%s execs=%s artifacts=%s  %s\n' "$t" "$rc" "${execs:-?}" "$crashes" \
		"${done_line:-(no DONE line: see $logs/$t.log)}"
	[ "$rc" = 0 ] && [ "$crashes" = 0 ] || fail=1
done
exit $fail
