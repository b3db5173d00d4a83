use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

// Written twice, the handler would be registered and run twice per emit.
#[handler]
#[sbox_events::handler(priority = 5)]
fn on_placed(_: &OrderPlaced) {}

fn main() {}
