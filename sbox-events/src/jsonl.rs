//! The JSON Lines envelope, one definition for every writer and reader of
//! event records (history export and import, the audit log):
//!
//! ```text
//! {"name":"config.exported","fingerprint":"8c2f…","event_id":"019a…","source":"config_builder","trace_id":"…","timestamp":"2026-11-27T06:32:20.123456789Z","sequence":7,"metadata":{},"data":{…}}
//! ```
//!
//! Timestamps are RFC 3339 in UTC with nanoseconds (a reader accepts any
//! precision). The audit log adds `depth`; a replayed event has
//! `"replay":true`, an event from another process `"remote":"<instance>"`,
//! an event emitted by a handler its `"cause"`, and a history kept with the
//! flight recorder on each event's `"handlers"` (see
//! [`HandlerRun`](crate::flight::HandlerRun)).

use crate::envelope::{Cause, Envelope, EventId, Metadata};
use crate::flight::HandlerRun;
use crate::trace::TraceId;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// One record. `D` is the event's fields: borrowed raw JSON when reading or
/// re-writing records, any serializable value when writing a fresh one.
/// Fields added since the first version of the format (`fingerprint`,
/// `event_id`, `remote`, `replay`) are optional when read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Line<'a, D> {
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
    /// The event type's schema fingerprint when it was written.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub(crate) fingerprint: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_id: Option<EventId>,
    #[serde(borrow)]
    pub(crate) source: Cow<'a, str>,
    pub(crate) trace_id: TraceId,
    pub(crate) timestamp: String,
    pub(crate) sequence: u64,
    /// The nesting depth (written by the audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) depth: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) replay: bool,
    /// The instance of the process the event came from, if remote.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub(crate) remote: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) metadata: Cow<'a, Metadata>,
    /// What caused the event (absent for a root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cause: Option<Cause>,
    /// How its handlers went (written when the flight recorder was on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) handlers: Option<Cow<'a, [HandlerRun]>>,
    pub(crate) data: D,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl<'a, D> Line<'a, D> {
    /// The line of an event with this envelope (of a type with this
    /// fingerprint); `with_depth` for the audit log.
    pub(crate) fn of(
        envelope: &'a Envelope,
        fingerprint: &'a str,
        with_depth: bool,
        data: D,
    ) -> Result<Line<'a, D>, OutOfRange> {
        Ok(Line {
            name: Cow::Borrowed(envelope.name),
            fingerprint: Some(Cow::Borrowed(fingerprint)),
            event_id: Some(envelope.event_id),
            source: Cow::Borrowed(&envelope.source),
            trace_id: envelope.trace_id,
            timestamp: timestamp(envelope.timestamp)?,
            sequence: envelope.sequence,
            depth: with_depth.then_some(envelope.depth),
            replay: envelope.replay,
            remote: envelope.remote.as_deref().map(Cow::Borrowed),
            metadata: Cow::Borrowed(&envelope.metadata),
            cause: envelope.cause.as_deref().cloned(),
            handlers: None,
            data,
        })
    }
}

/// A timestamp as records write it, if RFC 3339 can: from 1970 (the
/// formatter's start) to the end of year 9999. A clock that is off (a device
/// without a real-time clock) or a timestamp given with an emit may be
/// outside that range.
pub(crate) fn timestamp(time: SystemTime) -> Result<String, OutOfRange> {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) if since.as_secs() < END_OF_9999 => {
            Ok(humantime::format_rfc3339_nanos(time).to_string())
        }
        Ok(since) => Err(OutOfRange(format!(
            "{} s after 1970-01-01",
            since.as_secs()
        ))),
        Err(before) => Err(OutOfRange(format!(
            "{} s before 1970-01-01",
            before.duration().as_secs_f64()
        ))),
    }
}

/// Seconds from 1970 to 10000-01-01T00:00:00Z.
const END_OF_9999: u64 = 253_402_300_800;

/// A timestamp RFC 3339 cannot write.
#[derive(Debug)]
pub(crate) struct OutOfRange(String);

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timestamp {} cannot be written as RFC 3339 (years 1970 to 9999)",
            self.0
        )
    }
}

impl std::error::Error for OutOfRange {}

impl From<OutOfRange> for std::io::Error {
    fn from(err: OutOfRange) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, err)
    }
}
