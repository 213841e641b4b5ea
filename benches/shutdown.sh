#!/usr/bin/env bash
# Time from SIGTERM to exit of `zt-trace run`, and where it goes.
#
#   ROUNDS=5 benches/shutdown.sh            # needs root; builds the release binary
#   RUNTIMES=1 ROUNDS=3 benches/shutdown.sh # with Go, Python and Node processes running
#
# Each round starts `zt-trace run --output none` (plus ZT_ARGS), waits until
# it is tracing, lets it run SETTLE seconds, sends SIGTERM and measures the
# wall time until the process is gone. Variants alternate within a round so
# all see the same machine load (VARIANTS picks some; default all three):
#   multi       the default: uprobes as uprobe_multi links, every attachment
#               detached from a thread of its own
#   perf_event  ZT_UPROBE_PERF_EVENT=1: uprobes as aya's perf-event uprobes
#               (what kernels before 6.6 get), detached in parallel
#   sequential  perf-event uprobes and ZT_DETACH_SEQUENTIAL=1: one after
#               the other (the first way)
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
VARIANTS=${VARIANTS:-multi perf_event sequential}
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -p cli >/dev/null
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }

tmp=$(mktemp -d)
runtime_pids=()
trap 'kill "${runtime_pids[@]}" 2>/dev/null; rm -rf "$tmp"' EXIT

# RUNTIMES=1: keep a Go service, a Python server and a Node process running,
# so that the tracer also attaches its goroutine probes, CPython context
# probes and OpenSSL probes inside node (4 files probed instead of libssl
# alone), as on a real host.
if [ "${RUNTIMES:-0}" = 1 ]; then
	(cd tests/topology/go && CGO_ENABLED=0 GO111MODULE=off go build -o "$tmp/gateway" gateway.go)
	"$tmp/gateway" 18391 >/dev/null 2>&1 & runtime_pids+=($!)
	python3 -m http.server -b 127.0.0.1 18392 >/dev/null 2>&1 & runtime_pids+=($!)
	node -e 'setInterval(() => {}, 1000)' & runtime_pids+=($!)
	sleep 1
fi

# Program ids held by process $1.
prog_ids() { grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u; }

# one VARIANT: prints "<ms from SIGTERM to exit> <shutdown summary line>"
one() {
	local variant=$1 env=()
	case $variant in
	perf_event) env=(ZT_UPROBE_PERF_EVENT=1) ;;
	sequential) env=(ZT_UPROBE_PERF_EVENT=1 ZT_DETACH_SEQUENTIAL=1) ;;
	esac
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
	for v in $VARIANTS; do
		line=$(one "$v")
		echo "round $r $v: ${line%% *} ms  ${line#* }"
		all[$v]+="${line%% *} "
	done
done
for v in $VARIANTS; do
	med=$(echo "${all[$v]}" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	echo "median $v: $med ms (runs: ${all[$v]})"
done
