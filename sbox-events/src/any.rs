//! Handling events without naming their types: [`EventType`] (one linked
//! event type), [`EventSelector`] (which types a subscription wants) and
//! [`AnyEvent`] (the type-erased view a handler gets).
//!
//! A selector is resolved against the link-time list of event types once,
//! when [`EventBus::subscribe_any`](crate::EventBus::subscribe_any) is called:
//! `emit` never compares names, it just finds the subscription in the event
//! type's route like any other handler. Event types that are linked into the
//! binary but first emitted later are covered too.
//!
//! The list comes from link-time registration (`inventory`): on a platform
//! where that finds nothing (see the crate docs), selectors, name-based
//! audit sets and JSON Lines import find no event types; typed
//! subscriptions still work.

use crate::event::{ErasedEvent, Event, EventVTable, JsonBuffer, all_events};
use crate::handler::HandlerInfo;
use std::any::Any;
use std::collections::BTreeSet;
use std::fmt;

/// One event type linked into the binary.
#[derive(Clone, Copy)]
pub struct EventType(pub(crate) &'static dyn ErasedEvent);

impl EventType {
    /// The type of `E`.
    pub const fn of<E: Event>() -> EventType {
        EventType(EventVTable::<E>::VTABLE)
    }

    /// Every event type linked into the binary, sorted by name (then Rust type).
    pub fn all() -> Vec<EventType> {
        let mut all: Vec<EventType> = all_events().map(EventType).collect();
        all.sort_by_key(|t| (t.name(), t.rust_type()));
        all
    }

    /// The event type with this name, if one is linked.
    pub fn by_name(name: &str) -> Option<EventType> {
        all_events().find(|e| e.name() == name).map(EventType)
    }

    /// `Event::NAME`.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// `Event::SOURCE`.
    pub fn source(self) -> &'static str {
        self.0.source()
    }

    /// `Event::FINGERPRINT`: the schema's fingerprint.
    pub fn fingerprint(self) -> &'static str {
        self.0.fingerprint()
    }

    /// The Rust type, e.g. `sbox_events::events::ConfigBuilt`.
    pub fn rust_type(self) -> &'static str {
        self.0.rust_type()
    }

    /// Its `#[handler]`s, in dispatch order.
    pub fn static_handlers(self) -> Vec<HandlerInfo> {
        self.0.static_handlers()
    }

    pub(crate) fn index(self) -> usize {
        self.0.index()
    }
}

impl PartialEq for EventType {
    fn eq(&self, other: &Self) -> bool {
        self.rust_type() == other.rust_type() && self.name() == other.name()
    }
}

impl Eq for EventType {}

impl std::hash::Hash for EventType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.rust_type(), self.name()).hash(state);
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventType")
            .field("name", &self.name())
            .field("rust_type", &self.rust_type())
            .finish()
    }
}

/// An event seen without its static type, by a
/// [`subscribe_any`](crate::EventBus::subscribe_any) handler.
///
/// ```
/// use sbox_events::events::ConfigExported;
/// use sbox_events::{AnyEvent, EventBus, EventContext, EventSelector};
///
/// let bus = EventBus::builder().static_handlers(false).build()?;
/// let _all = bus.subscribe_any(EventSelector::all(), |event: &AnyEvent, ctx: &EventContext| {
///     let fields = event.to_json().map_err(|e| e.to_string())?;
///     println!("{} [{}] {fields}", event.name(), ctx.trace_id().short());
///     if let Some(exported) = event.downcast_ref::<ConfigExported>() {
///         assert_eq!(exported.file_size, 512);
///     }
///     Ok::<(), String>(())
/// });
/// let report = bus.emit(ConfigExported {
///     path: "config.json".into(),
///     export_format: "sing-box".into(),
///     file_size: 512,
/// });
/// assert!(report.is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct AnyEvent<'a> {
    value: &'a (dyn Any + Send + Sync),
    event_type: EventType,
}

impl<'a> AnyEvent<'a> {
    #[inline]
    pub(crate) fn new<E: Event>(event: &'a E) -> Self {
        AnyEvent {
            value: event,
            event_type: EventType::of::<E>(),
        }
    }

    /// The event's name.
    pub fn name(&self) -> &'static str {
        self.event_type.name()
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The typed event, if it is an `E`.
    pub fn downcast_ref<E: Event>(&self) -> Option<&'a E> {
        self.value.downcast_ref::<E>()
    }

    /// The event's fields as JSON (serialized on each call). A NaN or
    /// infinite float is an error naming its field (JSON has no such
    /// number; it would read back as `null`).
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        self.event_type.0.to_json(self.value)
    }

    /// The event's fields as JSON text (serialized on each call, without an
    /// intermediate value).
    pub fn to_json_string(&self) -> Result<String, serde_json::Error> {
        let mut buf = Vec::new();
        self.write_json(&mut JsonBuffer {
            buf: &mut buf,
            limit: usize::MAX,
        })?;
        // serde_json writes UTF-8 only.
        String::from_utf8(buf).map_err(serde::ser::Error::custom)
    }

    /// Writes the event's fields as JSON (without an intermediate value).
    pub(crate) fn write_json(&self, out: &mut JsonBuffer<'_>) -> serde_json::Result<()> {
        self.event_type.0.write_json(self.value, out)
    }
}

