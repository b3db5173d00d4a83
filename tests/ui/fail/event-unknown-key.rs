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

fn main() {}
