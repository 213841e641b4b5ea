#!/usr/bin/env bash
# What the probes cost a syscall they do not capture, per call, for each
# agent binary given: (a) read/write on a non-socket (dd between /dev/zero
# and /dev/null, bs=1: the fd is looked at, then rejected); (b) a syscall
# the probes do not handle at all (getppid in a loop). BPF run time per
# call from kernel.bpf_stats_enabled (switched off again at the end); other
# processes' syscalls during the run are counted too, so use a quiet
# machine or compare binaries in the same run.
#
#   benches/reject_cost.sh /tmp/zt-old target/release/zt-trace
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000000}
[ $# -gt 0 ] || { cargo build --release -q -p cli; set -- target/release/zt-trace; }
work=$(mktemp -d)
ZT_PID=
cleanup() {
  [ -n "$ZT_PID" ] && kill -INT "$ZT_PID" 2>/dev/null && wait "$ZT_PID" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled=0
  rm -rf "$work"
}
trap cleanup EXIT
total_ns() { python3 - "$1" "$2" <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print(sum(v["run_time_ns"] - a.get(k, {"run_time_ns": 0})["run_time_ns"] for k, v in b.items()))
PY
}
echo "# $N calls per workload, $(nproc) CPUs, kernel $(uname -r), $(date -u +%FT%TZ)"
for bin in "$@"; do
  "$bin" run --output none 2>"$work/zt.err" &
  ZT_PID=$!
  for _ in $(seq 1 600); do grep -q "tracing (Ctrl-C" "$work/zt.err" && break; sleep 0.1; done
  sysctl -qw kernel.bpf_stats_enabled=1
  python3 benches/lib/bpfstats.py snap "$ZT_PID" >"$work/a.json"
  dd if=/dev/zero of=/dev/null bs=1 count="$N" 2>/dev/null
  python3 benches/lib/bpfstats.py snap "$ZT_PID" >"$work/b.json"
  python3 -c "import os
for _ in range($N): os.getppid()"
  python3 benches/lib/bpfstats.py snap "$ZT_PID" >"$work/c.json"
  sysctl -qw kernel.bpf_stats_enabled=0
  kill -INT "$ZT_PID"; wait "$ZT_PID" || true; ZT_PID=
  dd_ns=$(total_ns "$work/a.json" "$work/b.json")
  pp_ns=$(total_ns "$work/b.json" "$work/c.json")
  python3 -c "print('$bin: non-socket read/write %.0f ns per call (all programs, %d calls); unhandled syscall (getppid) %.0f ns per call' % ($dd_ns / (2 * $N), 2 * $N, $pp_ns / $N))"
done
