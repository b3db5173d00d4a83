//! A plain `emit` of a type with async handlers reports them as skipped and
//! warns once: after that first warning it costs the report's own list of
//! skipped names and nothing else (no lock, no copy of a handler's name).
//! Counted with a global allocator, so deterministic; one test function.

use sbox_events::{Event, EventBus, EventContext, SubscribeOptions, handler};
use sbox_events_tests::alloc::{self, Counting};
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.uploaded")]
struct Uploaded {
    bytes: u64,
}

#[handler]
async fn upload(event: &Uploaded) {
    std::hint::black_box(event.bytes);
}

#[handler]
fn count(event: &Uploaded) {
    std::hint::black_box(event.bytes);
}

/// Allocations of one emit, after the first (which warns).
fn allocations_of_an_emit(bus: &EventBus) -> u64 {
    let report = bus.emit(Uploaded { bytes: 1 });
    assert_eq!(report.skipped().len(), 1);
    drop(report);
    let before = alloc::allocations_on_this_thread();
    for _ in 0..100 {
        let report = std::hint::black_box(bus.emit(Uploaded { bytes: 2 }));
        assert_eq!(report.skipped().len(), 1);
    }
    (alloc::allocations_on_this_thread() - before) / 100
}

#[test]
fn a_skipped_async_handler_costs_the_report_only() {
    // The report's issues (one box) and its list of skipped names (one
    // vector): the names themselves are borrowed from the handlers.
    let bus = EventBus::new();
    assert_eq!(allocations_of_an_emit(&bus), 2, "static handlers, no route");

    // The same through a route (a subscription makes one), with an async
    // subscription named by a `&'static str`.
    let _sub = bus.subscribe_async_with(
        SubscribeOptions::new().name("async subscription"),
        |_: &Uploaded, _: &EventContext| async {},
    );
    let report = bus.emit(Uploaded { bytes: 3 });
    assert_eq!(report.skipped().len(), 2);
    drop(report);
    let before = alloc::allocations_on_this_thread();
    for _ in 0..100 {
        let report = std::hint::black_box(bus.emit(Uploaded { bytes: 4 }));
        assert_eq!(report.skipped().len(), 2);
    }
    assert_eq!(
        (alloc::allocations_on_this_thread() - before) / 100,
        2,
        "through a route"
    );
}
