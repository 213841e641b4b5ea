#!/usr/bin/env bash
# Time from SIGTERM to exit of `zt-trace run`, and where it goes.
#
#   ROUNDS=5 benches/shutdown.sh            # needs root; builds the release binary
#
# Each round starts `zt-trace run --output none` (plus ZT_ARGS), waits until
# it is tracing, lets it run SETTLE seconds, sends SIGTERM and measures the
# wall time until the process is gone. Variants alternate within a round so
# both see the same machine load:
#   parallel    the default: attachments detached from one thread each
#   sequential  ZT_DETACH_SEQUENTIAL=1: one after the other (the old way)
# The tracer's own account of its stop (the `shutdown:` summary line:
# detach, flush and export times, what was still pending) is printed too.
# Prints one line per run and the medians, and checks after each run that
# none of the tracer's programs (their ids read from /proc/<pid>/fdinfo
# while it ran) is still loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SETTLE=${SETTLE:-2}
BIN=${BIN:-target/release/zt-trace}
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -p cli >/dev/null
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Program ids held by process $1.
prog_ids() { grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u; }

# one VARIANT: prints "<ms from SIGTERM to exit> <shutdown summary line>"
one() {
	local variant=$1 env=()
	[ "$variant" = sequential ] && env=(ZT_DETACH_SEQUENTIAL=1)
	env "${env[@]}" RUST_LOG=info "$BIN" run --output none ${ZT_ARGS:-} >/dev/null 2>"$tmp/err" &
	local pid=$!
	for _ in $(seq 600); do
		grep -q 'tracing (Ctrl-C to stop)' "$tmp/err" 2>/dev/null && break
		sleep 0.1
	done
	sleep "$SETTLE"
	local ids t0 t1 left=0
	ids=$(prog_ids "$pid")
	t0=$(date +%s%N)
	kill -TERM "$pid"
	wait "$pid" || true
	t1=$(date +%s%N)
	# The kernel frees a program once its last reference is dropped, some
	# of them (tail-call tables) from a work queue: look again after 1 s.
	sleep 1
	for id in $ids; do
		bpftool prog show id "$id" >/dev/null 2>&1 && left=$((left + 1))
	done
	echo "$(( (t1 - t0) / 1000000 )) [$(echo $ids | wc -w) programs, $left still loaded 1 s later] $(grep -o 'stopped in.*' "$tmp/err" | head -1)"
}

declare -A all
for r in $(seq "$ROUNDS"); do
	for v in parallel sequential; do
		line=$(one "$v")
		echo "round $r $v: ${line%% *} ms  ${line#* }"
		all[$v]+="${line%% *} "
	done
done
for v in parallel sequential; do
	med=$(echo "${all[$v]}" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	echo "median $v: $med ms (runs: ${all[$v]})"
done
