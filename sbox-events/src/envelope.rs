//! What travels with every event besides its fields: its [`EventId`], and
//! the owned [`Envelope`] (name, ids, trace, sequence, source, [`Metadata`],
//! timestamp, depth, replay and remote marks) that streams, the test
//! recorder, the history, JSON Lines and bridges to other processes all
//! share. A handler sees the same values, borrowed, in its
//! [`EventContext`](crate::EventContext).
//!
//! Cost: an envelope is made only where one is kept (a stream delivery, a
//! record); handlers read the context, which is built on the stack. An event
//! id is made on first request (see [`EventContext::event_id`](crate::EventContext::event_id)).

use crate::trace::{TraceId, random_u128};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A globally unique event id: a UUIDv7 (RFC 9562), so ids sort by the
/// millisecond of the event's timestamp, with 74 random bits after it.
///
/// `Display` gives the hyphenated lowercase form; parsing accepts any
/// non-nil UUID in hyphenated form (either case). Serde uses the string.
/// Bridges use it to de-duplicate (a redelivered event keeps its id).
///
/// ```
/// use sbox_events::EventId;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let at = UNIX_EPOCH + Duration::from_millis(1_764_748_800_123);
/// let id = EventId::new(at);
/// assert_eq!(id.version(), 7);
/// assert_eq!(id.timestamp(), at);
/// assert_ne!(id, EventId::new(at), "the random part differs");
/// assert_eq!(id.to_string().parse::<EventId>()?, id);
/// assert!("not-an-id".parse::<EventId>().is_err());
/// # Ok::<(), sbox_events::ParseEventIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(u128);

