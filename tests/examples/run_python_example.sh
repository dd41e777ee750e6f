#!/usr/bin/env bash
# Runs examples/python_client.py against a real gsched server and worker on
# 127.0.0.1.  Usage: run_python_example.sh GSCHED_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
gsched=$1 src=$2 work=$3
py=/usr/bin/python3 # Debian's, where python3-grpcio is installed
mkdir -p "$work/gen"
"$py" -m grpc_tools.protoc -I "$src/proto" --python_out="$work/gen" \
	--grpc_python_out="$work/gen" "$src/proto/gsched.proto"

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	sleep 0.3
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

log="$work/server.log"
"$gsched" server --listen 127.0.0.1:0 >"$log" 2>&1 &
pids+=($!)
port=""
for _ in $(seq 1 100); do # up to 10 s
	port=$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$log" | head -n1)
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { echo "server did not start:"; cat "$log"; exit 1; }
"$gsched" worker --server "127.0.0.1:$port" --slots 2 >"$work/worker.log" 2>&1 &
pids+=($!)
PYTHONPATH="$work/gen" timeout 30 "$py" "$src/examples/python_client.py" \
	--server "127.0.0.1:$port" --timeout-ms 10000
