#!/usr/bin/env bash
# Checks that the crates work outside this repository: `cargo publish
# --dry-run` of the three, then the *packaged* sbox-events (README included)
# runs its doc tests against the packaged derive crate.
set -euo pipefail
cd "$(dirname "$0")/.."

# The verification builds each package against the others as registry
# crates, from a temporary local registry that cargo unpacks under
# $CARGO_HOME/registry/src/-<hash>/ and never unpacks again for the same
# version, and builds in the shared target directory, where a registry
# crate of a known version is assumed unchanged. Forget both, so a stale
# copy of our own crates is never built.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
find "$cargo_home/registry/src" -maxdepth 2 -path "$cargo_home/registry/src/-*/sbox-events*" \
    -exec rm -rf {} + 2>/dev/null || true
find target/debug/.fingerprint -maxdepth 1 -name 'sbox-events*' -exec rm -rf {} + 2>/dev/null || true
cargo publish --dry-run --locked --allow-dirty -p sbox-events-derive -p sbox-events -p sbox-events-nats

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# `cargo publish` leaves each package unpacked, as built for verification.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
for crate in sbox-events-derive sbox-events; do
    cp -R "target/package/$crate-$version" "$work/"
done
# A workspace of the two packages, the derive taken from its package as a
# registry would give it, and the lock file of this repository so the same
# dependency versions are used.
cat >"$work/Cargo.toml" <<'TOML'
[workspace]
resolver = "3"
members = ["sbox-events-VERSION", "sbox-events-derive-VERSION"]

[patch.crates-io]
sbox-events-derive = { path = "sbox-events-derive-VERSION" }
TOML
sed -i "s/VERSION/$version/g" "$work/Cargo.toml"
cp Cargo.lock "$work/Cargo.lock"
CARGO_TARGET_DIR="$PWD/target/package-check" cargo test --manifest-path "$work/Cargo.toml" \
    -p sbox-events --doc
