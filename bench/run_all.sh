#!/usr/bin/env bash
# run_all.sh - what `make bench` runs after building: the engine
# micro-benchmarks, then gsched and each peer (beanstalkd, gearmand) on the
# same workload (echo of a 16-byte payload, one server, 1 and 2 workers, one
# client, all on 127.0.0.1), RUNS runs of each configuration, then the server
# memory per queued task with no worker attached.  bench/summarize.py takes
# the medians and prints the side-by-side table; gnuplot draws the plots into
# docs/img/; the "End-to-end" section of docs/BENCHMARKS.md (between
# <!-- bench:begin --> and <!-- bench:end -->) is regenerated.
#
#   BUILD=build RUNS=3 WINDOWS="16 100 1000 4000" bench/run_all.sh
#
# Knobs (environment): RUNS (3), WINDOWS (throughput windows swept for every
# system, 16 100 1000 4000), LAT_TASKS (10000), GS_TASKS (200000 per gsched
# throughput run), PEER_TASKS (50000 per peer throughput run), MEM_TASKS
# (1000000), ENGINE_REPS (3), PEERS ("beanstalkd gearmand"), DOC
# (docs/BENCHMARKS.md; "" = don't touch it).
# Raw results: $BUILD/bench-results/ (results.jsonl: one JSON line per run).
# Everything started here is stopped on exit, also on failure or ^C.
# Exit 1 if any run failed (the table and the doc are still written).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${BUILD:-$root/build}" && pwd)
runs=${RUNS:-3}
windows=${WINDOWS:-16 100 1000 4000}
lat_tasks=${LAT_TASKS:-10000}
gs_tasks=${GS_TASKS:-200000}
# gsched's workers run many tasks at once (--slots); the peers' workers take
# one job at a time, as their protocols do.  gsched gets its own, larger
# windows: with 256 slots a window of 1000 leaves the workers idle.
gs_slots=${GS_SLOTS:-256}
gs_windows=${GS_WINDOWS:-1000 4000 8000}
peer_tasks=${PEER_TASKS:-50000}
mem_tasks=${MEM_TASKS:-1000000}
engine_reps=${ENGINE_REPS:-3}
peers=${PEERS:-beanstalkd gearmand}
doc=${DOC-$root/docs/BENCHMARKS.md}
gsched=$build/gsched
export PEER_BIN=$build/bench/peers

out=$build/bench-results
rm -rf "$out"
mkdir -p "$out/pct" "$out/plot"
res=$out/results.jsonl
: >"$res"
t_start=$(date +%s)
failures=()
server_pid=""

# Stops the memory-test server if one is running (the gsched bench and
# run_peer.sh processes stop their own clusters, also on SIGTERM).
worker_pids=()
cleanup() {
  for p in "${worker_pids[@]}" $server_pid; do kill "$p" 2>/dev/null || true; done
  for p in "${worker_pids[@]}" $server_pid; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '[bench %4ds] %s\n' $(($(date +%s) - t_start)) "$*" >&2; }

# record TAG COMMAND...: runs COMMAND (bounded by timeout), appends its last
# JSON line to results.jsonl with the fields of TAG ('"k":v,...') in front.
# A failed run is noted and the benchmark goes on.
record() {
  local tag=$1 o rc=0
  shift
  o=$(timeout --foreground 900 "$@" 2>>"$out/stderr.log") || rc=$?
  o=$(grep '^{' <<<"$o" | tail -n 1 || true)
  if [ "$rc" -ne 0 ] || [ -z "$o" ]; then
    say "FAILED (exit $rc): $*"
    failures+=("$*")
  fi
  if [ -n "$o" ]; then printf '{%s,%s\n' "$tag" "${o#\{}" >>"$res"; fi
}

# Machine and load at the start (the host is shared: note the load).
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
  echo "kernel: $(uname -r)"
  echo "loadavg_start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
} >"$out/machine.txt"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"

# 1. Engine micro-benchmarks (as `make bench-engine`, fewer repetitions) and
#    the engine's own memory report.
say "engine micro-benchmarks ($engine_reps repetitions)"
"$build/bench/bench_engine" --benchmark_repetitions="$engine_reps" \
  --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/engine.json" --benchmark_out_format=json | tee "$out/engine.txt"
"$build/bench/engine_memory" | tee "$out/engine_memory.txt"

