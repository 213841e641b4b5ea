#!/usr/bin/env python3
"""The overhead harness behind benches/overhead.sh (read that first).

Runs, in one process and with rounds alternating, every variant of:
  nginx  - nginx (1 worker, 12-byte body) under wrk -t1 -c32: untraced, zt-trace
  flask  - a two-service Flask chain (A calls B per request) under wrk -t1
           -c8: untraced, zt-trace, OpenTelemetry auto-instrumentation
           (opentelemetry-instrument, OTLP/HTTP to a local sink)
and, in constant-rate mode, the same variants at fixed request rates with
an open-loop generator (examples/openloop.rs). Prints per-round lines and a
table of medians.
"""
import argparse
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def wait_port(port, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on port {port}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_ticks(pids):
    """utime + stime of these processes (all their threads), in ticks."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid == pid:
                    out.append(int(d))
            except OSError:
                pass
    return out


def rss_kib(pid):
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":")
                    vals[k] = int(v.split()[0])
    except OSError:
        pass
    return vals.get("VmRSS", 0), vals.get("VmHWM", 0)


def to_us(v):
    m = re.match(r"([0-9.]+)(us|ms|s)$", v)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def wrk(url, conns, duration):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = to_us(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = to_us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": rps, "requests": reqs, "p50_us": p50, "p99_us": p99, "errors": errors}


def openloop(binary, url, rate, duration, conns):
    out = subprocess.run(
        [binary, url, str(rate), str(duration), str(conns)],
        capture_output=True, text=True, check=True,
    ).stdout
    kv = dict(re.findall(r"(\w+) ([0-9.]+)", out))
    return {
        "rps": float(kv["achieved"]),
        "requests": int(kv["ok"]),
        "p50_us": float(kv["p50_us"]),
        "p99_us": float(kv["p99_us"]),
        "errors": int(kv["errors"]),
    }


def bpf_snapshot(pid):
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
    progs = json.loads(subprocess.check_output(["bpftool", "prog", "show", "-j"]))
    return {p["id"]: (p.get("name", "?"), p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in progs if p["id"] in ids}


class Agent:
    """zt-trace run, attached for one measurement."""

    def __init__(self, binary, extra_args):
        self.err = tempfile.NamedTemporaryFile("w+", prefix="zt-agent-", suffix=".err")
        self.proc = subprocess.Popen(
            [binary, "run", "--output", "none", *extra_args],
            stdout=subprocess.DEVNULL, stderr=self.err,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            self.err.seek(0)
            if "tracing (Ctrl-C" in self.err.read():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.err.seek(0)
        sys.exit("zt-trace did not start:\n" + self.err.read())

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        self.err.seek(0)
        return self.err.read()


def summary_figures(text):
    """events, MiB and drops from the agent's exit summary."""
    out = {}
    m = re.search(r"(\d+) events in [0-9.]+s \([^,]*, ([0-9.]+) MiB\)", text)
    if m:
        out["events"], out["mib"] = int(m.group(1)), float(m.group(2))
    m = re.search(r"kernel drops: (\d+) events lost", text)
    if m:
        out["kernel_lost"] = int(m.group(1))
    m = re.search(r"spans dropped \(table full\) (\d+)", text)
    if m:
        out["spans_dropped"] = int(m.group(1))
    return out


def measure(variant, load, service_pids, agent_bin=None, zt_args=(), bpf=False):
    """One measurement: `load()` runs the load generator and returns its
    figures; with `agent_bin`, zt-trace is attached around it."""
    agent = Agent(agent_bin, zt_args) if agent_bin else None
    try:
        if agent and bpf:
            subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
            b0 = bpf_snapshot(agent.proc.pid)
        s0 = cpu_ticks(service_pids)
        a0 = cpu_ticks([agent.proc.pid]) if agent else 0
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = load()
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        s1 = cpu_ticks(service_pids)
        a1 = cpu_ticks([agent.proc.pid]) if agent else 0
        n = max(r["requests"], 1)
        r["service_cpu_us"] = (s1 - s0) / TICK * 1e6 / n
        # The load generator's own CPU (its syscalls pay for the probes too).
        r["client_cpu_us"] = ((c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)) * 1e6 / n
        if agent:
            if bpf:
                b1 = bpf_snapshot(agent.proc.pid)
                subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=True)
                per = {}
                for pid, (name, ns, cnt) in b1.items():
                    _, ns0, cnt0 = b0.get(pid, (name, 0, 0))
                    if cnt - cnt0:
                        per[name] = per.get(name, 0) + (ns - ns0) / n
                r["bpf_ns"] = per
            r["agent_cpu_us"] = (a1 - a0) / TICK * 1e6 / n
            r["agent_rss_kib"], r["agent_hwm_kib"] = rss_kib(agent.proc.pid)
    finally:
        if agent:
            text = agent.stop()
            subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=False)
    if agent:
        f = summary_figures(text)
        r["events_per_req"] = f.get("events", 0) / n
        r["bytes_per_req"] = f.get("mib", 0) * 1048576 / n
        r["kernel_lost"] = f.get("kernel_lost")
        r["spans_dropped"] = f.get("spans_dropped")
    r["variant"] = variant
    return r


