use sbox_events::Event;
use serde::{Deserialize, Serialize};
use std::cell::Cell;

// With a wrong attribute, the field is still checked, and the struct is
// not given a stand-in impl whose `Send + Sync` bounds would fail again at
// the struct's name.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed", sorce = "checkout")]
struct OrderPlaced {
    retries: Cell<u32>,
}

fn main() {
    let _ = OrderPlaced { retries: Cell::new(0) }.retries;
}
