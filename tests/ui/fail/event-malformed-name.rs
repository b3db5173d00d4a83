use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "Order.Placed")]
struct OrderPlaced;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "placed")]
struct OneSegment;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed-now")]
struct Dash;

fn main() {}
