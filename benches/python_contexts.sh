#!/usr/bin/env bash
# Cost of the CPython context probes (uprobes on libpython's context_run and
# context_tp_dealloc), which fire on every contextvars.Context.run: every
# asyncio callback, every grpcio handler. Alternating rounds of three
# variants, measured in one run:
#   untraced            no zt-trace
#   zt(no contexts)     zt-trace run --no-python-contexts
#   zt(contexts)        zt-trace run (the default)
# Two workloads: a micro-benchmark (1M Context.run of a no-op, ns per call),
# and an asyncio HTTP server (stdlib, 1 loop thread) under wrk -t1 -c32.
# Needs root, wrk and a python3 with a shared libpython (pyenv builds here).
#
#   benches/python_contexts.sh                    # 3 rounds, 10 s wrk runs
#   ROUNDS=5 DURATION=20 benches/python_contexts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
PORT=${PORT:-18998}

cargo build --release -q -p cli
BIN=target/release/zt-trace
work=$(mktemp -d)
cleanup() {
  [ -n "${ZT_PID:-}" ] && kill -INT "$ZT_PID" 2>/dev/null && wait "$ZT_PID" 2>/dev/null || true
  [ -n "${SRV_PID:-}" ] && kill "$SRV_PID" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/micro.py" <<'PY'
import contextvars, time
ctx, f, n = contextvars.Context(), (lambda: None), 1_000_000
t = time.perf_counter()
for _ in range(n):
    ctx.run(f)
print(round((time.perf_counter() - t) / n * 1e9))
PY
cat > "$work/server.py" <<'PY'
import asyncio, sys
async def handle(r, w):
    try:
        while True:
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world\n")
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=256)
    async with s:
        await s.serve_forever()
asyncio.run(main())
PY
python3 "$work/server.py" "$PORT" & SRV_PID=$!
sleep 1

measure() {
  local out
  out=$(wrk -t1 -c32 -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/")
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1=="99%" {print $2}')"
}
start_zt() {
  # shellcheck disable=SC2086
  $BIN run --output none "$@" 2>"$work/zt.err" &
  ZT_PID=$!
  for _ in $(seq 1 200); do grep -q "tracing (Ctrl-C" "$work/zt.err" && break; sleep 0.1; done
}
stop_zt() { kill -INT "$ZT_PID"; wait "$ZT_PID"; ZT_PID=; }

echo "# asyncio HTTP server (1 loop thread), wrk -t1 -c32 -d${DURATION}s; Context.run micro-benchmark; $(nproc) CPUs, kernel $(uname -r)"
echo "# round  variant            ns/Context.run  req/s      p99"
declare -A ns rps
for r in $(seq 1 "$ROUNDS"); do
  for v in untraced "zt(no contexts)" "zt(contexts)"; do
    case $v in
      untraced) ;;
      "zt(no contexts)") start_zt --no-python-contexts ;;
      *) start_zt ;;
    esac
    n=$(python3 "$work/micro.py")
    read -r q p99 < <(measure)
    [ "$v" = untraced ] || stop_zt
    printf "%-7s %-18s %14s %10s %8s\n" "$r" "$v" "$n" "$q" "$p99"
    ns[$v]="${ns[$v]:-} $n"; rps[$v]="${rps[$v]:-} $q"
  done
done
median() { printf "%s\n" $@ | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for v in untraced "zt(no contexts)" "zt(contexts)"; do
  printf "# median %-18s %8s ns/Context.run %10s req/s\n" "$v" "$(median ${ns[$v]})" "$(median ${rps[$v]})"
done
