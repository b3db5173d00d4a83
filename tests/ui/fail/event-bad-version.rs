use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed", version = 0)]
struct Placed;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.shipped", version = "2")]
struct Shipped;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.paid", version = 2u8)]
struct Paid;

fn main() {}
