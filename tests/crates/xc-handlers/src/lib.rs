//! Cross-crate fixture, crate B: only handlers, for events of `xc-events`.
//! Nothing here is meant to be called; the test binary links it with
//! `sbox_events::link!`.

// Fails the crate's tests when two linked event types share a name.
sbox_events::event_names_test!();

use sbox_events::handler;
// Renamed on purpose: #[handler] must work with the event type as written.
use xc_events::{OrderPlaced as Placed, OrderShipped, record};

#[handler(priority = 5)]
fn audit(_: &Placed) {
    record("xc_handlers::audit");
}

#[handler(priority = 100, name = "fraud_check")]
fn fraud(event: &Placed) -> Result<(), String> {
    record("fraud_check");
    if event.order == 666 {
        return Err(format!("order {} looks fraudulent", event.order));
    }
    Ok(())
}

#[handler(priority = -1)]
fn notify(_: &xc_events::OrderPlaced) {
    record("xc_handlers::notify");
}

#[handler]
fn label(event: &OrderShipped) {
    record(&format!("xc_handlers::label#{}", event.order));
}

/// An async handler in another crate: same registry, same order rules.
#[handler(priority = 10)]
async fn pack(event: &OrderShipped) {
    record(&format!("xc_handlers::pack#{} (async)", event.order));
}
