#!/usr/bin/env bash
# Regenerates tests/golden/http_topology.{zrec,load.jsonl}: the 4-service
# topology on loopback, 20 requests from 4 clients, recorded by zt-trace.
# Needs root. Re-run when the raw record layout (zt_events.h) changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p cli
BIN=target/debug/zt-trace
T=tests/topology
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
OTEL_SERVICE_NAME=profile python3 $T/service.py profile 18093 & pids+=($!)
OTEL_SERVICE_NAME=users python3 $T/service.py users 18092 profile=18093 & pids+=($!)
OTEL_SERVICE_NAME=auth python3 $T/service.py auth 18091 & pids+=($!)
OTEL_SERVICE_NAME=gateway python3 $T/service.py gateway 18090 auth=18091 users=18092 & pids+=($!)
sleep 1
err=$(mktemp)
$BIN record tests/golden/http_topology.zrec 2>"$err" & zt=$!
for _ in $(seq 1 300); do grep -q "tracing (Ctrl" "$err" && break; sleep 0.1; done
python3 $T/loadgen.py 18090 20 4 golden > tests/golden/http_topology.load.jsonl
sleep 1
kill -INT $zt; wait $zt
grep "zt-trace:" "$err"
rm -f "$err"
