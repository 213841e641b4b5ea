#!/usr/bin/env bash
# Installs what building and testing zt-trace needs on a fresh Debian/Ubuntu
# machine (as root). Safe to run again: it skips what is already there.
set -euo pipefail

APT_PACKAGES=(
  clang llvm libbpf-dev bpftool          # building the eBPF programs
  pkg-config libmariadb-dev              # mysqlclient (C MySQL client) for the tests
  iproute2 procps curl openssl           # test plumbing
  nginx haproxy wrk                      # proxy, mesh and TLS proxy tests, overhead benchmark
  redis-server mariadb-server postgresql # real servers the tests talk to
  golang-go gcc                          # Go services of the runtime-aware linking tests (gcc: cgo builds)
  golang-google-grpc-dev                 # gRPC-Go server of the goroutine linking test (GOPATH=/usr/share/gocode)
  prometheus                             # a real Prometheus scraping --metrics-listen; promtool
  tmux util-linux                        # the dashboard driven in tmux; setpriv drops privileges for `check`
)
PIP_PACKAGES=(
  grpcio grpcio-tools protobuf pymysql mysqlclient "psycopg[binary]" redis
  opentelemetry-proto thrift six jsonschema pyyaml
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c "import grpc, grpc_tools, pymysql, MySQLdb, psycopg, redis, opentelemetry.proto, thrift, six, jsonschema, yaml" 2>/dev/null; then
  echo "install-deps: pip install ${PIP_PACKAGES[*]}"
  python3 -m pip install -q "${PIP_PACKAGES[@]}"
fi
# Jaeger's generated Thrift types (decode what the jaeger-thrift exporter sends).
if ! python3 -c "import jaeger_client.thrift_gen.jaeger" 2>/dev/null; then
  python3 -m pip install -q --no-deps jaeger-client
fi

if ! command -v node >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null
fi

# Tracepoints need tracefs (the agent mounts it too; tests may list probes).
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing || true
fi

# The fuzz crates (built by scripts/test.sh) compile libFuzzer's C++ sources
# (libfuzzer-sys): a C++ compiler. Fuzzing itself also needs the nightly
# toolchain and cargo-fuzz, which only a developer running the fuzzers
# installs (crates/protocol-parsers/fuzz/README.md).
if ! command -v c++ >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi
