#!/usr/bin/env bash
# The overhead harness: one command, one run, rounds alternating between
# variants, everything measured side by side on this machine:
#   - nginx worst case (1 worker, 12-byte body, wrk -t1 -c32 on loopback):
#     untraced vs. zt-trace;
#   - a two-service Flask chain (A calls B per request, Werkzeug threaded
#     server, wrk -t1 -c8): untraced vs. zt-trace vs. OpenTelemetry's Python
#     auto-instrumentation (opentelemetry-instrument, OTLP/HTTP to a local
#     sink);
#   - constant-rate mode: the same at fixed rates with an open-loop
#     generator (examples/openloop.rs): nginx at 2k and 10k req/s, the Flask
#     chain at FLASK_RATE req/s; latency counted from when each request was
#     due (no coordinated omission).
# For each: throughput, p50/p99 latency, service CPU per request (nginx, or
# Flask A+B: utime+stime), agent CPU per request, BPF time per request per
# program (kernel.bpf_stats_enabled, switched off afterwards), agent RSS,
# events and bytes per request (agent exit summary), kernel drops. Needs
# root, nginx, wrk, bpftool (scripts/install-deps.sh); installs Flask and
# the OpenTelemetry packages with pip itself if missing.
#
#   benches/overhead.sh                         # 3 rounds of 10 s
#   ROUNDS=5 DURATION=20 benches/overhead.sh
#   ONLY=nginx RATES= benches/overhead.sh       # nginx closed loop only
#   ZT_ARGS="--capture-bytes 256" benches/overhead.sh
#   ZT=/tmp/zt-trace benches/overhead.sh        # another agent binary
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
ONLY=${ONLY:-nginx,flask}
RATES=${RATES-2000,10000}
FLASK_RATE=${FLASK_RATE:-200}
ZT_ARGS=${ZT_ARGS:-}
# The package index here has opentelemetry-instrumentation-flask up to
# 0.66b1: keep the distro on the same release so bootstrap finds a match.
OTEL_DISTRO=${OTEL_DISTRO:-opentelemetry-distro==0.66b1}

[ "$(id -u)" = 0 ] || { echo "overhead.sh: needs root (it loads eBPF programs)" >&2; exit 1; }
for t in nginx wrk bpftool; do
  command -v "$t" >/dev/null || { echo "overhead.sh: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
if [[ $ONLY == *flask* ]]; then
  if ! python3 -c "import flask, requests" 2>/dev/null; then
    python3 -m pip install -q flask requests
  fi
  if ! command -v opentelemetry-instrument >/dev/null ||
    ! python3 -c "import opentelemetry.instrumentation.flask, opentelemetry.exporter.otlp.proto.http" 2>/dev/null; then
    python3 -m pip install -q "$OTEL_DISTRO" opentelemetry-exporter-otlp
    opentelemetry-bootstrap -a install >/dev/null
  fi
fi

cargo build --release -q -p cli
cargo build --release -q --example openloop
exec python3 benches/lib/overhead.py --zt "${ZT:-target/release/zt-trace}" \
  --openloop target/release/examples/openloop --rounds "$ROUNDS" --duration "$DURATION" \
  --only "$ONLY" --rates "$RATES" --flask-rate "$FLASK_RATE" --zt-args "$ZT_ARGS"
