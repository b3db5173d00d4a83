//! Replay and import at their edges: what user code (`Deserialize`, `Drop`)
//! does there, and what text from records reaches a terminal.

use sbox_events::events::ErrorOccurred;
use sbox_events::history::{
    HistoryQuery, ImportOptions, LineErrorKind, RecordedEvent, export_jsonl, import_jsonl,
};
use sbox_events::trace::{self, TraceId};
use sbox_events::{
    EmitOptions, Event, EventBus, EventContext, EventSelector, FailurePolicy, SubscribeOptions,
};
use sbox_events_tests::exec::block_on;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

/// Recorded fine, refused when read back, with a message that holds a
/// terminal escape.
#[derive(Event, Serialize)]
#[event(name = "edge.unreadable")]
struct Unreadable(u8);

impl<'de> Deserialize<'de> for Unreadable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("\u{1b}[2J screen cleared"))
    }
}

fn history_bus() -> EventBus {
    EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap()
}

#[test]
fn a_replay_error_escapes_what_the_records_deserialize_said() {
    let bus = history_bus();
    assert!(bus.emit(Unreadable(1)).is_ok());
    let records = bus.history().expect("history").query(&HistoryQuery::new());
    let replayed = bus.replay(&records);
    let error = &replayed.errors()[0];
    assert!(error.message().contains("screen cleared"), "{error:?}");
    let shown = error.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.contains(r"\u{1b}[2J screen cleared"), "{shown}");
}

/// Panics when dropped armed: what an event read back from JSON is.
#[derive(Serialize, Deserialize)]
struct Fuse(bool);

impl Drop for Fuse {
    fn drop(&mut self) {
        if self.0 {
            panic!("fuse blew");
        }
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "edge.fused")]
struct Fused {
    fuse: Fuse,
}

/// The lines of one recorded `Fused` event, armed.
fn fused_records(bus: &EventBus) -> Vec<RecordedEvent> {
    let armed = Fused { fuse: Fuse(true) };
    assert!(bus.emit_ref(&armed).is_ok());
    std::mem::forget(armed);
    bus.history().expect("history").query(&HistoryQuery::new())
}

fn errors_seen(bus: &EventBus) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.subscribe(move |e: &ErrorOccurred, _: &EventContext| {
        s.lock()
            .expect("seen")
            .push(format!("{}: {}", e.handler, e.error));
    })
    .detach();
    seen
}

#[test]
fn an_event_the_bus_decoded_and_whose_drop_panics_is_reported_not_unwound() {
    let bus = history_bus();
    let records = fused_records(&bus);
    let seen = errors_seen(&bus);

    // Replay: the event ran, and its `Drop`'s panic is in its report.
    let replayed =
        catch_unwind(AssertUnwindSafe(|| bus.replay(&records))).expect("no unwind out of replay");
    assert!(replayed.errors().is_empty());
    let report = &replayed.reports()[0];
    assert!(!report.is_ok());
    assert_eq!(report.drop_failures().len(), 1, "{report}");
    assert!(report.to_string().contains("fuse blew"), "{report}");
    assert_eq!(
        seen.lock().expect("seen").len(),
        1,
        "emitted as error.occurred"
    );

    // By name, synchronously and asynchronously.
    let json = records[0].data();
    let report = catch_unwind(AssertUnwindSafe(|| {
        bus.emit_json("edge.fused", json, EmitOptions::new())
    }))
    .expect("no unwind out of emit_json")
    .expect("decoded");
    assert_eq!(report.drop_failures().len(), 1, "{report}");
    let emit = bus
        .emit_json_async("edge.fused", json, EmitOptions::new())
        .expect("decoded");
    let report = catch_unwind(AssertUnwindSafe(|| block_on(emit)))
        .expect("no unwind out of emit_json_async");
    assert_eq!(report.drop_failures().len(), 1, "{report}");
    // An unfinished one, dropped: logged and emitted only.
    let before = seen.lock().expect("seen").len();
    let emit = bus
        .emit_json_async("edge.fused", json, EmitOptions::new())
        .expect("decoded");
    catch_unwind(AssertUnwindSafe(|| drop(emit))).expect("no unwind out of its drop");
    assert_eq!(seen.lock().expect("seen").len(), before + 1);

    // Import: the line is refused, saying why; the line before it kept.
    let plain = history_bus();
    assert!(plain.emit(Plain).is_ok());
    let mut file = Vec::new();
    let before = plain
        .history()
        .expect("history")
        .query(&HistoryQuery::new());
    export_jsonl(before.iter().chain(&records), &mut file).expect("export");
    let imported = catch_unwind(|| import_jsonl(&file[..], &ImportOptions::new().lenient(true)))
        .expect("no unwind out of import_jsonl")
        .expect("lenient");
    assert_eq!(imported.events.len(), 1);
    assert_eq!(imported.skipped[0].line(), 2);
    match imported.skipped[0].kind() {
        LineErrorKind::Invalid { reason, .. } => assert!(reason.contains("fuse blew"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "edge.plain")]
struct Plain;

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(name = "edge.ratio_measured")]
struct RatioMeasured {
    server: String,
    ratio: f64,
}

#[test]
fn a_nan_is_refused_when_written_not_when_read_back() {
    let bus = history_bus();
    let report = bus.emit(RatioMeasured {
        server: "nl-1".into(),
        ratio: f64::NAN,
    });
    // Not recorded (JSON has no NaN: it would be written as null, which
    // replay and import then refuse), saying which field; the handlers ran.
    assert_eq!(report.not_recorded().len(), 1, "{report}");
    let message = report.not_recorded()[0].message();
    assert!(message.contains("field `ratio` is NaN"), "{message}");
    let history = bus.history().expect("history");
    assert_eq!(history.stats().unserializable, 1);
    let ratios =
        HistoryQuery::new().events(EventSelector::names(["edge.ratio_measured"]).expect("a name"));
    assert!(history.query(&ratios).is_empty());

    // Finite values are recorded and replay as they were.
    let report = bus.emit(RatioMeasured {
        server: "nl-1".into(),
        ratio: 0.5,
    });
    assert!(report.is_ok(), "{report}");
    let records = history.query(&ratios);
    assert_eq!(records[0].data(), r#"{"server":"nl-1","ratio":0.5}"#);
    assert!(bus.replay(&records).is_ok());
    let infinite = RatioMeasured {
        server: "nl-1".into(),
        ratio: f64::INFINITY,
    };
    assert!(!bus.emit(infinite).not_recorded().is_empty());
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "edge.fetched")]
struct Fetched;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "edge.parsed")]
struct Parsed;

