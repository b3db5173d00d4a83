//! The generated code uses absolute paths: it works next to items named
//! like the prelude's and like the crates it uses; and a handler may be
//! named like the wrapper's own variables.

#![allow(dead_code, non_camel_case_types)]

use sbox_events::{handler, Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};

mod core {}
mod std {}
mod sbox_events_private {}
struct Result;
struct Option;
struct Box;
struct Vec;
struct String;
struct Some;
struct None;
struct Ok;
struct Err;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced {
    r#type: u32,
}

struct Storage;

#[handler]
fn event(_: &OrderPlaced) {}

#[handler]
fn ctx(_: &OrderPlaced, _: &EventContext) {}

#[handler]
fn result(_: &OrderPlaced, _: &Storage) {}

#[handler]
fn r#async(_: &OrderPlaced) {}

/// A type of the application's own named like the context is a resource.
mod app {
    pub struct EventContext;
}

#[handler(priority = 10i32)]
fn own_context(_: &OrderPlaced, _: &Storage, _: &app::EventContext) {}

fn main() {
    let bus = EventBus::builder()
        .resource(Storage)
        .resource(app::EventContext)
        .build()
        .unwrap();
    let report = bus.emit(OrderPlaced { r#type: 1 });
    assert_eq!(report.delivered(), 5);
    let handlers = bus.handlers::<OrderPlaced>();
    let names: ::std::vec::Vec<&str> = handlers.iter().map(|h| h.name()).collect();
    // `r#async` is named without its `r#`.
    assert!(names.iter().any(|name| name.ends_with("::async")), "{names:?}");
}
