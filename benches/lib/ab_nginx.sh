# shellcheck shell=bash
# Common part of the A/B scripts that load nginx with wrk (wakeups.sh,
# burst_memory.sh): lib/ab.sh, a check for wrk, and nginx started on
# 127.0.0.1:$PORT. Source it after setting NAME and PORT.
. benches/lib/ab.sh
command -v wrk >/dev/null || { echo "$NAME: needs wrk" >&2; exit 1; }
. benches/lib/nginx.sh
start_nginx "$work" "$PORT"
