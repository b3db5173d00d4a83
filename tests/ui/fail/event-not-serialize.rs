use sbox_events::Event;

#[derive(Event)]
#[event(name = "order.placed")]
struct OrderPlaced {
    id: u64,
}

fn main() {}
