#!/usr/bin/env bash
# durability.sh - throughput with the write-ahead log on and off, beside
# beanstalkd with its binlog on and off, in one run (issue "Nothing lost";
# docs/BENCHMARKS.md, "Durability").
#
#   bench/durability.sh [ROUNDS]      (make bench-durability; ROUNDS default 3)
#
# Four configurations, interleaved round by round so that the host's drift
# hits them alike:
#   gsched            gsched server, 2 x gsched worker --slots 4, then
#                     gsched bench --mode throughput --tasks 100000 (window 1000)
#   gsched+log        the same with --data-dir DIR --fsync-ms 5
#   beanstalkd        bench/peers/run_peer.sh beanstalkd 2 throughput 100000 1000
#   beanstalkd+binlog the same with BEANSTALKD_FSYNC_MS=5 (beanstalkd -b DIR -f 5)
# Prints each run's tasks/s, then the medians and the ratios log/no log.
# Everything it starts listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail

rounds=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-$here/../build}
gsched=$build/gsched
[ -x "$gsched" ] || { echo "durability: $gsched not built (make build)" >&2; exit 1; }
export PEER_BIN=${PEER_BIN:-$build/bench/peers}

bench_name=durability
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
tmp=$(mktemp -d /tmp/gs-durability.XXXXXX)
trap 'bench_stop_all; rm -rf "$tmp"' EXIT INT TERM

# One gsched run; $1: extra server flags.  Prints tasks/s.
gsched_run() {
	rm -rf "$tmp/data"
	mkdir -p "$tmp/data"
	# shellcheck disable=SC2086
	bench_server "$tmp/server.log" $1
	bench_workers "$port" 2
	"$gsched" bench --server "127.0.0.1:$port" --mode throughput --tasks 100000 --json |
		python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"], d; print(int(d["tasks_per_s"]))'
	bench_stop_all
}

# One beanstalkd run; $1: its fsync interval in ms, or "" for no binlog.
beanstalkd_run() {
	BEANSTALKD_FSYNC_MS=$1 "$here/peers/run_peer.sh" beanstalkd 2 throughput 100000 1000 |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["tasks_per_s"]))'
}

declare -A runs
names=(gsched gsched+log beanstalkd beanstalkd+binlog)
for ((r = 1; r <= rounds; r++)); do
	runs[gsched]+=" $(gsched_run "")"
	runs[gsched+log]+=" $(gsched_run "--data-dir $tmp/data --fsync-ms 5")"
	runs[beanstalkd]+=" $(beanstalkd_run "")"
	runs[beanstalkd+binlog]+=" $(beanstalkd_run 5)"
	echo "round $r/$rounds:$(for n in "${names[@]}"; do printf ' %s %s' "$n" "${runs[$n]##* }"; done)"
done

python3 - "${names[@]}" <<EOF
import statistics, sys
runs = {$(for n in "${names[@]}"; do printf '"%s": [%s], ' "$n" "$(echo ${runs[$n]} | tr ' ' ',')"; done)}
med = {n: statistics.median(v) for n, v in runs.items()}
print()
print(f"{'configuration':<20} {'tasks/s (runs)':<34} {'median':>10}")
for n in sys.argv[1:]:
    print(f"{n:<20} {' · '.join(f'{x:,}' for x in runs[n]):<34} {med[n]:>10,.0f}")
print()
print(f"gsched with the log: {med['gsched+log'] / med['gsched'] * 100:.0f}% of without (goal: >= 50%)")
print(f"beanstalkd with its binlog: {med['beanstalkd+binlog'] / med['beanstalkd'] * 100:.0f}% of without")
print(f"gsched+log / beanstalkd+binlog: {med['gsched+log'] / med['beanstalkd+binlog']:.1f}x")
EOF
