//! The implicit trace of an emit started outside any scope: whoever reads
//! its id first (the handler's context, `trace::current`, a nested emit
//! heard or not, a capture carried to another thread, a scope closed again,
//! a validator, the report) gets the id every other reader gets, and the
//! thread has no trace left once the emit returns.

use sbox_events::trace::{self, TraceId};
use sbox_events::{Event, EventBus, EventContext, FailurePolicy, Refusal, handler};
use sbox_events_tests::exec::block_on;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Which reader goes first in `outer`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum First {
    Nothing,
    Current,
    Implicit,
    Context,
    UnheardEmit,
    HeardEmit,
    Capture,
    ClosedScope,
    AsyncEmit,
}

const ALL: [First; 9] = [
    First::Nothing,
    First::Current,
    First::Implicit,
    First::Context,
    First::UnheardEmit,
    First::HeardEmit,
    First::Capture,
    First::ClosedScope,
    First::AsyncEmit,
];

#[derive(Event, Serialize, Deserialize)]
#[event(name = "implicit.outer")]
struct Outer {
    first: First,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "implicit.heard")]
struct Heard;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "implicit.unheard")]
struct Unheard;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "implicit.checked", validate = refuse_after_reading_the_trace)]
struct Checked;

thread_local! {
    /// What the handlers and the validator read, on the emitting thread
    /// (tests run in parallel, each emit stays on its thread).
    static READ: RefCell<Vec<(&'static str, Option<TraceId>)>> = const { RefCell::new(Vec::new()) };
    /// A scope a handler opens and leaves open.
    static LEFT_OPEN: RefCell<Option<(TraceId, trace::TraceScope)>> = const { RefCell::new(None) };
}

#[handler]
fn open_a_scope_and_leave_it(_: &Scoped) {
    let id = TraceId::random();
    LEFT_OPEN.with(|s| *s.borrow_mut() = Some((id, trace::enter(id))));
}

#[handler]
fn panic_before_reading_anything(_: &Panics) {
    panic!("nobody read the trace");
}

fn read(what: &'static str, id: Option<TraceId>) {
    READ.with(|r| r.borrow_mut().push((what, id)));
}

fn take_reads() -> Vec<(&'static str, Option<TraceId>)> {
    READ.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "implicit.scoped")]
struct Scoped;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "implicit.panics")]
struct Panics;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "implicit.refused", validate = refuse_without_reading)]
struct Refused;

fn refuse_without_reading(_: &Refused) -> Result<(), String> {
    Err("never valid either".into())
}

fn refuse_after_reading_the_trace(_: &Checked) -> Result<(), String> {
    read("validator", trace::current());
    Err("never valid".into())
}

#[handler]
fn heard(_: &Heard, ctx: &EventContext) {
    read("nested heard context", Some(ctx.trace_id()));
}

#[handler]
fn outer(outer: &Outer, ctx: &EventContext) {
    match outer.first {
        First::Nothing => {}
        First::Current => read("current", trace::current()),
        First::Implicit => read("implicit", trace::implicit()),
        First::Context => read("context", Some(ctx.trace_id())),
        First::UnheardEmit => read(
            "nested unheard report",
            Some(ctx.bus().emit(Unheard).trace_id()),
        ),
        First::HeardEmit => read(
            "nested heard report",
            Some(ctx.bus().emit(Heard).trace_id()),
        ),
        First::Capture => {
            let captured = trace::capture();
            let seen = std::thread::spawn(move || captured.run(trace::current))
                .join()
                .expect("the thread runs");
            read("captured on another thread", seen);
        }
        First::ClosedScope => {
            let other = TraceId::random();
            trace::with_trace_id(other, || assert_eq!(trace::current(), Some(other)));
            read("current after a scope closed", trace::current());
        }
        First::AsyncEmit => {
            let report = block_on(ctx.bus().emit_async(Heard));
            read("nested async report", Some(report.trace_id()));
        }
    }
    read("current at the end", trace::current());
    read("context at the end", Some(ctx.trace_id()));
}

