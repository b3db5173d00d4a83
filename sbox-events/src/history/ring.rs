//! The bounded ring of records: [`History`], its byte accounting, and how it
//! plugs into a bus as its recorder.

use super::record::{self, NotRecorded};
use super::{HistoryQuery, MAX_HISTORY_BYTES, RecordedEvent, TraceTree, export_jsonl};
use crate::any::AnyEvent;
use crate::bus::{EventBus, EventBusBuilder, Recorder};
use crate::context::EventContext;
use crate::flight::HandlerRun;
use crate::handler::HandlerError;
use crate::trace::TraceId;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::mem::size_of;
use std::sync::{Arc, Mutex, PoisonError};

/// The bounded history of one bus; see the [module docs](crate::history).
pub struct History {
    cap: usize,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<RecordedEvent>,
    heap_bytes: usize,
    recorded: u64,
    evicted: u64,
    oversized: u64,
    unserializable: u64,
}

const SLOT: usize = size_of::<RecordedEvent>();

impl Ring {
    fn bytes(&self) -> usize {
        self.entries.capacity() * SLOT + self.heap_bytes
    }

    fn pop_oldest(&mut self) -> bool {
        match self.entries.pop_front() {
            Some(old) => {
                self.heap_bytes -= old.heap_bytes();
                self.evicted += 1;
                true
            }
            None => false,
        }
    }
}

/// Counters of a [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HistoryStats {
    /// Records held now.
    pub entries: usize,
    /// Bytes held now (slots plus heap data), at most `capacity_bytes`.
    pub bytes: usize,
    /// The budget.
    pub capacity_bytes: usize,
    /// Records ever added.
    pub recorded: u64,
    /// Records evicted to make room.
    pub evicted: u64,
    /// Records not kept because they alone exceed the budget.
    pub oversized: u64,
    /// Events not kept because their `Serialize` failed or panicked (each
    /// also reported in its emit's
    /// [`EmitReport::not_recorded`](crate::EmitReport::not_recorded)).
    pub unserializable: u64,
}

