use sbox_events::{handler, Event, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

trait Store: Send + Sync {}

#[handler]
fn on_placed(_: &OrderPlaced, _: &EventContext, _store: Box<dyn Store + Send>) {}

fn main() {}
