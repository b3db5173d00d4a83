//! Events known by name: a stream of any selected type as JSON with its
//! envelope, and emitting a decoded event by name with its origin (what a
//! bridge to another process does on both ends).

use sbox_events::stream::{Overflow, StreamItem};
use sbox_events::trace::TraceId;
use sbox_events::{
    ByNameError, EmitOptions, Event, EventBus, EventContext, EventId, EventSelector,
};
use sbox_events_tests::exec::block_on;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "remote.order_placed", source = "shop")]
struct OrderPlaced {
    order: u32,
    note: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "remote.order_paid")]
struct OrderPaid {
    order: u32,
}

#[test]
fn a_json_stream_carries_every_selected_type_with_its_envelope_and_lags() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let mut outbox = bus.subscribe_json_stream(
        EventSelector::pattern("remote.*").unwrap(),
        2,
        Overflow::DropNewest,
    );
    let placed = bus.emit(OrderPlaced {
        order: 1,
        note: "line\nbreak \"quoted\"".into(),
    });
    bus.emit(OrderPaid { order: 1 });
    bus.emit(OrderPaid { order: 2 }); // over capacity: dropped, counted
    let mut items = Vec::new();
    drop(bus); // the stream ends after its queue
    while let Some(item) = block_on(outbox.recv()) {
        items.push(item);
    }
    let [
        StreamItem::Event(first),
        StreamItem::Event(second),
        StreamItem::Lagged(1),
    ] = &items[..]
    else {
        panic!("{items:?}")
    };
    assert_eq!(first.event().name(), "remote.order_placed");
    assert_eq!(first.event().fingerprint(), OrderPlaced::FINGERPRINT);
    let back: OrderPlaced = serde_json::from_str(first.event().json()).unwrap();
    assert_eq!(back.note, "line\nbreak \"quoted\"");
    assert_eq!(first.envelope().trace_id(), placed.trace_id());
    assert_eq!(first.envelope().source(), "shop");
    assert_eq!(second.event().json(), r#"{"order":1}"#);
}

#[test]
fn an_event_emitted_by_name_keeps_its_origin() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let _sync = bus.subscribe(move |e: &OrderPlaced, ctx: &EventContext| {
        sink.lock().unwrap().push((e.clone(), ctx.envelope()));
    });
    let awaited = Arc::new(Mutex::new(0));
    let count = Arc::clone(&awaited);
    let _async = bus.subscribe_async(move |_: &OrderPlaced, _: &EventContext| {
        let count = Arc::clone(&count);
        async move { *count.lock().unwrap() += 1 }
    });
    let (trace_id, event_id) = (TraceId::random(), EventId::new(UNIX_EPOCH));
    let when = UNIX_EPOCH + Duration::from_secs(1_764_748_800);
    let options = EmitOptions::new()
        .trace_id(trace_id)
        .event_id(event_id)
        .timestamp(when)
        .source("shop-eu")
        .metadata("tenant", "acme")
        .remote("shop-7f3a");
    let json = r#"{"order":7,"note":"gift"}"#;

    let report = bus
        .emit_json("remote.order_placed", json, options.clone())
        .expect("decodes");
    assert_eq!(report.skipped().len(), 1, "a sync emit skips the async one");
    let report = block_on(
        bus.emit_json_async("remote.order_placed", json, options)
            .expect("decodes"),
    );
    assert!(report.is_ok(), "{report}");
    assert_eq!(*awaited.lock().unwrap(), 1);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (event, envelope) in seen.iter() {
        assert_eq!(
            *event,
            OrderPlaced {
                order: 7,
                note: "gift".into()
            }
        );
        assert_eq!(envelope.trace_id(), trace_id);
        assert_eq!(envelope.event_id(), event_id);
        assert_eq!(envelope.timestamp(), when);
        assert_eq!(envelope.source(), "shop-eu");
        assert_eq!(envelope.metadata().get("tenant"), Some("acme"));
        assert_eq!(envelope.remote(), Some("shop-7f3a"));
    }
}

#[test]
fn by_name_errors_say_what_is_wrong() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let unknown = bus
        .emit_json("remote.nothing\u{1b}[2J", "{}", EmitOptions::new())
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "no event type named \"remote.nothing\\u{1b}[2J\" is linked into this binary"
    );
    let bad = bus
        .emit_json(
            "remote.order_paid",
            r#"{"order":"seven"}"#,
            EmitOptions::new(),
        )
        .unwrap_err();
    assert!(
        matches!(&bad, ByNameError::Decode { event: "remote.order_paid", message } if message.contains("invalid type")),
        "{bad}"
    );
    assert!(
        bus.emit_json_async("remote.order_paid", "[", EmitOptions::new())
            .is_err()
    );
}
