//! Type-erased subscriptions (`subscribe_any` with names, patterns or all)
//! and per-handler statistics.

use sbox_events::{
    AnyEvent, Event, EventBus, EventContext, EventSelector, EventType, SubscribeOptions,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(name = "inventory.item_added", source = "warehouse")]
struct ItemAdded {
    sku: String,
    count: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "inventory.item_removed")]
struct ItemRemoved {
    sku: String,
}

/// Never emitted before the pattern subscription below is made.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "inventory.audit.failed")]
struct AuditFailed;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "billing.failed")]
struct BillingFailed;

fn bus() -> EventBus {
    EventBus::builder().static_handlers(false).build().unwrap()
}

type Seen = Arc<Mutex<Vec<String>>>;

fn recorder(bus: &EventBus, selector: EventSelector) -> (Seen, sbox_events::Subscription) {
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let sub = bus.subscribe_any(selector, move |event: &AnyEvent, _: &EventContext| {
        s.lock().expect("seen").push(event.name().to_owned());
    });
    (seen, sub)
}

fn emit_all(bus: &EventBus) {
    bus.emit(ItemAdded {
        sku: "a".into(),
        count: 1,
    });
    bus.emit(ItemRemoved { sku: "a".into() });
    bus.emit(AuditFailed);
    bus.emit(BillingFailed);
}

#[test]
fn patterns_select_by_segments_including_types_not_yet_emitted() {
    let bus = bus();
    let (inventory, _a) = recorder(&bus, EventSelector::pattern("inventory.*").expect("valid"));
    let (failed, _b) = recorder(&bus, EventSelector::pattern("*.failed").expect("valid"));
    let (everything, _c) = recorder(&bus, EventSelector::all());
    emit_all(&bus);
    assert_eq!(
        *inventory.lock().expect("seen"),
        [
            "inventory.item_added",
            "inventory.item_removed",
            "inventory.audit.failed"
        ]
    );
    assert_eq!(*failed.lock().expect("seen"), ["billing.failed"]);
    assert_eq!(everything.lock().expect("seen").len(), 4);
}

#[test]
fn names_select_exactly_and_unknown_names_are_errors() {
    let bus = bus();
    let selector =
        EventSelector::names(["inventory.item_removed", "billing.failed"]).expect("known");
    let (seen, _sub) = recorder(&bus, selector);
    emit_all(&bus);
    assert_eq!(
        *seen.lock().expect("seen"),
        ["inventory.item_removed", "billing.failed"]
    );

    let err = EventSelector::names(["inventory.item_addded"]).expect_err("typo");
    assert_eq!(
        err.to_string(),
        "invalid event name \"inventory.item_addded\": no event type with this name is linked into the binary"
    );
}

#[test]
fn the_erased_view_gives_typed_access_and_json_fields() {
    let bus = bus();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let _sub = bus.subscribe_any(
        EventSelector::all(),
        move |event: &AnyEvent, ctx: &EventContext| {
            let typed = event.downcast_ref::<ItemAdded>().map(|e| e.count);
            let wrong = event.downcast_ref::<ItemRemoved>().is_some();
            s.lock().expect("seen").push((
                event.to_json().expect("json"),
                typed,
                wrong,
                ctx.source().to_owned(),
            ));
        },
    );
    bus.emit(ItemAdded {
        sku: "x\n\"y\"".into(),
        count: 3,
    });
    let seen = seen.lock().expect("seen");
    assert_eq!(
        seen[0].0,
        serde_json::json!({"sku": "x\n\"y\"", "count": 3})
    );
    assert_eq!(
        (seen[0].1, seen[0].2, seen[0].3.as_str()),
        (Some(3), false, "warehouse")
    );
}

