use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};
use std::rc::Rc;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

async fn store() {}

#[handler]
async fn on_placed(_: &OrderPlaced) {
    let cache = Rc::new(1);
    store().await;
    drop(cache);
}

fn main() {}
