#!/usr/bin/env bash
# The agent's heap after a burst, for two zt-trace binaries side by side:
# nginx (1 worker) under `wrk -t1 -c8` for DURATION seconds, then idle;
# the agent's RssAnon (/proc/<pid>/status) before the burst and 1, 5 and
# 15 s after it. Rounds run A B, B A, ...
#
#   A=/tmp/zt-old B=target/release/zt-trace ROUNDS=3 benches/burst_memory.sh   # root
#
# At ~120k req/s the tables fill with the last linger's spans (200 ms, tens
# of thousands) and the reorder window; within a second after the burst
# they are empty again, and what RssAnon still shows is what the allocator
# kept.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
PORT=${PORT:-18995}
NAME=burst_memory.sh
. benches/lib/ab_nginx.sh

anon_mib() { awk '/^RssAnon:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# one BIN: prints "req/s before +1s +5s +15s" (RssAnon MiB)
one() {
  start_agent "$1"
  sleep 2
  local before rps a1 a5 a15
  before=$(anon_mib "$AGENT")
  rps=$(printf '%.0f' "$(wrk_rps "http://127.0.0.1:$PORT/" 8 "$DURATION")")
  sleep 1; a1=$(anon_mib "$AGENT")
  sleep 4; a5=$(anon_mib "$AGENT")
  sleep 10; a15=$(anon_mib "$AGENT")
  stop_agent
  echo "$rps $before $a1 $a5 $a15"
}

ab_rounds "variant round: req/s; agent RssAnon MiB before the burst, 1 s, 5 s and 15 s after it"
