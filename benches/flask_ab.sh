#!/usr/bin/env bash
# What the agent costs on a realistic service, for two zt-trace binaries
# side by side: the two-service Flask chain of overhead.sh (A calls B per
# request over a new connection, Werkzeug's threaded server) under
# `wrk -t1 -c$CONNS`; rounds run A B, B A, ... For a change to the
# pipeline's batching or per-event work, where the nginx figures
# (wakeups.sh) say little: Flask's ~250 req/s leave the ring buffer nearly
# empty at every wake-up.
#
#   A=/tmp/zt-old B=target/release/zt-trace ROUNDS=3 benches/flask_ab.sh   # root
#
# Per run: req/s, the agent's CPU per request (utime+stime of the whole
# process over the load, from /proc/<pid>/stat), the pipeline thread's
# voluntary context switches per second under load (wake-ups), the agent's
# CPU over $IDLE idle seconds before the load, and from its exit summary the
# spans and traces it emitted (a whole trace has 4 spans: wrk's call, A's
# server and client spans, B's server span) and kernel drops.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
IDLE=${IDLE:-10}
CONNS=${CONNS:-8}
PORT=${PORT:-18600}
NAME=flask_ab.sh
. benches/lib/ab.sh
command -v wrk >/dev/null || { echo "$NAME: needs wrk (scripts/install-deps.sh)" >&2; exit 1; }
. benches/lib/flask.sh
start_flask_chain "$PORT"
# Warm both services (imports, first connections) before any round.
wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PORT/a" >/dev/null

# one BIN: prints "req/s cpu_us_per_req wakeups_per_s idle_cpu_ms spans traces drops"
one() {
  local bin=$1
  start_agent "$bin"
  sleep 1
  local tid i0 c0 s0 c1 s1 rps
  tid=$(pipeline_tid "$AGENT")
  i0=$(cpu_ns "$AGENT")
  sleep "$IDLE"
  c0=$(cpu_ns "$AGENT")
  s0=$(switches "$AGENT" "$tid")
  rps=$(wrk_rps "http://127.0.0.1:$PORT/a" "$CONNS" "$DURATION")
  c1=$(cpu_ns "$AGENT")
  s1=$(switches "$AGENT" "$tid")
  stop_agent
  local spans traces drops
  spans=$(grep -o '[0-9]* emitted in' "$work/err" | grep -o '^[0-9]*' | head -1 || true)
  traces=$(grep -o 'emitted in [0-9]* traces' "$work/err" | grep -o '[0-9]*' | head -1 || true)
  drops=$(kernel_drops)
  awk -v rps="$rps" -v d="$DURATION" -v dc="$((c1 - c0))" -v di="$((c0 - i0))" \
    -v w="$((s1 - s0))" -v spans="${spans:-?}" -v traces="${traces:-?}" -v drops="${drops:-0}" \
    'BEGIN { printf "%.1f %.1f %.0f %.0f %s %s %s\n", rps, dc / 1e3 / (rps * d), w / d, di / 1e6, spans, traces, drops }'
}

ab_rounds "variant round: req/s, agent CPU us/request, pipeline wake-ups/s under load, idle CPU ms over ${IDLE}s, spans emitted, traces (4 spans each when whole), kernel drops"
