use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler(prio = 5)]
fn on_placed(_: &OrderPlaced) {}

// Two misspelt keys, one without a value: one error each.
#[handler(prio = 1, nme, emits = [])]
fn after_placed(_: &OrderPlaced) {}

// Not close to any key: the error lists them.
#[handler(order = 1)]
fn last(_: &OrderPlaced) {}

fn main() {}