/// A bus that records replays, after a `Fetched` whose handler emitted a
/// `Parsed`: the trace and the two records, parent first.
fn fetched_then_parsed() -> (EventBus, TraceId, Vec<RecordedEvent>) {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .record_replays(true)
        .build()
        .unwrap();
    bus.subscribe(|_: &Fetched, ctx: &EventContext| {
        ctx.bus().emit(Parsed);
    })
    .detach();
    let trace_id = bus.emit(Fetched).trace_id();
    let original = bus.history().expect("history").query(&HistoryQuery::new());
    assert_eq!(original.len(), 2);
    (bus, trace_id, original)
}

#[test]
fn a_record_and_each_of_its_recorded_replays_keep_their_own_children() {
    for replays in 1..=3 {
        let (bus, trace_id, original) = fetched_then_parsed();
        let history = bus.history().expect("history");
        // Each replay keeps the original's event id (and is recorded).
        for _ in 0..replays {
            assert!(bus.replay(&original[..1]).is_ok());
        }

        let tree = history.tree(trace_id);
        assert_eq!(tree.len(), 2 * (1 + replays));
        let roots = tree.roots();
        assert_eq!(roots.len(), 1 + replays, "the original and its replays");
        for root in roots {
            let children: Vec<_> = root.children().collect();
            assert_eq!(children.len(), 1, "each with its own child");
            let replayed = root.record().envelope().is_replay();
            assert_eq!(children[0].record().envelope().is_replay(), replayed);
        }
    }
}

/// The `error.occurred` an event panicking in its `Drop` causes: its trace,
/// and whether a handler is named in its cause.
type DropErrors = Arc<Mutex<Vec<(TraceId, Option<String>)>>>;

#[test]
fn the_error_of_an_event_dropped_badly_is_in_its_trace_and_caused_by_no_handler() {
    let bus = history_bus();
    let records = fused_records(&bus);
    let seen: DropErrors = Arc::default();
    let sink = Arc::clone(&seen);
    bus.subscribe(move |_: &ErrorOccurred, ctx: &EventContext| {
        let handler = ctx.cause().and_then(|c| c.handler().map(str::to_owned));
        sink.lock().expect("seen").push((ctx.trace_id(), handler));
    })
    .detach();
    let reader = SubscribeOptions::new().name("reader");
    bus.subscribe_with(reader, |_: &Fused, _: &EventContext| {})
        .detach();

    // Replayed from within another trace: the error is in the replay's.
    let replayed = trace::with_trace_id(TraceId::random(), || bus.replay(&records));
    let report = &replayed.reports()[0];
    assert_eq!(report.drop_failures().len(), 1, "{report}");
    let (trace_id, handler) = seen.lock().expect("seen").remove(0);
    assert_eq!(trace_id, report.trace_id());
    assert_eq!(handler, None);

    // By name, in a trace given, from within another one.
    let given = TraceId::random();
    let report = trace::with_trace_id(TraceId::random(), || {
        let options = EmitOptions::new().trace_id(given);
        bus.emit_json("edge.fused", records[0].data(), options)
    })
    .expect("decoded");
    assert_eq!(report.drop_failures().len(), 1, "{report}");
    let (trace_id, handler) = seen.lock().expect("seen").remove(0);
    assert_eq!(trace_id, given);
    assert_eq!(handler, None);

    // Given to emit_async: the handler that ran last did not cause it.
    let report = block_on(bus.emit_async(Fused { fuse: Fuse(true) }));
    assert_eq!(report.drop_failures().len(), 1, "{report}");
    let (trace_id, handler) = seen.lock().expect("seen").remove(0);
    assert_eq!(trace_id, report.trace_id());
    assert_eq!(handler, None);
}

