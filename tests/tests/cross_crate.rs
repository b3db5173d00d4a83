//! Events defined in `xc-events`, handlers in `xc-handlers` (and one in
//! `xc-events` itself, one here), emitted from this third crate.

use sbox_events::{EventBus, EventContext, HandlerOrigin, handler};
use xc_events::{OrderPlaced, OrderShipped, record, take_calls};

// `xc-handlers` contains only handlers: nothing here names it otherwise.
sbox_events::link!(xc_handlers);

#[handler(priority = 5)]
fn accounting(_: &OrderPlaced, _: &EventContext) {
    record("cross_crate::accounting");
}

#[test]
fn handlers_from_every_crate_run_in_priority_then_name_order() {
    let report = EventBus::new().emit(OrderPlaced { order: 1 });
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        take_calls(),
        [
            "fraud_check",                  // priority 100
            "cross_crate::accounting",      // priority 5, names sorted:
            "xc_events::book_keeping@shop", //   "cross_crate::…" < "xc_events::…"
            "xc_handlers::audit",           //   < "xc_handlers::…"
            "xc_handlers::notify",          // priority -1
        ]
    );
}

#[test]
fn the_listed_order_is_the_dispatch_order_with_full_paths() {
    let handlers = EventBus::new().handlers::<OrderPlaced>();
    let listed: Vec<(&str, i32)> = handlers.iter().map(|h| (h.name(), h.priority())).collect();
    assert_eq!(
        listed,
        [
            ("fraud_check", 100),
            ("cross_crate::accounting", 5),
            ("xc_events::book_keeping", 5),
            ("xc_handlers::audit", 5),
            ("xc_handlers::notify", -1),
        ]
    );
    assert_eq!(
        handlers[0].origin(),
        HandlerOrigin::Static {
            path: "xc_handlers::fraud"
        }
    );
}

#[test]
fn a_crate_named_only_by_link_contributes_its_handlers() {
    let report = EventBus::new().emit(OrderShipped { order: 7 });
    assert_eq!(report.delivered(), 1);
    assert_eq!(report.skipped().collect::<Vec<_>>(), ["xc_handlers::pack"]);
    assert_eq!(take_calls(), ["xc_handlers::label#7"]);
}

#[test]
fn async_handlers_from_another_crate_run_in_the_same_order() {
    let bus = EventBus::new();
    let handlers = bus.handlers::<OrderShipped>();
    let listed: Vec<(&str, bool)> = handlers.iter().map(|h| (h.name(), h.is_async())).collect();
    assert_eq!(
        listed,
        [("xc_handlers::pack", true), ("xc_handlers::label", false)]
    );
    let report = sbox_events_tests::exec::block_on(bus.emit_async(OrderShipped { order: 8 }));
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        take_calls(),
        ["xc_handlers::pack#8 (async)", "xc_handlers::label#8"]
    );
}

#[test]
fn a_failing_handler_in_another_crate_is_reported_by_name() {
    let bus = EventBus::builder().error_events(false).build().unwrap();
    let report = bus.emit(OrderPlaced { order: 666 });
    assert_eq!(report.delivered(), 5);
    assert_eq!(report.failures().len(), 1);
    assert_eq!(report.failures()[0].handler(), "fraud_check");
    assert_eq!(report.failures()[0].message(), "order 666 looks fraudulent");
    assert_eq!(take_calls().len(), 5, "the other handlers still ran");
}
