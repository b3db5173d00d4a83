use sbox_events::{Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};
use std::rc::Rc;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

async fn store() {}

fn main() {
    let bus = EventBus::new();
    let _sub = bus.subscribe_async(|_: &OrderPlaced, _: &EventContext| async {
        let cache = Rc::new(1);
        store().await;
        drop(cache);
    });
}
