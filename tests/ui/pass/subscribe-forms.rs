use sbox_events::{Event, EventBus, EventContext, SubscribeOptions};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop.order_placed")]
struct OrderPlaced {
    id: u64,
}

fn main() {
    let bus = EventBus::new();
    let _a = bus.subscribe(|event: &OrderPlaced, _ctx: &EventContext| {
        let _ = event.id;
    });
    let _b = bus.subscribe::<OrderPlaced, _, _>(|event, ctx| {
        let _ = (event.id, ctx.depth());
        Ok::<(), std::fmt::Error>(())
    });
    let _c = bus.subscribe_with(SubscribeOptions::new().priority(1), |_: &OrderPlaced, _: &EventContext| -> Result<(), String> {
        Err("x".into())
    });
    let _d = bus.subscribe(|_: &OrderPlaced, _: &EventContext| panic!("never runs here"));
    drop(_d);
    bus.emit(OrderPlaced { id: 1 });
}
