use sbox_events::{handler, Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop.order_placed")]
pub struct OrderPlaced {
    pub id: u64,
}

#[derive(Default)]
pub struct Orders(AtomicU64);

pub struct Config {
    pub shop: String,
}

pub trait Mailer: Send + Sync {
    fn send(&self, to: &str);
}

struct Outbox(Mutex<Vec<String>>);

impl Mailer for Outbox {
    fn send(&self, to: &str) {
        self.0.lock().unwrap().push(to.to_owned());
    }
}

// A resource right after the event, after the context, several, a trait
// object, and in an async handler.
#[handler]
fn count(_: &OrderPlaced, orders: &Orders) {
    orders.0.fetch_add(1, Ordering::Relaxed);
}

#[handler]
fn with_context(event: &OrderPlaced, ctx: &EventContext<'_>, config: &Config) {
    let _ = (event.id, ctx.trace_id(), &config.shop);
}

#[handler]
fn mail(event: &OrderPlaced, mailer: &dyn Mailer, config: &Config) -> Result<(), String> {
    mailer.send(&format!("{}-{}", config.shop, event.id));
    Ok(())
}

#[handler]
async fn remember(event: &OrderPlaced, orders: &Orders) {
    orders.0.fetch_add(event.id, Ordering::Relaxed);
}

fn main() {
    let outbox = Arc::new(Outbox(Mutex::new(Vec::new())));
    let bus = EventBus::builder()
        .resource(Orders::default())
        .resource(Config { shop: "eu".into() })
        .shared_resource::<dyn Mailer>(outbox.clone())
        .build()
        .unwrap();
    let report = bus.emit(OrderPlaced { id: 7 });
    assert_eq!(report.delivered(), 3);
    assert_eq!(bus.resource::<Orders>().unwrap().0.load(Ordering::Relaxed), 1);
    assert_eq!(*outbox.0.lock().unwrap(), ["eu-7"]);
}
