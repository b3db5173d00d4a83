use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler(priority = "high")]
fn quoted(_: &OrderPlaced) {}

#[handler(priority = 3000000000)]
fn too_big(_: &OrderPlaced) {}

#[handler(priority = 1, priority = 2)]
fn twice(_: &OrderPlaced) {}

fn main() {}
