use sbox_events::Event;
use serde::{Deserialize, Serialize};

// A key without `= value`: one error per key, saying what to write.
#[derive(Event, Serialize, Deserialize)]
#[event(name, source, validate, version)]
struct OrderPlaced;

fn main() {}
