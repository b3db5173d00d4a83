use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

// Three mistakes, three errors: one per key, and the signature is still
// checked when the attribute is wrong.
#[handler(priority = "high", colour = "red", name = "")]
fn on_placed(_: OrderPlaced) {}

fn main() {}
