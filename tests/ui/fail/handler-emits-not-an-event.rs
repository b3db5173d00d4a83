use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

struct Receipt;

#[handler(emits = [Receipt])]
fn on_placed(_: &OrderPlaced) {}

fn main() {}
