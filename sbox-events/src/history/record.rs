//! One recorded (or imported) event: [`RecordedEvent`], and how an event
//! being emitted becomes one (serialization that stops at the budget).

use crate::any::{AnyEvent, EventType};
use crate::envelope::Envelope;
use crate::event::{Event, JsonBuffer};
use crate::flight::HandlerRun;
use crate::jsonl::Line;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cell::{RefCell, RefMut};
use std::fmt;

/// One recorded (or imported) event: its [`Envelope`] and its fields as
/// JSON.
#[derive(Clone, PartialEq)]
pub struct RecordedEvent {
    pub(crate) event_type: EventType,
    pub(crate) envelope: Envelope,
    /// The event's fields as JSON (produced by serde_json, or checked by
    /// it on import).
    pub(crate) data: Box<str>,
    /// Its handlers' runs (with the flight recorder on).
    pub(crate) handlers: Vec<HandlerRun>,
}

impl RecordedEvent {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        self.event_type.name()
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// Its envelope: ids, trace, sequence, source, metadata, timestamp.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Its fields, as JSON text.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// How each of its handlers went, in the order they ran: kept when the
    /// bus's [flight recorder](crate::EventBusBuilder::flight_recorder) is
    /// on (empty otherwise, and for an event still being handled).
    pub fn handlers(&self) -> &[HandlerRun] {
        &self.handlers
    }

    /// The typed event, if it is an `E`.
    pub fn to_event<E: Event>(&self) -> Option<Result<E, serde_json::Error>> {
        (self.event_type == EventType::of::<E>()).then(|| serde_json::from_str(&self.data))
    }

    /// The record as a JSON Lines line (fails for a timestamp RFC 3339
    /// cannot write).
    pub(crate) fn line(&self) -> std::io::Result<Line<'_, &RawValue>> {
        let data = serde_json::from_str(&self.data)?;
        let mut line = Line::of(&self.envelope, self.event_type.fingerprint(), false, data)?;
        if !self.handlers.is_empty() {
            line.handlers = Some(Cow::Borrowed(&self.handlers));
        }
        Ok(line)
    }
}

impl fmt::Debug for RecordedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("RecordedEvent");
        f.field("envelope", &self.envelope)
            .field("data", &&*self.data);
        if !self.handlers.is_empty() {
            f.field("handlers", &self.handlers);
        }
        f.finish()
    }
}

/// Heap bytes of handler runs: the array, and each run's text (a thread's
/// name is shared, not counted).
pub(crate) fn runs_bytes(runs: &[HandlerRun]) -> usize {
    let text = |run: &HandlerRun| {
        let handler = match &run.handler {
            Cow::Owned(name) => name.capacity(),
            Cow::Borrowed(_) => 0,
        };
        // Messages are made to measure (`shrink_to_fit`); a thread name is
        // shared with its thread, but counted: it may outlive the thread.
        handler
            + run.outcome.message().map_or(0, str::len)
            + run.thread_name.as_deref().map_or(0, str::len)
    };
    std::mem::size_of_val(runs) + runs.iter().map(text).sum::<usize>()
}

/// The record's source: borrowed (no heap bytes) when it is the default.
pub(crate) fn source_of(source: &str, default: &'static str) -> Cow<'static, str> {
    if source == default {
        Cow::Borrowed(default)
    } else {
        Cow::Owned(source.to_owned())
    }
}

/// Why an event being emitted was not recorded.
pub(crate) enum NotRecorded {
    /// Its JSON exceeds the limit (serialization stopped there).
    Oversized,
    /// It could not be serialized: what serde said.
    Serialize(String),
}

thread_local! {
    /// Where events are serialized before the history copies their JSON
    /// into its ring: reused, so recording allocates nothing once it has
    /// grown to the largest event's size (up to [`SCRATCH_KEPT`]; a larger
    /// buffer is freed after use).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The scratch buffer, borrowed: freed on the way out if it grew past
/// [`SCRATCH_KEPT`], also when the event's `Serialize` panics.
struct Scratch<'a>(RefMut<'a, Vec<u8>>);

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        if self.0.capacity() > SCRATCH_KEPT {
            *self.0 = Vec::new();
        }
    }
}

/// A scratch buffer larger than this is freed after use rather than kept.
const SCRATCH_KEPT: usize = 64 * 1024;

/// Serializes an event being emitted now and gives its JSON to `keep`,
/// unless it is longer than `limit` bytes: serialization stops as soon as
/// it is, so a huge event costs at most `limit` bytes to refuse.
pub(crate) fn with_json<R>(
    event: &AnyEvent<'_>,
    limit: usize,
    keep: impl FnOnce(&[u8]) -> R,
) -> Result<R, NotRecorded> {
    let mut keep = Some(keep);
    let mut into = |buf: &mut Vec<u8>| {
        buf.clear();
        match event.write_json(&mut JsonBuffer { buf, limit }) {
            // Called once: `try_with` ran it, or it did not and its
            // fallback does.
            Ok(()) => Ok(keep.take().map(|keep| keep(buf))),
            Err(err) if err.is_io() => Err(NotRecorded::Oversized),
            Err(err) => Err(NotRecorded::Serialize(err.to_string())),
        }
    };
    SCRATCH
        .try_with(|scratch| match scratch.try_borrow_mut() {
            Ok(buf) => into(&mut Scratch(buf).0),
            // An event whose `Serialize` emits (and so records) in turn.
            Err(_) => into(&mut Vec::new()),
        })
        // The thread is exiting and its scratch buffer is gone.
        .unwrap_or_else(|_| into(&mut Vec::new()))
        .map(|kept| kept.expect("serialized once"))
}
