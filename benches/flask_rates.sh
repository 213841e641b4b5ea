#!/usr/bin/env bash
# What the agent costs on the Flask chain at fixed request rates, for two
# zt-trace binaries side by side: per rate, the agent's CPU per second and
# per request and the pipeline thread's wake-ups per second, with the
# chain driven at a constant rate by examples/openloop.rs (16 connections).
# The fixed part of the agent's cost (what a wake-up costs, whatever it
# brings) is the intercept of CPU per second against the rate; the
# per-request part is the slope. Rounds run A B, B A, ...
#
#   A=/tmp/zt-old B=target/release/zt-trace ROUNDS=2 benches/flask_rates.sh   # root
#   RATES="50 400" DURATION=20 A=... B=... benches/flask_rates.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10}
RATES=${RATES:-50 100 200 400}
PORT=${PORT:-18610}
NAME=flask_rates.sh
. benches/lib/ab.sh
. benches/lib/flask.sh
build_openloop
start_flask_chain "$PORT"
openloop_rps "http://127.0.0.1:$PORT/a" 100 2 >/dev/null

# one BIN: per rate, "rate: achieved req/s, agent ms/s, µs/request, wake-ups/s"
one() {
  start_agent "$1"
  sleep 2
  local tid out="" r c0 s0 c1 s1 got
  tid=$(pipeline_tid "$AGENT")
  for r in $RATES; do
    c0=$(cpu_ns "$AGENT")
    s0=$(switches "$AGENT" "$tid")
    got=$(openloop_rps "http://127.0.0.1:$PORT/a" "$r" "$DURATION")
    c1=$(cpu_ns "$AGENT")
    s1=$(switches "$AGENT" "$tid")
    out+=$(awk -v r="$r" -v got="$got" -v dc="$((c1 - c0))" -v d="$DURATION" -v w="$((s1 - s0))" \
      'BEGIN { ms = dc / 1e6 / d; printf " | @%s: %.0f req/s, %.1f ms/s, %.0f us/req, %.0f wake-ups/s", r, got, ms, ms * 1e3 / got, w / d }')
  done
  stop_agent
  echo "${out# | } | kernel drops $(kernel_drops)"
}

ab_rounds "variant round: per rate: achieved req/s, agent CPU ms per second and µs per request, pipeline wake-ups/s"
