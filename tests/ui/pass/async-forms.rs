use sbox_events::{handler, Event, EventBus, EventContext, SubscribeOptions};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop.order_placed")]
pub struct OrderPlaced {
    pub id: u64,
}

async fn store(_: u64) -> std::io::Result<()> {
    Ok(())
}

#[handler]
async fn plain(_: &OrderPlaced) {}

#[handler(priority = 3, name = "persist")]
async fn with_context(event: &OrderPlaced, ctx: &EventContext<'_>) -> std::io::Result<()> {
    store(event.id).await?;
    // Both borrows live across the `.await`.
    let _ = (event.id, ctx.trace_id());
    Ok(())
}

#[handler]
pub(crate) async fn string_error(_: &OrderPlaced, _: &EventContext<'_>) -> Result<(), String> {
    Err("no".into())
}

fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

fn main() {
    let bus = EventBus::new();
    let _a = bus.subscribe_async(|event: &OrderPlaced, _: &EventContext| {
        let id = event.id;
        async move { store(id).await }
    });
    let _b = bus.subscribe_async_with(
        SubscribeOptions::new().name("unit").priority(2),
        |_: &OrderPlaced, _: &EventContext| async {},
    );
    let _report = assert_send(bus.emit_async(OrderPlaced { id: 1 }));
}
