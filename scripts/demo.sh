#!/usr/bin/env bash
# The main job on a fresh machine (as root): build zt-trace, start a demo set
# of services on loopback and show them in the live dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release -p cli
exec target/release/zt-trace demo "$@"