impl History {
    pub(crate) fn new(cap: usize) -> History {
        History {
            cap: cap.min(MAX_HISTORY_BYTES),
            ring: Mutex::new(Ring::default()),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most JSON bytes one record's data may take: past this it could
    /// not be kept even alone, so serialization stops there.
    pub(crate) fn data_limit(&self) -> usize {
        self.cap.saturating_sub(SLOT)
    }

    /// Counts a record that was not kept because it exceeds the budget.
    pub(crate) fn push_oversized(&self) {
        let mut ring = self.ring();
        ring.recorded += 1;
        ring.oversized += 1;
    }

    pub(crate) fn push(&self, record: RecordedEvent) {
        let size = record.heap_bytes();
        let mut ring = self.ring();
        ring.recorded += 1;
        if size + SLOT > self.cap {
            ring.oversized += 1;
            return;
        }
        if ring.entries.len() == ring.entries.capacity() {
            // Grow the slot array only as far as it fits beside the data
            // already held and the new record; otherwise reuse a slot.
            let len = ring.entries.len();
            let room = self.cap.saturating_sub(ring.heap_bytes + size) / SLOT;
            let target = (len * 2).max(16).min(room);
            if target > len {
                ring.entries.reserve_exact(target - len);
            } else {
                ring.pop_oldest();
            }
        }
        ring.heap_bytes += size;
        ring.entries.push_back(record);
        while ring.bytes() > self.cap {
            if ring.entries.len() > 1 {
                ring.pop_oldest();
            } else {
                // Only the new record is left and the slot array is too big
                // for it: give the array back (the record alone fits).
                ring.entries.shrink_to_fit();
                break;
            }
        }
    }

    /// The records matching `query`, oldest first.
    pub fn query(&self, query: &HistoryQuery) -> Vec<RecordedEvent> {
        self.ring()
            .entries
            .iter()
            .filter(|r| query.matches(r))
            .cloned()
            .collect()
    }

    /// The causal tree of the trace `trace_id` among the records held now
    /// (see [`TraceTree`]).
    pub fn tree(&self, trace_id: TraceId) -> TraceTree {
        let ring = self.ring();
        let records: Vec<RecordedEvent> = ring
            .entries
            .iter()
            .filter(|r| r.envelope.trace_id == trace_id)
            .cloned()
            .collect();
        drop(ring);
        TraceTree::from_records(&records, trace_id)
    }

    /// Counters and current size.
    pub fn stats(&self) -> HistoryStats {
        let ring = self.ring();
        HistoryStats {
            entries: ring.entries.len(),
            bytes: ring.bytes(),
            capacity_bytes: self.cap,
            recorded: ring.recorded,
            evicted: ring.evicted,
            oversized: ring.oversized,
            unserializable: ring.unserializable,
        }
    }

    /// Forgets every record and frees their memory (counters are kept).
    pub fn clear(&self) {
        let mut ring = self.ring();
        ring.entries = VecDeque::new();
        ring.heap_bytes = 0;
    }

    /// Writes the records matching `query` as JSON Lines; returns how many.
    pub fn export_jsonl(&self, query: &HistoryQuery, out: impl Write) -> io::Result<usize> {
        export_jsonl(&self.query(query), out)
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Recorder for History {
    fn name(&self) -> &'static str {
        "sbox_events::history"
    }

    fn record(&self, event: &AnyEvent<'_>, ctx: &EventContext<'_>) -> Result<(), HandlerError> {
        // Counted as unserializable unless recording gets through the
        // event's `Serialize` (which may panic: the bus catches it, this
        // guard's drop still counts it).
        let unserializable = CountUnserializable(self);
        let record = record::record(event, self.data_limit(), ctx);
        match record {
            Ok(record) => {
                std::mem::forget(unserializable);
                self.push(record);
                Ok(())
            }
            Err(NotRecorded::Oversized) => {
                std::mem::forget(unserializable);
                self.push_oversized();
                Ok(())
            }
            Err(NotRecorded::Serialize(message)) => {
                drop(unserializable);
                Err(HandlerError::new(message, "serde_json::Error"))
            }
        }
    }

    fn handlers_ran(&self, ctx: &EventContext<'_>, mut runs: Vec<HandlerRun>) {
        if runs.is_empty() {
            return;
        }
        runs.shrink_to_fit();
        let added = record::runs_bytes(&runs);
        let mut ring = self.ring();
        // The event's record: behind it only what its handlers emitted.
        let Some(at) = ring.entries.iter().rposition(|r| {
            r.envelope.sequence == ctx.sequence && r.envelope.trace_id == ctx.trace_id
        }) else {
            return; // not kept (too large), or evicted already
        };
        let old = record::runs_bytes(&ring.entries[at].handlers);
        if ring.entries[at].heap_bytes() - old + added + SLOT > self.cap {
            return; // the record alone would not fit with them
        }
        ring.entries[at].handlers = runs;
        ring.heap_bytes = ring.heap_bytes - old + added;
        while ring.bytes() > self.cap {
            if ring.entries.len() > 1 {
                ring.pop_oldest();
            } else {
                // As in `push`: the record alone fits, the slot array
                // beside it did not.
                ring.entries.shrink_to_fit();
                break;
            }
        }
    }
}

/// Counts one event that could not be serialized, when dropped.
struct CountUnserializable<'a>(&'a History);

impl Drop for CountUnserializable<'_> {
    fn drop(&mut self) {
        let mut ring = self.0.ring();
        ring.recorded += 1;
        ring.unserializable += 1;
    }
}

impl EventBusBuilder {
    /// Keep a history of emitted events, bounded to `bytes` (clamped to
    /// [`MAX_HISTORY_BYTES`]); see [`crate::history`] for what is counted
    /// and what it costs. Off by default;
    /// [`DEFAULT_HISTORY_BYTES`](super::DEFAULT_HISTORY_BYTES) is a good
    /// size. The history records through the bus's recorder hook: it sees
    /// each event before its handlers, with the timestamp they see.
    pub fn history(self, bytes: usize) -> Self {
        self.recorder(Arc::new(History::new(bytes)))
    }
}

impl EventBusBuilder {
    /// With the [history](EventBusBuilder::history) on, also keep how each
    /// handler went with each event (default `false`): its outcome (ok,
    /// error or panic with its message, skipped, filtered), when it started,
    /// how long it took and on which thread
    /// ([`RecordedEvent::handlers`], [`HandlerRun`]). That is what
    /// [`History::tree`] shows, and what its Chrome trace draws.
    ///
    /// Costs, per emit, one branch when off. When on: two clock reads per
    /// event and per handler call and a look at the thread's name; the
    /// event's runs in one vector (grown as handlers run, then trimmed),
    /// one allocation per run for the handler's name and one for an error's
    /// message or skip reason; and the history's lock once more to attach
    /// them, finding the event's record by searching back from the newest
    /// (past the events its handlers emitted). Runs count against the
    /// history's byte cap. Runs that ended are kept also when the emit
    /// unwinds (`FailurePolicy::Propagate`) or its `emit_async` future is
    /// dropped. Without a history it records nothing.
    pub fn flight_recorder(self, enabled: bool) -> Self {
        self.set_flight_recorder(enabled)
    }
}

impl EventBus {
    /// This bus's event history, if it was built with
    /// [`history`](EventBusBuilder::history).
    pub fn history(&self) -> Option<&History> {
        let recorder: &dyn std::any::Any = &**self.recorder()?;
        recorder.downcast_ref::<History>()
    }
}
