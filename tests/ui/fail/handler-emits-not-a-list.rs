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

fn main() {}
