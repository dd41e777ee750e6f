#!/usr/bin/env bash
# run_peer.sh - runs one peer benchmark: starts the peer server on 127.0.0.1
# on a free port, WORKERS worker processes, the client, prints the client's
# JSON line, and stops everything it started (trap, also on failure).
#
#   run_peer.sh gearmand|beanstalkd WORKERS latency|throughput|background|memory \
#               [TASKS] [WINDOW]
#
# latency: one job in flight (TASKS default 10000); throughput: WINDOW jobs in
# flight (TASKS 100000, WINDOW 100); background (gearmand only): TASKS
# background jobs submitted with WINDOW in flight, timed until the workers ran
# them all; memory: WORKERS must be 0, TASKS (default 1000000) queued jobs,
# server VmRSS before/after, bytes per queued task.
# Drivers are taken from $PEER_BIN (default build/bench/peers).  Optional:
# BEANSTALKD_FSYNC_MS (binlog on: -b DIR -f MS), GEARMAND_THREADS (its --threads, default 4), GEARMAND_BUCKETS
# (--hashtable-buckets; memory mode defaults it to TASKS).
set -euo pipefail

peer=${1:?peer}; workers=${2:?workers}; mode=${3:?mode}
here=$(cd "$(dirname "$0")" && pwd)
bin=${PEER_BIN:-$here/../../build/bench/peers}
case $mode in
  latency) tasks=${4:-10000}; window=${5:-1} ;;
  throughput|background) tasks=${4:-100000}; window=${5:-100} ;;
  memory) tasks=${4:-1000000}; window=${5:-1000} ;;
  *) echo "run_peer: unknown mode $mode" >&2; exit 2 ;;
esac
case $peer in
  gearmand) drv=$bin/gearman_bench ;;
  beanstalkd) drv=$bin/beanstalk_bench ;;
  *) echo "run_peer: unknown peer $peer" >&2; exit 2 ;;
esac
[ "$mode" = background ] && [ "$peer" != gearmand ] && { echo "run_peer: background is gearmand only" >&2; exit 2; }
[ -x "$drv" ] || { echo "run_peer: $drv not built" >&2; exit 1; }
command -v "$peer" >/dev/null || { echo "run_peer: $peer not installed (scripts/setup.sh)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/gs-peer.XXXXXX)
[ -n "${BEANSTALKD_FSYNC_MS:-}" ] && mkdir -p "$tmp/binlog"
pids=()
# Stops workers before the server (last started, first stopped), each by pid.
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# Sends admin command $1 to the server, prints the reply up to a line matching
# $2 (bounded: 2 s).
admin() {
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$port"'; printf "%b" "$1" >&3
    while IFS= read -r -t 1 l <&3; do printf "%s\n" "$l"; [[ $l =~ $2 ]] && break; done' \
    _ "$1" "$2" 2>/dev/null || true
}

# gearmand's unique-key hash table defaults to 991 buckets: with 1,000,000 jobs
# queued each insert scans a ~1000-long chain (the fill takes minutes), so the
# memory mode sizes it to the job count, as its --help advises.
[ "$mode" = memory ] && : "${GEARMAND_BUCKETS:=$tasks}"
if [ "$peer" = gearmand ]; then
  gearmand --listen=127.0.0.1 --port="$port" --log-file=none --pid-file="$tmp/g.pid" \
    ${GEARMAND_THREADS:+--threads=$GEARMAND_THREADS} ${GEARMAND_BUCKETS:+--hashtable-buckets=$GEARMAND_BUCKETS} \
    >"$tmp/server.log" 2>&1 &
else
  # BEANSTALKD_FSYNC_MS set: binlog on (-b DIR -f MS), as gsched's --data-dir --fsync-ms.
  beanstalkd -l 127.0.0.1 -p "$port" \
    ${BEANSTALKD_FSYNC_MS:+-b "$tmp/binlog" -f "$BEANSTALKD_FSYNC_MS"} >"$tmp/server.log" 2>&1 &
fi
server=$!
pids+=("$server")
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
  sleep 0.05
done

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }

counter=()
[ "$mode" = background ] && counter=(--counter "$tmp/counter")
for _ in $(seq "$workers"); do
  "$drv" --worker --port "$port" "${counter[@]}" --timeout 900 &
  pids+=($!)
done

# Wait (at most 5 s) until every worker is registered with the server.
if [ "$workers" -gt 0 ]; then
  for _ in $(seq 100); do
    if [ "$peer" = gearmand ]; then
      n=$(admin 'status\n' '^\.' | awk -F'\t' '$1=="echo" {print $4}')
    else
      n=$(admin 'stats-tube jobs\r\n' 'current-watching|NOT_FOUND' | awk '/current-watching/ {print $2}')
    fi
    [ "${n:-0}" -ge "$workers" ] && break
    sleep 0.05
  done
fi

if [ "$mode" = memory ]; then
  before=$(rss_kb)
  out=$(timeout 900 "$drv" --port "$port" --mode fill --tasks "$tasks" --window "$window" --timeout 850)
  sleep 0.5
  after=$(rss_kb)
  queued=$(sed -n 's/.*"queued":\([-0-9]*\).*/\1/p' <<<"$out")
  printf '{"peer":"%s","mode":"memory","tasks":%s,"queued":%s,"rss_before_kb":%s,"rss_after_kb":%s,"bytes_per_task":%s}\n' \
    "$peer" "$tasks" "$queued" "$before" "$after" $(( (after - before) * 1024 / tasks ))
else
  timeout 900 "$drv" --port "$port" --mode "$mode" --tasks "$tasks" --window "$window" \
    "${counter[@]}" --timeout 850 | sed "s/}\$/,\"workers\":$workers}/"
fi
