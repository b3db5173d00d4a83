use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler(name = "audit\nfake log line")]
fn on_placed(_: &OrderPlaced) {}

fn main() {}
