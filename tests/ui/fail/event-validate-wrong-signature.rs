use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed", validate = check_order)]
struct OrderPlaced {
    id: u64,
}

fn check_order(id: u64) -> Result<(), String> {
    if id == 0 { Err("zero".into()) } else { Ok(()) }
}

fn main() {}
