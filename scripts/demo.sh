#!/usr/bin/env bash
# The main job on a fresh machine (as root): build zt-trace, start a demo set
# of services on loopback, trace them and print the traces.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release -p cli
exec target/release/zt-trace demo "$@"
