//! The compile-time checks of `#[derive(Event)]`, `#[handler]` and the bus's
//! typed API. Each `ui/fail/*.rs` has a reviewed `.stderr`: the message must
//! say what to write instead, and the span must point at the offending tokens.
//! Regenerate with `TRYBUILD=overwrite cargo test -p sbox-events-tests --test ui`
//! and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
