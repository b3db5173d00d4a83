//! A record that owns heap memory (an owned source, metadata, a cause, its
//! handlers' runs) takes its room from the history's unused capacity, not
//! by evicting the many records whose room stays allocated: the history
//! keeps about as many records as before it.

use sbox_events::history::DEFAULT_HISTORY_BYTES;
use sbox_events::{EmitOptions, Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "heap.plain")]
struct Plain {
    url: String,
    count: u64,
}

fn plain(i: u64) -> Plain {
    Plain {
        url: format!("https://provider.example.net/sub/{i:08}?token=abcdef"),
        count: i,
    }
}

/// A bus whose default-size history is full of records without heap.
fn full_history() -> EventBus {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(DEFAULT_HISTORY_BYTES)
        .build()
        .unwrap();
    for i in 0..200_000 {
        bus.emit(plain(i));
    }
    bus
}

#[test]
fn one_record_with_an_owned_source_evicts_about_one_record() {
    let bus = full_history();
    let history = bus.history().expect("enabled");
    let before = history.stats();
    assert!(before.evicted > 0, "full: {before:?}");
    bus.emit_with(plain(0), EmitOptions::new().source("elsewhere"));
    let after = history.stats();
    assert!(
        after.evicted - before.evicted <= 2,
        "one record evicted {} others: {before:?} -> {after:?}",
        after.evicted - before.evicted
    );
    assert!(after.bytes <= after.capacity_bytes);
}

#[test]
fn a_share_of_records_with_heap_keeps_the_history_about_as_full() {
    let bus = full_history();
    let history = bus.history().expect("enabled");
    let full = history.stats().entries;
    // One in a hundred with metadata, then one in a hundred nested (its
    // record has a cause).
    let _nest = bus.subscribe(|e: &Plain, ctx: &EventContext| {
        if e.count % 100 == 1 && ctx.depth() == 0 {
            ctx.bus().emit(plain(e.count + 1));
        }
    });
    for i in 0..200_000u64 {
        if i % 100 == 0 {
            bus.emit_with(plain(i), EmitOptions::new().metadata("k", "v"));
        } else {
            bus.emit(plain(i));
        }
        let stats = history.stats();
        assert!(stats.bytes <= stats.capacity_bytes, "{stats:?}");
        assert!(
            stats.entries >= full * 9 / 10,
            "emit {i}: {} records held, {full} before: {stats:?}",
            stats.entries
        );
    }
}

#[test]
fn the_flight_recorder_attaches_runs_without_emptying_the_history() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .flight_recorder(true)
        .build()
        .unwrap();
    // Unheard events fill the history (no runs to attach)...
    for i in 0..50_000 {
        bus.emit(plain(i));
    }
    let history = bus.history().expect("enabled");
    let full = history.stats().entries;
    // ...then one is handled: its runs are attached to its record.
    let _handler = bus.subscribe(|e: &Plain, _: &EventContext| {
        std::hint::black_box(e.count);
    });
    bus.emit(plain(0));
    let stats = history.stats();
    assert!(
        stats.entries + 2 >= full,
        "{} records held, {full} before: {stats:?}",
        stats.entries
    );
    let last = history.query(&Default::default()).pop().expect("kept");
    assert_eq!(last.handlers().len(), 1, "its run is attached");
}

#[test]
fn a_record_with_heap_larger_than_either_area_keeps_what_still_fits() {
    let bus = full_history();
    let history = bus.history().expect("enabled");
    let full = history.stats();
    // 5 MiB of metadata: more than the slot array or the JSON bytes hold
    // alone, less than the budget.
    let large = "m".repeat(5 << 20);
    let report = bus.emit_with(plain(0), EmitOptions::new().metadata("large", large));
    assert!(report.not_recorded().is_empty());
    let stats = history.stats();
    assert_eq!(stats.oversized, 0, "{stats:?}");
    assert!(stats.bytes <= stats.capacity_bytes, "{stats:?}");
    // About 3 MiB is left for the others: over a third of them stay.
    assert!(
        stats.entries > full.entries / 3,
        "{} records held, {} before: {stats:?}",
        stats.entries,
        full.entries
    );
}
