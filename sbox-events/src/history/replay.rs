//! Replaying recorded events on a bus: [`EventBus::replay`].

use super::RecordedEvent;
use crate::bus::{EmitReport, EventBus, Given, JsonRecord, ReplayScope, hooks_of};
use crate::escape::LogSafe;
use crate::trace;
use std::fmt;

impl EventBus {
    /// Re-dispatches recorded (or imported) events to the current handlers,
    /// in the order given, each in its original trace and with its original
    /// timestamp, sequence number, source and metadata;
    /// [`EventContext::is_replay`](crate::EventContext::is_replay) is true for them and for anything their
    /// handlers emit. Replays are not recorded in this bus's history unless
    /// it was built with [`record_replays`](crate::EventBusBuilder::record_replays).
    ///
    /// Replay is synchronous: async handlers are skipped and listed in each
    /// report's [`skipped`](EmitReport::skipped), as with
    /// [`emit`](EventBus::emit).
    ///
    /// ```
    /// use sbox_events::events::ConfigExported;
    /// use sbox_events::history::HistoryQuery;
    /// use sbox_events::{EventBus, EventContext};
    ///
    /// let bus = EventBus::builder().history(1 << 20).build()?;
    /// let report = bus.emit(ConfigExported { path: "a.json".into(), export_format: "sing-box".into(), file_size: 1 });
    /// let _debug = bus.subscribe(|e: &ConfigExported, ctx: &EventContext| {
    ///     assert!(ctx.is_replay());
    ///     println!("replaying {} from trace {}", e.path, ctx.trace_id());
    /// });
    /// let history = bus.history().expect("enabled");
    /// let records = history.query(&HistoryQuery::new().trace_id(report.trace_id()));
    /// let replayed = bus.replay(&records);
    /// assert!(replayed.is_ok());
    /// assert_eq!(replayed.reports()[0].trace_id(), report.trace_id());
    /// assert_eq!(history.stats().entries, 1, "the replay was not recorded");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replay<'a>(&self, records: impl IntoIterator<Item = &'a RecordedEvent>) -> ReplayReport {
        let _replaying = ReplayScope::enter();
        let mut report = ReplayReport::default();
        for record in records {
            let envelope = record.envelope();
            let result = match hooks_of(record.event_type()) {
                Some(hooks) => trace::with_trace_id(envelope.trace_id(), || {
                    let event = JsonRecord {
                        json: record.data(),
                        given: Given {
                            source: envelope.source(),
                            metadata: envelope.metadata(),
                            timestamp: Some(envelope.timestamp()),
                            replayed: Some(envelope.sequence()),
                            trace_id: None,
                            event_id: Some(envelope.event_id()),
                            remote: envelope.remote(),
                            cause: Some(envelope.cause()),
                        },
                    };
                    (hooks.dispatch_json)(self, &event)
                }),
                None => Err("its event type is not linked into this binary".to_owned()),
            };
            match result {
                Ok(emitted) => report.reports.push(emitted),
                Err(message) => report.errors.push(ReplayError {
                    event: record.name(),
                    sequence: envelope.sequence(),
                    message,
                }),
            }
        }
        report
    }
}

/// What [`EventBus::replay`] did.
#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    reports: Vec<EmitReport>,
    errors: Vec<ReplayError>,
}

impl ReplayReport {
    /// One report per replayed event, in order.
    pub fn reports(&self) -> &[EmitReport] {
        &self.reports
    }

    /// Records that could not be turned back into their event type.
    pub fn errors(&self) -> &[ReplayError] {
        &self.errors
    }

    /// Every record replayed, and every emit ok.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty() && self.reports.iter().all(EmitReport::is_ok)
    }
}

/// A record that could not be replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayError {
    event: &'static str,
    sequence: u64,
    message: String,
}

impl ReplayError {
    /// The record's event name.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// The record's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Why it could not be replayed, as written (it may quote the record;
    /// the error's `Display` escapes it).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message is the record's `Deserialize`'s: it may quote the
        // record.
        write!(
            f,
            "cannot replay `{}` #{}: {}",
            self.event,
            self.sequence,
            LogSafe(&self.message)
        )
    }
}

impl std::error::Error for ReplayError {}
