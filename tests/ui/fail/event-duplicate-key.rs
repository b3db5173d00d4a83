use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
#[event(name = "order.created")]
struct OrderPlaced;

fn main() {}
