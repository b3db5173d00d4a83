use sbox_events::{Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

fn main() {
    let bus = EventBus::new();
    // Not an event type.
    let _a = bus.subscribe(|_: &String, _: &EventContext| {});
    // Only the event: the context parameter is required.
    let _b = bus.subscribe(|_: &OrderPlaced| {});
    // Returns something that is not a handler result.
    let _c = bus.subscribe(|_: &OrderPlaced, _: &EventContext| 42);
}
