use sbox_events::{handler, Event, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler]
fn by_value_context(_: &OrderPlaced, _ctx: EventContext) {}

fn main() {}
