//! The JSON Lines envelope, one definition for every writer and reader of
//! event records (history export and import, the audit log):
//!
//! ```text
//! {"name":"config.exported","source":"config_builder","trace_id":"…","timestamp":"2026-11-27T06:32:20.123456789Z","sequence":7,"metadata":{},"data":{…}}
//! ```
//!
//! Timestamps are RFC 3339 in UTC with nanoseconds (a reader accepts any
//! precision). The audit log adds `depth`; the history omits it.

use crate::context::Metadata;
use crate::trace::TraceId;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::SystemTime;

/// One record. `D` is the event's fields: borrowed raw JSON when reading or
/// re-writing records, any serializable value when writing a fresh one.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Envelope<'a, D> {
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) source: Cow<'a, str>,
    pub(crate) trace_id: TraceId,
    pub(crate) timestamp: String,
    pub(crate) sequence: u64,
    /// The nesting depth (written by the audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) depth: Option<u32>,
    #[serde(default)]
    pub(crate) metadata: Cow<'a, Metadata>,
    pub(crate) data: D,
}

/// A timestamp as records write it.
pub(crate) fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}
