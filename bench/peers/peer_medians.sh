#!/usr/bin/env bash
# peer_medians.sh - the peer half of `make bench`: runs every peer
# configuration RUNS times (default 3) through run_peer.sh and prints the
# median of each figure, one JSON line per configuration, then a table.
# Throughput is run for each window in WINDOWS and the best window (highest
# median tasks/s) is kept, so each peer gets its own best window.
#
#   PEER_BIN=build/bench/peers RUNS=3 WINDOWS="4 16 64 100" peer_medians.sh [OUT.jsonl]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-3}
windows=${WINDOWS:-4 16 64 100}
out=${1:-$(mktemp /tmp/gs-peers.XXXXXX.jsonl)}
: >"$out"

# run CONFIG-LABEL run_peer-args...: RUNS runs, each line tagged with the label.
run() {
  local label=$1 i; shift
  for ((i = 1; i <= runs; i++)); do
    "$here/run_peer.sh" "$@" | sed "s|^{|{\"config\":\"$label\",|" >>"$out"
  done
}

for peer in gearmand beanstalkd; do
  for w in 1 2; do
    run "$peer/${w}w/latency" "$peer" "$w" latency 10000
    for win in $windows; do
      run "$peer/${w}w/throughput/win$win" "$peer" "$w" throughput 100000 "$win"
    done
  done
  run "$peer/0w/memory" "$peer" 0 memory 1000000
done
for w in 1 2; do
  for win in $windows; do
    run "gearmand/${w}w/background/win$win" gearmand "$w" background 100000 "$win"
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        r = json.loads(line)
        rows[r["config"]].append(r)
keys = ["tasks_per_s", "p50_us", "p99_us", "p999_us", "bytes_per_task"]
med = {}
for cfg, rs in rows.items():
    med[cfg] = {k: statistics.median(r[k] for r in rs) for k in keys if k in rs[0]}
    med[cfg]["runs"] = len(rs)
# keep the best window per (peer, workers, throughput|background)
best = {}
for cfg, m in med.items():
    parts = cfg.split("/")
    if len(parts) == 4:
        base = "/".join(parts[:3])
        if base not in best or m["tasks_per_s"] > med[best[base]]["tasks_per_s"]:
            best[base] = cfg
shown = [c for c in med if len(c.split("/")) == 3] + list(best.values())
for cfg in sorted(shown):
    print(json.dumps({"config": cfg, **med[cfg]}))
print("%-38s %10s %10s %10s %10s %8s" % ("config (median of runs)", "tasks/s", "p50 us",
      "p99 us", "p99.9 us", "B/task"))
for cfg in sorted(shown):
    m = med[cfg]
    print("%-38s %10.0f %10.1f %10.1f %10.1f %8s" % (cfg, m.get("tasks_per_s", 0),
          m.get("p50_us", 0), m.get("p99_us", 0), m.get("p999_us", 0),
          "%.0f" % m["bytes_per_task"] if "bytes_per_task" in m else "-"))
PY
echo "raw runs: $out"
