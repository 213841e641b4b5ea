# shellcheck shell=bash
# Common part of the A/B scripts that load nginx with wrk (wakeups.sh,
# burst_memory.sh). Source it after setting PORT; it checks A, B, root and
# wrk, makes $work (removed on exit, with the nginx and the agent still
# running), starts nginx on 127.0.0.1:$PORT, and defines start_agent.
# NAME: the script's name, for messages.
A=${A:?A=path of the first zt-trace binary}
B=${B:?B=path of the second zt-trace binary}
[ "$(id -u)" = 0 ] || { echo "$NAME: needs root" >&2; exit 1; }
command -v wrk >/dev/null || { echo "$NAME: needs wrk" >&2; exit 1; }
work=$(mktemp -d)
AGENT=
cleanup() {
  [ -n "$AGENT" ] && kill -TERM "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
. benches/lib/nginx.sh
start_nginx "$work" "$PORT"

# start_agent BIN: `BIN run --output none` in the background (pid in
# $AGENT, stderr in $work/err), back once it is tracing.
start_agent() {
  "$1" run --output none >/dev/null 2>"$work/err" &
  AGENT=$!
  for _ in $(seq 600); do
    grep -q 'tracing (Ctrl-C to stop)' "$work/err" 2>/dev/null && break
    sleep 0.1
  done
}
