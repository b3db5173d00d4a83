//! The integration tests of `sbox-events` live in `tests/`, the compile-fail
//! suite in `ui/`, the cross-crate fixtures in `crates/`. This library is
//! empty.
