//! Sequence numbers (and the implicit trace ids made from them) stay unique
//! in the process when a replayed record carries a number near `u64::MAX`
//! (an imported file from elsewhere can hold any number). Its own file: the
//! counter of sequence blocks is process-wide.

use sbox_events::history::{ImportOptions, export_jsonl, import_jsonl};
use sbox_events::{Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "test.tick")]
struct Tick;

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "test.tock")]
struct Tock;

#[test]
fn a_replayed_number_near_the_end_of_the_range_never_makes_numbers_repeat() {
    // More numbers than one thread's block, from this thread.
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap();
    let before: Vec<_> = (0..1_100).map(|_| bus.emit(Tick)).collect();

    // A record from elsewhere, numbered 5 below the end of the range.
    let records = bus.history().expect("history").query(&Default::default());
    let mut line = Vec::new();
    export_jsonl(&records[..1], &mut line).expect("export");
    let line = String::from_utf8(line).expect("utf-8");
    let number = format!("\"sequence\":{}", records[0].envelope().sequence());
    assert!(line.contains(&number), "{line}");
    let line = line.replace(&number, &format!("\"sequence\":{}", u64::MAX - 5));
    let imported = import_jsonl(line.as_bytes(), &ImportOptions::new()).expect("import");

    // Its handler emits, nested: that event needs a number of its own.
    let replaying = EventBus::builder().static_handlers(false).build().unwrap();
    let nested = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::clone(&nested);
    let _sub = replaying.subscribe(move |_: &Tick, ctx: &EventContext| {
        n.lock().expect("nested").push(ctx.bus().emit(Tock));
    });
    assert!(replaying.replay(&imported.events).is_ok());

    // Then other threads emit, as usual.
    let after: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| (0..1_100).map(|_| bus.emit(Tock)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });

    let nested = nested.lock().expect("nested");
    assert_eq!(nested.len(), 1);
    let reports: Vec<_> = before.iter().chain(nested.iter()).chain(&after).collect();
    let numbers: HashSet<u64> = reports.iter().map(|r| r.sequence()).collect();
    assert_eq!(numbers.len(), reports.len(), "every number once");
    // The nested event runs in the replayed record's trace; every other
    // emit started a trace of its own.
    assert_eq!(nested[0].trace_id(), records[0].envelope().trace_id());
    let fresh: Vec<_> = before.iter().chain(&after).collect();
    let traces: HashSet<_> = fresh.iter().map(|r| r.trace_id()).collect();
    assert_eq!(traces.len(), fresh.len(), "every implicit trace once");
}

/// A record of `Tick` numbered `sequence`, as if imported from elsewhere.
fn tick_numbered(sequence: u64) -> Vec<sbox_events::history::RecordedEvent> {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap();
    bus.emit(Tick);
    let records = bus.history().expect("history").query(&Default::default());
    let mut line = Vec::new();
    export_jsonl(&records, &mut line).expect("export");
    let line = String::from_utf8(line).expect("utf-8");
    let number = format!("\"sequence\":{}", records[0].envelope().sequence());
    let line = line.replace(&number, &format!("\"sequence\":{sequence}"));
    import_jsonl(line.as_bytes(), &ImportOptions::new())
        .expect("import")
        .events
}

#[test]
fn numbers_followed_after_a_replayed_record_leave_half_the_range_unused() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let nested = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::clone(&nested);
    let _sub = bus.subscribe(move |_: &Tick, ctx: &EventContext| {
        n.lock()
            .expect("nested")
            .push(ctx.bus().emit(Tock).sequence());
    });
    // Within the lower half: its child is numbered above it.
    assert!(bus.replay(&tick_numbered(1 << 62)).is_ok());
    // Within 2^32 of the end but above the half: following it would leave
    // 2^32 numbers (about a minute of emits on one thread) before the
    // counter wraps and hands numbers out again. Its child gets an
    // ordinary number instead.
    assert!(bus.replay(&tick_numbered(u64::MAX - (1 << 32))).is_ok());
    let nested = nested.lock().expect("nested");
    assert!(nested[0] > 1 << 62, "{nested:?}");
    assert!(nested[1] < 1 << 63, "{nested:?}");
    assert!(bus.emit(Tock).sequence() < 1 << 63);
}
