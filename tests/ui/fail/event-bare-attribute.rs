use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event]
struct OrderPlaced {
    id: u64,
}

fn main() {}
