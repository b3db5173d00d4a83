use sbox_events::handler;

#[handler]
fn on_placed() {}

fn main() {}
