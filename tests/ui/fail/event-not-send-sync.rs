use sbox_events::Event;
use serde::{Deserialize, Serialize};
use std::cell::{self, Cell};
use std::rc;

// `Cell` and `RefCell` serialize fine but cannot be shared between threads;
// they are recognized as imported, by module, and by full path, and behind
// any lock but a `Mutex` (an `RwLock` shares its value). One error per
// field.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced {
    retries: Cell<u32>,
    counts: cell::Cell<u64>,
    notes: ::std::cell::RefCell<Vec<String>>,
    owner: rc::Weak<String>,
    marks: std::sync::RwLock<std::cell::Cell<u8>>,
    shared: std::sync::Mutex<rc::Rc<u8>>,
    // An `Arc` under the `Mutex` is not `Send`: not a safe place either.
    pinned: std::sync::Mutex<std::sync::Arc<Cell<u8>>>,
}

fn main() {}
