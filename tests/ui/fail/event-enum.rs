use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.status_changed")]
enum StatusChanged {
    Placed,
    Shipped,
}

fn main() {}
