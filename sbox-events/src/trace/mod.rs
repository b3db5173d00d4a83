//! Trace context: which trace the current code belongs to.
//!
//! A [`TraceId`] is a 128-bit, non-zero, random identifier, printed as 32
//! lowercase hex digits exactly as in [W3C Trace Context], with an
//! 8-character [short form](TraceId::short) for people. Every event carries
//! one; handlers read it from [`EventContext::trace_id`](crate::EventContext::trace_id).
//!
//! # Where the id comes from
//!
//! Each thread has a *current trace*. [`EventBus::emit`](crate::EventBus::emit)
//! stamps the event with it. When there is none, `emit` starts a fresh trace
//! for that one event: everything the handlers emit, at any depth, shares it,
//! and when `emit` returns the thread has no current trace again, so the next
//! unrelated emit gets its own.
//!
//! To group several emits into one trace, open a scope:
//!
//! ```
//! use sbox_events::trace::{self, TraceId};
//!
//! let id = TraceId::random();
//! trace::with_trace_id(id, || {
//!     assert_eq!(trace::current(), Some(id));
//!     // every emit in here carries `id`
//! });
//! assert_eq!(trace::current(), None);
//! ```
//!
//! | situation | what to use |
//! |---|---|
//! | a block of code | [`with_trace_id`], [`with_new_trace`], or the guard from [`enter`] |
//! | a future (any executor) | [`TraceFutureExt::with_trace_id`] / [`TraceFutureExt::in_current_trace`] |
//! | a new thread | [`capture`] before spawning, [`CapturedTrace::run`] inside; or [`spawn`] |
//! | an incoming request | [`TraceParent::parse`] on its `traceparent` header |
//!
//! Guards restore what was current before them, also when several are
//! dropped out of order. A guard is tied to its thread (`!Send`). **Do not hold
//! a guard across `.await`**: while the task is suspended the id stays
//! installed on the executor thread and leaks into whatever task runs there
//! next. Wrap the future with [`TraceFutureExt`] instead, which installs the id
//! for each poll only.
//!
//! # Logs
//!
//! Every scope opened explicitly ([`enter`], [`with_trace_id`], the future
//! wrapper) also enters a `tracing` span named `trace` with a `trace_id`
//! field, so a subscriber that prints span fields (such as
//! `tracing_subscriber::fmt`) shows `trace{trace_id=…}` on every log line
//! written inside it. The span is at ERROR level so that it is on whenever
//! logging is; none is created before a subscriber is installed, and a
//! subscriber-wide filter by target (one that logs only the application's
//! own, say) disables it. (A filter on one layer of several does not: the
//! span exists, and that layer's lines show no id.)
//!
//! The implicit trace of an emit outside any scope opens **no** span: that
//! would allocate on every emit. Its id is read when a line is written
//! instead: wrap the `fmt` event format in [`TraceIdFormat`] (feature
//! `fmt`, on by default), or read [`implicit`] in a formatter of your own.
//! Both also show the id of a scope whose span is disabled.
//! Events the bus itself logs (failures, refusals, audit records) carry a
//! `trace_id` field in any case.
//!
//! # Cost
//!
//! Reading the current trace is one or two thread-local reads (the first
//! read of an emit's implicit trace also makes its id, below). [`TraceId::random`] uses
//! a per-thread wyrand generator (`fastrand`) seeded once from the operating
//! system: no system call per id, a few nanoseconds.
//!
//! The fresh trace of an emit outside any scope is not drawn: its id is a
//! keyed permutation of the event's sequence number (unique in the process)
//! under a key drawn once per process, so it is unique and looks random, for
//! two multiplications, done only when someone reads it: a handler's
//! [`EventContext::trace_id`](crate::EventContext::trace_id),
//! [`current`] or [`implicit`] (a log line) inside the emit, a nested emit,
//! the report's [`trace_id`](crate::EmitReport::trace_id). Each of them gets
//! the same id; an emit whose trace nobody reads never makes it.
//!
//! [W3C Trace Context]: https://www.w3.org/TR/trace-context/

mod cause;
#[cfg(feature = "fmt")]
mod format;
mod future;
mod id;
mod parent;
mod scope;

