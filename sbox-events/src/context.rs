//! What a handler learns about an event besides its fields: its
//! [`EventContext`] (name, source, trace, sequence, depth, lazy timestamp,
//! replay flag, the bus it runs on) and the [`Metadata`] given with the emit.
//!
//! Cost: a context is built on the emitting thread's stack for each emit;
//! nothing in it allocates, and the clock is read only when asked.

use crate::envelope::{Cause, Envelope, EventId, Metadata};
use crate::trace::{self, Frame, HandlerKey, TraceBits, TraceId};
use std::any::Any;
use std::borrow::Cow;
use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

/// Everything a handler knows about an event besides its fields.
///
/// Cheap to build: the trace id and sequence number come from thread-locals
/// (the id of an implicit trace, one the emit started, is made from the
/// sequence number each time it is read: two multiplications), and the
/// timestamp is read from the clock only when someone asks for it (see
/// [`timestamp`](EventContext::timestamp)).
pub struct EventContext<'a> {
    /// The bus, seen from below it: handlers and records take the context
    /// by type, so it cannot name the bus; the bus's own accessor
    /// (`EventContext::bus`) gives it back.
    pub(crate) bus: &'a (dyn Any + Send + Sync),
    pub(crate) name: &'static str,
    pub(crate) source: &'a str,
    /// `Event::SOURCE`: an envelope borrows it instead of copying `source`
    /// when they are equal.
    pub(crate) default_source: &'static str,
    pub(crate) metadata: &'a Metadata,
    /// All zero: the implicit trace of this event (emitted outside any
    /// trace), whose id is made from `sequence` when read.
    pub(crate) trace_id: TraceBits,
    pub(crate) sequence: u64,
    pub(crate) depth: u32,
    pub(crate) timestamp: Lazy<SystemTime>,
    /// Made on first request (or given: a replayed or remote event keeps
    /// its id).
    pub(crate) event_id: Lazy<EventId>,
    pub(crate) replay: bool,
    /// The sending process's instance, for an event received from another
    /// process (a bridge's mark).
    pub(crate) remote: Option<&'a str>,
    /// What was running when the event was emitted.
    pub(crate) cause: CauseOf<'a>,
}

/// A `Copy` value made on first request, once: the first caller makes it,
/// and a caller that comes while it is being made (a context is shared by
/// the handlers of an async emit, on any thread) waits for it. Like a
/// `OnceLock`, with less to do: making the value takes a load, one
/// compare-exchange and one store (`OnceLock` goes through `Once`'s general
/// state machine, with its queue of parked waiters), and a `Copy` value has
/// no drop.
pub(crate) struct Lazy<T: Copy> {
    state: AtomicU8,
    /// Written once, before `READY` is stored: by the caller that moved
    /// `state` from `EMPTY` to `BUSY`, by a holder of `&mut`
    /// (`get_or_init_mut`, nothing shared), or when it is made (`given`);
    /// read only after `READY` is seen.
    value: UnsafeCell<MaybeUninit<T>>,
}

const EMPTY: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

// SAFETY: `value` is written by one thread only (the one whose
// compare-exchange took `state` from EMPTY to BUSY, the holder of `&mut` in
// `get_or_init_mut`, or `given` as it makes the `Lazy`: nobody else can see
// it then), before READY is published (with release ordering when shared);
// every read happens after an acquire load of READY, so it sees the
// completed write and no write follows. Sharing a `Lazy` therefore shares
// `T` values by copy: `T: Send` is what it needs.
unsafe impl<T: Copy + Send> Sync for Lazy<T> {}

