//! What a handler learns about an event besides its fields: its
//! [`EventContext`] (name, source, trace, sequence, depth, lazy timestamp,
//! replay flag, the bus it runs on) and the [`Metadata`] given with the emit.
//!
//! Cost: a context is built on the emitting thread's stack for each emit;
//! nothing in it allocates, and the clock is read only when asked.

use crate::trace::TraceId;
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Everything a handler knows about an event besides its fields.
///
/// Cheap to build: the trace id and sequence number come from thread-locals,
/// and the timestamp is read from the clock only when someone asks for it
/// (see [`timestamp`](EventContext::timestamp)).
pub struct EventContext<'a> {
    /// The bus, seen from below it: handlers and records take the context
    /// by type, so it cannot name the bus; the bus's own accessor
    /// (`EventContext::bus`) gives it back.
    pub(crate) bus: &'a (dyn Any + Send + Sync),
    pub(crate) name: &'static str,
    pub(crate) source: &'a str,
    pub(crate) metadata: &'a Metadata,
    pub(crate) trace_id: TraceId,
    pub(crate) sequence: u64,
    pub(crate) depth: u32,
    pub(crate) timestamp: OnceLock<SystemTime>,
    pub(crate) replay: bool,
}

impl<'a> EventContext<'a> {
    /// The event's name (`Event::NAME`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Who emitted it: the per-emit source, or `Event::SOURCE`.
    pub fn source(&self) -> &'a str {
        self.source
    }

    /// The trace the event belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The wall-clock time (UTC) of the event.
    ///
    /// Read lazily: the first call during the event's dispatch reads the clock
    /// and every later call (in any handler of this event) returns the same
    /// value. An event whose timestamp nobody asks for costs no clock read.
    /// The value is therefore the time of the first request, which is later
    /// than `emit` by at most the running time of the handlers before it;
    /// a handler that needs emit time exactly runs first (high priority).
    pub fn timestamp(&self) -> SystemTime {
        *self.timestamp.get_or_init(SystemTime::now)
    }

    /// A process-wide sequence number: unique, increasing on each thread,
    /// and higher for a nested event than for the event whose handler
    /// emitted it, also when that handler is an async one that moved to
    /// another thread, and when the parent is a replayed record (whose
    /// original number is kept). Across unrelated threads numbers are unique
    /// but only roughly ordered (threads take them in blocks, to avoid a
    /// shared counter on every emit).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The metadata given with this emit (empty by default).
    pub fn metadata(&self) -> &'a Metadata {
        self.metadata
    }

    /// How deep this event is nested: 0 for an event emitted outside any
    /// handler, 1 for an event emitted by its handler, and so on.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Whether this event is being replayed from history (see
    /// [`EventBus::replay`](crate::EventBus::replay)), or was emitted by a
    /// handler during a replay. A replayed event keeps its original trace
    /// id, timestamp, sequence number, source and metadata.
    pub fn is_replay(&self) -> bool {
        self.replay
    }
}

impl fmt::Debug for EventContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventContext")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("trace_id", &self.trace_id)
            .field("sequence", &self.sequence)
            .field("depth", &self.depth)
            .field("replay", &self.replay)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

// Async handlers hold `&EventContext` across `.await`s, in futures that must
// be `Send`: the context must be `Sync` (hence `OnceLock`, not `OnceCell`).
static_assertions::assert_impl_all!(EventContext<'static>: Send, Sync);

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
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(Cow<'static, str>, Cow<'static, str>)>,
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
