use sbox_events::{handler, Event, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

// Every handler of an emit shares its context.
#[handler]
fn on_placed(_: &OrderPlaced, _ctx: &mut EventContext) {}

fn main() {}
