#!/usr/bin/env bash
# How often the pipeline thread wakes, and what the agent costs, for two
# zt-trace binaries side by side: nginx (1 worker, 12-byte body) under
# `wrk -t1 -c$CONNS` (a closed loop: wrk has no fixed-rate mode), then
# idle; rounds run A B, B A, ...
# For a change to the ring buffer's wake-up (capture.bpf.c `rb_flags`).
#
#   A=/tmp/zt-old B=target/release/zt-trace ROUNDS=3 benches/wakeups.sh   # root
#   RATE=2000 A=... B=... benches/wakeups.sh   # a constant 2,000 req/s instead
#       (examples/openloop.rs, 16 keep-alive connections; built if missing)
#
# Per run: req/s, the agent's CPU per request (utime+stime of the whole
# process, from /proc/<pid>/stat), the pipeline thread's voluntary context
# switches per second under load and when idle (each one is a sleep that
# ended: a wake-up), the kernel drops the agent reported, and its RssAnon
# (heap) after the idle seconds that follow the load.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
IDLE=${IDLE:-5}
CONNS=${CONNS:-8}
PORT=${PORT:-18996}
NAME=wakeups.sh
. benches/lib/ab_nginx.sh

RATE=${RATE:-}
[ -z "$RATE" ] || build_openloop
# load: prints the achieved req/s.
load() {
  if [ -n "$RATE" ]; then
    openloop_rps "http://127.0.0.1:$PORT/" "$RATE" "$DURATION"
  else
    wrk_rps "http://127.0.0.1:$PORT/" "$CONNS" "$DURATION"
  fi
}

# one BIN: prints "req/s cpu_us_per_req wakeups_per_s_load wakeups_per_s_idle drops rss_anon_mib"
one() {
  local bin=$1
  start_agent "$bin"
  sleep 1
  local tid c0 s0 c1 s1 s2 rps
  tid=$(pipeline_tid "$AGENT")
  c0=$(cpu_ns "$AGENT")
  s0=$(switches "$AGENT" "$tid")
  rps=$(load)
  c1=$(cpu_ns "$AGENT")
  s1=$(switches "$AGENT" "$tid")
  sleep "$IDLE"
  s2=$(switches "$AGENT" "$tid")
  local anon
  anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$AGENT/status")
  stop_agent
  local drops
  drops=$(kernel_drops)
  awk -v rps="$rps" -v d="$DURATION" -v dc="$((c1 - c0))" \
    -v w1="$((s1 - s0))" -v w2="$((s2 - s1))" -v idle="$IDLE" -v drops="${drops:-?}" -v anon="$anon" \
    'BEGIN { printf "%.0f %.2f %.0f %.1f %s %.1f\n", rps, dc / 1e3 / (rps * d), w1 / d, w2 / idle, drops, anon / 1024 }'
}

ab_rounds "variant round: req/s, agent CPU us/request, pipeline wake-ups/s under load, wake-ups/s idle, kernel drops, RssAnon MiB after"
