use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler]
fn on_placed(_: &OrderPlaced, _ctx: &String) {}

#[handler]
fn by_value_context(_: &OrderPlaced, _ctx: u32) {}

fn main() {}