impl EventId {
    /// A fresh UUIDv7 for an event that happened at `timestamp` (times
    /// before 1970 are stamped as 1970). Its random bits come from a
    /// per-thread generator seeded from the OS: no system call per id.
    pub fn new(timestamp: SystemTime) -> EventId {
        let millis = timestamp.duration_since(UNIX_EPOCH).map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
        // RFC 9562's layout (the one `uuid::Builder::from_unix_timestamp_millis`
        // writes; tests/tests/event_ids.rs checks each field): the low 48
        // bits of the millisecond, version 7, 12 random bits, variant 0b10,
        // 62 random bits. Built with shifts: no byte copies.
        let random = random_u128();
        let rand_a = (random >> 64) & 0xfff;
        let rand_b = random & ((1 << 62) - 1);
        let millis = u128::from(millis & 0xffff_ffff_ffff);
        EventId((millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)
    }

    /// A UUIDv7 for an event recorded before events had ids, derived from
    /// what identifies it (so importing the same record twice gives the same
    /// id): `timestamp`, and `seed` for the bits that are random otherwise.
    #[cfg_attr(not(feature = "history"), allow(dead_code))]
    pub(crate) fn derived(timestamp: SystemTime, seed: u128) -> EventId {
        let millis = timestamp.duration_since(UNIX_EPOCH).map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
        let mut bytes = [0u8; 10];
        bytes.copy_from_slice(&seed.to_be_bytes()[..10]);
        EventId(
            uuid::Builder::from_unix_timestamp_millis(millis, &bytes)
                .into_uuid()
                .as_u128(),
        )
    }

    /// The id as a number (the UUID's 128 bits, big-endian order).
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// The id with these 128 bits, or `None` for the nil UUID.
    pub const fn from_u128(value: u128) -> Option<EventId> {
        if value == 0 {
            None
        } else {
            Some(EventId(value))
        }
    }

    /// The UUID version: 7 for the ids this crate makes.
    pub fn version(self) -> usize {
        uuid::Uuid::from_u128(self.0).get_version_num()
    }

    /// The millisecond a UUIDv7 was made for (the event's timestamp,
    /// truncated); `UNIX_EPOCH` for other versions.
    pub fn timestamp(self) -> SystemTime {
        if self.version() != 7 {
            return UNIX_EPOCH;
        }
        UNIX_EPOCH + Duration::from_millis((self.0 >> 80) as u64)
    }

    /// Parses the hyphenated form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
    pub fn parse(input: &str) -> Result<EventId, ParseEventIdError> {
        let fail = |problem: &'static str| ParseEventIdError {
            input: input.chars().take(64).collect(),
            problem,
        };
        if input.len() != 36 {
            return Err(fail("expected 36 characters (8-4-4-4-12 hex digits)"));
        }
        let uuid = uuid::Uuid::try_parse(input).map_err(|_| fail("not a hyphenated UUID"))?;
        EventId::from_u128(uuid.as_u128()).ok_or_else(|| fail("the nil UUID is not an event id"))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_u128(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

impl FromStr for EventId {
    type Err = ParseEventIdError;
    fn from_str(input: &str) -> Result<EventId, ParseEventIdError> {
        EventId::parse(input)
    }
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<EventId, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = EventId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event id (a hyphenated UUID)")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<EventId, E> {
                EventId::parse(value).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Text that is not an [`EventId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseEventIdError {
    input: String,
    problem: &'static str,
}

impl fmt::Display for ParseEventIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid event id {:?}: {}", self.input, self.problem)
    }
}

impl std::error::Error for ParseEventIdError {}

/// What caused an event: the event being handled when it was emitted, and
/// the handler whose call emitted it. An event emitted outside any handler
/// (a root) has no cause.
///
/// ```
/// use sbox_events::events::{ConfigBuilt, ConfigExported};
/// use sbox_events::{EventBus, EventContext, SubscribeOptions};
/// use std::sync::{Arc, Mutex};
///
/// let bus = EventBus::new();
/// let _export = bus.subscribe_with(SubscribeOptions::new().name("exporter"), |built: &ConfigBuilt, ctx: &EventContext| {
///     ctx.bus().emit(ConfigExported { path: "out.json".into(), export_format: "sing-box".into(), file_size: built.file_size });
/// });
/// let causes = Arc::new(Mutex::new(Vec::new()));
/// let seen = Arc::clone(&causes);
/// let _watch = bus.subscribe(move |_: &ConfigExported, ctx: &EventContext| {
///     seen.lock().unwrap().push(ctx.cause());
/// });
/// let report = bus.emit(ConfigBuilt { servers_count: 1, rules_count: 1, export_format: "sing-box".into(), file_size: 9, duration_ms: 1 });
/// let cause = causes.lock().unwrap()[0].clone().expect("a nested event has a cause");
/// assert_eq!(cause.event(), "config.built");
/// assert_eq!(cause.handler(), Some("exporter"));
/// assert!(report.is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cause {
    pub(crate) event: std::borrow::Cow<'static, str>,
    pub(crate) sequence: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_id: Option<EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) handler: Option<Cow<'static, str>>,
}

impl Cause {
    /// Heap bytes of this cause in a box: the box and its owned text (for
    /// the history's accounting).
    #[cfg_attr(not(feature = "history"), allow(dead_code))]
    pub(crate) fn boxed_bytes(&self) -> usize {
        let owned = |s: &Cow<'static, str>| match s {
            Cow::Owned(s) => s.capacity(),
            Cow::Borrowed(_) => 0,
        };
        std::mem::size_of::<Cause>() + owned(&self.event) + self.handler.as_ref().map_or(0, owned)
    }

    /// A cause, as a bridge or a tool reading records rebuilds it.
    pub fn new(
        event: impl Into<Cow<'static, str>>,
        sequence: u64,
        event_id: Option<EventId>,
        handler: Option<Cow<'static, str>>,
    ) -> Cause {
        Cause {
            event: event.into(),
            sequence,
            event_id,
            handler,
        }
    }

    /// The name of the event being handled when this one was emitted.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// Its sequence number (unique in its process: with the trace id, it
    /// identifies the parent in a history).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Its event id, when it had one made before this event was emitted
    /// (it always has when a history, a test recorder, a stream or a bridge
    /// sees it, or a handler asked for it).
    pub fn event_id(&self) -> Option<EventId> {
        self.event_id
    }

    /// The handler whose call emitted this event (`None` when the parent's
    /// emit itself did, outside its handlers: a recorder).
    pub fn handler(&self) -> Option<&str> {
        self.handler.as_deref()
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} #{}", self.event, self.sequence)?;
        if let Some(handler) = &self.handler {
            write!(f, " in {handler}")?;
        }
        Ok(())
    }
}

/// Everything known about one event besides its fields, owned: what its
/// handlers saw in their [`EventContext`](crate::EventContext), kept.
///
/// Streams deliver it with the event, the test recorder and the history
/// keep it with the event's JSON, JSON Lines files write it, and bridges
/// carry it to other processes.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub(crate) name: &'static str,
    pub(crate) event_id: EventId,
    pub(crate) trace_id: TraceId,
    pub(crate) sequence: u64,
    pub(crate) source: Cow<'static, str>,
    pub(crate) metadata: Metadata,
    pub(crate) timestamp: SystemTime,
    pub(crate) depth: u32,
    pub(crate) replay: bool,
    pub(crate) remote: Option<Box<str>>,
    /// Boxed: most events are roots, and an envelope stays small.
    pub(crate) cause: Option<Box<Cause>>,
}

impl Envelope {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The event's id (see [`EventContext::event_id`](crate::EventContext::event_id)).
    pub fn event_id(&self) -> EventId {
        self.event_id
    }

