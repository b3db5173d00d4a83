use sbox_events::{Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced {
    id: u64,
}

fn main() {
    let bus = EventBus::new();
    let _sub = bus.subscribe_async(|event: &OrderPlaced, _: &EventContext| async move {
        println!("{}", event.id);
    });
}
