#!/usr/bin/env bash
# Reproducible overhead harness: nginx (1 worker, 12-byte body) on loopback
# under wrk (1 thread, 32 connections), alternating rounds without and with
# `zt-trace run` attached (release build, no stdout output: the kernel capture
# and the whole user-space pipeline still run). Prints one line per round and
# the medians. Needs root, nginx and wrk (scripts/install-deps.sh).
#
#   bench/overhead.sh                 # 3 rounds of 10 s each
#   ROUNDS=5 DURATION=20 bench/overhead.sh
#   ZT_ARGS="--capture-bytes 256" bench/overhead.sh   # variants
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
PORT=${PORT:-18999}
ZT_ARGS=${ZT_ARGS:-}

cargo build --release -q -p cli
BIN=target/release/zt-trace
work=$(mktemp -d)
cleanup() {
  [ -n "${ZT_PID:-}" ] && kill -INT "$ZT_PID" 2>/dev/null && wait "$ZT_PID" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$PORT;
    location / { return 200 "hello world\n"; }
  }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
sleep 0.5

# wrk prints "Requests/sec: N" and, with --latency, "99%  X(us|ms|s)".
measure() {
  local out
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/")
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $p99"
}

to_us() { # 1.23ms -> 1230
  python3 -c "import sys,re; v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)',v); f={'us':1,'ms':1e3,'s':1e6}[m.group(2)]; print(round(float(m.group(1))*f))" "$1"
}

echo "# nginx 1 worker, wrk -t1 -c$CONNS -d${DURATION}s, $(nproc) CPUs, kernel $(uname -r)"
echo "# round  variant     req/s      p99(us)"
base_rps=(); base_p99=(); zt_rps=(); zt_p99=()
for r in $(seq 1 "$ROUNDS"); do
  read -r rps p99 < <(measure)
  p99=$(to_us "$p99"); base_rps+=("$rps"); base_p99+=("$p99")
  printf "%-7s %-10s %10s %10s\n" "$r" untraced "$rps" "$p99"

  # shellcheck disable=SC2086
  $BIN run --output none $ZT_ARGS 2>"$work/zt.err" &
  ZT_PID=$!
  for _ in $(seq 1 200); do grep -q "tracing (Ctrl-C" "$work/zt.err" && break; sleep 0.1; done
  read -r rps p99 < <(measure)
  kill -INT "$ZT_PID"; wait "$ZT_PID"; ZT_PID=
  p99=$(to_us "$p99"); zt_rps+=("$rps"); zt_p99+=("$p99")
  printf "%-7s %-10s %10s %10s   %s\n" "$r" zt-trace "$rps" "$p99" \
    "$(grep -E 'events in|kernel drops' "$work/zt.err" | sed 's/zt-trace: //' | tr '\n' ';')"
done

median() { printf "%s\n" "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
b=$(median "${base_rps[@]}"); z=$(median "${zt_rps[@]}")
bp=$(median "${base_p99[@]}"); zp=$(median "${zt_p99[@]}")
echo "# median untraced: $b req/s, p99 ${bp}us"
echo "# median zt-trace: $z req/s, p99 ${zp}us"
python3 -c "import sys; b,z=float(sys.argv[1]),float(sys.argv[2]); print('# throughput loss: %.1f%%, extra CPU per request: %.2f us (2 cores saturated)' % (100*(b-z)/b, 2e6/z-2e6/b))" "$b" "$z"
