use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

// A declaration without a body: one error, ours.
#[handler]
fn on_placed(_: &OrderPlaced);

// Its signature is still checked: one error each.
#[handler]
pub fn after_placed(event: OrderPlaced);

// `safe` (which only an `extern` block's functions may say) changes
// nothing: one error.
#[handler]
safe fn last(_: &OrderPlaced);

fn main() {}
