use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

struct Shop;

impl Shop {
    #[handler]
    fn on_placed(&self, _: &OrderPlaced) {}
}

fn main() {}
