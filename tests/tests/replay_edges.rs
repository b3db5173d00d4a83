//! Replay and import at their edges: what user code (`Deserialize`, `Drop`)
//! does there, and what text from records reaches a terminal.

use sbox_events::history::HistoryQuery;
use sbox_events::{Event, EventBus};
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

/// Recorded fine, refused when read back, with a message that holds a
/// terminal escape.
#[derive(Event, Serialize)]
#[event(name = "edge.unreadable")]
struct Unreadable(u8);

impl<'de> Deserialize<'de> for Unreadable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("\u{1b}[2J screen cleared"))
    }
}

fn history_bus() -> EventBus {
    EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap()
}

#[test]
fn a_replay_error_escapes_what_the_records_deserialize_said() {
    let bus = history_bus();
    assert!(bus.emit(Unreadable(1)).is_ok());
    let records = bus.history().expect("history").query(&HistoryQuery::new());
    let replayed = bus.replay(&records);
    let error = &replayed.errors()[0];
    assert!(error.message().contains("screen cleared"), "{error:?}");
    let shown = error.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.contains(r"\u{1b}[2J screen cleared"), "{shown}");
}
