#!/usr/bin/env bash
# Instructions per event, counted by callgrind (deterministic, unlike wall
# time on a shared machine): each scenario of benches/peers runs with 100k
# and 200k events, and the difference divided by 100k is the cost of one
# event, setup excluded. Needs valgrind (Debian package `valgrind`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --manifest-path benches/peers/Cargo.toml
bin=benches/peers/target/release/sbox-events-peers
count() { # scenario events
    PEERS_COUNT=$1 PEERS_EVENTS=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$bin" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
echo "| scenario | instructions/event |"
echo "|---|---:|"
for scenario in floor1 evenio0 evenio1 evenio10 bevy0 bevy1 sbox0 sbox1 sboxres1 sbox10 closure1 closure10 \
    history1 broadcast1 stream1 asyncfloor1 async1; do
    a=$(count "$scenario" 100000)
    b=$(count "$scenario" 200000)
    echo "| $scenario | $(( (b - a) / 100000 )) |"
done
