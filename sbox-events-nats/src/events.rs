//! The bridge's state changes, emitted on the local bus (never forwarded):
//! subscribe to them like to any event, audit them, count them.
//!
//! The bridge also reports what it could not do (a message refused, an
//! event that can never be published) as
//! [`ErrorOccurred`](sbox_events::events::ErrorOccurred) with a `handler`
//! of `sbox_events_nats::inbound` or `sbox_events_nats::outbound`; those
//! reports stay local too.

use sbox_events::Event;
use serde::{Deserialize, Serialize};

/// The bridge connected (or reconnected) to the broker.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "nats.connected", source = "sbox_events_nats")]
pub struct BridgeConnected {
    /// The server's address (without credentials).
    pub server: String,
}

/// The bridge lost its connection to the broker; it reconnects by itself.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "nats.disconnected", source = "sbox_events_nats")]
pub struct BridgeDisconnected {
    /// The server's address (without credentials).
    pub server: String,
}

/// Events are waiting in the spool for the broker (it is down, or slower
/// than the emitters): they are forwarded, in order, when it catches up.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "nats.spooling", source = "sbox_events_nats")]
pub struct BridgeSpooling {
    /// Events waiting when spooling began.
    pub backlog: u64,
}

/// The spool is empty again: every event in it was acknowledged.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "nats.drained", source = "sbox_events_nats")]
pub struct BridgeDrained {
    /// Events forwarded from the spool since spooling began.
    pub forwarded: u64,
}

/// Whether `event` is one of the bridge's own events, or its own report of
/// an error (kept local); a user event that happens to share a name is not.
pub(crate) fn is_bridge_event(event: &sbox_events::AnyEvent<'_>) -> bool {
    use sbox_events::EventType;
    if let Some(error) = event.downcast_ref::<sbox_events::events::ErrorOccurred>() {
        return error.handler.starts_with("sbox_events_nats::");
    }
    [
        EventType::of::<BridgeConnected>(),
        EventType::of::<BridgeDisconnected>(),
        EventType::of::<BridgeSpooling>(),
        EventType::of::<BridgeDrained>(),
    ]
    .contains(&event.event_type())
}
