use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed", validate = "check_order")]
struct OrderPlaced {
    id: u64,
}

fn main() {}