#[test]
fn a_propagated_handler_panic_unwinds_past_an_event_that_panics_when_dropped() {
    let bus = history_bus();
    let records = fused_records(&bus);
    let json = records[0].data();
    let bus = EventBus::builder()
        .static_handlers(false)
        .failure_policy(FailurePolicy::Propagate)
        .build()
        .unwrap();
    bus.subscribe(|_: &Fused, _: &EventContext| panic!("handler failed"))
        .detach();
    let message = |payload: Box<dyn std::any::Any + Send>| match payload.downcast::<&str>() {
        Ok(message) => *message,
        Err(_) => "another payload",
    };
    // The handler's panic comes out (not an abort: a panic in a `Drop`
    // while unwinding would be one).
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        bus.emit_json("edge.fused", json, EmitOptions::new())
    }));
    assert_eq!(unwound.map(drop).map_err(message), Err("handler failed"));
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        block_on(bus.emit_async(Fused { fuse: Fuse(true) }))
    }));
    assert_eq!(unwound.map(drop).map_err(message), Err("handler failed"));
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "edge.outer")]
struct Outer;

/// Of each `error.occurred`: its cause's event, sequence and handler.
type Causes = Arc<Mutex<Vec<(String, u64, Option<String>)>>>;

#[test]
fn an_event_dropped_badly_inside_a_handler_is_its_own_errors_cause() {
    let bus = history_bus();
    let records = fused_records(&bus);
    let json = records[0].data().to_owned();
    let seen: Causes = Arc::default();
    let sink = Arc::clone(&seen);
    bus.subscribe(move |_: &ErrorOccurred, ctx: &EventContext| {
        let cause = ctx.cause().expect("caused by something");
        let handler = cause.handler().map(str::to_owned);
        let entry = (cause.event().to_owned(), cause.sequence(), handler);
        sink.lock().expect("seen").push(entry);
    })
    .detach();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let (inner_bus, inner_reports) = (bus.clone(), Arc::clone(&reports));
    let outer = SubscribeOptions::new().name("outer handler");
    bus.subscribe_with(outer, move |_: &Outer, _: &EventContext| {
        let by_name = inner_bus.emit_json("edge.fused", &json, EmitOptions::new());
        let replayed = inner_bus.replay(&records);
        let mut reports = inner_reports.lock().expect("reports");
        reports.push(by_name.expect("decoded"));
        reports.extend(replayed.reports().iter().cloned());
    })
    .detach();

    assert!(bus.emit(Outer).is_ok());
    let reports = reports.lock().expect("reports");
    assert_eq!(reports.len(), 2);
    // Neither the outer handler nor its event dropped the event: the
    // event's own `Drop` did, after its handlers.
    let seen = seen.lock().expect("seen");
    let expected: Vec<_> = reports
        .iter()
        .map(|report| ("edge.fused".to_owned(), report.sequence(), None))
        .collect();
    assert_eq!(*seen, expected);
}

#[test]
fn a_replayed_child_stays_with_the_copy_of_its_cause_recorded_before_it() {
    let (bus, trace_id, original) = fetched_then_parsed();
    let history = bus.history().expect("history");
    // The child alone first: its copy keeps its cause, the original
    // `Fetched`, the only copy of it recorded so far. Then the parent,
    // whose replay is recorded after that copy, with a child of its own.
    assert!(bus.replay(&original[1..]).is_ok());
    assert!(bus.replay(&original[..1]).is_ok());

    let tree = history.tree(trace_id);
    assert_eq!(tree.len(), 5);
    let children = |replay: bool| {
        let root = tree
            .roots()
            .iter()
            .find(|root| root.record().envelope().is_replay() == replay);
        root.expect("a root").children().count()
    };
    assert_eq!(
        children(false),
        2,
        "the original: its child and that child's replay"
    );
    assert_eq!(children(true), 1, "the replay: its own child only");
}