impl<T: Copy> Lazy<T> {
    #[inline]
    pub(crate) const fn new() -> Lazy<T> {
        Lazy {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Made already when `value` is given (a replay's or `EmitOptions`'
    /// timestamp and id), else empty: a plain write, before anyone can see
    /// it.
    #[inline(always)]
    pub(crate) fn given(value: Option<T>) -> Lazy<T> {
        match value {
            Some(value) => Lazy {
                state: AtomicU8::new(READY),
                value: UnsafeCell::new(MaybeUninit::new(value)),
            },
            None => Lazy::new(),
        }
    }

    /// The value, made by `make` if nobody made it yet. `make` must not ask
    /// this same `Lazy` for its value (it would wait for itself).
    #[inline]
    pub(crate) fn get_or_init(&self, make: impl FnOnce() -> T) -> T {
        match self.get() {
            Some(value) => value,
            None => self.make(make),
        }
    }

    /// The value, if it was made.
    #[inline]
    pub(crate) fn get(&self) -> Option<T> {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY, loaded with acquire ordering, was stored (with
            // release ordering) after the one write of `value`.
            Some(unsafe { (*self.value.get()).assume_init() })
        } else {
            None
        }
    }

    /// `get_or_init` on a `Lazy` nobody shares (`&mut`): plain reads and
    /// writes, no atomic read-modify-write. If `make` unwinds, the `Lazy`
    /// stays empty.
    #[inline]
    pub(crate) fn get_or_init_mut(&mut self, make: impl FnOnce() -> T) -> T {
        if *self.state.get_mut() != READY {
            // With `&mut`, nobody is making it (a maker holds `&self`, and
            // puts the state back to EMPTY if it unwinds).
            *self.value.get_mut() = MaybeUninit::new(make());
            *self.state.get_mut() = READY;
        }
        // SAFETY: READY: the value was written above, or before READY was
        // stored (and this `&mut` comes after that store).
        unsafe { self.value.get_mut().assume_init() }
    }

    /// Takes the right to write `value`: true for one caller only.
    #[inline]
    fn claim(&self) -> bool {
        self.state
            .compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Acquire)
            .is_ok()
    }

    /// Writes the value and makes it visible; only after `claim` gave true.
    #[inline]
    fn publish(&self, value: T) {
        // SAFETY: this caller's `claim` moved `state` to BUSY: no other
        // thread writes `value`, and none reads it before READY below.
        unsafe { (*self.value.get()).write(value) };
        self.state.store(READY, Ordering::Release);
    }

    /// `get_or_init` when the value is not there yet: makes it, or waits
    /// for the caller making it.
    #[cold]
    #[inline(never)]
    fn make(&self, make: impl FnOnce() -> T) -> T {
        let mut waits = 0u32;
        loop {
            if self.state.load(Ordering::Relaxed) == EMPTY && self.claim() {
                // Should `make` unwind, the next caller makes the value.
                let reset = ResetOnUnwind(&self.state);
                let value = make();
                std::mem::forget(reset);
                self.publish(value);
                return value;
            }
            if let Some(value) = self.get() {
                return value;
            }
            // Another caller is making it: a clock read or a few random
            // numbers, so spin briefly, then let it run (sleeping, at last:
            // a waiter of a higher real-time priority on its CPU would
            // otherwise never let it).
            waits = waits.saturating_add(1);
            if waits < 64 {
                std::hint::spin_loop();
            } else if waits < 128 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }
}

/// A fresh id for the event numbered `sequence`, stamped `timestamp`.
fn fresh_event_id(timestamp: SystemTime, sequence: u64) -> EventId {
    let id = EventId::new(timestamp);
    // Events its handlers emit from now on record it as their cause's id.
    trace::event_id_made(sequence, id.as_u128());
    id
}

/// Puts a `Lazy` back to `EMPTY` if its maker unwinds.
struct ResetOnUnwind<'a>(&'a AtomicU8);

impl Drop for ResetOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(EMPTY, Ordering::Release);
    }
}

