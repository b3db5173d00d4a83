use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler(priority = 10u64)]
fn on_placed(_: &OrderPlaced) {}

// The fix keeps the sign.
#[handler(priority = -5i64)]
fn after_placed(_: &OrderPlaced) {}

// Out of range: says so, rather than suggesting a value that is too.
#[handler(priority = 3000000000u32)]
fn last(_: &OrderPlaced) {}

fn main() {}
