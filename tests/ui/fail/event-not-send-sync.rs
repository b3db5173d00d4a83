use sbox_events::Event;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::rc;

// `Cell` and `RefCell` serialize fine but cannot be shared between threads;
// they are recognized as imported, by module, and by full path. One error
// per field.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced {
    retries: Cell<u32>,
    notes: ::std::cell::RefCell<Vec<String>>,
    owner: rc::Weak<String>,
}

fn main() {}
