use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.shipped")]
struct OrderShipped;

#[handler(emits = OrderShipped)]
fn on_placed(_: &OrderPlaced) {}

// Without brackets around two types: still one error.
#[handler(emits = OrderShipped, OrderPlaced)]
fn after_placed(_: &OrderPlaced) {}

// A list cut short: the error points into it.
#[handler(emits = [crate::])]
fn last(_: &OrderPlaced) {}

// Cut short inside a nested group: the error points at its `)`.
#[handler(emits = [(OrderShipped, crate::)])]
fn nested(_: &OrderPlaced) {}

fn main() {}
