use sbox_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed", sorce = "checkout")]
struct OrderPlaced;

// A misspelt `name` is one error, which suggests it (not also "missing
// event name"); so is a missing comma before `name`.
#[derive(Event, Serialize, Deserialize)]
#[event(nme = "order.shipped")]
struct OrderShipped;

#[derive(Event, Serialize, Deserialize)]
#[event(source = "checkout" name = "order.paid")]
struct OrderPaid;

// A key written as a path is compared by its last segment.
#[derive(Event, Serialize, Deserialize)]
#[event(event::name = "order.refunded")]
struct OrderRefunded;

fn main() {}