impl fmt::Debug for AnyEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyEvent")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// Which event types a type-erased subscription receives.
///
/// ```
/// use sbox_events::EventSelector;
///
/// let failures = EventSelector::pattern("*.failed")?;
/// assert!(failures.matches("subscription.failed"));
/// assert!(!failures.matches("subscription.processed"));
///
/// let subscription = EventSelector::pattern("subscription.*")?;
/// assert!(subscription.matches("subscription.fetched"));
///
/// let err = EventSelector::pattern("subscription.fetch*").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid event pattern \"subscription.fetch*\": segment \"fetch*\" mixes `*` with \
///      other characters; `*` must be a whole segment"
/// );
/// # Ok::<(), sbox_events::SelectorError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSelector {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    All,
    Names(BTreeSet<String>),
    Patterns(Vec<String>),
}

impl EventSelector {
    /// Every event type.
    pub fn all() -> EventSelector {
        EventSelector { kind: Kind::All }
    }

    /// These exact event names. Each must belong to an event type linked
    /// into the binary, so that a typo is an error rather than silence.
    pub fn names<I, S>(names: I) -> Result<EventSelector, SelectorError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: BTreeSet<String> = names.into_iter().map(Into::into).collect();
        if let Some(unknown) = names.iter().find(|n| EventType::by_name(n).is_none()) {
            return Err(SelectorError {
                what: "event name",
                input: unknown.clone(),
                problem: "no event type with this name is linked into the binary".into(),
            });
        }
        Ok(EventSelector {
            kind: Kind::Names(names),
        })
    }

    /// A pattern over dotted names: `*` alone matches every event; a `*`
    /// segment matches one segment, and a final `*` one or more
    /// (`subscription.*`, `*.failed`, `config.*.done`).
    pub fn pattern(pattern: &str) -> Result<EventSelector, SelectorError> {
        EventSelector::patterns([pattern])
    }

    /// Events matching any of these patterns (see [`pattern`](EventSelector::pattern)).
    pub fn patterns<'p>(
        patterns: impl IntoIterator<Item = &'p str>,
    ) -> Result<EventSelector, SelectorError> {
        let mut all = Vec::new();
        for pattern in patterns {
            validate_pattern(pattern)?;
            all.push(pattern.to_owned());
        }
        Ok(EventSelector {
            kind: Kind::Patterns(all),
        })
    }

    /// Whether an event named `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        match &self.kind {
            Kind::All => true,
            Kind::Names(names) => names.contains(name),
            Kind::Patterns(patterns) => patterns.iter().any(|p| pattern_matches(p, name)),
        }
    }
}

fn validate_pattern(pattern: &str) -> Result<(), SelectorError> {
    let fail = |problem: String| SelectorError {
        what: "event pattern",
        input: pattern.to_owned(),
        problem,
    };
    if pattern.is_empty() {
        return Err(fail("it is empty".into()));
    }
    for segment in pattern.split('.') {
        if segment == "*" {
            continue;
        }
        if segment.is_empty() {
            return Err(fail("it has an empty segment".into()));
        }
        if segment.contains('*') {
            return Err(fail(format!(
                "segment \"{segment}\" mixes `*` with other characters; `*` must be a whole segment"
            )));
        }
        let mut chars = segment.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(fail(format!(
                "segment \"{segment}\" is not `*` or a lowercase name ([a-z][a-z0-9_]*)"
            )));
        }
    }
    Ok(())
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let name: Vec<&str> = name.split('.').collect();
    let last = pattern.len() - 1;
    if pattern[last] == "*" {
        if name.len() < pattern.len() {
            return false;
        }
    } else if name.len() != pattern.len() {
        return false;
    }
    pattern[..last]
        .iter()
        .zip(&name)
        .all(|(p, n)| *p == "*" || p == n)
        && (pattern[last] == "*" || pattern[last] == name[last])
}

/// A malformed pattern or an unknown event name in an [`EventSelector`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    what: &'static str,
    input: String,
    problem: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: {}",
            self.what, self.input, self.problem
        )
    }
}

impl std::error::Error for SelectorError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        let cases = [
            ("*", "a.b", true),
            ("*", "a.b.c", true),
            ("subscription.*", "subscription.fetched", true),
            ("subscription.*", "subscription.v2.fetched", true),
            ("subscription.*", "subscription", false),
            ("subscription.*", "subscriptions.fetched", false),
            ("*.failed", "subscription.failed", true),
            ("*.failed", "a.b.failed", false),
            ("*.failed", "subscription.failed_twice", false),
            ("config.*.done", "config.x.done", true),
            ("config.*.done", "config.x.y.done", false),
            ("config.built", "config.built", true),
            ("config.built", "config.built.more", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                pattern_matches(pattern, name),
                expected,
                "{pattern} vs {name}"
            );
        }
    }

    #[test]
    fn malformed_patterns_say_why() {
        let cases = [
            ("", "it is empty"),
            ("a..b", "it has an empty segment"),
            (
                "Sub.*",
                "segment \"Sub\" is not `*` or a lowercase name ([a-z][a-z0-9_]*)",
            ),
            (
                "a.b-c",
                "segment \"b-c\" is not `*` or a lowercase name ([a-z][a-z0-9_]*)",
            ),
            (
                "**",
                "segment \"**\" mixes `*` with other characters; `*` must be a whole segment",
            ),
        ];
        for (pattern, problem) in cases {
            let err = EventSelector::pattern(pattern).expect_err(pattern);
            assert_eq!(err.problem, problem, "{pattern}");
        }
    }
}
