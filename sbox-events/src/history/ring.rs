//! The bounded ring of records: [`History`], its byte accounting, and how it
//! plugs into a bus as its recorder.

use super::bytes::Bytes;
use super::record::{self, NotRecorded};
use super::slot::Slot;
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
    /// One slot per record, oldest first.
    entries: VecDeque<Slot>,
    /// The records' JSON, in the same order.
    data: Bytes,
    /// Heap bytes the slots own besides (sources, metadata, causes, runs).
    heap_bytes: usize,
    recorded: u64,
    evicted: u64,
    oversized: u64,
    unserializable: u64,
}

const SLOT: usize = size_of::<Slot>();

/// The bytes' first allocation, unless the budget is smaller, and the
/// least they shrink to when mostly free beside a full slot array.
const MIN_BYTES: usize = 4096;

/// The slot array's first allocation, unless the budget is smaller, and
/// the least it shrinks to when mostly empty beside full bytes.
const MIN_SLOTS: usize = 16;

impl Ring {
    fn bytes(&self) -> usize {
        self.entries.capacity() * SLOT + self.data.capacity() + self.heap_bytes
    }

    fn pop_oldest(&mut self) -> bool {
        match self.entries.pop_front() {
            Some(old) => {
                self.heap_bytes -= old.heap;
                self.data.pop(old.data_len);
                self.evicted += 1;
                true
            }
            None => false,
        }
    }

