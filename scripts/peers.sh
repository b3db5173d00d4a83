#!/usr/bin/env bash
# sbox-events against its peers (evenio, Bevy observers), a naive bus and
# direct calls, in one run; prints the README's performance table. Builds
# Bevy the first time (several minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "$(date -u +%Y-%m-%d), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo run --release --quiet --manifest-path benches/peers/Cargo.toml