    /// See [`EventContext::trace_id`](crate::EventContext::trace_id).
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// See [`EventContext::sequence`](crate::EventContext::sequence).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// See [`EventContext::source`](crate::EventContext::source).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// See [`EventContext::metadata`](crate::EventContext::metadata).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// See [`EventContext::timestamp`](crate::EventContext::timestamp).
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// See [`EventContext::depth`](crate::EventContext::depth).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// See [`EventContext::is_replay`](crate::EventContext::is_replay).
    pub fn is_replay(&self) -> bool {
        self.replay
    }

    /// See [`EventContext::remote`](crate::EventContext::remote).
    pub fn remote(&self) -> Option<&str> {
        self.remote.as_deref()
    }

    /// See [`EventContext::cause`](crate::EventContext::cause).
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_deref()
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("name", &self.name)
            .field("event_id", &self.event_id)
            .field("trace_id", &self.trace_id)
            .field("sequence", &self.sequence)
            .field("source", &self.source)
            .field("metadata", &self.metadata)
            .field("timestamp", &self.timestamp)
            .field("depth", &self.depth)
            .field("replay", &self.replay)
            .field("remote", &self.remote)
            .field("cause", &self.cause)
            .finish()
    }
}

/// String key/value pairs attached to one emit (request ids, user names...).
///
/// Keys are unique (inserting an existing key replaces its value) and keep
/// insertion order. An empty `Metadata` does not allocate.
///
/// ```
/// use sbox_events::Metadata;
///
/// let mut meta = Metadata::new();
/// meta.insert("user", "alice");
/// meta.insert("request", String::from("r-17"));
/// meta.insert("user", "bob");
/// assert_eq!(meta.get("user"), Some("bob"));
/// assert_eq!(meta.len(), 2);
/// ```
#[derive(Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(Cow<'static, str>, Cow<'static, str>)>,
}

impl Clone for Metadata {
    /// Copies the entries; no work at all for the usual empty metadata.
    #[inline]
    fn clone(&self) -> Metadata {
        if self.entries.is_empty() {
            return Metadata::new();
        }
        Metadata {
            entries: self.entries.clone(),
        }
    }
}

impl Metadata {
    /// No entries.
    pub const fn new() -> Metadata {
        Metadata {
            entries: Vec::new(),
        }
    }

    /// Sets `key` to `value`, replacing an earlier value of the same key.
    pub fn insert(
        &mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
        self
    }

    /// Builds metadata from pairs in one pass: keys keep the order of their
    /// first occurrence and take the value of their last, as repeated
    /// [`insert`](Metadata::insert)s would give, in time linear in the
    /// number of pairs (`insert` alone is linear per call, which is right
    /// for the handful of entries an emit carries but not for imported
    /// records with thousands of keys).
    fn from_pairs(pairs: Vec<(Cow<'static, str>, Cow<'static, str>)>) -> Metadata {
        if pairs.len() <= 8 {
            let mut meta = Metadata::new();
            for (k, v) in pairs {
                meta.insert(k, v);
            }
            return meta;
        }
        // (first occurrence, last occurrence) of each key, in first order.
        let plan: Vec<(usize, usize)> = {
            let mut last = std::collections::HashMap::with_capacity(pairs.len());
            for (i, (k, _)) in pairs.iter().enumerate() {
                last.insert(k.as_ref(), i);
            }
            let mut plan = Vec::with_capacity(last.len());
            for (i, (k, _)) in pairs.iter().enumerate() {
                if let Some(j) = last.remove(k.as_ref()) {
                    plan.push((i, j));
                }
            }
            plan
        };
        let mut slots: Vec<Option<(Cow<'static, str>, Cow<'static, str>)>> =
            pairs.into_iter().map(Some).collect();
        let entries = plan
            .into_iter()
            .filter_map(|(first, last)| {
                let (key, value) = slots[first].take()?;
                let value = match slots.get_mut(last).and_then(Option::take) {
                    Some((_, later)) => later,
                    None => value,
                };
                Some((key, value))
            })
            .collect();
        Metadata { entries }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes this value owns on the heap (for the history's accounting).
    #[cfg_attr(not(feature = "history"), allow(dead_code))]
    pub(crate) fn heap_bytes(&self) -> usize {
        let owned = |s: &Cow<'static, str>| match s {
            Cow::Owned(s) => s.capacity(),
            Cow::Borrowed(_) => 0,
        };
        self.entries.capacity() * std::mem::size_of::<(Cow<'static, str>, Cow<'static, str>)>()
            + self
                .entries
                .iter()
                .map(|(k, v)| owned(k) + owned(v))
                .sum::<usize>()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V> FromIterator<(K, V)> for Metadata
where
    K: Into<Cow<'static, str>>,
    V: Into<Cow<'static, str>>,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Metadata {
        Metadata::from_pairs(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl serde::Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Metadata, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of string keys to string values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Metadata, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    pairs.push((Cow::Owned(k), Cow::Owned(v)));
                }
                Ok(Metadata::from_pairs(pairs))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}