    /// The record `slot` holds, as an owned value.
    fn record(&self, slot: &Slot) -> RecordedEvent {
        let (head, tail) = self.data.span(slot.data_at, slot.data_len);
        let data = String::from_utf8([head, tail].concat())
            // serde_json writes UTF-8 only: not reached.
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned());
        RecordedEvent {
            event_type: slot.event_type,
            envelope: slot.envelope(),
            data: data.into_boxed_str(),
            handlers: slot.handlers().to_vec(),
        }
    }

    /// After the budget shrank the room of a ring holding one record: the
    /// slot array and the bytes at that record's size.
    fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        self.data.reallocate(self.data.len());
    }

    /// Brings the ring within `cap` bytes, giving back unused capacity
    /// first: evicting a record that owns no heap frees nothing the budget
    /// counts, only room in the slot array and the bytes. That room is
    /// given back (from the bytes first, then the slot array) once there is
    /// enough of it: the overrun, and at least `reserve` (each shrink copies
    /// what is held, so a shrink makes room for the next records' heap too;
    /// the records evicted for it are at most about a `reserve` of the
    /// budget more than the overrun needed). The newest record alone
    /// always fits.
    fn fit(&mut self, cap: usize, reserve: usize) {
        while self.bytes() > cap {
            if self.entries.len() <= 1 {
                // Only the newest record is left and the slot array or the
                // bytes are too big beside it: give the rest back.
                self.shrink_to_fit();
                break;
            }
            let give = (self.bytes() - cap).max(reserve);
            let spare_slots = self.entries.capacity() - self.entries.len();
            if self.data.free() + spare_slots * SLOT < give {
                self.pop_oldest();
                continue;
            }
            let from_bytes = self.data.free().min(give);
            if from_bytes > 0 {
                self.data.reallocate(self.data.capacity() - from_bytes);
            }
            let from_slots = (give - from_bytes).div_ceil(SLOT);
            if from_slots > 0 {
                let capacity = self.entries.capacity() - from_slots;
                self.entries.shrink_to(capacity);
            }
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
    /// Events not kept because their `Serialize` failed or panicked, or
    /// they held a NaN or infinite float (each also reported in its emit's
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

    /// The part of the budget capacity does not grow into: what records'
    /// heap takes first (a thirty-second of the budget).
    fn reserve(&self) -> usize {
        self.cap / 32
    }

    /// Counts a record that was not kept because it exceeds the budget.
    pub(crate) fn push_oversized(&self) {
        let mut ring = self.ring();
        ring.recorded += 1;
        ring.oversized += 1;
    }

    /// Keeps the record of an event whose JSON is `json`, evicting the
    /// oldest records as needed to stay within the budget.
    fn push(&self, mut slot: Slot, json: &[u8]) {
        let (n, heap) = (json.len(), slot.heap);
        let mut ring = self.ring();
        ring.recorded += 1;
        if SLOT + n + heap > self.cap {
            ring.oversized += 1;
            return;
        }
        // Capacity grows only into the budget less a reserve, which the
        // heap of later records (a source, metadata, a cause, handler runs)
        // takes first, so that such a record does not evict records whose
        // room stays allocated; and only by a real step (doubling, or at
        // least half the reserve), since each growth copies what is held.
        let reserve = self.reserve();
        let step = reserve / 2;
        // Room for the JSON: grow the bytes, or evict.
        while ring.data.free() < n {
            let room = self
                .cap
                .saturating_sub(ring.entries.capacity() * SLOT + ring.heap_bytes + heap + reserve);
            let (held, need) = (ring.data.capacity(), ring.data.len() + n);
            if room >= need && (room >= 2 * held || room - held >= step) {
                let grown = (2 * held).max(need).max(MIN_BYTES);
                ring.data.reallocate(grown.min(room));
            } else if ring.entries.capacity() > 4 * ring.entries.len().max(MIN_SLOTS) {
                // The slot array is mostly empty (the records grew larger):
                // give the room to the bytes.
                let len = ring.entries.len();
                ring.entries.shrink_to((2 * len).max(MIN_SLOTS));
            } else if !ring.pop_oldest() {
                // Nothing left to evict, and the slot array leaves too
                // little room: give it back (the record alone fits).
                ring.entries = VecDeque::new();
                ring.data.reallocate(n);
            }
        }
        // Room for the slot: grow the array, or reuse the oldest slot.
        if ring.entries.len() == ring.entries.capacity() {
            let len = ring.entries.len();
            let target = |ring: &Ring| {
                let room = self
                    .cap
                    .saturating_sub(ring.heap_bytes + heap + ring.data.capacity() + reserve)
                    / SLOT;
                let target = (2 * len).max(MIN_SLOTS).min(room);
                // A real step only (see above).
                if target >= 2 * len || target.saturating_sub(len) * SLOT >= step {
                    target
                } else {
                    len
                }
            };
            let mut grown = target(&ring);
            let held = ring.data.len() + n;
            if grown <= len && ring.data.capacity() > 4 * held.max(MIN_BYTES) {
                // The bytes are mostly free (the records grew smaller):
                // give the room to the slot array.
                ring.data.reallocate((2 * held).max(MIN_BYTES));
                grown = target(&ring);
            }
            if grown > len {
                ring.entries.reserve_exact(grown - len);
            } else if !ring.pop_oldest() {
                ring.entries.reserve_exact(1);
            }
        }
        slot.data_at = ring.data.push(json);
        ring.heap_bytes += heap;
        ring.entries.push_back(slot);
        ring.fit(self.cap, reserve);
    }

    /// The records matching `query`, oldest first.
    pub fn query(&self, query: &HistoryQuery) -> Vec<RecordedEvent> {
        let ring = self.ring();
        ring.entries
            .iter()
            .filter(|slot| {
                query.matches_parts(slot.event_type.name(), slot.trace_id, slot.timestamp)
            })
            .map(|slot| ring.record(slot))
            .collect()
    }

    /// The causal tree of the trace `trace_id` among the records held now
    /// (see [`TraceTree`]).
    pub fn tree(&self, trace_id: TraceId) -> TraceTree {
        let records = self.query(&HistoryQuery::new().trace_id(trace_id));
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
        ring.data.clear();
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
        let pushed = record::with_json(event, self.data_limit(), |json| {
            self.push(Slot::of(event.event_type(), ctx, json.len()), json);
        });
        match pushed {
            Ok(()) => {
                std::mem::forget(unserializable);
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
        let trace_id = ctx.trace_id();
        let mut ring = self.ring();
        // The event's record: behind it only what its handlers emitted.
        let Some(at) = ring
            .entries
            .iter()
            .rposition(|slot| slot.sequence == ctx.sequence && slot.trace_id == trace_id)
        else {
            return; // not kept (too large), or evicted already
        };
        let slot = &ring.entries[at];
        let (old, new) = (slot.heap, slot.heap_with(&runs));
        if new + slot.data_len + SLOT > self.cap {
            return; // the record alone would not fit with them
        }
        ring.entries[at].set_handlers(runs);
        ring.heap_bytes = ring.heap_bytes - old + new;
        ring.fit(self.cap, self.reserve());
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