# gsched the way the peers run: a server process and N worker processes,
# started here on a free port, the client (gsched bench --server) apart.
# gs_cluster_start WORKERS SLOTS sets $gs_addr; gs_cluster_stop ends them.
gs_cluster_start() {
  local log=$out/gsched-server.log port=""
  "$gsched" server --listen 127.0.0.1:0 2>"$log" &
  server_pid=$!
  for _ in $(seq 100); do # at most 5 s for the port
    port=$(sed -n 's/.*(port \([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  gs_addr=127.0.0.1:${port:-0}
  worker_pids=()
  for ((i = 0; i < $1; i++)); do
    "$gsched" worker --server "$gs_addr" --slots "$2" --quiet 2>>"$out/stderr.log" &
    worker_pids+=($!)
  done
  # Every worker registered (bounded): `gsched workers` lists them.
  for _ in $(seq 100); do
    [ "$("$gsched" workers --server "$gs_addr" 2>/dev/null | grep -c " alive " || true)" -ge "$1" ] && break
    sleep 0.05
  done
}
gs_cluster_stop() {
  cleanup
  worker_pids=()
  server_pid=""
}

# 2. gsched: latency (one task in flight) and throughput (window sweep), each
#    against its own server and worker processes (gs_cluster_start).
for w in 1 2; do
  for ((r = 1; r <= runs; r++)); do
    say "gsched ${w}w latency run $r"
    gs_cluster_start "$w" 4
    record "\"system\":\"gsched\",\"run\":$r,\"workers\":$w" "$gsched" bench --mode latency \
      --tasks "$lat_tasks" --server "$gs_addr" --json \
      --percentiles-out "$out/pct/gsched-${w}w-run$r.txt"
    gs_cluster_stop
    gs_cluster_start "$w" "$gs_slots"
    for win in $gs_windows; do
      say "gsched ${w}w throughput window $win run $r"
      record "\"system\":\"gsched\",\"run\":$r,\"workers\":$w" "$gsched" bench \
        --mode throughput --tasks "$gs_tasks" --window "$win" --server "$gs_addr" --json
    done
    gs_cluster_stop
  done
done

# 3. Peers, through bench/peers/run_peer.sh (it starts the peer server and
#    its workers on a free port and stops them).
for peer in $peers; do
  if ! command -v "$peer" >/dev/null; then
    say "SKIPPED $peer: not installed (scripts/setup.sh)"
    failures+=("$peer not installed")
    continue
  fi
  for w in 1 2; do
    for ((r = 1; r <= runs; r++)); do
      say "$peer ${w}w latency run $r"
      record "\"system\":\"$peer\",\"run\":$r" "$root/bench/peers/run_peer.sh" "$peer" "$w" \
        latency "$lat_tasks"
      for win in $windows; do
        say "$peer ${w}w throughput window $win run $r"
        record "\"system\":\"$peer\",\"run\":$r" "$root/bench/peers/run_peer.sh" "$peer" "$w" \
          throughput "$peer_tasks" "$win"
      done
    done
  done
done

# 4. Memory per queued task: MEM_TASKS queued, no worker attached; server
#    VmRSS before and after the fill.  gsched's server is its own process here.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
gsched_memory() {
  local before after line
  gs_cluster_start 0 0
  if [ "$gs_addr" = 127.0.0.1:0 ]; then
    say "FAILED: gsched server did not start: $(cat "$out/gsched-server.log")"
    failures+=("gsched memory")
  else
    before=$(rss_kb "$server_pid")
    line=$(timeout --foreground 300 "$gsched" bench --mode fill --server "$gs_addr" \
      --tasks "$mem_tasks" --json 2>>"$out/stderr.log") || failures+=("gsched fill")
    sleep 0.5 # as run_peer.sh does before its second reading
    after=$(rss_kb "$server_pid")
    printf '{"system":"gsched","run":%s,"mode":"memory","tasks":%s,"rss_before_kb":%s,"rss_after_kb":%s,"bytes_per_task":%s,"fill":%s}\n' \
      "$1" "$mem_tasks" "$before" "$after" $(((after - before) * 1024 / mem_tasks)) \
      "${line:-null}" >>"$res"
  fi
  gs_cluster_stop
}
for ((r = 1; r <= runs; r++)); do
  say "gsched memory run $r ($mem_tasks queued tasks)"
  gsched_memory "$r"
  for peer in $peers; do
    command -v "$peer" >/dev/null || continue
    say "$peer memory run $r"
    record "\"system\":\"$peer\",\"run\":$r" "$root/bench/peers/run_peer.sh" "$peer" 0 memory \
      "$mem_tasks"
  done
done

# 5. Medians, table, plot data, plots, doc.
echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
echo "duration_s: $(($(date +%s) - t_start))" >>"$out/machine.txt"
printf '%s\n' "${failures[@]}" >"$out/failures.txt"
say "summary"
# summarize.py describes the workload from these.
export RUNS=$runs WINDOWS=$windows LAT_TASKS=$lat_tasks GS_TASKS=$gs_tasks PEER_TASKS=$peer_tasks
python3 "$root/bench/summarize.py" "$out"
mkdir -p "$root/docs/img"
for gp in latency throughput; do
  gnuplot -e "dir='$out/plot'; out='$root/docs/img/bench-$gp.png'" "$root/bench/plots/$gp.gp"
done
if [ -n "$doc" ]; then
  python3 "$root/bench/summarize.py" --splice "$doc" "$out/section.md"
  say "updated $doc (section between <!-- bench:begin --> and <!-- bench:end -->)"
fi
say "done; raw results in $out"
[ ${#failures[@]} -eq 0 ] || { say "${#failures[@]} run(s) failed: see $out/failures.txt"; exit 1; }
