use sbox_events::Event;
use serde::{Deserialize, Serialize};

fn check(_: &OrderPlaced) -> Result<(), String> {
    Ok(())
}

// Each key is given once, across all `#[event]` attributes: one error per
// repeated key, at the repeat.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed", source = "shop", version = 1, validate = check)]
#[event(name = "order.created")]
#[event(source = "checkout", version = 2, validate = check)]
struct OrderPlaced;

fn main() {}
