#!/usr/bin/env bash
# Regenerates tests/golden/full_topology.{zrec,load.jsonl}: the 5-service
# topology (HTTP, gRPC to a grpcio service on MariaDB, PostgreSQL and a
# Redis pipeline), 30 requests from 4 clients, recorded by zt-trace.
# Only the topology's own processes are recorded (--pid), so other
# traffic on the machine stays out of the log. Needs root and the servers
# of scripts/start-servers.sh. Re-run when the raw record layout changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p cli
BIN=target/debug/zt-trace
T=tests/topology
(cd $T && python3 -c "import grpc_gen; grpc_gen.load()")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 200); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
OTEL_SERVICE_NAME=inventory python3 $T/inventory.py 18194 & pids+=($!)
OTEL_SERVICE_NAME=profile python3 $T/service.py profile 18193 & pids+=($!)
OTEL_SERVICE_NAME=users python3 $T/service.py users 18192 profile=18193 postgres=5432 redis=6379 & pids+=($!)
OTEL_SERVICE_NAME=auth python3 $T/service.py auth 18191 & pids+=($!)
OTEL_SERVICE_NAME=gateway python3 $T/service.py gateway 18190 auth=18191 users=18192 inventory=18194 & pids+=($!)
for p in 18190 18191 18192 18193 18194; do wait_port $p; done
# The load generator waits for the recorder, keeping its pid across exec.
go=$(mktemp -u)
mkfifo "$go"
bash -c "read _ < '$go'; OTEL_SERVICE_NAME=loadgen exec python3 $T/loadgen.py 18190 30 4 golden > tests/golden/full_topology.load.jsonl" & load=$!
pids+=($load)
args=()
for p in "${pids[@]}"; do args+=(--pid "$p"); done
err=$(mktemp)
$BIN record tests/golden/full_topology.zrec "${args[@]}" 2>"$err" & zt=$!
for _ in $(seq 1 300); do grep -q "tracing (Ctrl" "$err" && break; sleep 0.1; done
echo go > "$go"
wait $load
sleep 1
kill -INT $zt; wait $zt
grep "zt-trace:" "$err"
rm -f "$err" "$go"
