//! Cross-crate fixture, crate A: defines events (and one handler of its own).
//!
//! Handlers anywhere record their calls here, per thread, so tests running in
//! parallel do not see each other's calls.

// Fails the crate's tests when two linked event types share a name.
sbox_events::event_names_test!();

use sbox_events::{Event, EventContext, handler};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// Emitted by the test crate, handled in `xc-handlers`.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "xc.order_placed", source = "shop")]
pub struct OrderPlaced {
    pub order: u32,
}

/// Only `xc-handlers` handles it; a test links that crate with `link!` alone.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "xc.order_shipped")]
pub struct OrderShipped {
    pub order: u32,
}

thread_local! {
    static CALLS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records that `who` ran on this thread.
pub fn record(who: &str) {
    CALLS.with(|calls| calls.borrow_mut().push(who.to_owned()));
}

/// Takes this thread's recorded calls.
pub fn take_calls() -> Vec<String> {
    CALLS.with(|calls| calls.take())
}

/// Same priority as `xc-handlers`' `audit`: name order decides.
#[handler(priority = 5)]
fn book_keeping(_: &OrderPlaced, ctx: &EventContext) {
    record(&format!("xc_events::book_keeping@{}", ctx.source()));
}
