//! Selecting records: [`HistoryQuery`].

use super::RecordedEvent;
use crate::any::EventSelector;
use crate::trace::TraceId;
use std::time::SystemTime;

/// Which records a [`History::query`](super::History::query) returns; all criteria must hold.
///
/// ```
/// use sbox_events::history::HistoryQuery;
/// use sbox_events::EventSelector;
/// use std::time::{Duration, SystemTime};
///
/// let recent_failures = HistoryQuery::new()
///     .events(EventSelector::pattern("*.failed")?)
///     .since(SystemTime::now() - Duration::from_secs(3600));
/// # let _ = recent_failures;
/// # Ok::<(), sbox_events::SelectorError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct HistoryQuery {
    events: Option<EventSelector>,
    trace_id: Option<TraceId>,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

impl HistoryQuery {
    /// Every record.
    pub fn new() -> Self {
        HistoryQuery::default()
    }

    /// Only these event names or patterns.
    pub fn events(mut self, selector: EventSelector) -> Self {
        self.events = Some(selector);
        self
    }

    /// Only this trace.
    pub fn trace_id(mut self, trace_id: TraceId) -> Self {
        self.trace_id = Some(trace_id);
        self
    }

    /// Only records at or after this time.
    pub fn since(mut self, time: SystemTime) -> Self {
        self.since = Some(time);
        self
    }

    /// Only records before this time.
    pub fn until(mut self, time: SystemTime) -> Self {
        self.until = Some(time);
        self
    }

    /// Whether `record` is selected.
    pub fn matches(&self, record: &RecordedEvent) -> bool {
        let envelope = &record.envelope;
        self.matches_parts(record.name(), envelope.trace_id, envelope.timestamp)
    }

    /// Whether the record of an event with this name, trace and timestamp
    /// is selected.
    pub(crate) fn matches_parts(
        &self,
        name: &str,
        trace_id: TraceId,
        timestamp: SystemTime,
    ) -> bool {
        self.events.as_ref().is_none_or(|s| s.matches(name))
            && self.trace_id.is_none_or(|t| t == trace_id)
            && self.since.is_none_or(|t| timestamp >= t)
            && self.until.is_none_or(|t| timestamp < t)
    }
}
