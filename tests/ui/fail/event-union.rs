use sbox_events::Event;

#[derive(Event)]
#[event(name = "order.placed")]
union OrderPlaced {
    id: u64,
    code: u32,
}

fn main() {}
