use sbox_events::Event;
use serde::{Deserialize, Serialize};
use std::rc::Rc;

// `Rc` cannot cross threads; handlers run on any thread.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced {
    id: u64,
    customer: Rc<String>,
}

fn main() {}
