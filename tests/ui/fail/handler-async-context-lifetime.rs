use sbox_events::{handler, Event, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

// An `async fn` must spell the context's lifetime: `&EventContext<'_>`.
#[handler]
async fn on_placed(_: &OrderPlaced, _: &EventContext) {}

fn main() {}