/// Where a context's cause comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CauseOf<'a> {
    /// The frame current when the event was emitted here.
    Frame(&'a Frame),
    /// Given with the event (a replayed record, an event from elsewhere).
    Given(Option<&'a Cause>),
}

/// The names of run-time subscriptions, by id, for causes: a cause records
/// a subscription by id, and its name is looked up when the cause is read.
static SUBSCRIPTION_NAMES: Mutex<BTreeMap<u64, Cow<'static, str>>> = Mutex::new(BTreeMap::new());

fn names() -> std::sync::MutexGuard<'static, BTreeMap<u64, Cow<'static, str>>> {
    // Only this module's code runs under the lock.
    SUBSCRIPTION_NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remembers subscription `id`'s name, for the causes it appears in.
pub(crate) fn register_subscription_name(id: u64, name: Cow<'static, str>) {
    names().insert(id, name);
}

/// Forgets subscription `id`'s name (it was unsubscribed).
pub(crate) fn forget_subscription_name(id: u64) {
    names().remove(&id);
}

/// The cause a frame describes, with the handler's name.
pub(crate) fn cause_of(frame: &Frame) -> Option<Cause> {
    let event = frame.event?;
    let handler = match frame.handler.key() {
        HandlerKey::None => None,
        HandlerKey::Static(name) => Some(Cow::Borrowed(*name)),
        HandlerKey::Subscription(id) => Some(
            names()
                .get(&id)
                .cloned()
                .unwrap_or_else(|| Cow::Owned(format!("subscription #{id}"))),
        ),
    };
    Some(Cause {
        event: Cow::Borrowed(*event),
        sequence: frame.sequence,
        event_id: frame.event_id.and_then(|id| EventId::from_u128(id.get())),
        handler,
    })
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
    #[inline]
    pub fn trace_id(&self) -> TraceId {
        self.trace_id.or_implicit(self.sequence)
    }

    /// The wall-clock time (UTC) of the event.
    ///
    /// Read lazily: the first call during the event's dispatch reads the clock
    /// and every later call (in any handler of this event) returns the same
    /// value. An event whose timestamp nobody asks for costs no clock read.
    /// The value is therefore the time of the first request, which is later
    /// than `emit` by at most the running time of the handlers before it;
    /// a handler that needs emit time exactly runs first (high priority).
    /// An event a history, a stream (typed or JSON) or a
    /// [`testing::Recorder`](crate::testing::Recorder) receives is stamped
    /// before any of its handlers runs, whatever their priorities (other
    /// subscriptions that keep [`envelope`](EventContext::envelope)s, such
    /// as the NATS bridge's, read it at their turn).
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp.get_or_init(SystemTime::now)
    }

    /// A process-wide sequence number: unique, increasing on each thread,
    /// and higher for a nested event than for the event whose handler
    /// emitted it, also when that handler is an async one that moved to
    /// another thread, and when the parent is a replayed record (whose
    /// original number is kept; a record numbered above 2^63, which only a
    /// file from elsewhere can hold, keeps its number but its children get
    /// ordinary ones, so that numbers never wrap and repeat). Across unrelated threads numbers are unique
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

    /// The event's id, a UUIDv7 ([`EventId`]): made on the first request
    /// (from the event's [`timestamp`](EventContext::timestamp), so asking
    /// for it reads the clock if nobody has yet), then the same for every
    /// handler of the event; an event that already had one (replayed,
    /// received from another process) keeps it. An event handed to a
    /// history gets its id before its handlers run (also one the history
    /// then refuses), and so does one a stream or a
    /// [`testing::Recorder`](crate::testing::Recorder) receives; an event
    /// whose id nobody asks for costs nothing.
    pub fn event_id(&self) -> EventId {
        self.event_id
            .get_or_init(|| fresh_event_id(self.timestamp(), self.sequence))
    }

    /// The timestamp and the id, made now if nobody made them yet, on a
    /// context nobody shares (no compare-exchange): for a recorder or a
    /// route whose subscriptions keep envelopes (`Route::stamps`), which
    /// read both.
    pub(crate) fn stamp(&mut self) {
        let timestamp = self.timestamp.get_or_init_mut(SystemTime::now);
        let sequence = self.sequence;
        self.event_id
            .get_or_init_mut(|| fresh_event_id(timestamp, sequence));
    }

    /// What caused this event: the event being handled when it was emitted
    /// and the handler that emitted it; `None` for an event emitted
    /// outside any handler. Carried like the trace id, through nested
    /// emits, `emit_async` across `.await`s and threads, and
    /// [`trace::capture`](crate::trace::capture); a replayed or remote
    /// event keeps the cause it was recorded or sent with.
    pub fn cause(&self) -> Option<Cause> {
        match self.cause {
            CauseOf::Frame(frame) => cause_of(frame),
            CauseOf::Given(cause) => cause.cloned(),
        }
    }

    /// Whether [`cause`](EventContext::cause) is `Some` (without making
    /// it).
    pub(crate) fn has_cause(&self) -> bool {
        match self.cause {
            CauseOf::Frame(frame) => frame.event.is_some(),
            CauseOf::Given(cause) => cause.is_some(),
        }
    }

    /// The instance id of the process this event came from, when a bridge
    /// received it from another process (and `None` for events emitted
    /// here). The event keeps its original id, trace id and timestamp.
    pub fn remote(&self) -> Option<&'a str> {
        self.remote
    }

    /// Whether this event came from another process (see
    /// [`remote`](EventContext::remote)).
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The envelope of this event, owned (to keep it beyond the handler:
    /// a queue, a record). Reads the timestamp and makes the event id if
    /// nobody has yet; copies the metadata, and the source unless it is the
    /// event's default.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            name: self.name,
            event_id: self.event_id(),
            trace_id: self.trace_id(),
            sequence: self.sequence,
            // Most often the very same string: compared by address first.
            source: if std::ptr::eq(self.source, self.default_source)
                || self.source == self.default_source
            {
                Cow::Borrowed(self.default_source)
            } else {
                Cow::Owned(self.source.to_owned())
            },
            metadata: self.metadata.clone(),
            timestamp: self.timestamp(),
            depth: self.depth,
            replay: self.replay,
            remote: self.remote.map(Box::from),
            // A root event's (the most common) calls nothing: `cause`
            // returns its `Option<Cause>` through memory, and testing that
            // right after the call was hot in a profile (most likely a wait
            // for the callee's stores).
            cause: if self.has_cause() {
                self.cause().map(Box::new)
            } else {
                None
            },
        }
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
            .field("trace_id", &self.trace_id())
            .field("sequence", &self.sequence)
            .field("depth", &self.depth)
            .field("replay", &self.replay)
            .field("remote", &self.remote)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

// Async handlers hold `&EventContext` across `.await`s, in futures that must
// be `Send`: the context must be `Sync` (hence `Lazy`'s atomics, not a `OnceCell`).
static_assertions::assert_impl_all!(EventContext<'static>: Send, Sync);