#[test]
fn erased_and_typed_subscriptions_share_one_order() {
    let bus = bus();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    let _typed =
        bus.subscribe(move |_: &ItemAdded, _: &EventContext| l.lock().expect("log").push("typed"));
    let l = Arc::clone(&log);
    let _first = bus.subscribe_any_with(
        SubscribeOptions::new().name("audit").priority(10),
        EventSelector::all(),
        move |_: &AnyEvent, _: &EventContext| l.lock().expect("log").push("any, priority 10"),
    );
    let l = Arc::clone(&log);
    let _last = bus.subscribe_any(
        EventSelector::all(),
        move |_: &AnyEvent, _: &EventContext| l.lock().expect("log").push("any, later"),
    );
    bus.emit(ItemAdded {
        sku: "a".into(),
        count: 1,
    });
    assert_eq!(
        *log.lock().expect("log"),
        ["any, priority 10", "typed", "any, later"]
    );
    assert_eq!(bus.handlers::<ItemAdded>()[0].name(), "audit");
}

#[test]
fn dropping_an_erased_subscription_removes_it_everywhere() {
    let bus = bus();
    let (seen, sub) = recorder(&bus, EventSelector::all());
    drop(sub);
    emit_all(&bus);
    assert!(seen.lock().expect("seen").is_empty());
    assert!(bus.handlers::<BillingFailed>().is_empty());
}

#[test]
fn the_link_time_list_of_event_types_is_available() {
    let added = EventType::by_name("inventory.item_added").expect("linked");
    assert_eq!(added, EventType::of::<ItemAdded>());
    assert_eq!(
        (added.source(), added.rust_type()),
        ("warehouse", "any_events::ItemAdded")
    );
    let names: Vec<&str> = EventType::all().iter().map(|t| t.name()).collect();
    assert!(names.contains(&"subscription.fetched") && names.contains(&"billing.failed"));
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "sorted by name");
}

#[test]
fn handler_stats_are_off_by_default() {
    let bus = EventBus::new();
    bus.emit(ItemAdded {
        sku: "a".into(),
        count: 1,
    });
    assert!(bus.handler_stats().is_empty());
}

#[test]
fn handler_stats_count_calls_errors_and_panics_per_handler() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .error_events(false)
        .handler_stats(true)
        .build()
        .unwrap();
    let _ok = bus.subscribe_with(
        SubscribeOptions::new().name("ok"),
        |_: &ItemAdded, _: &EventContext| {
            std::thread::sleep(std::time::Duration::from_millis(1));
        },
    );
    let _flaky = bus.subscribe_with(
        SubscribeOptions::new().name("flaky"),
        |e: &ItemAdded, _: &EventContext| match e.count % 3 {
            0 => panic!("count {} is cursed", e.count),
            1 => Err(format!("count {} rejected", e.count)),
            _ => Ok(()),
        },
    );
    let _any = bus.subscribe_any_with(
        SubscribeOptions::new().name("any"),
        EventSelector::pattern("inventory.*").expect("valid"),
        |_: &AnyEvent, _: &EventContext| {},
    );
    for count in 0..9 {
        bus.emit(ItemAdded {
            sku: "a".into(),
            count,
        });
    }
    bus.emit(ItemRemoved { sku: "a".into() });

    let stats = bus.handler_stats();
    let find = |event: &str, name: &str| {
        stats
            .iter()
            .find(|s| s.event == event && s.handler == name)
            .unwrap_or_else(|| panic!("no stats for {name} on {event}: {stats:#?}"))
    };
    let ok = find("inventory.item_added", "ok");
    assert_eq!((ok.calls, ok.errors, ok.panics), (9, 0, 0));
    assert!(ok.max >= std::time::Duration::from_millis(1) && ok.total >= ok.max);
    assert!(ok.p50 >= std::time::Duration::from_millis(1) && ok.p50 <= ok.max);
    let flaky = find("inventory.item_added", "flaky");
    assert_eq!((flaky.calls, flaky.errors, flaky.panics), (9, 3, 3));
    assert_eq!(find("inventory.item_added", "any").calls, 9);
    assert_eq!(find("inventory.item_removed", "any").calls, 1);
    assert!(
        !stats.iter().any(|s| s.event == "billing.failed"),
        "not selected, and no static handler: nothing to report"
    );
}
