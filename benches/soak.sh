#!/usr/bin/env bash
# Soak: zt-trace under steady load with connection and process churn.
#
#   DURATION=600 benches/soak.sh        # needs root, nginx, python3; 10 minutes
#
# Load (examples/openloop.rs, open loop, constant rate):
#   - RATE_STATIC req/s (default 4700) to nginx `return 200`, which closes
#     every connection after KEEPALIVE_REQUESTS (default 10) requests:
#     ~470 new connections/s;
#   - RATE_SVC req/s (default 300) to nginx /svc/, proxied to a Python
#     service (tests/topology/service.py, one new upstream connection per
#     request) that is SIGKILLed and started again every RESTART_EVERY
#     seconds (default 30): process churn, requests cut by the kill.
# The tracer runs `zt-trace run --output none` the whole time. Every
# SAMPLE_EVERY seconds (default 10) the script records the agent's resident
# memory (VmRSS, and RssAnon: its heap); every 30 s the agent logs how full its tables are
# (assembler tables, and every hash map of the probes, counted entry by
# entry). At the end it stops the tracer and prints its summary: kernel
# drops, spans dropped, the tables at exit, panics (none expected).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
RATE_STATIC=${RATE_STATIC:-4700}
RATE_SVC=${RATE_SVC:-300}
KEEPALIVE_REQUESTS=${KEEPALIVE_REQUESTS:-10}
RESTART_EVERY=${RESTART_EVERY:-30}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
BIN=${BIN:-target/release/zt-trace}
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
	cargo build --release -q -p cli
	cargo build --release -q --example openloop
fi
OPENLOOP=target/release/examples/openloop

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	[ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
	[ -f "$tmp/svc.pid" ] && kill -9 "$(cat "$tmp/svc.pid")" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(free_port)
SVC_PORT=$(free_port)

mkdir -p "$tmp/logs"
cat >"$tmp/nginx.conf" <<EOF
worker_processes 1; pid $tmp/nginx.pid; error_log $tmp/logs/error.log crit; daemon on;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp;
  uwsgi_temp_path $tmp; scgi_temp_path $tmp;
  keepalive_requests $KEEPALIVE_REQUESTS;
  server { listen 127.0.0.1:$NGINX_PORT;
    location /svc/ { proxy_pass http://127.0.0.1:$SVC_PORT/; }
    location / { return 200 "ok\n"; } } }
EOF
nginx -c "$tmp/nginx.conf" -p "$tmp"

start_svc() {
	OTEL_SERVICE_NAME=churn python3 tests/topology/service.py profile "$SVC_PORT" \
		>/dev/null 2>&1 &
	echo $! >"$tmp/svc.pid"
}
start_svc

RUST_LOG=${RUST_LOG:-info,zt_trace=debug} "$BIN" run --output none ${ZT_ARGS:-} \
	>/dev/null 2>"$tmp/tracer.err" &
tracer=$!
pids+=("$tracer")
for _ in $(seq 600); do
	grep -q 'tracing (Ctrl-C to stop)' "$tmp/tracer.err" && break
	sleep 0.1
done

"$OPENLOOP" "http://127.0.0.1:$NGINX_PORT/" "$RATE_STATIC" "$DURATION" 32 >"$tmp/load-static" 2>&1 &
pids+=("$!")
"$OPENLOOP" "http://127.0.0.1:$NGINX_PORT/svc/profile/1" "$RATE_SVC" "$DURATION" 8 >"$tmp/load-svc" 2>&1 &
pids+=("$!")

echo "# t_s rss_kib rss_anon_kib"
start=$(date +%s)
next_restart=$((start + RESTART_EVERY))
restarts=0
while :; do
	now=$(date +%s)
	t=$((now - start))
	[ "$t" -ge "$DURATION" ] && break
	echo "$t $(awk '/^VmRSS/ {r = $2} /^RssAnon/ {a = $2} END {print r, a}' /proc/"$tracer"/status)"
	if [ "$now" -ge "$next_restart" ]; then
		kill -9 "$(cat "$tmp/svc.pid")" 2>/dev/null || true
		start_svc
		restarts=$((restarts + 1))
		next_restart=$((next_restart + RESTART_EVERY))
	fi
	sleep "$SAMPLE_EVERY"
done
wait "${pids[1]}" "${pids[2]}" 2>/dev/null || true
echo "# load (achieved rate, latency us p50/p90/p99/p99.9/max, errors):"
echo "static: $(tail -1 "$tmp/load-static")"
echo "svc:    $(tail -1 "$tmp/load-svc")"
echo "# service restarts (SIGKILL): $restarts"
echo "# tables every 30 s (from the agent's log):"
grep 'tables: ' "$tmp/tracer.err" | sed -E 's/^\[([^ ]+) .*tables: /\1 /'
kill -TERM "$tracer"
wait "$tracer" && status=0 || status=$?
echo "# zt-trace exit status $status; summary:"
grep '^zt-trace:' "$tmp/tracer.err" || true
echo "# panics: $(grep -c 'panicked' "$tmp/tracer.err" || true)"
