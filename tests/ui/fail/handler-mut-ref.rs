use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler]
fn on_placed(_event: &mut OrderPlaced) {}

fn main() {}
