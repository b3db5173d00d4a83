use sbox_events::EventBus;

struct OrderPlaced {
    id: u64,
}

fn main() {
    EventBus::new().emit(OrderPlaced { id: 1 });
}
