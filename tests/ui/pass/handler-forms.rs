use sbox_events::{handler, Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};

mod events {
    use super::*;

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "shop.order_placed")]
    pub struct OrderPlaced {
        pub id: u64,
    }
}

use events::OrderPlaced as Placed;

#[handler]
fn plain(_: &events::OrderPlaced) {}

#[handler(priority = -3)]
fn with_context(event: &Placed, ctx: &EventContext<'_>) {
    let _ = (event.id, ctx.trace_id());
}

#[handler(name = "io", priority = 7)]
pub fn fallible(_: &Placed) -> std::io::Result<()> {
    Ok(())
}

#[handler]
pub(crate) fn string_error(_: &crate::events::OrderPlaced, _: &EventContext) -> Result<(), String> {
    Err("no".into())
}

#[handler]
fn with_lifetimes<'a>(event: &'a Placed, _ctx: &EventContext<'_>) -> Result<(), &'static str> {
    let _: &'a Placed = event;
    Ok(())
}

#[handler]
fn always_panics(_: &Placed) {
    panic!("unreachable in this test")
}

fn main() {
    #[handler]
    fn local(_: &Placed) {}

    let bus = EventBus::new();
    bus.disable_handler(concat!(module_path!(), "::always_panics")).unwrap();
    let report = bus.emit(Placed { id: 1 });
    assert_eq!(report.delivered(), 6);
    assert_eq!(report.failures().len(), 1);
    plain(&Placed { id: 2 });
    local(&Placed { id: 3 });
}
