//! With a history, an emit allocates nothing in steady state: the event is
//! serialized into a reused per-thread buffer and its JSON copied into the
//! history's ring of bytes. Counted with a global allocator, so
//! deterministic. Also: an event whose `Serialize` emits (and so records)
//! in turn is recorded.

use sbox_events::{EmitOptions, Event, EventBus};
use sbox_events_tests::alloc::{self, Counting};
use serde::{Deserialize, Serialize, Serializer};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "hist.probe")]
struct Probe {
    url: String,
    latency_ms: u64,
    servers: u32,
    healthy: bool,
}

const EMITS: u64 = 10_000;

#[test]
fn a_recorded_emit_allocates_nothing_in_steady_state() {
    // Small, so the warm-up fills it and every later emit evicts a record.
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(64 << 10)
        .build()
        .unwrap();
    let event = Probe {
        url: "https://provider.example.net/sub/3f1c2b?token=abcdef0123456789".into(),
        latency_ms: 42,
        servers: 120,
        healthy: true,
    };
    for _ in 0..2_000 {
        bus.emit_ref(&event);
    }
    let history = bus.history().expect("enabled");
    assert!(history.stats().evicted > 0, "warmed up to eviction");
    let before = alloc::allocations_on_this_thread();
    for _ in 0..EMITS {
        std::hint::black_box(bus.emit_ref(&event));
    }
    let per_emit = (alloc::allocations_on_this_thread() - before) as f64 / EMITS as f64;
    assert_eq!(per_emit, 0.0, "the JSON goes into the ring's bytes");
    let stats = history.stats();
    assert!(stats.bytes <= stats.capacity_bytes);
}

/// An event whose serialization emits another event on the same bus.
#[derive(Event, Deserialize)]
#[event(name = "hist.reentrant")]
struct Reentrant;

impl Serialize for Reentrant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let report = EventBus::global().emit_with(
            Probe {
                url: "inner".into(),
                latency_ms: 1,
                servers: 1,
                healthy: true,
            },
            EmitOptions::new().source("serializer"),
        );
        assert!(report.is_ok());
        serializer.serialize_unit_struct("Reentrant")
    }
}

#[test]
fn an_event_whose_serialize_emits_is_recorded_with_the_inner_one() {
    let global = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap();
    assert!(EventBus::install_global(global).is_ok(), "first install");
    let bus = EventBus::global();
    bus.emit(Reentrant);
    let history = bus.history().expect("enabled");
    let names: Vec<(&str, String)> = history
        .query(&Default::default())
        .iter()
        .map(|r| (r.name(), r.data().to_owned()))
        .collect();
    assert!(
        names.contains(&("hist.reentrant", "null".to_owned())),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|(name, data)| *name == "hist.probe" && data.contains("\"inner\"")),
        "{names:?}"
    );
}
