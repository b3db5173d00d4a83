//! One event on the wire: the subject `<prefix>.<event name>`, the event's
//! JSON as the payload, and its envelope in headers.
//!
//! | header | value |
//! |---|---|
//! | `Nats-Msg-Id` | the event id (JetStream de-duplicates by it) |
//! | `traceparent` | W3C: the trace id, a fresh span id, sampled |
//! | `Sbox-Event` | the event's name |
//! | `Sbox-Fingerprint` | the schema fingerprint of the sender's type |
//! | `Sbox-Instance` | the sending process's instance id |
//! | `Sbox-Envelope` | JSON: source, metadata, timestamp, sequence, depth, cause |
//!
//! Text that ends up in a header (a source, metadata) is JSON inside
//! `Sbox-Envelope`: JSON escapes every control character, so no CR or LF
//! reaches a header, and header names and values are built with the
//! fallible conversions (never the asserting ones).

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use sbox_events::trace::{TraceId, TraceParent};
use sbox_events::{Cause, Envelope, EventId, Metadata};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU64;
use std::str::FromStr;
use std::time::SystemTime;

pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const EVENT: &str = "Sbox-Event";
pub(crate) const FINGERPRINT: &str = "Sbox-Fingerprint";
pub(crate) const INSTANCE: &str = "Sbox-Instance";
pub(crate) const ENVELOPE: &str = "Sbox-Envelope";

/// An event on its way out: what is published, and what the spool keeps
/// (one JSON line per event).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Outgoing {
    pub(crate) name: String,
    pub(crate) fingerprint: String,
    pub(crate) event_id: EventId,
    pub(crate) trace_id: TraceId,
    pub(crate) instance: String,
    pub(crate) envelope: WireEnvelope,
    /// The event's fields, as JSON text.
    pub(crate) data: String,
}

/// The part of the envelope that travels in `Sbox-Envelope`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct WireEnvelope {
    pub(crate) source: String,
    #[serde(default)]
    pub(crate) metadata: Metadata,
    /// RFC 3339; absent when the timestamp cannot be written as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timestamp: Option<String>,
    #[serde(default)]
    pub(crate) sequence: u64,
    #[serde(default)]
    pub(crate) depth: u32,
    /// What caused the event in the sender's process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cause: Option<Cause>,
}

impl Outgoing {
    pub(crate) fn new(
        envelope: &Envelope,
        fingerprint: &str,
        instance: &str,
        data: String,
    ) -> Outgoing {
        Outgoing {
            name: envelope.name().to_owned(),
            fingerprint: fingerprint.to_owned(),
            event_id: envelope.event_id(),
            trace_id: envelope.trace_id(),
            instance: instance.to_owned(),
            envelope: WireEnvelope {
                source: envelope.source().to_owned(),
                metadata: envelope.metadata().clone(),
                timestamp: rfc3339(envelope.timestamp()),
                sequence: envelope.sequence(),
                depth: envelope.depth(),
                cause: envelope.cause().cloned(),
            },
            data,
        }
    }

    /// The subject under `prefix`.
    pub(crate) fn subject(&self, prefix: &str) -> String {
        format!("{prefix}.{}", self.name)
    }

    /// The message's headers. Fails (rather than panics) on a value a
    /// header cannot hold.
    pub(crate) fn headers(&self) -> Result<HeaderMap, String> {
        let span = NonZeroU64::new(fastrand_u64()).unwrap_or(NonZeroU64::MIN);
        let traceparent = TraceParent::new(self.trace_id, span, 1).to_string();
        let envelope = serde_json::to_string(&self.envelope).map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (MSG_ID, self.event_id.to_string()),
            (TRACEPARENT, traceparent),
            (EVENT, self.name.clone()),
            (FINGERPRINT, self.fingerprint.clone()),
            (INSTANCE, self.instance.clone()),
            (ENVELOPE, envelope),
        ] {
            let name = HeaderName::from_str(name).map_err(|e| format!("header {name}: {e}"))?;
            let value = HeaderValue::from_str(&value).map_err(|e| format!("header {name}: {e}"))?;
            headers.insert(name, value);
        }
        Ok(headers)
    }
}

/// A received message's envelope, read from its headers.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) name: String,
    pub(crate) fingerprint: Option<String>,
    pub(crate) event_id: EventId,
    pub(crate) trace_id: TraceId,
    pub(crate) instance: String,
    pub(crate) envelope: WireEnvelope,
    pub(crate) timestamp: Option<SystemTime>,
}

impl Incoming {
    /// Reads the headers; the error says which one is missing or wrong.
    pub(crate) fn read(headers: Option<&HeaderMap>) -> Result<Incoming, String> {
        let headers = headers.ok_or("the message has no headers")?;
        let get = |name: &str| -> Result<&str, String> {
            let key = HeaderName::from_str(name).map_err(|e| e.to_string())?;
            headers
                .get(key)
                .map(HeaderValue::as_str)
                .ok_or_else(|| format!("header {name} is missing"))
        };
        let event_id = EventId::parse(get(MSG_ID)?).map_err(|e| format!("header {MSG_ID}: {e}"))?;
        let traceparent = TraceParent::parse(get(TRACEPARENT)?)
            .map_err(|e| format!("header {TRACEPARENT}: {e}"))?;
        let envelope: WireEnvelope =
            serde_json::from_str(get(ENVELOPE)?).map_err(|e| format!("header {ENVELOPE}: {e}"))?;
        let timestamp = match &envelope.timestamp {
            Some(text) => Some(
                humantime_parse(text).map_err(|e| format!("header {ENVELOPE}: timestamp: {e}"))?,
            ),
            None => None,
        };
        Ok(Incoming {
            name: get(EVENT)?.to_owned(),
            fingerprint: get(FINGERPRINT).ok().map(str::to_owned),
            event_id,
            trace_id: traceparent.trace_id(),
            instance: get(INSTANCE)?.to_owned(),
            envelope,
            timestamp,
        })
    }
}

/// RFC 3339 with nanoseconds, if the time is in its range (1970 to the
/// end of 9999, which is all `humantime` writes without panicking).
fn rfc3339(time: SystemTime) -> Option<String> {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    (since.as_secs() < 253_402_300_800).then(|| humantime::format_rfc3339_nanos(time).to_string())
}

fn humantime_parse(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(text).map_err(|e| format!("{text:?} is not RFC 3339 UTC: {e}"))
}

/// A random span id for `traceparent`.
fn fastrand_u64() -> u64 {
    TraceId::random().as_u128() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_round_trip() {
        for secs in [0, 1, 951_782_400, 1_764_748_800, 253_402_300_799] {
            let time = SystemTime::UNIX_EPOCH + Duration::new(secs, 123_456_789);
            let text = rfc3339(time).expect("in range");
            assert_eq!(humantime_parse(&text), Ok(time), "{text}");
        }
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            None
        );
        assert!(humantime_parse("2026-13-01T00:00:00Z").is_err());
        assert!(humantime_parse("yesterday").is_err());
    }
}
