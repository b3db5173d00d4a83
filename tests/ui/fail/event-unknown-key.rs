use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed", sorce = "checkout")]
struct OrderPlaced;

fn main() {}
