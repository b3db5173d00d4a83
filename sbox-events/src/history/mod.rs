//! A bounded history of emitted events, queries over it, export to and
//! import from JSON Lines, and the records [`EventBus::replay`](crate::EventBus::replay) re-dispatches.
//!
//! # Recording
//!
//! Opt-in per bus with [`EventBusBuilder::history`](crate::EventBusBuilder::history):
//!
//! ```
//! use sbox_events::events::ConfigExported;
//! use sbox_events::history::HistoryQuery;
//! use sbox_events::EventBus;
//!
//! let bus = EventBus::builder().history(1 << 20).build()?; // 1 MiB
//! bus.emit(ConfigExported { path: "a.json".into(), export_format: "sing-box".into(), file_size: 10 });
//! let history = bus.history().expect("enabled");
//! let recorded = history.query(&HistoryQuery::new());
//! assert_eq!(recorded[0].name(), "config.exported");
//! assert_eq!(history.stats().entries, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The history is a ring bounded by **bytes**, not by count: its budget is
//! given to [`EventBusBuilder::history`](crate::EventBusBuilder::history)
//! ([`DEFAULT_HISTORY_BYTES`], 8 MiB, is a good size) and no history holds more than
//! [`MAX_HISTORY_BYTES`] (10 MB, the original design's budget; larger
//! requests are clamped). The bytes counted are everything the history keeps
//! alive: its slot array (its capacity × 112 bytes on 64-bit Linux), the
//! ring of bytes that holds the records' JSON (its whole capacity), and what
//! records own besides (an owned source, metadata, a remote mark, a cause,
//! handler runs). Both grow as records come (by doubling, or by at least a
//! sixty-fourth of the budget: each growth copies what is held), and each
//! gives its unused room to the other when the records' sizes shift. When a
//! new record does not fit, the oldest are evicted first and counted
//! ([`HistoryStats::evicted`]); a record larger than the whole budget is not
//! kept and counted as [`HistoryStats::oversized`] (its serialization stops
//! as soon as it is over, so refusing a huge event costs at most the budget).
//!
//! They grow only into the budget less a reserve (a thirty-second of it),
//! which records' heap takes first: a record with an owned source, say,
//! does not evict the many records whose room stays allocated. When that
//! heap outgrows the reserve, the oldest records are evicted until the
//! room they leave covers it and another reserve, and that room is given
//! back at once (so up to about a thirty-second of the budget more is
//! evicted than the new record needed). A record that fits only alone
//! (within a reserve of the whole budget) evicts all others. Growing or
//! shrinking the slot array or the bytes copies what they hold into a new
//! allocation, so for that moment the old and the new one are both alive;
//! the budget holds between calls.
//!
//! Cost when on: the clock is read at emit (so handlers and the history see
//! the same timestamp) and the event's id is made, the event is serialized
//! to JSON (into a per-thread buffer that is reused, up to 64 KiB), and one
//! mutex shared by all emitting threads is taken to append: the JSON is
//! copied into the ring of bytes (evicting the oldest moves its start) and
//! the rest of the record into a slot. No allocation per record once the
//! ring has grown, for a record with the defaults: no source of its own, no
//! metadata, no remote mark and no cause (emitted outside any handler).
//! Other records take one allocation for what they have besides the
//! defaults, plus a copy of an owned source, of metadata, of a remote mark,
//! and of a run-time subscription's name in a cause; with the flight
//! recorder, a record's runs are attached in the same way. Replays are not
//! recorded (unless
//! [`EventBusBuilder::record_replays`](crate::EventBusBuilder::record_replays)).
//!
//! An event whose `Serialize` fails or panics is not recorded (counted in
//! [`HistoryStats::unserializable`], listed in its emit's
//! [`EmitReport::not_recorded`](crate::EmitReport::not_recorded)); so is one
//! holding a NaN or infinite float, which JSON has no number for (serde_json
//! would write `null`, which does not read back as a float). The error
//! names the innermost named field the float is in (for an element of a
//! sequence, map or tuple, the field holding it), by its serialized name
//! (after any `#[serde(rename)]`); a float in no named field (of an event
//! that is a tuple or newtype struct, or in a flattened field) is named
//! only as "a value". Only what the event gives serde's `Serializer` is checked:
//! a `serialize_with` that writes JSON text of its own (with
//! `serde_json::to_string`) passes a `null` unseen. The same holds wherever
//! an event is written as JSON
//! (the audit log, JSON streams, [`AnyEvent::to_json`](crate::AnyEvent::to_json),
//! a broker bridge).
//!
//! # JSON Lines
//!
//! [`History::export_jsonl`] writes one envelope per line:
//!
//! ```text
//! {"name":"config.exported","source":"config_builder","trace_id":"…","timestamp":"2026-11-27T06:32:20.123456Z","sequence":7,"metadata":{},"data":{…}}
//! ```
//!
//! [`import_jsonl`] reads them back (audit logs too: their extra `depth` is
//! accepted): the name is resolved through the link-time list of event types
//! to the typed deserializer, the fields must fit that type, and its
//! [`Event::validate`](crate::Event::validate) must pass. Errors name the
//! line and the reason. A UTF-8 byte order mark before the first line is
//! skipped. Strict by default: any bad line makes the import an
//! error, which still carries every valid record; lenient mode skips bad
//! lines and lists them.

mod bytes;
mod import;
mod query;
mod record;
mod render;
mod replay;
mod ring;
mod slot;
mod tree;

pub use import::{
    ImportError, ImportOptions, Imported, LineError, LineErrorKind, export_jsonl, import_jsonl,
};
pub use query::HistoryQuery;
pub use record::RecordedEvent;
pub use replay::{ReplayError, ReplayReport};
pub use ring::{History, HistoryStats};
pub use tree::{EventNode, HandlerNode, TraceTree};

/// A good history budget (8 MiB): what the examples and tests use.
pub const DEFAULT_HISTORY_BYTES: usize = 8 * 1024 * 1024;

/// The most any history holds (the original design's 10 MB).
pub const MAX_HISTORY_BYTES: usize = 10_000_000;
