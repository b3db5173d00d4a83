use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::rc::Rc;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler]
fn shared_count(_: &OrderPlaced, _count: &Rc<u32>) {}

#[handler]
fn unsynchronized(_: &OrderPlaced, _seen: &Cell<u32>) {}

fn main() {}
