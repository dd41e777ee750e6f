# lib.sh - sourced by the bench scripts (durability.sh, roles.sh): the
# processes they start, and the gsched servers and workers among them.
# The sourcing script sets $gsched (the binary) and $bench_name (for
# messages) first, and runs bench_stop_all on exit.
#
#   bench_spawn CMD...         starts CMD in the background, noted in $pids
#   bench_stop_all             ends every noted process, newest first
#   bench_server LOG FLAGS...  gsched server --listen 127.0.0.1:0 FLAGS, its
#                              output in LOG; sets $port once it listens (or
#                              exits the script, showing LOG)
#   bench_workers PORT N       N `gsched worker --slots 4` on 127.0.0.1:PORT

pids=()

bench_spawn() {
	"$@" &
	pids+=($!)
}

bench_stop_all() {
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	pids=()
}

bench_server() {
	local log=$1 i
	shift
	bench_spawn "$gsched" server --listen 127.0.0.1:0 "$@" >"$log" 2>&1
	port=
	for ((i = 0; i < 200; i++)); do
		port=$(grep -o '(port [0-9]*' "$log" | head -1 | awk '{print $2}' || true)
		[ -n "$port" ] && return 0
		sleep 0.05
	done
	echo "$bench_name: a server did not start:" >&2
	cat "$log" >&2
	exit 1
}

bench_workers() {
	local i
	for ((i = 0; i < $2; i++)); do
		bench_spawn "$gsched" worker --server "127.0.0.1:$1" --slots 4 --quiet >/dev/null 2>&1
	done
}
