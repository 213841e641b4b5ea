#!/usr/bin/env bash
# Cost of the goroutine probes (uprobes on runtime.newproc1's entry and every
# RET, runtime.goexit1, and net/http's client hand-off: persistConn.roundTrip,
# persistConn.writeLoop, Request.write), plus the task lookup every data
# event of a Go process makes. Alternating rounds of three variants, in one
# run:
#   untraced          no zt-trace
#   zt(no go tasks)   zt-trace run --no-go-tasks
#   zt(go tasks)      zt-trace run (the default)
# Workloads (Go 1.19, CGO_ENABLED=0):
#   spawn   1M goroutines created and joined one at a time: ns per goroutine
#   calls   20k sequential HTTP/1 GETs over a keep-alive http.Client to a
#           net/http server in the same process: ns per call (both ends)
#   server  a net/http hello server under wrk -t1 -c32: req/s and p99
# With kernel.bpf_stats_enabled, the run time per firing of each goroutine
# program is read from the kernel in the last zt(go tasks) round.
# Needs root, go and wrk.
#
#   benches/go_tasks.sh                    # 3 rounds, 10 s wrk runs
#   ROUNDS=5 DURATION=20 benches/go_tasks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
PORT=${PORT:-18997}

cargo build --release -q -p cli
BIN=target/release/zt-trace
work=$(mktemp -d)
cleanup() {
  [ -n "${ZT_PID:-}" ] && kill -INT "$ZT_PID" 2>/dev/null && wait "$ZT_PID" 2>/dev/null || true
  [ -n "${SRV_PID:-}" ] && kill "$SRV_PID" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled=0 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/micro" "$work/server"
cat > "$work/micro/main.go" <<'GO'
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	// Let the tracer find this process and attach its probes first.
	time.Sleep(2 * time.Second)
	switch os.Args[1] {
	case "spawn":
		const n = 1000000
		done := make(chan struct{})
		t := time.Now()
		for i := 0; i < n; i++ {
			go func() { done <- struct{}{} }()
			<-done
		}
		fmt.Println(time.Since(t).Nanoseconds() / n)
	case "calls":
		const n = 20000
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("hello world\n"))
		}))
		url := "http://" + l.Addr().String() + "/"
		get := func() {
			resp, err := http.Get(url)
			if err != nil {
				panic(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		get()
		t := time.Now()
		for i := 0; i < n; i++ {
			get()
		}
		fmt.Println(time.Since(t).Nanoseconds() / n)
	}
}
GO
cat > "$work/server/main.go" <<'GO'
package main

import (
	"net/http"
	"os"
)

func main() {
	http.ListenAndServe("127.0.0.1:"+os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello world\n"))
	}))
}
GO
for p in micro server; do
  (cd "$work/$p" && CGO_ENABLED=0 GO111MODULE=off go build -o "$work/$p.bin" .)
done
"$work/server.bin" "$PORT" & SRV_PID=$!
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

# Kernel run time of the agent's goroutine programs: "name runs ns/run".
bpf_costs() {
  local ids
  ids=$(grep -h '^prog_id:' /proc/"$ZT_PID"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u)
  for id in $ids; do
    bpftool prog show id "$id" -j 2>/dev/null
    echo
  done | python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    p = json.loads(line)
    if p.get("name", "").startswith(("zt_go_", "zt_emit")) and p.get("run_cnt"):
        print("%-16s %10d runs %8.0f ns/run" % (p["name"], p["run_cnt"], p["run_time_ns"] / p["run_cnt"]))
'
}

echo "# Go net/http hello server, wrk -t1 -c32 -d${DURATION}s; goroutine spawn and HTTP call micro-benchmarks; $(nproc) CPUs, kernel $(uname -r), $(go version | awk '{print $3}')"
echo "# round  variant           ns/goroutine  ns/call  req/s      p99"
declare -A sp ca rps
variants=(untraced "zt(no go tasks)" "zt(go tasks)")
for r in $(seq 1 "$ROUNDS"); do
  for v in "${variants[@]}"; do
    case $v in
      untraced) ;;
      "zt(no go tasks)") start_zt --no-go-tasks ;;
      *)
        [ "$r" = "$ROUNDS" ] && sysctl -qw kernel.bpf_stats_enabled=1
        start_zt
        ;;
    esac
    s=$("$work/micro.bin" spawn)
    c=$("$work/micro.bin" calls)
    read -r q p99 < <(measure)
    if [ "$v" = "zt(go tasks)" ] && [ "$r" = "$ROUNDS" ]; then
      costs=$(bpf_costs)
      sysctl -qw kernel.bpf_stats_enabled=0
    fi
    [ "$v" = untraced ] || stop_zt
    printf "%-7s %-17s %13s %8s %10s %8s\n" "$r" "$v" "$s" "$c" "$q" "$p99"
    sp[$v]="${sp[$v]:-} $s"; ca[$v]="${ca[$v]:-} $c"; rps[$v]="${rps[$v]:-} $q"
  done
done
median() { printf "%s\n" $@ | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for v in "${variants[@]}"; do
  printf "# median %-17s %8s ns/goroutine %8s ns/call %10s req/s\n" "$v" "$(median ${sp[$v]})" "$(median ${ca[$v]})" "$(median ${rps[$v]})"
done
echo "# kernel run time per firing, last zt(go tasks) round (bpf_stats; excludes the uprobe trap itself):"
echo "${costs:-# (none read)}"