def fmt(v, nd=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


def line(r):
    parts = [f"{r['variant']:<28}", f"{r['rps']:>10,.0f} req/s", f"p50 {r['p50_us']:>8,.0f} us",
             f"p99 {r['p99_us']:>8,.0f} us", f"svc cpu {r['service_cpu_us']:>6,.1f} us/req",
             f"client cpu {r['client_cpu_us']:>6,.1f} us/req"]
    if "agent_cpu_us" in r:
        parts += [f"agent cpu {r['agent_cpu_us']:>5,.1f} us/req",
                  f"rss {r['agent_rss_kib'] / 1024:,.0f} MiB",
                  f"{r['events_per_req']:.2f} ev/req", f"{r['bytes_per_req']:,.0f} B/req",
                  f"lost {r['kernel_lost']}"]
    if "bpf_ns" in r:
        parts.append("bpf " + " ".join(f"{k}={v:,.0f}" for k, v in sorted(r["bpf_ns"].items(), key=lambda kv: -kv[1])))
    if r.get("errors"):
        parts.append(f"errors {r['errors']}")
    print("  " + " | ".join(parts), flush=True)


def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def table(results, baseline_of):
    print("\n| variant | req/s | p50 µs | p99 µs | service CPU µs/req | load generator CPU µs/req | agent CPU µs/req | BPF ns/req | agent RSS MiB | events/req | bytes/req | kernel drops | loss vs untraced |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for variant, rs in results.items():
        rps = med(rs, "rps")
        base = results.get(baseline_of.get(variant))
        loss = ""
        if base and variant != baseline_of.get(variant):
            b = med(base, "rps")
            loss = f"{100 * (b - rps) / b:.1f}%"
        bpf = ""
        if any("bpf_ns" in r for r in rs):
            names = sorted({k for r in rs for k in r.get("bpf_ns", {})})
            per = {k: statistics.median([r["bpf_ns"].get(k, 0) for r in rs if "bpf_ns" in r]) for k in names}
            tot = sum(per.values())
            bpf = f"{tot:,.0f} (" + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 1) + ")"
        lost = [r.get("kernel_lost") for r in rs if r.get("kernel_lost") is not None]
        print(f"| {variant} | {fmt(rps)} | {fmt(med(rs, 'p50_us'))} | {fmt(med(rs, 'p99_us'))} | "
              f"{fmt(med(rs, 'service_cpu_us'), 1)} | {fmt(med(rs, 'client_cpu_us'), 1)} | "
              f"{fmt(med(rs, 'agent_cpu_us'), 1)} | {bpf or '-'} | "
              f"{fmt(med(rs, 'agent_rss_kib') / 1024 if med(rs, 'agent_rss_kib') else None, 1)} | "
              f"{fmt(med(rs, 'events_per_req'), 2)} | {fmt(med(rs, 'bytes_per_req'))} | "
              f"{sum(lost) if lost else '-'} | {loss} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zt", required=True)
    ap.add_argument("--openloop", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--only", default="nginx,flask")
    ap.add_argument("--rates", default="2000,10000", help="constant-rate mode for nginx (req/s); empty: off")
    ap.add_argument("--flask-rate", type=int, default=200, help="constant-rate mode for the Flask chain; 0: off")
    ap.add_argument("--zt-args", default="")
    args = ap.parse_args()
    only = set(args.only.split(","))
    zt_args = args.zt_args.split()
    rates = [int(r) for r in args.rates.split(",") if r]
    procs = []
    work = tempfile.mkdtemp(prefix="zt-overhead-")

    def spawn(cmd, env=None, **kw):
        p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    results = {}
    baseline_of = {}

    def record(r, baseline):
        line(r)
        results.setdefault(r["variant"], []).append(r)
        baseline_of[r["variant"]] = baseline

    try:
        if "nginx" in only:
            nport = free_port()
            subprocess.run(["bash", "-c", f". {HERE}/nginx.sh && start_nginx {work}/nginx {nport}"], check=True)
            with open(f"{work}/nginx/nginx.pid") as f:
                nginx_master = int(f.read())
            nginx_pids = [nginx_master] + children(nginx_master)
            nurl = f"http://127.0.0.1:{nport}/"
        if "flask" in only:
            fb, fa = free_port(), free_port()
            spawn([sys.executable, f"{HERE}/flask_chain.py", "b", str(fb)])
            wait_port(fb, "flask B")
            spawn([sys.executable, f"{HERE}/flask_chain.py", "a", str(fa), str(fb)])
            wait_port(fa, "flask A")
            plain_pids = [p.pid for p in procs[-2:]]
            sink = free_port()
            spawn([sys.executable, f"{HERE}/otlp_sink.py", str(sink)])
            wait_port(sink, "OTLP sink")
            otel_env = {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink}",
            }
            ob, oa = free_port(), free_port()
            spawn(["opentelemetry-instrument", sys.executable, f"{HERE}/flask_chain.py", "b", str(ob)],
                  env={**otel_env, "OTEL_SERVICE_NAME": "chain-b"})
            wait_port(ob, "flask B (OpenTelemetry)")
            spawn(["opentelemetry-instrument", sys.executable, f"{HERE}/flask_chain.py", "a", str(oa), str(ob)],
                  env={**otel_env, "OTEL_SERVICE_NAME": "chain-a"})
            wait_port(oa, "flask A (OpenTelemetry)")
            otel_pids = [p.pid for p in procs[-2:]]
            furl, ourl = f"http://127.0.0.1:{fa}/a", f"http://127.0.0.1:{oa}/a"
            # Warm up (imports, first connections).
            for u in (furl, ourl):
                subprocess.run(["wrk", "-t1", "-c2", "-d2s", u], capture_output=True, check=True)

        d = args.duration
        print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {os.cpu_count()} CPUs, "
              f"kernel {os.uname().release}, {args.rounds} rounds of {d} s, zt-trace {args.zt} {args.zt_args}",
              flush=True)
        for rnd in range(1, args.rounds + 1):
            print(f"round {rnd}", flush=True)
            if "nginx" in only:
                load = lambda: wrk(nurl, 32, d)  # noqa: E731
                record(measure("nginx untraced", load, nginx_pids), "nginx untraced")
                record(measure("nginx zt-trace", load, nginx_pids, args.zt, zt_args, bpf=True), "nginx untraced")
            if "flask" in only:
                record(measure("flask untraced", lambda: wrk(furl, 8, d), plain_pids), "flask untraced")
                record(measure("flask zt-trace", lambda: wrk(furl, 8, d), plain_pids, args.zt, zt_args, bpf=True),
                       "flask untraced")
                record(measure("flask OpenTelemetry", lambda: wrk(ourl, 8, d), otel_pids), "flask untraced")
            for rate in rates if "nginx" in only else []:
                load = lambda: openloop(args.openloop, nurl, rate, d, 64)  # noqa: E731
                base = f"nginx @{rate}/s untraced"
                record(measure(base, load, nginx_pids), base)
                record(measure(f"nginx @{rate}/s zt-trace", load, nginx_pids, args.zt, zt_args, bpf=True), base)
            if "flask" in only and args.flask_rate:
                rate = args.flask_rate
                base = f"flask @{rate}/s untraced"
                record(measure(base, lambda: openloop(args.openloop, furl, rate, d, 16), plain_pids), base)
                record(measure(f"flask @{rate}/s zt-trace", lambda: openloop(args.openloop, furl, rate, d, 16),
                               plain_pids, args.zt, zt_args, bpf=True), base)
                record(measure(f"flask @{rate}/s OpenTelemetry", lambda: openloop(args.openloop, ourl, rate, d, 16),
                               otel_pids), base)
        print(f"\n# medians of {args.rounds} rounds (service CPU: nginx master+worker, or Flask A+B; "
              "agent CPU: zt-trace's utime+stime; events and bytes per request: the agent's whole run, "
              "start-up and other processes' traffic included)")
        table(results, baseline_of)
    finally:
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=False)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.path.exists(f"{work}/nginx/nginx.pid"):
            with open(f"{work}/nginx/nginx.pid") as f:
                try:
                    os.kill(int(f.read()), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
