use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

struct Ledger;

#[handler]
fn on_placed(_: &OrderPlaced, _ledger: &mut Ledger) {}

fn main() {}
