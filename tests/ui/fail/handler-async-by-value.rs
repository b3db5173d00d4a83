use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

#[handler]
async fn on_placed(event: OrderPlaced) {
    drop(event);
}

fn main() {}
