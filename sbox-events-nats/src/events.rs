//! The bridge's state changes, emitted on the local bus (never forwarded):
//! subscribe to them like to any event, audit them, count them.

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

/// Whether `name` is one of the bridge's own events (kept local).
pub(crate) fn is_bridge_event(name: &str) -> bool {
    name.starts_with("nats.")
}
