use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler]
struct OnPlaced {
    seen: u32,
}

fn main() {
    let _ = OnPlaced { seen: 0 }.seen;
    let _ = OrderPlaced;
}
