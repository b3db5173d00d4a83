use sbox_events::Event;
use serde::{Deserialize, Serialize};
use std::cell::Cell;

// `Cell` serializes fine but cannot be shared between threads.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced {
    retries: Cell<u32>,
}

fn main() {}
