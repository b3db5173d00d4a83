//! `#[handler]` registration, order, options, and run-time enable/disable.

use sbox_events::{Event, EventBus, EventContext, HandlerOrigin, handler};
use sbox_events_tests::calls::{record, take};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.pinged")]
struct Pinged {
    n: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.unit_event")]
struct UnitEvent;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.tuple_event", source = "tuple_maker")]
struct TupleEvent(u32, String);

#[handler]
fn zulu(_: &Pinged) {
    record("zulu");
}

#[handler]
fn alpha(_: &Pinged, _: &EventContext) {
    record("alpha");
}

#[handler(priority = 10)]
fn urgent(_: &Pinged) -> Result<(), String> {
    record("urgent");
    Ok(())
}

#[handler(priority = -10, name = "last word")]
fn late(_: &Pinged) {
    record("late");
}

#[handler]
fn on_unit(_: &UnitEvent) {
    record("unit");
}

#[handler]
fn on_tuple(event: &TupleEvent, ctx: &EventContext) {
    assert_eq!(ctx.source(), "tuple_maker");
    assert_eq!((event.0, event.1.as_str()), (3, "three"));
    record("tuple");
}

mod nested {
    use super::*;

    /// Same name as the outer `alpha`; the path tells them apart.
    #[handler]
    pub fn alpha(_: &Pinged) {
        record("nested::alpha");
    }
}

#[test]
fn higher_priority_first_then_by_name() {
    let report = EventBus::new().emit(Pinged { n: 1 });
    assert_eq!(report.delivered(), 5);
    assert_eq!(take(), ["urgent", "alpha", "nested::alpha", "zulu", "late"]);
}

#[test]
fn names_default_to_the_function_path() {
    let names: Vec<String> = EventBus::new()
        .handlers::<Pinged>()
        .iter()
        .map(|h| h.name().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "static_handlers::urgent",
            "static_handlers::alpha",
            "static_handlers::nested::alpha",
            "static_handlers::zulu",
            "last word",
        ]
    );
}

#[test]
fn a_named_handler_keeps_its_path() {
    let handlers = EventBus::new().handlers::<Pinged>();
    let late = handlers.last().expect("five handlers");
    assert_eq!(
        late.origin(),
        HandlerOrigin::Static {
            path: "static_handlers::late"
        }
    );
    assert_eq!(late.priority(), -10);
    assert_eq!(late.event(), "test.pinged");
}

#[test]
fn unit_and_tuple_structs_are_events() {
    let bus = EventBus::new();
    assert_eq!(bus.emit(UnitEvent).delivered(), 1);
    assert_eq!(bus.emit(TupleEvent(3, "three".into())).delivered(), 1);
    assert_eq!(take(), ["unit", "tuple"]);
    assert_eq!(UnitEvent::NAME, "test.unit_event");
    // Default source: the package that defines the event.
    assert_eq!(Pinged::SOURCE, "sbox-events-tests");
}

#[test]
fn handlers_stay_ordinary_functions() {
    zulu(&Pinged { n: 0 });
    assert_eq!(urgent(&Pinged { n: 0 }), Ok(()));
    assert_eq!(take(), ["zulu", "urgent"]);
}

#[test]
fn a_bus_can_run_without_static_handlers() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    assert_eq!(bus.emit(Pinged { n: 1 }).delivered(), 0);
    assert!(bus.handlers::<Pinged>().is_empty());
    assert!(!bus.is_handler_enabled("static_handlers::zulu"));
    assert_eq!(take(), Vec::<&str>::new());
}

#[test]
fn handlers_can_be_disabled_and_enabled_per_bus() {
    let bus = EventBus::new();
    let other = EventBus::new();
    bus.disable_handler("static_handlers::zulu")
        .expect("known handler");
    bus.disable_handler("last word")
        .expect("known by its given name");
    assert!(!bus.is_handler_enabled("static_handlers::zulu"));

    bus.emit(Pinged { n: 1 });
    assert_eq!(take(), ["urgent", "alpha", "nested::alpha"]);
    other.emit(Pinged { n: 1 });
    assert_eq!(take().len(), 5, "another bus is unaffected");

    bus.enable_handler("static_handlers::zulu")
        .expect("known handler");
    bus.emit(Pinged { n: 1 });
    assert_eq!(take(), ["urgent", "alpha", "nested::alpha", "zulu"]);
}

#[test]
fn disabling_an_unknown_handler_is_an_error_naming_it() {
    let err = EventBus::new()
        .disable_handler("static_handlers::no_such")
        .expect_err("unknown");
    assert_eq!(err.name(), "static_handlers::no_such");
    assert!(
        err.to_string()
            .starts_with("no #[handler] named `static_handlers::no_such`")
    );
}

#[test]
fn a_handler_can_disable_another_from_the_next_emit_on() {
    let bus = EventBus::builder().static_handlers(true).build().unwrap();
    let _sub = bus.subscribe_with(
        sbox_events::SubscribeOptions::new().priority(50),
        |event: &Pinged, ctx: &EventContext| {
            if event.n == 1 {
                ctx.bus()
                    .disable_handler("static_handlers::zulu")
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        },
    );
    bus.emit(Pinged { n: 1 });
    assert!(
        take().contains(&"zulu"),
        "the running emit keeps its handlers"
    );
    bus.emit(Pinged { n: 2 });
    assert!(!take().contains(&"zulu"));
}
