//! One `#[handler]` on several buses: each emit reads the resources of the
//! bus it runs on (a handler's resource slot is shared by every bus).
//! Its own test binary: the bus lacking the resource warns about the
//! handler once per process, and the handler's resource would be missing
//! from the other tests' buses.

use sbox_events::{Event, EventBus, handler};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// An event with one handler, taking one resource.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "state.tagged")]
pub struct Tagged(u32);

/// Where each bus's `tag` handler writes what it saw.
pub struct Tag {
    name: &'static str,
    seen: Mutex<Vec<u32>>,
}

#[handler]
fn tag(event: &Tagged, tag: &Tag) {
    tag.seen.lock().unwrap().push(event.0);
}

#[test]
fn each_emit_reads_the_resources_of_its_own_bus() {
    // One handler, three buses: two with their own values, one without.
    // Interleaved, so a read that remembered a bus (or a value) from an
    // earlier emit would show here.
    let bus_with = |name: &'static str| {
        EventBus::builder()
            .resource(Tag {
                name,
                seen: Mutex::new(Vec::new()),
            })
            .build()
            .expect("every resource is there")
    };
    let lacking = EventBus::new();
    let (a, b) = (bus_with("a"), bus_with("b"));
    for round in 0..3 {
        let skipped = lacking.emit(Tagged(round));
        assert!(
            skipped
                .skips()
                .any(|(handler, _)| handler.ends_with("::tag")),
            "{skipped}"
        );
        for (bus, value) in [(&a, round), (&lacking, 100), (&b, round + 10)] {
            let report = bus.emit(Tagged(value));
            assert!(report.failures().is_empty(), "{report}");
        }
    }
    let seen = |bus: &EventBus| {
        let tag = bus.resource::<Tag>().expect("held");
        (tag.name, tag.seen.lock().unwrap().clone())
    };
    assert_eq!(seen(&a), ("a", vec![0, 1, 2]));
    assert_eq!(seen(&b), ("b", vec![10, 11, 12]));
    assert!(lacking.resource::<Tag>().is_none());
}
