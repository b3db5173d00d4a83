#!/usr/bin/env bash
# sbox-events against its peers (evenio, Bevy observers, tokio's broadcast
# channel), a naive bus and direct calls, in one run of about 2 minutes;
# prints the README's performance tables. Builds Bevy and the generated
# scale scenarios (1,000 handlers, 1,000 event types) the first time: 25 to
# 30 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "$(date -u +%Y-%m-%d), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
cargo run --release --quiet --manifest-path benches/peers/Cargo.toml
