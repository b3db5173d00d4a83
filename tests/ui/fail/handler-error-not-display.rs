use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[derive(Debug)]
struct Opaque;

#[handler]
fn on_placed(_: &OrderPlaced) -> Result<(), Opaque> {
    Err(Opaque)
}

fn main() {}
