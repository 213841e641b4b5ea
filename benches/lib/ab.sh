# shellcheck shell=bash
# Common part of the A/B scripts (wakeups.sh, burst_memory.sh, flask_ab.sh,
# flask_rates.sh):
# source it after setting NAME (the script's name, for messages). It checks
# A, B and root, makes $work (removed on exit, with the agent, the pids in
# PIDS and an nginx whose pid file is $work/nginx.pid stopped), and defines
# the helpers below. The script defines `one BIN` (one run, one line of
# figures) and calls `ab_rounds HEADER`.
A=${A:?A=path of the first zt-trace binary}
B=${B:?B=path of the second zt-trace binary}
[ "$(id -u)" = 0 ] || { echo "$NAME: needs root" >&2; exit 1; }
work=$(mktemp -d)
AGENT=
PIDS=()
cleanup() {
  [ -n "$AGENT" ] && kill -TERM "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

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

# stop_agent: SIGTERM, and wait for its exit summary.
stop_agent() {
  kill -TERM "$AGENT"
  wait "$AGENT" || true
  AGENT=
}

# kernel_drops: from the exit summary of the agent last stopped.
kernel_drops() {
  grep -o 'kernel drops: [0-9]* events lost' "$work/err" | grep -o '[0-9]*' | head -1 || true
}

# cpu_ns PID: time on CPU of the process's live threads, in ns
# (schedstat: clock ticks rounded a 10 s window to 1 ms/s).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d\n", s }'; }
# pipeline_tid PID: the agent's pipeline thread.
pipeline_tid() {
  for t in /proc/"$1"/task/*; do
    [ "$(cat "$t/comm")" = zt-pipeline ] && { basename "$t"; return; }
  done
}
# switches PID TID: voluntary context switches of a thread (each one a
# sleep that ended: a wake-up).
switches() { awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$1/task/$2/status"; }

# wrk_rps URL CONNS SECONDS: a closed-loop load (`wrk -t1`); prints req/s.
wrk_rps() {
  wrk -t1 -c"$2" -d"$3s" "$1" 2>&1 | awk '/Requests\/sec/ {print $2}'
}

# openloop_rps URL RATE SECONDS: a constant-rate load (examples/openloop.rs,
# 16 keep-alive connections); prints the achieved req/s. Call
# build_openloop first, before anything is measured.
OPENLOOP=target/release/examples/openloop
build_openloop() { [ -x "$OPENLOOP" ] || cargo build --release -q --example openloop; }
openloop_rps() {
  "$OPENLOOP" "$1" "$2" "$3" 16 | grep -o 'achieved [0-9.]*' | grep -o '[0-9.]*$'
}

# ab_rounds HEADER: ROUNDS rounds of `one A` and `one B`, in the order
# A B, B A, A B, ... (ABBA): whatever drifts over a run (the Flask chain
# got faster the longer it ran) then favours neither. With the second
# always B, two identical binaries measured B lower in all 4 pairs, by 5%
# at 100 req/s and 13-17% at 400 req/s on the Flask chain (BENCHMARKS.md,
# "A/A: the order of the runs in a round").
ab_rounds() {
  echo "$1"
  local r v bin order
  for r in $(seq "$ROUNDS"); do
    order="A B"
    [ $((r % 2)) = 0 ] && order="B A"
    for v in $order; do
      bin=$A
      [ "$v" = B ] && bin=$B
      echo "$v $r: $(one "$bin")"
    done
  done
}