#[test]
fn every_reader_of_an_implicit_trace_gets_the_reports_id_whoever_reads_first() {
    let bus = EventBus::new();
    let mut ids = HashSet::new();
    for first in ALL {
        for _ in 0..3 {
            let report = bus.emit(Outer { first });
            assert_eq!(report.delivered(), 1, "{report}");
            let id = report.trace_id();
            assert_eq!(report.trace_id(), id, "asked twice, the same id");
            let reads = take_reads();
            assert!(reads.len() >= 2, "{first:?}: {reads:?}");
            for (what, seen) in &reads {
                assert_eq!(*seen, Some(id), "{first:?}: {what} read another trace");
            }
            assert_eq!(trace::current(), None, "{first:?}: a trace left behind");
            assert!(
                ids.insert(id),
                "{first:?}: {id} was the trace of an earlier emit"
            );
        }
    }
}

#[test]
fn a_scope_entered_around_the_emit_is_its_trace_whoever_reads_first() {
    let bus = EventBus::new();
    for first in ALL {
        let id = TraceId::random();
        let report = trace::with_trace_id(id, || bus.emit(Outer { first }));
        assert_eq!(report.trace_id(), id);
        for (what, seen) in take_reads() {
            assert_eq!(seen, Some(id), "{first:?}: {what} read another trace");
        }
    }
}

#[test]
fn an_emit_refused_by_its_validator_reports_the_trace_the_validator_ran_in() {
    let bus = EventBus::builder().validate_on_emit(true).build().unwrap();
    let report = bus.emit(Checked);
    assert_eq!(
        report.refused(),
        Some(&Refusal::Invalid {
            reason: "never valid".into()
        })
    );
    assert_eq!(take_reads(), [("validator", Some(report.trace_id()))]);
    assert_eq!(trace::current(), None);
    let next = bus.emit(Checked);
    assert_ne!(
        next.trace_id(),
        report.trace_id(),
        "each emit its own trace"
    );
    take_reads();
}

#[test]
fn emits_refused_without_anyone_reading_their_trace_report_distinct_ones() {
    let bus = EventBus::builder().validate_on_emit(true).build().unwrap();
    let ids: HashSet<TraceId> = (0..100)
        .map(|_| {
            let report = bus.emit(Refused);
            assert!(report.refused().is_some(), "{report}");
            report.trace_id()
        })
        .collect();
    assert_eq!(ids.len(), 100);
    assert_eq!(trace::current(), None);
}

#[test]
fn a_scope_a_handler_leaves_open_stays_current_after_the_emit_until_it_closes() {
    let bus = EventBus::new();
    let report = bus.emit(Scoped);
    let (id, scope) = LEFT_OPEN
        .with(|s| s.borrow_mut().take())
        .expect("left open");
    assert_eq!(trace::current(), Some(id), "the open scope is current");
    drop(scope);
    assert_eq!(
        trace::current(),
        None,
        "nothing of the emit's trace is left"
    );
    assert_ne!(report.trace_id(), id);
}

#[test]
fn a_panic_propagated_out_of_an_emit_leaves_no_trace_behind() {
    let bus = EventBus::builder()
        .failure_policy(FailurePolicy::Propagate)
        .build()
        .unwrap();
    for _ in 0..3 {
        let result = catch_unwind(AssertUnwindSafe(|| bus.emit(Panics)));
        assert!(result.is_err(), "the panic propagates");
        assert_eq!(trace::current(), None, "no trace left after the unwind");
    }
    let first = bus.emit(Outer {
        first: First::Current,
    });
    let reads = take_reads();
    assert!(
        reads
            .iter()
            .all(|&(_, seen)| seen == Some(first.trace_id())),
        "{reads:?}"
    );
}
