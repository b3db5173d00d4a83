use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.shipped")]
struct OrderShipped;

// A key without `= value`, a repeated key, and an `emits` list that does
// not parse: one error each.
#[handler(name, priority, emits)]
fn on_placed(_: &OrderPlaced) {}

#[handler(name = "a", name = "", priority = 1, priority = 2, emits = [], emits = [OrderShipped])]
fn after_placed(_: &OrderPlaced) {}

#[handler(emits = [OrderShipped; 2])]
fn last(_: &OrderPlaced) {}

fn main() {}
