use sbox_events::{Event, EventBus, Refusal};
use serde::{Deserialize, Serialize};

mod rules {
    pub fn positive(order: &super::OrderPlaced) -> Result<(), &'static str> {
        if order.id == 0 { Err("`id` is 0") } else { Ok(()) }
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "order.placed", validate = rules::positive)]
struct OrderPlaced {
    id: u64,
}

fn main() {
    assert_eq!(OrderPlaced { id: 0 }.validate(), Err("`id` is 0".to_owned()));
    let bus = EventBus::builder().validate_on_emit(true).build().unwrap();
    let report = bus.emit(OrderPlaced { id: 0 });
    assert_eq!(report.refused(), Some(&Refusal::Invalid { reason: "`id` is 0".into() }));
    assert!(bus.emit(OrderPlaced { id: 1 }).is_ok());
}
