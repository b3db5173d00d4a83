use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(source = "checkout")]
struct OrderPlaced {
    id: u64,
}

fn main() {}