pub(crate) use cause::{
    Frame, HandlerKey, HandlerWord, SavedFrame, current_frame, current_sequence, event_id_made,
    replace_frame, restore_frame, set_handler, set_handler_word,
};
#[cfg(feature = "fmt")]
pub use format::TraceIdFormat;
pub use future::{TraceFutureExt, Traced};
pub use id::{ShortTraceId, TraceId};
pub(crate) use id::{implicit_id, random_u128};
pub use parent::{ParseTraceError, TraceParent};
pub use scope::{
    CapturedTrace, TraceScope, capture, current, enter, implicit, spawn, with_new_trace,
    with_trace_id,
};
pub(crate) use scope::{Installed, TraceBits, current_bits, emit_trace, install};

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn random_ids_are_distinct_and_well_formed() {
        let ids: std::collections::HashSet<TraceId> =
            (0..1000).map(|_| TraceId::random()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids {
            let text = id.to_string();
            assert_eq!(text.len(), 32);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert_eq!(TraceId::parse(&text), Ok(id));
            assert_eq!(id.short().to_string(), text[..8]);
        }
    }

    #[test]
    fn trace_id_errors_say_what_and_where() {
        let cases = [
            (
                "",
                "invalid trace id at byte 0: expected 32 lowercase hex digits, found 0 characters",
            ),
            (
                &ID[..31],
                "invalid trace id at byte 0: expected 32 lowercase hex digits, found 31 characters",
            ),
            (
                "4bf92f3577b34da6a3ce929d0e0e473g",
                "invalid trace id at byte 31: 'g' is not a hex digit",
            ),
            (
                "4bf92f3577b34da6a3ce929d0e0e473A",
                "invalid trace id at byte 31: 'A' is not a lowercase hex digit (W3C ids are lowercase)",
            ),
            (
                "00000000000000000000000000000000",
                "invalid trace id at byte 0: trace-id is all zeros",
            ),
            (
                "4bf92f3577b34da6a3ce929d0e0e47é",
                "invalid trace id at byte 30: 'é' is not a hex digit",
            ),
            // 32 characters, 33 bytes: the character is what is wrong.
            (
                "4bf92f3577b34da6a3ce929d0e0e473\u{435}",
                "invalid trace id at byte 31: '\u{435}' is not a hex digit",
            ),
            (
                "4bf92f3577b34da6a3ce929d0e0e4736\u{e9}",
                "invalid trace id at byte 0: expected 32 lowercase hex digits, found 33 characters",
            ),
        ];
        for (input, message) in cases {
            let err = TraceId::parse(input).expect_err(input);
            assert_eq!(err.to_string(), message, "{input:?}");
        }
    }

    #[test]
    fn traceparent_follows_w3c() {
        let ok = format!("00-{ID}-00f067aa0ba902b7-01");
        let parsed = TraceParent::parse(&ok).expect("valid header");
        assert_eq!(parsed.parent_id().get(), 0x00f0_67aa_0ba9_02b7);
        assert_eq!(parsed.flags(), 1);
        // Higher versions may append fields.
        let future = format!("01-{ID}-00f067aa0ba902b7-00-extra");
        assert!(
            !TraceParent::parse(&future)
                .expect("future version")
                .sampled()
        );

        let cases = [
            (
                format!("00-{ID}-00f067aa0ba902b7-0"),
                "invalid traceparent at byte 0: expected at least 55 characters (version-traceid-parentid-flags), found 54",
            ),
            (
                format!("ff-{ID}-00f067aa0ba902b7-01"),
                "invalid traceparent at byte 0: version ff is forbidden",
            ),
            (
                format!("00_{ID}-00f067aa0ba902b7-01"),
                "invalid traceparent at byte 2: expected '-', found '_'",
            ),
            (
                format!("00-{ID}-00f067aa0ba902b7-01-x"),
                "invalid traceparent at byte 55: version 00 has exactly 55 characters",
            ),
            (
                format!("01-{ID}-00f067aa0ba902b7-01x"),
                "invalid traceparent at byte 55: expected '-', found 'x'",
            ),
            (
                format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
                "invalid traceparent at byte 3: trace-id is all zeros",
            ),
            (
                format!("00-{ID}-00F067aa0ba902b7-01"),
                "invalid traceparent at byte 38: 'F' is not a lowercase hex digit (W3C ids are lowercase)",
            ),
            (
                format!("0x-{ID}-00f067aa0ba902b7-01"),
                "invalid traceparent at byte 1: 'x' is not a hex digit",
            ),
        ];
        for (input, message) in cases {
            let err = TraceParent::parse(&input).expect_err(&input);
            assert_eq!(err.to_string(), message, "{input:?}");
        }
    }

    #[test]
    fn serde_uses_the_hex_string() {
        let id = TraceId::parse(ID).expect("valid");
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, format!("\"{ID}\""));
        assert_eq!(
            serde_json::from_str::<TraceId>(&json).expect("deserialize"),
            id
        );
        let err = serde_json::from_str::<TraceId>("\"xyz\"").expect_err("bad id");
        assert!(
            err.to_string().contains("expected 32 lowercase hex digits"),
            "{err}"
        );
    }
}
