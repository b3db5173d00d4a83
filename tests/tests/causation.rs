//! Every event knows its cause: the event being handled when it was emitted
//! and the handler whose call emitted it, through nested `emit`,
//! `emit_async` across `.await`s and threads, `trace::capture`, streams,
//! the test recorder, the history with its JSON Lines, and replay.

use sbox_events::history::{HistoryQuery, ImportOptions, import_jsonl};
use sbox_events::stream::{Overflow, StreamItem};
use sbox_events::testing::Recorder;
use sbox_events::trace;
use sbox_events::{Cause, Event, EventBus, EventContext, SubscribeOptions, handler};
use sbox_events_tests::exec::{block_on, poll_once, yield_now};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "flow.fetched")]
struct Fetched {
    n: u32,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "flow.parsed")]
struct Parsed {
    n: u32,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "flow.built")]
struct Built {
    n: u32,
}

/// A `#[handler]` emits `Parsed` for every `Fetched` with an even `n`.
#[handler(name = "parse")]
fn parse(fetched: &Fetched, ctx: &EventContext) {
    if fetched.n.is_multiple_of(2) {
        ctx.bus().emit(Parsed { n: fetched.n });
    }
}

/// Every `Built`'s cause, with the sequence of the event it names.
type Causes = Arc<Mutex<Vec<Option<Cause>>>>;

fn causes_of_built(bus: &EventBus) -> (Causes, sbox_events::Subscription) {
    let causes: Causes = Arc::default();
    let sink = Arc::clone(&causes);
    let sub = bus.subscribe(move |_: &Built, ctx: &EventContext| {
        sink.lock().unwrap().push(ctx.cause());
    });
    (causes, sub)
}

#[test]
fn nested_events_record_the_event_and_the_handler_that_emitted_them() {
    let bus = EventBus::builder().history(1 << 20).build().unwrap();
    let recorder = Recorder::all(&bus);
    let _build = bus.subscribe_with(
        SubscribeOptions::new().name("builder"),
        |parsed: &Parsed, ctx: &EventContext| {
            ctx.bus().emit(Built { n: parsed.n });
        },
    );
    let (causes, _watch) = causes_of_built(&bus);
    let report = trace::with_new_trace(|| bus.emit(Fetched { n: 2 })).1;
    assert!(report.is_ok(), "{report}");

    let records = recorder.records();
    let fetched = &records[0];
    let parsed = &records[1];
    assert_eq!(fetched.name(), "flow.fetched");
    assert_eq!(fetched.envelope().cause(), None, "a root has no cause");
    let cause = parsed.envelope().cause().expect("parsed has a cause");
    assert_eq!(cause.event(), "flow.fetched");
    assert_eq!(cause.sequence(), fetched.envelope().sequence());
    assert_eq!(cause.event_id(), Some(fetched.envelope().event_id()));
    assert_eq!(cause.handler(), Some("parse"));
    let built = causes.lock().unwrap()[0]
        .clone()
        .expect("built has a cause");
    assert_eq!(built.event(), "flow.parsed");
    assert_eq!(built.sequence(), parsed.envelope().sequence());
    assert_eq!(
        built.handler(),
        Some("builder"),
        "a subscription by its name"
    );

    assert_eq!(recorder.assert_caused_by::<Parsed, Fetched>(), "parse");
    assert_eq!(recorder.assert_caused_by::<Built, Parsed>(), "builder");
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        recorder.assert_caused_by::<Fetched, Built>()
    }))
    .expect_err("fetched is a root");
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(
        message,
        "expected a `flow.fetched` caused by a `flow.built`; the recorded `flow.fetched`s: a root (no cause)"
    );

    // The history and its JSON Lines keep the causes; replay keeps them too.
    let history = bus.history().unwrap();
    let mut jsonl = Vec::new();
    history
        .export_jsonl(&HistoryQuery::new(), &mut jsonl)
        .unwrap();
    let imported = import_jsonl(&jsonl[..], &ImportOptions::new()).unwrap();
    assert_eq!(imported.events[1].envelope().cause(), Some(cause));
    let replay_bus = EventBus::builder().static_handlers(false).build().unwrap();
    let seen: Causes = Arc::default();
    let sink = Arc::clone(&seen);
    let _sub = replay_bus.subscribe(move |_: &Parsed, ctx: &EventContext| {
        sink.lock().unwrap().push(ctx.cause());
    });
    replay_bus.replay(&imported.events);
    assert_eq!(seen.lock().unwrap()[0].as_ref(), Some(cause));
}

