use sbox_events::Event;
use serde::{Deserialize, Serialize};
use std::rc::Rc;

// Four mistakes, four errors, each at its own tokens: an unknown key does
// not hide the keys after it, and attribute errors do not hide the fields'.
#[derive(Event, Serialize, Deserialize)]
#[event(colour = "red", name = "Order.placed", version = 0)]
struct OrderPlaced {
    id: u64,
    customer: Rc<String>,
}

fn main() {}
