#!/usr/bin/env bash
# Runs every check and test of zt-trace (as root, so the eBPF tests run).
# Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/start-servers.sh
if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is missing: install Rust 1.85+ (https://rustup.rs)" >&2
  exit 1
fi

# A one-off build keeps no incremental state (1.4 GB for a full run);
# the free disk is printed so that a linker killed by a full disk (SIGBUS)
# reads as what it is.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
echo "test.sh: $(df -h --output=avail . | tail -1 | tr -d ' ') free on $(df --output=target . | tail -1)"

# Root-only tests must run (and fail loudly) rather than skip.
if [ "$(id -u)" = 0 ]; then export ZT_REQUIRE_BPF=1; fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Root tests start tracers and servers: one test at a time.
cargo test --workspace --lib --bins --tests --examples --no-fail-fast -- --test-threads=1
cargo test --workspace --doc
# Each criterion benchmark once, as a smoke test (figures: BENCHMARKS.md).
cargo test --workspace --benches
# The fuzz targets (own workspaces, run with `cargo +nightly fuzz`; see
# crates/protocol-parsers/fuzz/README.md) are built on stable so they cannot
# rot: about a minute on a fresh machine for the two, sharing one target dir.
for fuzz in crates/protocol-parsers/fuzz crates/ebpf-probes/fuzz; do
  cargo fmt --manifest-path "$fuzz/Cargo.toml" -- --check
  CARGO_TARGET_DIR=target/fuzz-build cargo build --manifest-path "$fuzz/Cargo.toml" --bins
done