#[test]
fn async_handlers_are_the_cause_across_awaits_and_thread_switches() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let _async = bus.subscribe_async_with(
        SubscribeOptions::new().name("async parser"),
        |fetched: &Fetched, ctx: &EventContext| {
            let (bus, n) = (ctx.bus().clone(), fetched.n);
            async move {
                yield_now().await; // moved to another thread here
                bus.emit_async(Parsed { n }).await;
            }
        },
    );
    let _sync = bus.subscribe_with(
        SubscribeOptions::new().name("sync builder"),
        |parsed: &Parsed, ctx: &EventContext| {
            ctx.bus().emit(Built { n: parsed.n });
        },
    );
    let (built, _watch) = causes_of_built(&bus);
    let parsed_causes: Causes = Arc::default();
    let sink = Arc::clone(&parsed_causes);
    let _p = bus.subscribe(move |_: &Parsed, ctx: &EventContext| {
        sink.lock().unwrap().push(ctx.cause());
    });
    let bus_ref = &bus;
    std::thread::scope(|scope| {
        let mut future = scope
            .spawn(move || {
                let mut future = Box::pin(bus_ref.emit_async(Fetched { n: 4 }));
                assert!(poll_once(future.as_mut()).is_pending());
                future
            })
            .join()
            .unwrap();
        scope
            .spawn(move || {
                assert!(block_on(future.as_mut()).is_ok());
                // Nothing is left on the thread.
                assert!(trace::capture() == trace::capture());
            })
            .join()
            .unwrap();
    });
    let parsed = parsed_causes.lock().unwrap()[0].clone().expect("caused");
    assert_eq!(parsed.event(), "flow.fetched");
    assert_eq!(parsed.handler(), Some("async parser"));
    let built = built.lock().unwrap()[0].clone().expect("caused");
    assert_eq!(
        (built.event(), built.handler()),
        ("flow.parsed", Some("sync builder"))
    );
}

#[test]
fn a_captured_trace_carries_the_cause_into_another_thread() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let worker = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&worker);
    let _spawner = bus.subscribe_with(
        SubscribeOptions::new().name("spawner"),
        move |fetched: &Fetched, ctx: &EventContext| {
            let bus = ctx.bus().clone();
            let n = fetched.n;
            *slot.lock().unwrap() = Some(trace::spawn(move || {
                bus.emit(Parsed { n });
            }));
        },
    );
    let causes: Causes = Arc::default();
    let sink = Arc::clone(&causes);
    let _p = bus.subscribe(move |_: &Parsed, ctx: &EventContext| {
        sink.lock().unwrap().push(ctx.cause());
    });
    bus.emit(Fetched { n: 6 });
    worker.lock().unwrap().take().unwrap().join().unwrap();
    let cause = causes.lock().unwrap()[0].clone().expect("caused");
    assert_eq!(
        (cause.event(), cause.handler()),
        ("flow.fetched", Some("spawner"))
    );
    // Outside any handler: no cause.
    let bus2 = bus.clone();
    std::thread::spawn(move || bus2.emit(Parsed { n: 1 }))
        .join()
        .unwrap();
    assert_eq!(causes.lock().unwrap()[1], None);
}

#[test]
fn stream_deliveries_carry_the_cause() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let _parse = bus.subscribe_with(
        SubscribeOptions::new().name("parser"),
        |fetched: &Fetched, ctx: &EventContext| {
            ctx.bus().emit(Parsed { n: fetched.n });
        },
    );
    let mut parsed = bus.subscribe_stream::<Parsed>(4, Overflow::DropOldest);
    bus.emit(Fetched { n: 8 });
    let Some(StreamItem::Event(delivery)) = block_on(parsed.recv()) else {
        panic!("a delivery")
    };
    let cause = delivery.envelope().cause().expect("caused");
    assert_eq!(
        (cause.event(), cause.handler()),
        ("flow.fetched", Some("parser"))
    );
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "flow.inspected")]
struct Inspected;

/// What `trace::capture()` gave inside the `inspect` handler, as `{:?}`.
static CAPTURED_DEBUG: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[handler(name = "inspect")]
fn inspect(_: &Inspected) {
    let captured = trace::capture();
    assert_eq!(captured, captured.clone());
    CAPTURED_DEBUG.lock().unwrap().push(format!("{captured:?}"));
}

#[test]
fn a_captured_trace_shows_the_running_handler_by_name_in_debug_output() {
    let bus = EventBus::new();
    let report = bus.emit(Inspected);
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let shown = CAPTURED_DEBUG.lock().unwrap().clone();
    assert_eq!(shown.len(), 1);
    assert!(
        shown[0].contains(r#"Static("inspect")"#),
        "the handler by name, not as a number: {}",
        shown[0]
    );
}
