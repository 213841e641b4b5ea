#!/usr/bin/env bash
# Agent memory per open connection and per open (unanswered) request.
#
#   N=20000 ROUNDS=2 benches/open_requests.sh          # root; builds the release binary
#   A=/tmp/zt-old B=target/release/zt-trace N=20000 benches/open_requests.sh   # A/B, alternating
#
# Each round starts `zt-trace run --output none`, then a Python asyncio
# server that answers only when told (benches/lib/held_requests.py) and a
# client that opens N connections to it (over 127.0.0.1-4), then sends one
# request on each, and at last lets the server answer. The agent's
# anonymous resident memory (RssAnon, /proc/<pid>/status) is read at each
# step, SETTLE seconds after it:
#   idle       agent tracing, nothing open
#   connected  N connections open, nothing sent
#   requests   N requests sent and held by the server
#   answered   every response read, connections closed
# Prints, per round and variant, the growth per connection and per request
# (bytes) and the projection for 100,000 open requests (connections and
# requests together), then the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
N=${N:-20000}
ROUNDS=${ROUNDS:-2}
SETTLE=${SETTLE:-3}
PORT=${PORT:-18471}
if [ -n "${A:-}" ]; then
	VARIANTS="A B"
else
	[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -q -p cli
	A=${BIN:-target/release/zt-trace}
	VARIANTS="A"
fi
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rss() { awk '/^RssAnon:/ {print $2 * 1024}' /proc/"$1"/status; }

. benches/lib/wait_for.sh

# one BINARY: prints "idle connected requests answered" (bytes) and a note.
one() {
	local bin=$1
	rm -f "$tmp"/*
	# This runs in a subshell (`< <(one ...)`): whatever it started goes
	# with it, also when a step fails (the outer cleanup cannot see it).
	local own=()
	trap 'for p in "${own[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
	RUST_LOG=info "$bin" run --output none >/dev/null 2>"$tmp/agent.err" &
	local agent=$!
	own+=("$agent")
	wait_for "$tmp/agent.err" 'tracing (Ctrl-C to stop)' "$agent"
	# Loading leaves memory behind (kernel BTF parsed twice) that the
	# allocator returns over the next seconds: wait IDLE_SETTLE for it.
	sleep "${IDLE_SETTLE:-10}"
	local idle; idle=$(rss "$agent")

	mkfifo "$tmp/srv.in" "$tmp/cli.in"
	python3 benches/lib/held_requests.py server "$PORT" <"$tmp/srv.in" >"$tmp/srv.out" 2>&1 &
	own+=("$!")
	exec 3>"$tmp/srv.in"
	wait_for "$tmp/srv.out" listening "${own[-1]}"
	python3 benches/lib/held_requests.py client "$PORT" "$N" <"$tmp/cli.in" >"$tmp/cli.out" 2>&1 &
	local client=$!
	own+=("$client")
	exec 4>"$tmp/cli.in"
	wait_for "$tmp/cli.out" '^connected' "$client"
	sleep "$SETTLE"
	local connected; connected=$(rss "$agent")
	echo go >&4
	wait_for "$tmp/cli.out" '^sent' "$client"
	sleep "$SETTLE"
	local requests; requests=$(rss "$agent")
	echo release >&3
	echo read >&4
	wait_for "$tmp/cli.out" '^done' "$client"
	sleep "$SETTLE"
	local answered; answered=$(rss "$agent")
	echo stop >&3
	exec 3>&- 4>&-
	kill -INT "$agent"
	wait "$agent" 2>/dev/null || true
	wait 2>/dev/null || true
	local spans
	spans=$(grep -o 'spans [0-9]* started, [0-9]* emitted' "$tmp/agent.err" | head -1)
	echo "$idle $connected $requests $answered $(grep -o '^done.*' "$tmp/cli.out") | $spans"
}

declare -A conn req proj
for r in $(seq "$ROUNDS"); do
	for v in $VARIANTS; do
		bin=$A
		[ "$v" = B ] && bin=$B
		read -r idle connected requests answered rest < <(one "$bin") || true
		[ -n "${answered:-}" ] || { echo "round $r $v failed (see above)" >&2; exit 1; }
		pc=$(( (connected - idle) / N ))
		pr=$(( (requests - connected) / N ))
		p100k=$(( (requests - idle) * 100000 / N / 1048576 ))
		printf 'round %d %s: RssAnon idle %d MiB, %d connections %d MiB, +%d requests %d MiB, answered %d MiB; %d B/connection, %d B/request, %d MiB per 100K open requests (%s)\n' \
			"$r" "$v" $((idle >> 20)) "$N" $((connected >> 20)) "$N" $((requests >> 20)) $((answered >> 20)) "$pc" "$pr" "$p100k" "$rest"
		conn[$v]+="$pc "
		req[$v]+="$pr "
		proj[$v]+="$p100k "
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for v in $VARIANTS; do
	echo "median $v: $(echo "${conn[$v]}" | median) B/connection (${conn[$v]}), $(echo "${req[$v]}" | median) B/request (${req[$v]}), $(echo "${proj[$v]}" | median) MiB per 100K open requests (${proj[$v]})"
done
