#!/usr/bin/env bash
# Regenerates tests/golden/demo_catalog.{zrec,load.jsonl}: the demo's
# topology (gateway -> auth, users -> profile, catalog -> MariaDB + Redis;
# catalog.py does an N+1, reads one Redis key twice per request and fails
# one request in ten on a missing table), 30 requests from 4 clients,
# recorded by zt-trace. Only the topology's own processes are recorded
# (--pid). The dashboard's replay tests (TestBackend snapshots, plain
# report, tmux) read it. Needs root and the servers of
# scripts/start-servers.sh. Re-run when the raw record layout changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p cli
BIN=target/debug/zt-trace
T=tests/topology
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
OTEL_SERVICE_NAME=catalog python3 $T/catalog.py 18284 3306 6379 & pids+=($!)
OTEL_SERVICE_NAME=profile python3 $T/service.py profile 18283 & pids+=($!)
OTEL_SERVICE_NAME=users python3 $T/service.py users 18282 profile=18283 & pids+=($!)
OTEL_SERVICE_NAME=auth python3 $T/service.py auth 18281 & pids+=($!)
OTEL_SERVICE_NAME=gateway python3 $T/service.py gateway 18280 auth=18281 users=18282 catalog=18284 & pids+=($!)
for p in 18280 18281 18282 18283 18284; do wait_port $p; done
# The load generator waits for the recorder, keeping its pid across exec.
go=$(mktemp -u)
mkfifo "$go"
bash -c "read _ < '$go'; OTEL_SERVICE_NAME=loadgen exec python3 $T/loadgen.py 18280 30 4 golden > tests/golden/demo_catalog.load.jsonl" & load=$!
pids+=($load)
args=()
for p in "${pids[@]}"; do args+=(--pid "$p"); done
err=$(mktemp)
$BIN record tests/golden/demo_catalog.zrec "${args[@]}" 2>"$err" & zt=$!
for _ in $(seq 1 300); do grep -q "tracing (Ctrl" "$err" && break; sleep 0.1; done
echo go > "$go"
wait $load
sleep 1
kill -INT $zt; wait $zt
grep "zt-trace:" "$err"
rm -f "$err" "$go"
