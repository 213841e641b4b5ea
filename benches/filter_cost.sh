#!/usr/bin/env bash
# What the in-kernel filters save, in the worst case: nginx (1 worker,
# 12-byte body) and wrk (-t1 -c32) on loopback, both in a cgroup of their
# own, rounds alternating between: untraced; two empty raw syscall
# tracepoint programs (the floor); the capture probes with no filter; the
# capture probes excluding nginx's port; excluding the cgroup. The probes
# run with a minimal user side (crates/ebpf-probes/examples/filter_cost.rs:
# drain, decode, count), so the figures are the kernel side's. Prints
# req/s, the loss against untraced, the CPU time nginx and wrk used per
# request (the cgroup's cpu.stat: their syscalls include the probes' time,
# and unlike req/s it hardly moves when other jobs share the machine), and
# what reached user space (records, bytes, data events on nginx's port).
# Needs root, nginx, wrk, clang and a cgroup v2 mount.
#
#   benches/filter_cost.sh                 # 3 rounds of 10 s
#   ROUNDS=5 DURATION=20 benches/filter_cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
PORT=${PORT:-18995}
cargo build --release -q -p zt-ebpf-probes --example filter_cost
BIN=target/release/examples/filter_cost
work=$(mktemp -d)
clang -O2 -g -target bpf -c benches/lib/empty.bpf.c -o "$work/empty.bpf.o"
CG2=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
[ -n "$CG2" ] || { echo "filter_cost.sh: no cgroup v2 mount" >&2; exit 1; }
CG=$CG2/zt-filter-cost-$$
AGENT=
cleanup() {
  [ -n "$AGENT" ] && kill -INT "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  sleep 0.5
  if [ -d "$CG" ]; then
    for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do echo "$p" >"$CG2/cgroup.procs" 2>/dev/null || true; done
    rmdir "$CG" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$CG"
. benches/lib/nginx.sh
# nginx (master and worker) inside the cgroup.
bash -c "echo \$\$ > $CG/cgroup.procs; . benches/lib/nginx.sh; start_nginx $work $PORT"

wrk_in_cgroup() {
  local out
  out=$(bash -c "echo \$\$ > $CG/cgroup.procs; exec wrk -t1 -c32 -d${DURATION}s http://127.0.0.1:$PORT/" 2>&1) ||
    echo "wrk failed: $out" >&2
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}

run_variant() { # NAME ARGS...: prints "name req/s cpu_usec records bytes on_port"
  local name=$1
  shift
  local rps out="- - -"
  if [ $# -gt 0 ]; then
    "$BIN" "$@" >"$work/agent.out" 2>"$work/agent.err" &
    AGENT=$!
    for _ in $(seq 1 900); do grep -q ready "$work/agent.out" && break; sleep 0.1; done
    grep -q ready "$work/agent.out" || { cat "$work/agent.err" >&2; exit 1; }
  fi
  local u0 u1
  u0=$(awk '$1 == "usage_usec" {print $2}' "$CG/cpu.stat")
  rps=$(wrk_in_cgroup)
  u1=$(awk '$1 == "usage_usec" {print $2}' "$CG/cpu.stat")
  if [ -n "$AGENT" ]; then
    kill -INT "$AGENT"; wait "$AGENT" || true; AGENT=
    out=$(awk '/^records/ {print $2, $4, $6}' "$work/agent.out")
  fi
  echo "$name $rps $((u1 - u0)) $out"
}

echo "# nginx + wrk -t1 -c32 -d${DURATION}s in cgroup $CG, $(nproc) CPUs, kernel $(uname -r), $(date -u +%FT%TZ)"
: >"$work/results"
# Not in a pipeline: the agent must stay this shell's child, so that the
# EXIT trap stops it whatever happens.
for r in $(seq 1 "$ROUNDS"); do
  run_variant untraced >>"$work/results"
  run_variant empty-programs empty "$work/empty.bpf.o" >>"$work/results"
  run_variant capture capture "$PORT" >>"$work/results"
  run_variant exclude-port capture "$PORT" --exclude-port "$PORT" >>"$work/results"
  run_variant exclude-cgroup capture "$PORT" --exclude-cgroup "$CG" >>"$work/results"
  tail -n 5 "$work/results" | sed "s/^/round $r: /"
done
python3 - "$work/results" "$DURATION" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, rps, cpu, *rest = line.split()
    rows[name].append((float(rps), float(cpu), rest))
secs = float(sys.argv[2])
def cpu_per_req(vals):
    return statistics.median(c / (r * secs) for r, c, _ in vals)
base = statistics.median(r for r, _, _ in rows["untraced"])
base_cpu = cpu_per_req(rows["untraced"])
print("\n| variant | req/s (median) | loss vs untraced | nginx+wrk CPU µs/request | added CPU µs/request | records to user space per request | bytes per request | data events on nginx's port per request |")
print("|---|---|---|---|---|---|---|---|")
for name, vals in rows.items():
    rps = statistics.median(r for r, _, _ in vals)
    loss = "" if name == "untraced" else f"{100 * (base - rps) / base:.1f}%"
    cpu = cpu_per_req(vals)
    added = "" if name == "untraced" else f"{cpu - base_cpu:.2f}"
    def per(i):
        xs = [float(rest[i]) / (r * secs) for r, _, rest in vals if rest[i] != "-"]
        return f"{statistics.median(xs):.3f}" if xs else "-"
    print(f"| {name} | {rps:,.0f} | {loss} | {cpu:.2f} | {added} | {per(0)} | {per(1)} | {per(2)} |")
PY
