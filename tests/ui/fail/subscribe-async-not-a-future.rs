use sbox_events::{Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

fn main() {
    let bus = EventBus::new();
    // A sync closure: use `subscribe`, or return an `async` block.
    let _sub = bus.subscribe_async(|_: &OrderPlaced, _: &EventContext| {});
}
