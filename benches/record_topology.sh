#!/bin/bash
# Record the 4-service HTTP topology under 10,000 requests (16 clients)
# with the agent binary $1 into the event log $2 (root; python3). For
# A/B replays of two agents on the same log (BENCHMARKS.md, issue 9).
set -euo pipefail
T="$(cd "$(dirname "$0")/.." && pwd)/tests/topology"
BIN=$1; OUT=$2
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start() { OTEL_SERVICE_NAME=$1 python3 $T/service.py "$@" >/dev/null 2>&1 & pids+=($!); }
start profile 19301
start users 19302 profile=19301
start auth 19303
start gateway 19304 auth=19303 users=19302
sleep 2
RUST_LOG=warn "$BIN" record "$OUT" > /dev/null 2>"$OUT.err" & ZP=$!
sleep 4
python3 $T/loadgen.py 19304 10000 16 abr > /dev/null
sleep 1
kill -INT $ZP; wait $ZP || true
tail -3 "$OUT.err"; ls -la "$OUT"
