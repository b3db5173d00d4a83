//! `error.occurred`: how the bus reports a failing handler as an event (and
//! how applications report their own errors). Part of the bus's failure
//! reporting, so it lives here; [`crate::events`] lists it with the rest of
//! the sboxmgr event set.

use sbox_events_derive::Event;
use serde::{Deserialize, Serialize};

/// Something failed. The bus emits this for every failing handler (see the
/// bus's failure rules in the crate docs); applications emit it for their
/// own errors too. A failure while it is being handled never emits another.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "error.occurred", source = "event_bus", validate = check_error)]
pub struct ErrorOccurred {
    /// What went wrong, for people.
    pub error: String,
    /// The kind of error: a Rust type name, `panic`, or an application's own.
    pub error_type: String,
    /// The event being handled when it happened (empty if none).
    pub event: String,
    /// The failing handler or component.
    pub handler: String,
}

fn check_error(e: &ErrorOccurred) -> Result<(), String> {
    for (field, value) in [("error", &e.error), ("error_type", &e.error_type)] {
        if value.trim().is_empty() {
            return Err(format!("`{field}` is empty"));
        }
    }
    Ok(())
}
