#!/usr/bin/env bash
# Kernel-side cost of the capture, per request, in the worst case: nginx (1
# worker, 12-byte body) under wrk (1 thread, 32 connections) on loopback.
# For each agent binary given (A/B comparisons), rounds alternate: untraced,
# then each binary attached (`run --output none`). Prints req/s, the loss,
# and the BPF run time per request of each program (kernel.bpf_stats_enabled,
# switched off again at the end), the CPU time nginx and wrk used per
# request (they run in a cgroup of their own: its cpu.stat; unlike req/s
# this hardly moves when other jobs share the machine), plus the agent's
# events and MiB per request.
#
#   benches/kernel_cost.sh                          # this tree's release build
#   ROUNDS=3 benches/kernel_cost.sh /tmp/zt-old /tmp/zt-new
#   ZT_ARGS="--stage drain" benches/kernel_cost.sh  # variants of `run`
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
PORT=${PORT:-18998}
ZT_ARGS=${ZT_ARGS:-}
if [ $# -eq 0 ]; then
  cargo build --release -q -p cli
  set -- target/release/zt-trace
fi
work=$(mktemp -d)
CG2=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
CG=$CG2/zt-kernel-cost-$$
ZT_PID=
cleanup() {
  [ -n "$ZT_PID" ] && kill -INT "$ZT_PID" 2>/dev/null && wait "$ZT_PID" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled=0
  sleep 0.5
  if [ -d "$CG" ]; then
    for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do echo "$p" >"$CG2/cgroup.procs" 2>/dev/null || true; done
    rmdir "$CG" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$CG"
bash -c "echo \$\$ > $CG/cgroup.procs; . benches/lib/nginx.sh; start_nginx $work $PORT"

wrk_run() { # -> "req/s requests cpu_us_per_request" (nginx + wrk, from the cgroup)
  local out u0 u1
  u0=$(awk '$1 == "usage_usec" {print $2}' "$CG/cpu.stat")
  out=$(bash -c "echo \$\$ > $CG/cgroup.procs; exec wrk -t1 -c$CONNS -d${DURATION}s http://127.0.0.1:$PORT/")
  u1=$(awk '$1 == "usage_usec" {print $2}' "$CG/cpu.stat")
  local reqs
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $reqs $(python3 -c "print(round(($u1 - $u0) / $reqs, 2))")"
}

echo "# nginx 1 worker, wrk -t1 -c$CONNS -d${DURATION}s, $(nproc) CPUs, kernel $(uname -r), $(date -u +%FT%TZ)"
for r in $(seq 1 "$ROUNDS"); do
  read -r rps _ cpu < <(wrk_run)
  echo "round $r untraced: $rps req/s, nginx+wrk $cpu us CPU/request"
  i=0
  for bin in "$@"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    "$bin" run --output none $ZT_ARGS 2>"$work/zt.err" &
    ZT_PID=$!
    for _ in $(seq 1 300); do grep -q "tracing (Ctrl-C" "$work/zt.err" && break; sleep 0.1; done
    sysctl -qw kernel.bpf_stats_enabled=1
    python3 benches/lib/bpfstats.py snap "$ZT_PID" >"$work/a.json"
    read -r rps reqs cpu < <(wrk_run)
    python3 benches/lib/bpfstats.py snap "$ZT_PID" >"$work/b.json"
    sysctl -qw kernel.bpf_stats_enabled=0
    kill -INT "$ZT_PID"; wait "$ZT_PID" || true; ZT_PID=
    echo "round $r [$i] $bin: $rps req/s ($reqs requests), nginx+wrk $cpu us CPU/request"
    python3 benches/lib/bpfstats.py diff "$work/a.json" "$work/b.json" "$reqs" | sed 's/^/    /'
    grep -E 'events in|kernel drops|lost' "$work/zt.err" | sed 's/^/    /' || true
  done
done
