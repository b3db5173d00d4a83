//! An emit allocates nothing in steady state, with or without a `tracing`
//! subscriber, and log lines written inside its handlers still carry its
//! trace id (through `TraceIdFormat`). Counted with a global allocator, so
//! deterministic; one test function, so nothing else allocates meanwhile.

use sbox_events::trace::TraceIdFormat;
use sbox_events::{Event, EventBus, EventContext, handler};
use sbox_events_tests::CapturedLogs;
use sbox_events_tests::alloc::{self, Counting};
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.measured")]
struct Measured {
    value: u64,
}

#[handler]
fn measured(event: &Measured) {
    std::hint::black_box(event.value);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.talkative")]
struct Talkative;

#[handler]
fn talkative(_: &Talkative) {
    tracing::info!("said inside a handler");
}

const EMITS: u64 = 10_000;

/// Allocations made by `EMITS` emits on `bus` (a static handler and a
/// closure subscription), after a warm-up.
fn allocations_per_run(bus: &EventBus) -> u64 {
    let event = Measured { value: 7 };
    for _ in 0..100 {
        bus.emit_ref(&event);
    }
    // The emits run on this thread; the harness's threads may allocate
    // meanwhile and are not counted.
    let before = alloc::allocations_on_this_thread();
    for _ in 0..EMITS {
        std::hint::black_box(bus.emit_ref(&event));
    }
    alloc::allocations_on_this_thread() - before
}

#[test]
fn emits_do_not_allocate_and_handler_logs_carry_the_trace_id() {
    // The counter sees this thread's allocations (so a zero below means
    // something).
    let before = alloc::allocations_on_this_thread();
    std::hint::black_box(Vec::<u64>::with_capacity(8));
    assert_eq!(alloc::allocations_on_this_thread() - before, 1);

    let bus = EventBus::new();
    let _closure = bus.subscribe(|e: &Measured, _: &EventContext| {
        std::hint::black_box(e.value);
    });
    assert_eq!(allocations_per_run(&bus), 0, "without a subscriber");

    let captured = CapturedLogs::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .event_format(TraceIdFormat::new(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .finish(),
    )
    .expect("the only subscriber of this binary");
    assert_eq!(
        allocations_per_run(&bus),
        0,
        "with a tracing subscriber installed at INFO"
    );

    let report = bus.emit(Talkative);
    let logs = captured.text();
    let line = logs
        .lines()
        .find(|l| l.contains("said inside a handler"))
        .unwrap_or_else(|| panic!("no line: {logs}"));
    assert!(
        line.starts_with(&format!("trace{{trace_id={}}} ", report.trace_id())),
        "{line}"
    );
    // Outside any emit, lines are unchanged.
    tracing::info!("outside");
    let logs = captured.text();
    let outside = logs
        .lines()
        .find(|l| l.contains("outside"))
        .expect("a line");
    assert!(!outside.contains("trace_id"), "{outside}");
}
