use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = order.placed)]
struct OrderPlaced;

fn main() {}
