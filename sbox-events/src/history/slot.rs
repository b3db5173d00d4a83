//! A record as the history's ring keeps it: [`Slot`], small (112 bytes on
//! 64-bit Linux, where an [`Envelope`] alone takes more), so that
//! recording moves and evicts little memory. Its JSON lives in the ring's
//! bytes; what most records lack (an owned source, metadata, a remote mark,
//! a cause, handler runs) is boxed apart.

use super::record::runs_bytes;
use crate::any::EventType;
use crate::context::EventContext;
use crate::envelope::{Cause, Envelope, EventId, Metadata};
use crate::flight::HandlerRun;
use crate::trace::TraceId;
use std::borrow::Cow;
use std::time::SystemTime;

pub(super) struct Slot {
    pub(super) event_type: EventType,
    pub(super) event_id: EventId,
    pub(super) trace_id: TraceId,
    pub(super) sequence: u64,
    pub(super) timestamp: SystemTime,
    /// Where its JSON is in the ring's bytes, and its length.
    pub(super) data_at: u64,
    pub(super) data_len: usize,
    /// Heap bytes the slot owns (its `rest`), kept: eviction reads it.
    pub(super) heap: usize,
    depth: u32,
    replay: bool,
    rest: Option<Box<Rest>>,
}

// What the history's docs and README say a slot takes.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
const _: () = assert!(size_of::<Slot>() == 112);

/// The parts of a record that most records lack.
#[derive(Default)]
struct Rest {
    /// `None` for the event type's own source.
    source: Option<Cow<'static, str>>,
    metadata: Metadata,
    remote: Option<Box<str>>,
    cause: Option<Box<Cause>>,
    handlers: Vec<HandlerRun>,
}

impl Slot {
    /// The slot of the event being emitted with context `ctx`, whose JSON
    /// is `data_len` bytes (placed at offset 0 until [`data_at`] is set).
    ///
    /// [`data_at`]: Slot::data_at
    pub(super) fn of(event_type: EventType, ctx: &EventContext<'_>, data_len: usize) -> Slot {
        let default_source =
            std::ptr::eq(ctx.source, ctx.default_source) || ctx.source == ctx.default_source;
        let rest = (!default_source
            || !ctx.metadata.is_empty()
            || ctx.remote.is_some()
            || ctx.has_cause())
        .then(|| {
            Box::new(Rest {
                source: (!default_source).then(|| Cow::Owned(ctx.source.to_owned())),
                metadata: ctx.metadata.clone(),
                remote: ctx.remote.map(Box::from),
                cause: ctx.cause().map(Box::new),
                handlers: Vec::new(),
            })
        });
        Slot {
            event_type,
            event_id: ctx.event_id(),
            trace_id: ctx.trace_id(),
            sequence: ctx.sequence,
            timestamp: ctx.timestamp(),
            data_at: 0,
            data_len,
            heap: rest.as_deref().map_or(0, Rest::boxed_bytes),
            depth: ctx.depth,
            replay: ctx.replay,
            rest,
        }
    }

    /// Its envelope, owned.
    pub(super) fn envelope(&self) -> Envelope {
        let rest = self.rest.as_deref();
        Envelope {
            name: self.event_type.name(),
            event_id: self.event_id,
            trace_id: self.trace_id,
            sequence: self.sequence,
            source: rest
                .and_then(|rest| rest.source.clone())
                .unwrap_or(Cow::Borrowed(self.event_type.source())),
            metadata: rest.map(|rest| rest.metadata.clone()).unwrap_or_default(),
            timestamp: self.timestamp,
            depth: self.depth,
            replay: self.replay,
            remote: rest.and_then(|rest| rest.remote.clone()),
            cause: rest.and_then(|rest| rest.cause.clone()),
        }
    }

    /// How its handlers went (empty unless the flight recorder is on).
    pub(super) fn handlers(&self) -> &[HandlerRun] {
        self.rest.as_deref().map_or(&[], |rest| &rest.handlers)
    }

    /// Heap bytes this slot would own with `runs` as its handlers' runs.
    pub(super) fn heap_with(&self, runs: &[HandlerRun]) -> usize {
        let rest = if self.rest.is_some() {
            0
        } else {
            size_of::<Rest>()
        };
        self.heap + rest + runs_bytes(runs) - runs_bytes(self.handlers())
    }

    /// Keeps `runs` as its handlers' runs; returns the heap bytes it owns
    /// now.
    pub(super) fn set_handlers(&mut self, runs: Vec<HandlerRun>) -> usize {
        self.heap = self.heap_with(&runs);
        self.rest.get_or_insert_default().handlers = runs;
        self.heap
    }
}

impl Rest {
    /// Heap bytes of this rest in a box: the box and what it owns.
    fn boxed_bytes(&self) -> usize {
        let source = match &self.source {
            Some(Cow::Owned(source)) => source.capacity(),
            Some(Cow::Borrowed(_)) | None => 0,
        };
        size_of::<Rest>()
            + source
            + self.metadata.heap_bytes()
            + self.remote.as_ref().map_or(0, |remote| remote.len())
            + self.cause.as_deref().map_or(0, Cause::boxed_bytes)
            + runs_bytes(&self.handlers)
    }
}

#[cfg(all(test, target_os = "linux", target_pointer_width = "64"))]
mod tests {
    #[test]
    fn a_slot_is_smaller_than_an_envelope() {
        assert!(size_of::<crate::envelope::Envelope>() > size_of::<super::Slot>());
    }
}
