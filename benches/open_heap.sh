#!/usr/bin/env bash
# The agent's live heap with N requests held open, by allocation site
# (heaptrack), for one or two zt-trace binaries built with the system
# allocator (heaptrack sees malloc; mimalloc's own pages it cannot split).
#
#   cargo build --release -p cli --features system-allocator --target-dir target/sysalloc
#   BIN=target/sysalloc/release/zt-trace N=10000 benches/open_heap.sh        # root
#   A=/tmp/zt-sys-old B=/tmp/zt-sys-new N=10000 benches/open_heap.sh          # A/B
#
# Each run starts `heaptrack BIN run --output none`, then the held-request
# server and client of benches/open_requests.sh (benches/lib/held_requests.py):
# N connections, one request sent on each and held by the server. SETTLE
# seconds later the agent is killed (SIGKILL: nothing is freed), so what
# heaptrack reports as leaked is exactly the heap live while the requests
# were open. Prints the total, the bytes per open request (both ends of each
# connection and both spans are on this host), and the largest sites.
# Unlike RssAnon (benches/open_requests.sh), this does not move with the
# allocator's page reuse. What still moves between runs: tables caught
# mid-growth (a hash table doubles at its own moment) and the events in the
# reorder window at the kill.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "open_heap.sh: needs root" >&2; exit 1; }
command -v heaptrack >/dev/null || apt-get install -y -q heaptrack >/dev/null
N=${N:-10000}
SETTLE=${SETTLE:-4}
PORT=${PORT:-18481}
TOP=${TOP:-12}
if [ -n "${A:-}" ]; then
	RUNS="A:${A} B:${B:?B= with A=}"
else
	RUNS="A:${BIN:?BIN=zt-trace built with --features system-allocator (or A= and B=)}"
fi
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
own=()
cleanup() {
	for p in "${own[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

. benches/lib/wait_for.sh

# one NAME BIN: prints the summary of one run.
one() {
	local name=$1 bin=$2 d="$tmp/$1"
	mkdir -p "$d"
	heaptrack -o "$d/ht" "$bin" run --output none >/dev/null 2>"$d/agent.err" &
	own+=("$!")
	wait_for "$d/agent.err" 'tracing (Ctrl-C to stop)'
	local agent
	agent=$(pgrep -n -f "^$bin run --output none")
	mkfifo "$d/srv.in" "$d/cli.in"
	python3 benches/lib/held_requests.py server "$PORT" <"$d/srv.in" >"$d/srv.out" 2>&1 &
	own+=("$!")
	disown "$!"  # killed below: no "Killed" line from the shell
	exec 3>"$d/srv.in"
	wait_for "$d/srv.out" listening
	python3 benches/lib/held_requests.py client "$PORT" "$N" <"$d/cli.in" >"$d/cli.out" 2>&1 &
	own+=("$!")
	disown "$!"
	exec 4>"$d/cli.in"
	wait_for "$d/cli.out" '^connected'
	echo go >&4
	wait_for "$d/cli.out" '^sent'
	sleep "$SETTLE"
	kill -KILL "$agent"
	sleep 2
	echo stop >&3
	exec 3>&- 4>&-
	for p in "${own[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	own=()
	heaptrack_print -f "$d"/ht.*zst --flamegraph-cost-type leaked -F "$d/leaked.txt" >/dev/null 2>&1
	python3 - "$d/leaked.txt" "$N" "$name" "$TOP" <<'EOF'
import sys
path, n, name, top = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
# Frames that only say how memory was obtained, not who holds it.
plumbing = ('alloc', 'realloc', 'grow', 'finish_grow', 'allocate', 'try_allocate',
            'with_capacity', 'reserve', 'do_reserve', 'alloc_impl', 'grow_impl',
            'try_reserve', '{closure', 'call_once', 'from_elem', 'malloc', '_R',
            'prepare_resize', 'resize_inner', 'do_alloc', 'new_uninit', 'fallible',
            'box_new', 'new<>', 'push_back', 'push<>', 'push_mut', 'find_or',
            'insert<>', 'insert_mut', 'to_vec', 'to_owned', 'into_owned', 'map<>',
            'insert_entry', 'reserve_rehash', 'grow_exact', 'grow_one', 'grow_amortized')
total, sites = 0, {}
for line in open(path):
    stack, size = line.rsplit(' ', 1)
    size = int(size)
    total += size
    frames = stack.split(';')
    start = [i for i, f in enumerate(frames) if f.startswith(('run_live', 'poll_with_waker'))]
    frames = frames[start[0] + 1:] if start else frames[-12:]
    frames = [f.split(' (')[0] for f in frames
              if not f.split(' ')[0].split('<')[0].startswith(plumbing)]
    key = ' > '.join(frames[-3:]) or '(startup)'
    sites[key] = sites.get(key, 0) + size
print(f'{name}: live heap {total / 1048576:.1f} MiB with {n} requests held, '
      f'{total // n} B per open request (connection and request, both ends)')
for key, size in sorted(sites.items(), key=lambda kv: -kv[1])[:top]:
    print(f'  {size / 1048576:6.2f} MiB  {size // n:5d} B/request  {key[:110]}')
EOF
}

for run in $RUNS; do
	one "${run%%:*}" "${run#*:}"
done
