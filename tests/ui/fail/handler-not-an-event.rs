use sbox_events::handler;

struct NotAnEvent;

#[handler]
fn on_thing(_thing: &NotAnEvent) {}

fn main() {}
