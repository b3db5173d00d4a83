use sbox_events::{handler, Event};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced;

trait Store: Send + Sync {}

#[handler]
fn any_event(_: &impl Event) {}

#[handler]
fn any_store(_: &OrderPlaced, _store: &impl Store) {}

// By value, too: one error each, about `impl Trait` (not "take it by
// reference", which would not fix it).
#[handler]
fn any_event_by_value(_: impl Event) {}

#[handler]
fn any_store_by_value(_: &OrderPlaced, _store: impl Store) {}

fn main() {}
