//! `#[handler]` functions that fail or panic: each failure is isolated and
//! reported with its handler, the handlers after it still run, and a
//! handler that returns `()` or `Ok(())` is never reported, through `emit`
//! and `emit_async` alike.

use sbox_events::{EmitReport, Event, EventBus, FailureKind, handler};
use sbox_events_tests::calls::{record, take};
use sbox_events_tests::exec::block_on;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.static_trouble")]
struct Trouble {
    id: u32,
}

#[handler(priority = 4, name = "first")]
fn first(_: &Trouble) {
    record("first");
}

#[handler(priority = 3, name = "erring")]
fn erring(trouble: &Trouble) -> Result<(), String> {
    record("erring");
    match trouble.id % 2 {
        1 => Err(format!("job {} has no owner", trouble.id)),
        _ => Ok(()),
    }
}

#[handler(priority = 2, name = "panicking")]
fn panicking(trouble: &Trouble) {
    record("panicking");
    if trouble.id > 100 {
        panic!("disk {} on fire", trouble.id);
    }
}

#[handler(priority = 1, name = "fine")]
fn fine(_: &Trouble) -> Result<(), std::io::Error> {
    record("fine");
    Ok(())
}

#[handler(name = "last")]
fn last(_: &Trouble) {
    record("last");
}

fn emit(bus: &EventBus, trouble: Trouble, run_async: bool) -> EmitReport {
    match run_async {
        false => bus.emit(trouble),
        true => block_on(bus.emit_async(trouble)),
    }
}

const ORDER: [&str; 5] = ["first", "erring", "panicking", "fine", "last"];

#[test]
fn failures_and_panics_of_handlers_are_isolated_and_reported() {
    let bus = EventBus::new();
    for run_async in [false, true] {
        let report = emit(&bus, Trouble { id: 101 }, run_async);
        assert_eq!(take(), ORDER);
        assert_eq!((report.delivered(), report.succeeded()), (5, 3));
        let failures = report.failures();
        assert_eq!(failures.len(), 2, "{report}");
        assert_eq!(
            (failures[0].handler(), failures[0].kind()),
            ("erring", FailureKind::Error)
        );
        assert_eq!(failures[0].message(), "job 101 has no owner");
        assert_eq!(failures[0].error_type(), "alloc::string::String");
        assert_eq!(
            (failures[1].handler(), failures[1].kind()),
            ("panicking", FailureKind::Panic)
        );
        assert_eq!(failures[1].message(), "disk 101 on fire");
    }
}

#[test]
fn a_failure_is_not_carried_into_the_next_handler_or_emit() {
    let bus = EventBus::new();
    // Only `erring` fails; the handlers after it succeed.
    let report = bus.emit(Trouble { id: 7 });
    assert_eq!(take(), ORDER);
    let failed: Vec<_> = report.failures().iter().map(|f| f.handler()).collect();
    assert_eq!(failed, ["erring"]);
    // Nothing fails: nothing is reported, in either path.
    for run_async in [false, true] {
        let report = emit(&bus, Trouble { id: 8 }, run_async);
        assert_eq!(take(), ORDER);
        assert!(report.is_ok(), "{report}");
        assert_eq!((report.delivered(), report.succeeded()), (5, 5));
    }
}
