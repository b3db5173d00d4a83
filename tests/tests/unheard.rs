//! An emit nobody listens to returns early, without the full dispatch: its
//! report must still be what the full dispatch would give (numbers, trace,
//! refusal), wherever it is emitted from.

use sbox_events::{Event, EventBus, EventContext, Refusal, handler, trace};
use sbox_events_tests::exec::block_on;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "unheard.quiet")]
struct Quiet;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "unheard.loud")]
struct Loud;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "unheard.first")]
struct First;

static FIRST_CALLS: AtomicUsize = AtomicUsize::new(0);

#[handler]
fn count_first(_: &First) {
    FIRST_CALLS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn unheard_emits_are_numbered_in_order_past_the_end_of_a_block_of_numbers() {
    let bus = EventBus::new();
    // More than one block of numbers (a thread takes them 1,024 at a time).
    let numbers: Vec<u64> = (0..5_000).map(|_| bus.emit(Quiet).sequence()).collect();
    assert!(numbers[0] > 0);
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "{numbers:?}"
    );
    let reports: Vec<_> = (0..3).map(|_| bus.emit_ref(&Quiet)).collect();
    for report in &reports {
        assert!(report.is_ok());
        assert_eq!(report.delivered(), 0);
        assert_eq!(report.event(), "unheard.quiet");
        assert!(report.sequence() > numbers[4_999]);
    }
}

#[test]
fn an_unheard_emit_inside_a_handler_follows_its_cause_and_runs_in_its_trace() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let _sub = bus.subscribe(move |_: &Loud, ctx: &EventContext| {
        let report = ctx.bus().emit(Quiet);
        let entry = (
            ctx.sequence(),
            report.sequence(),
            ctx.trace_id(),
            report.trace_id(),
        );
        log.lock().expect("log").push(entry);
    });
    let id = trace::TraceId::random();
    trace::with_trace_id(id, || bus.emit(Loud));
    for _ in 0..3_000 {
        bus.emit(Loud);
    }
    let seen = seen.lock().expect("log");
    assert_eq!(seen.len(), 3_001);
    assert_eq!(seen[0].2, id);
    for (parent, child, parent_trace, child_trace) in seen.iter() {
        assert!(child > parent, "{child} after {parent}");
        assert_eq!(child_trace, parent_trace);
    }
}

#[test]
fn an_unheard_emit_from_an_async_handler_polled_on_another_thread_follows_its_cause() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let _sub = bus.subscribe_async(move |_: &Loud, ctx: &EventContext| {
        let report = ctx.bus().emit(Quiet);
        log.lock()
            .expect("log")
            .push((ctx.sequence(), report.sequence()));
        async {}
    });
    // This thread takes its block of numbers first; the thread below takes
    // a later one, all above it, and numbers the async emit from it.
    let here = bus.emit(Quiet).sequence();
    let future = std::thread::scope(|s| s.spawn(|| bus.emit_async(Loud)).join().expect("thread"));
    // Polled here: the handler's emit finds this thread's next number
    // below its cause's.
    assert!(block_on(future).is_ok());
    let seen = seen.lock().expect("log");
    let (parent, child) = seen[0];
    assert!(
        parent > here + 1,
        "the cause was numbered on the other thread"
    );
    assert!(child > parent, "{child} after {parent}");
}

#[test]
fn an_unheard_emit_too_deep_is_refused_like_any_other() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .max_depth(1)
        .build()
        .unwrap();
    let refused = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&refused);
    let _sub = bus.subscribe(move |_: &Loud, ctx: &EventContext| {
        log.lock().expect("log").push(ctx.bus().emit(Quiet));
    });
    assert!(bus.emit(Loud).is_ok());
    let refused = refused.lock().expect("log");
    assert_eq!(
        refused[0].refused(),
        Some(&Refusal::DepthLimit { depth: 1, limit: 1 })
    );
    assert_eq!(refused[0].sequence(), 0);
}

#[test]
fn the_first_emit_of_a_type_with_a_handler_reaches_it() {
    let bus = EventBus::new();
    assert_eq!(bus.emit(First).delivered(), 1);
    assert_eq!(bus.emit_ref(&First).delivered(), 1);
    assert_eq!(FIRST_CALLS.load(Ordering::Relaxed), 2);
    // Off on this bus: nobody hears it.
    let quiet = EventBus::builder().static_handlers(false).build().unwrap();
    assert_eq!(quiet.emit(First).delivered(), 0);
    assert_eq!(FIRST_CALLS.load(Ordering::Relaxed), 2);
}
