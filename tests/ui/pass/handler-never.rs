//! A `#[handler]` whose function never returns (`-> !`) compiles without a
//! warning, also where the crate denies warnings: the code the macro puts
//! after the call is unreachable by design.
#![deny(warnings)]

use sbox_events::{Event, EventBus, handler};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "ui.doomed")]
struct Doomed;

#[handler]
fn never_returns(_: &Doomed) -> ! {
    panic!("every call panics")
}

fn main() {
    let report = EventBus::new().emit(Doomed);
    assert_eq!(report.failures().len(), 1);
}
