use sbox_events::{handler, Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};

// One mistake (the name), one error: the uses below compile against the
// fallback impl instead of each reporting "`OrderPlaced` is not an event".
#[derive(Event, Serialize, Deserialize)]
#[event(name = "Order Placed")]
struct OrderPlaced {
    id: u64,
}

#[handler]
fn on_placed(_: &OrderPlaced) {}

fn main() {
    let bus = EventBus::new();
    let _sub = bus.subscribe(|_: &OrderPlaced, _: &EventContext| {});
    bus.emit(OrderPlaced { id: 1 });
}
