#!/usr/bin/env bash
# roles.sh - the server's roles as threads of one process against the roles
# as three processes on one segment (`gsched server --role`), in one run
# (issue "Nothing lost"; docs/BENCHMARKS.md, "Roles as processes").
#
#   bench/roles.sh [ROUNDS]      (make bench-roles; ROUNDS default 3)
#
# Two configurations, interleaved round by round so that the host's drift
# hits them alike, each with 2 x gsched worker --slots 4:
#   threads     gsched server (the default)
#   processes   gsched server --role plm|scheduler|register --segment S
# and two measures each: gsched bench --mode latency --tasks 5000 (round
# trip p50 and p99, one task in flight) and --mode throughput --tasks 100000
# (window 1000).  Prints each run, then the medians and processes/threads.
# Everything it starts listens on 127.0.0.1 and is stopped on exit; the
# segment is removed.
set -euo pipefail

rounds=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-$here/../build}
gsched=$build/gsched
[ -x "$gsched" ] || { echo "roles: $gsched not built (make build)" >&2; exit 1; }

bench_name=roles
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
tmp=$(mktemp -d /tmp/gs-roles.XXXXXX)
seg=/gsched-bench-roles-$$
cleanup() {
	bench_stop_all
	rm -f "/dev/shm$seg"
}
trap 'cleanup; rm -rf "$tmp"' EXIT INT TERM

# One run of configuration $1; sets $result to "p50 p99 tasks/s".
run() {
	local client worker lat tput
	if [ "$1" = threads ]; then
		bench_server "$tmp/server.log"
		client=$port worker=$port
	else
		bench_server "$tmp/plm.log" --role plm --segment "$seg"
		client=$port
		bench_server "$tmp/scheduler.log" --role scheduler --segment "$seg"
		bench_server "$tmp/register.log" --role register --segment "$seg"
		worker=$port
	fi
	bench_workers "$worker" 2
	lat=$("$gsched" bench --server "127.0.0.1:$client" --mode latency --tasks 5000 --json |
		python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"], d; print(d["p50_us"], d["p99_us"])')
	tput=$("$gsched" bench --server "127.0.0.1:$client" --mode throughput --tasks 100000 --json |
		python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"], d; print(int(d["tasks_per_s"]))')
	cleanup
	result="$lat $tput"
}

all=""
for ((r = 1; r <= rounds; r++)); do
	for n in threads processes; do
		run "$n"
		echo "round $r/$rounds $n: p50 / p99 us, tasks/s: $result"
		all+="$n $result;"
	done
done

python3 - "$all" <<'PY'
import statistics, sys
runs = {}
for rec in sys.argv[1].split(";"):
    if rec.strip():
        n, *v = rec.split()
        runs.setdefault(n, []).append(tuple(float(x) for x in v))
print()
print(f"{'configuration':<12} {'p50 us':>8} {'p99 us':>8} {'tasks/s':>10}   runs (p50/p99/tasks/s)")
med = {}
for n, v in runs.items():
    med[n] = [statistics.median(x[i] for x in v) for i in range(3)]
    print(f"{n:<12} {med[n][0]:>8.0f} {med[n][1]:>8.0f} {med[n][2]:>10,.0f}   " +
          " · ".join(f"{a:.0f}/{b:.0f}/{c:,.0f}" for a, b, c in v))
t, p = med["threads"], med["processes"]
print()
print(f"processes / threads: p50 {p[0] / t[0]:.2f}x, p99 {p[1] / t[1]:.2f}x, "
      f"tasks/s {p[2] / t[2]:.2f}x")
PY
