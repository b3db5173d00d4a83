use sbox_events::{handler, Event, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

struct Storage;

#[handler]
fn on_placed(_: &OrderPlaced, _storage: &Storage, _ctx: &EventContext) {}

fn main() {}
