#!/usr/bin/env python3
"""BPF run time of one process's programs (kernel.bpf_stats_enabled=1).

  bpfstats.py snap PID > before.json      # the programs PID holds, with their counters
  bpfstats.py diff before.json after.json REQUESTS
      -> one line per program: runs per request and ns per request

Programs are found by the `prog_id:` lines of /proc/PID/fdinfo/* (this
bpftool shows no owning pids). A tail-called program's time counts in its
caller's.
"""
import json
import os
import subprocess
import sys


def prog_ids(pid):
    ids = set()
    d = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(d):
        try:
            with open(os.path.join(d, fd)) as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def snap(pid):
    ids = prog_ids(pid)
    progs = json.loads(subprocess.check_output(["bpftool", "prog", "show", "-j"]))
    out = {}
    for p in progs:
        if p["id"] in ids:
            out[str(p["id"])] = {
                "name": p.get("name", "?"),
                "run_time_ns": p.get("run_time_ns", 0),
                "run_cnt": p.get("run_cnt", 0),
            }
    return out


def diff(a, b, requests):
    rows = []
    for pid, pb in b.items():
        pa = a.get(pid, {"run_time_ns": 0, "run_cnt": 0})
        ns = pb["run_time_ns"] - pa["run_time_ns"]
        cnt = pb["run_cnt"] - pa["run_cnt"]
        if cnt == 0:
            continue
        rows.append((pb["name"], cnt, ns))
    rows.sort(key=lambda r: -r[2])
    return rows


def main():
    if sys.argv[1] == "snap":
        json.dump(snap(int(sys.argv[2])), sys.stdout)
    elif sys.argv[1] == "diff":
        a = json.load(open(sys.argv[2]))
        b = json.load(open(sys.argv[3]))
        req = float(sys.argv[4])
        rows = diff(a, b, req)
        total = sum(r[2] for r in rows)
        print(f"{'program':<20} {'runs/req':>9} {'ns/run':>8} {'ns/req':>8}")
        for name, cnt, ns in rows:
            print(f"{name:<20} {cnt/req:>9.2f} {ns/cnt:>8.0f} {ns/req:>8.0f}")
        print(f"{'total':<20} {'':>9} {'':>8} {total/req:>8.0f}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
