//! What a subscription and an event type cost in memory, measured with a
//! counting allocator (deterministic, so the bounds are tested; the numbers
//! are in the README). One test function: nothing else allocates meanwhile.

use sbox_events::{Event, EventBus, EventContext, EventSelector, Subscription};
use sbox_events_tests::alloc::{self, Counting};
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.costed")]
struct Costed(u64);

const SUBSCRIPTIONS: usize = 1_000;

#[test]
fn memory_per_subscription_and_per_event_type() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    bus.emit(Costed(0)); // warm up thread-locals and lazily built tables

    // Closure subscriptions on one type (closures without captures).
    let before = alloc::live();
    let subs: Vec<Subscription> = (0..SUBSCRIPTIONS)
        .map(|_| {
            bus.subscribe(|e: &Costed, _: &EventContext| {
                std::hint::black_box(e.0);
            })
        })
        .collect();
    let per_subscription = (alloc::live() - before) as usize / SUBSCRIPTIONS;
    assert_eq!(bus.emit(Costed(1)).delivered(), SUBSCRIPTIONS);
    drop(subs);
    let left = alloc::live() - before;

    // A type-erased subscription covering every linked event type: one
    // route per type on this bus.
    let types = sbox_events::EventType::all().len();
    let before = alloc::live();
    let all = bus.subscribe_any(
        EventSelector::all(),
        |_: &sbox_events::AnyEvent, _: &EventContext| {},
    );
    let per_type = (alloc::live() - before) as usize / types;
    drop(all);

    println!(
        "per closure subscription: {per_subscription} bytes; per event type routed on a bus: \
         {per_type} bytes ({types} types); after unsubscribing: {left} bytes left"
    );
    assert!(
        per_subscription <= 256,
        "{per_subscription} bytes per subscription"
    );
    assert!(per_type <= 512, "{per_type} bytes per event type");
    assert!(
        left <= 1024,
        "unsubscribing gives the memory back: {left} bytes left"
    );
}
