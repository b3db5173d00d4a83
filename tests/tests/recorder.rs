//! `testing::Recorder`: what a unit test of event-emitting code sees, and
//! what its assertions say when they fail.

use sbox_events::testing::Recorder;
use sbox_events::{EmitOptions, Event, EventBus, EventContext, EventSelector, trace};
use sbox_events_tests::exec::block_on;
use serde::{Deserialize, Serialize};
use std::panic::{AssertUnwindSafe, catch_unwind};

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(name = "rec.fetched")]
struct Fetched {
    servers: u32,
}

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(name = "rec.generated")]
struct Generated {
    outbounds: u32,
}

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(name = "rec.failed")]
struct Failed;

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "<non-string panic>".into(), |s| (*s).to_owned()),
    }
}

/// A bus where handling `Fetched` emits `Generated`, as a pipeline does.
fn pipeline() -> (EventBus, sbox_events::Subscription) {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let sub = bus.subscribe(|e: &Fetched, ctx: &EventContext| {
        ctx.bus().emit(Generated {
            outbounds: e.servers * 2,
        });
    });
    (bus, sub)
}

#[test]
fn records_events_with_their_envelopes_in_emit_order() {
    let (bus, _sub) = pipeline();
    let recorder = Recorder::all(&bus);
    let id = trace::TraceId::random();
    trace::with_trace_id(id, || {
        bus.emit_with(
            Fetched { servers: 3 },
            EmitOptions::new()
                .source("scheduler")
                .metadata("url", "https://a.example"),
        )
    });
    assert_eq!(recorder.names(), ["rec.fetched", "rec.generated"]);
    let records = recorder.records();
    assert_eq!(records[0].envelope().source(), "scheduler");
    assert_eq!(
        records[0].envelope().metadata().get("url"),
        Some("https://a.example")
    );
    assert_eq!(records[0].data(), &serde_json::json!({ "servers": 3 }));
    assert_eq!(
        (records[0].envelope().depth(), records[1].envelope().depth()),
        (0, 1)
    );
    assert!(records[0].envelope().sequence() < records[1].envelope().sequence());
    assert!(!records[1].envelope().is_replay());
    assert_eq!(recorder.assert_one_trace(), id);
    assert_eq!(
        recorder.assert_emitted::<Generated>(),
        Generated { outbounds: 6 }
    );
    assert_eq!(recorder.count::<Fetched>(), 1);
    assert_eq!(recorder.events::<Fetched>(), [Fetched { servers: 3 }]);
    recorder.assert_order(&["rec.fetched", "rec.generated"]);
    recorder.assert_not_emitted::<Failed>();

    recorder.clear();
    assert!(recorder.is_empty());
}

#[test]
fn records_events_of_async_emits_too() {
    let (bus, _sub) = pipeline();
    let recorder = Recorder::of::<Generated>(&bus);
    let report = block_on(bus.emit_async(Fetched { servers: 1 }));
    assert!(report.is_ok());
    assert_eq!(
        recorder.names(),
        ["rec.generated"],
        "only the selected type"
    );
}

#[test]
fn a_selector_limits_what_is_recorded_and_dropping_stops_it() {
    let (bus, _sub) = pipeline();
    let recorder = Recorder::attach(
        &bus,
        EventSelector::names(["rec.generated", "rec.failed"]).unwrap(),
    );
    bus.emit(Fetched { servers: 1 });
    assert_eq!(recorder.len(), 1);
    let id = recorder.subscription_id();
    drop(recorder);
    assert!(
        bus.handlers::<Generated>()
            .iter()
            .all(|h| h.origin() != sbox_events::HandlerOrigin::Subscription { id })
    );
}

#[test]
fn failed_assertions_say_what_was_expected_and_what_was_recorded() {
    let (bus, _sub) = pipeline();
    let recorder = Recorder::all(&bus);
    let message = panic_message(|| {
        recorder.assert_emitted::<Failed>();
    });
    assert_eq!(
        message,
        "expected `rec.failed` to be emitted; recorded: nothing"
    );

    bus.emit(Fetched { servers: 1 });
    bus.emit(Failed);
    let message = panic_message(|| recorder.assert_not_emitted::<Failed>());
    assert_eq!(
        message,
        "expected no `rec.failed`, but it was recorded at position 2: \
         [rec.fetched, rec.generated, rec.failed]"
    );
    let message = panic_message(|| recorder.assert_order(&["rec.generated", "rec.fetched"]));
    assert!(
        message.starts_with("expected `rec.fetched` (#1 of [\"rec.generated\", \"rec.fetched\"])"),
        "{message}"
    );
    let message = panic_message(|| {
        recorder.assert_one_trace();
    });
    assert!(
        message.starts_with("expected one trace, got more: rec.fetched in "),
        "{message}"
    );
}

#[test]
fn a_parent_is_recorded_before_its_children_whatever_the_handlers_priority() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    // Subscribed first, at the highest priority: it runs before anything
    // else that is a handler, and emits a child.
    let _eager = bus.subscribe_with(
        sbox_events::SubscribeOptions::new().priority(i32::MAX),
        |e: &Fetched, ctx: &EventContext| {
            ctx.bus().emit(Generated {
                outbounds: e.servers,
            });
        },
    );
    let recorder = Recorder::all(&bus);
    let report = bus.emit(Fetched { servers: 2 });
    assert_eq!(report.delivered(), 1, "the recorder is not a handler");
    assert_eq!(recorder.names(), ["rec.fetched", "rec.generated"]);
    let names: Vec<String> = bus
        .handlers::<Fetched>()
        .iter()
        .map(|h| h.name().to_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}
