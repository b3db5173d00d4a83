use sbox_events::{handler, Event};

#[handler]
fn on_any<E: Event>(_: &E) {}

fn main() {}
