use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

// One error, ours: not also the compiler's about C-variadic functions.
#[handler]
extern "C" fn on_placed(_: &OrderPlaced, _: ...) {}

fn main() {}
