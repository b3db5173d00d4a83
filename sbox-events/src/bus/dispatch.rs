//! The hot path: one emit, from the thread-local state it reads (nesting
//! depth, sequence block, "handling error.occurred", "replaying") to the
//! isolated handler calls and the failure report.
//!
//! Cost, per emit: `emit` and `emit_ref` call one out-of-line function per
//! event type. When nobody can hear the event, it decides from a few loads
//! (the type's slot, the bus's settings, five thread-locals) and returns the
//! report, with no further call in release builds (debug builds also check
//! what a `#[handler]` declares it emits), except once per handled event
//! whose implicit trace nobody read yet (see `unheard_plain`). Otherwise: a
//! few thread-local reads and writes (the trace installed as a number, its
//! id made when read), the context built on the stack, one route lookup
//! (skipped while no bus routes the type), and per handler a function-pointer
//! call (a boxed closure for subscriptions) inside `catch_unwind`. Failures
//! take the cold path (`handler_failed`).

// Replay and recording are used by the `history` feature only.
#![cfg_attr(not(feature = "history"), allow(dead_code))]

use super::declared::check_declared;
use super::failures::{Failure, isolate, validate};
use super::release::release_failed;
use super::routes::{Direct, Entry, ErasedEntry, Route};
use super::skip::skipped;
use super::state::{
    DEPTH, DepthGuard, ErrorScope, REPLAYING, next_sequence, next_sequence_in_block,
};
use super::{EmitOptions, EmitReport, EventBus, Recorder, Refusal};
use crate::any::{AnyEvent, EventType};
use crate::context::{CauseOf, EventContext, Lazy};
use crate::envelope::{Cause, EventId, Metadata};
use crate::event::Event;
use crate::events::ErrorOccurred;
use crate::stats::{Outcome, StatsCell};
use crate::trace::{self, Frame, HandlerKey, HandlerWord, TraceBits, TraceId};
use core::num::NonZeroU128;
use std::any::TypeId;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

pub(super) static EMPTY_METADATA: Metadata = Metadata::new();

/// What an emit is given besides the event: who emits it, with what
/// metadata, when it happened (if not now), and for a replay its original
/// sequence number.
pub(crate) struct Given<'a> {
    pub(crate) source: &'a str,
    pub(crate) metadata: &'a Metadata,
    pub(crate) timestamp: Option<SystemTime>,
    pub(crate) replayed: Option<u64>,
    pub(crate) trace_id: Option<TraceId>,
    pub(crate) event_id: Option<EventId>,
    pub(crate) remote: Option<&'a str>,
    /// The cause the event keeps (a replayed record's, an event from
    /// elsewhere); `None`: what runs now caused it.
    pub(crate) cause: Option<Option<&'a Cause>>,
}

impl<'a> Given<'a> {
    /// A plain emit of an `E`.
    #[inline]
    pub(super) fn new<E: Event>() -> Given<'a> {
        Given {
            source: E::SOURCE,
            metadata: &EMPTY_METADATA,
            timestamp: None,
            replayed: None,
            trace_id: None,
            event_id: None,
            remote: None,
            cause: None,
        }
    }

    /// An emit of an event of `event_type` (known by name) with `options`.
    pub(super) fn by_name(event_type: EventType, options: &'a EmitOptions) -> Given<'a> {
        Given {
            source: options.source.as_deref().unwrap_or(event_type.source()),
            metadata: &options.metadata,
            timestamp: options.timestamp,
            replayed: None,
            trace_id: options.trace_id,
            event_id: options.event_id,
            remote: options.remote.as_deref(),
            cause: options.cause.as_ref().map(Some),
        }
    }

    /// An emit of an `E` with `options`.
    pub(super) fn with_options<E: Event>(options: &'a EmitOptions) -> Given<'a> {
        Given {
            source: options.source.as_deref().unwrap_or(E::SOURCE),
            metadata: &options.metadata,
            timestamp: options.timestamp,
            replayed: None,
            trace_id: options.trace_id,
            event_id: options.event_id,
            remote: options.remote.as_deref(),
            cause: options.cause.as_ref().map(Some),
        }
    }
}

/// Whether some bus had a route for the event type when the emit began
/// (`EventSlot::routed` not 0): read once per emit. An emit of a type that
/// had no route then runs its `#[handler]`s alone, even if its validator or
/// its `Serialize` (for a history) subscribes to it meanwhile: the running
/// emit finishes with the handlers it started with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Routed {
    Yes,
    No,
}

impl EventBus {
    /// `emit` and `emit_ref`: one function per event type, out of line, so
    /// that an emit nobody hears is a short call with no stack frame to set
    /// up, and an emit site is a call however large the full dispatch is.
    #[inline(never)]
    pub(super) fn dispatch_plain<E: Event>(&self, event: &E) -> EmitReport {
        match self.unheard_plain::<E>() {
            Some(report) => report,
            None if E::__slot().routed.load(Ordering::Relaxed) != 0 => {
                self.dispatch_plain_routed(event)
            }
            None => self.dispatch_plain_slow(event),
        }
    }

    /// `dispatch_plain` when its fast check does not decide and no bus has
    /// a route for `E`: the full dispatch (which checks again, and may
    /// still find nobody listening), compiled for `#[handler]`s alone.
    #[inline(never)]
    fn dispatch_plain_slow<E: Event>(&self, event: &E) -> EmitReport {
        self.dispatch_as(event, &Given::new::<E>(), Routed::No)
    }

    /// `dispatch_plain` when some bus has a route for `E` (subscriptions):
    /// the full dispatch with this bus's route read in the same function
    /// (no second call and stack frame).
    #[inline(never)]
    fn dispatch_plain_routed<E: Event>(&self, event: &E) -> EmitReport {
        self.dispatch_as(event, &Given::new::<E>(), Routed::Yes)
    }

    /// `emit_with`: out of line, like `dispatch_plain`.
    #[inline(never)]
    pub(super) fn dispatch_given<E: Event>(&self, event: &E, given: &Given<'_>) -> EmitReport {
        self.dispatch(event, given)
    }

    /// [`unheard`](EventBus::unheard) for a plain emit, calling nothing (in
    /// release builds): `None` also when deciding would need a call (the
    /// `#[handler]` list not collected yet; the trace of the emit whose
    /// handler emits not made yet; this thread's block of numbers used up,
    /// or its next number not above the number of the event whose handler
    /// emits: one numbered on another thread, or a replayed record).
    #[inline(always)]
    fn unheard_plain<E: Event>(&self) -> Option<EmitReport> {
        let inner = &*self.inner;
        let slot = E::__slot();
        let statics = slot.statics_if_collected()?;
        // `unheard`'s checks, written out again: taken into a shared helper,
        // they changed what LLVM inlines here, and the sequence block's
        // thread-local was read through two calls (49 -> 100 instructions).
        let quiet = (statics.is_empty() || !inner.config.static_handlers)
            && slot.routed.load(Ordering::Relaxed) == 0
            && inner.recorder.is_none()
            && !inner.config.validate_on_emit
            && DEPTH.with(Cell::get) < inner.config.max_depth;
        if !quiet {
            return None;
        }
        // Before the number is taken: `None` leaves it for the full path.
        let trace = trace::current_bits()?;
        let sequence = next_sequence_in_block()?;
        #[cfg(debug_assertions)]
        check_declared(&trace::current_frame(), E::NAME);
        Some(EmitReport::unheard(slot.name(), trace, sequence))
    }

    #[inline(always)]
    pub(super) fn dispatch<E: Event>(&self, event: &E, given: &Given<'_>) -> EmitReport {
        let routed = match E::__slot().routed.load(Ordering::Relaxed) {
            0 => Routed::No,
            _ => Routed::Yes,
        };
        self.dispatch_as(event, given, routed)
    }

    /// `dispatch` once `E`'s count of buses with a route (`routed`) is read:
    /// read once per emit, so that each caller can compile the path it
    /// takes alone.
    #[inline(always)]
    fn dispatch_as<E: Event>(&self, event: &E, given: &Given<'_>, routed: Routed) -> EmitReport {
        if let Some(report) = self.unheard::<E>(given, routed) {
            return report;
        }
        self.dispatch_heard(event, given, routed)
    }

    /// The emit nobody can observe: no route for `E` on any bus (no
    /// subscription, stream, selector or statistics), no `#[handler]` for
    /// it (or static handlers off), no recorder (history, test recorder)
    /// and no validation on this bus. Its report is what a full dispatch
    /// would give (the trace id, a sequence number, nothing delivered)
    /// without the context, frames and guards nobody would read. `None`
    /// when any of that does not hold, or the emit is one the full path
    /// refuses (too deep).
    #[inline(always)]
    fn unheard<E: Event>(&self, given: &Given<'_>, routed: Routed) -> Option<EmitReport> {
        let inner = &*self.inner;
        let slot = E::__slot();
        // Cheapest first: a type with `#[handler]`s is heard.
        let quiet = (slot.statics().is_empty() || !inner.config.static_handlers)
            && routed == Routed::No
            && inner.recorder.is_none()
            && !inner.config.validate_on_emit;
        if !quiet {
            return None;
        }
        self.unheard_report::<E>(given)
    }

    #[inline(always)]
    fn unheard_report<E: Event>(&self, given: &Given<'_>) -> Option<EmitReport> {
        if DEPTH.with(Cell::get) >= self.inner.config.max_depth {
            return None;
        }
        let trace_id = given.trace_id.or_else(trace::current);
        let (trace_id, sequence) = match given.replayed {
            // A fresh implicit trace: its id is made from the number when
            // the report is asked for it (as a heard emit's context and
            // report make theirs).
            None => (trace_id, next_sequence()),
            Some(sequence) => (Some(trace_id.unwrap_or_else(TraceId::random)), sequence),
        };
        let report = EmitReport::unheard(E::__slot().name(), TraceBits::new(trace_id), sequence);
        #[cfg(debug_assertions)]
        if given.cause.is_none() {
            check_declared(&trace::current_frame(), E::NAME);
        }
        Some(report)
    }

    /// Everything else: the context, the recorder, the handlers.
    #[inline(always)]
    fn dispatch_heard<E: Event>(&self, event: &E, given: &Given<'_>, routed: Routed) -> EmitReport {
        let config = &self.inner.config;
        let depth = DEPTH.with(Cell::get);
        let _given_trace = given.trace_id.map(trace::install);
        if depth >= config.max_depth {
            let (trace_id, _root) = trace::emit_trace(None);
            let limit = config.max_depth;
            let report = EmitReport::new(E::NAME, trace_id);
            return self.refuse(report, Refusal::DepthLimit { depth, limit });
        }
        // The number first: a fresh implicit trace's id is made from it.
        let sequence = given.replayed.unwrap_or_else(next_sequence);
        let (trace_id, _root) = trace::emit_trace(given.replayed.is_none().then_some(sequence));
        let mut report = EmitReport::new(E::NAME, trace_id);
        if config.validate_on_emit
            && let Err(reason) = validate(event)
        {
            // Refused: the report has no number (the one taken is unused),
            // and the trace the validator ran in.
            report.keep_trace_id(sequence);
            return self.refuse(report, Refusal::Invalid { reason });
        }
        report.sequence = sequence;
        // What the `#[handler]` loop delivers to, set now rather than by the
        // loop (a route's loop sets its own): the report is copied out when
        // the emit returns, and a copy that loads this word's 16-byte block
        // right after the loop stored into it would wait for that store to
        // reach the cache (a load is served from the store buffer only if
        // one store holds all its bytes): 19.6 -> 16.8 ns for one handler in
        // a quick timing here.
        if config.static_handlers {
            report.delivered = E::__slot().statics().len();
        }
        let frame = Frame {
            event: Some(const { &E::NAME }),
            sequence,
            event_id: given.event_id.and_then(|id| NonZeroU128::new(id.as_u128())),
            handler: HandlerWord::NONE,
        };
        let depth_guard = DepthGuard::enter(depth, frame);
        if given.cause.is_none() {
            check_declared(depth_guard.parent(), E::NAME);
        }
        // Failures while an `error.occurred` is handled (whoever emitted it)
        // never emit another one. Decided at compile time per event type.
        let _error_scope =
            (TypeId::of::<E>() == TypeId::of::<ErrorOccurred>()).then(ErrorScope::enter);
        let replay = given.replayed.is_some() || REPLAYING.with(Cell::get);
        let mut ctx = EventContext {
            bus: self,
            name: E::NAME,
            source: given.source,
            default_source: E::SOURCE,
            metadata: given.metadata,
            trace_id,
            sequence,
            depth,
            timestamp: Lazy::given(given.timestamp),
            event_id: Lazy::given(given.event_id),
            replay,
            remote: given.remote,
            cause: match given.cause {
                Some(cause) => CauseOf::Given(cause),
                None => CauseOf::Frame(depth_guard.parent()),
            },
        };
        if let Some(recorder) = &self.inner.recorder
            && (!replay || config.record_replays)
        {
            self.record(&**recorder, event, &mut ctx, &mut report);
        }
        // While no bus has a route for `E`, skip loading the table: the
        // answer would be "no route" (see `EventSlot::routed`).
        if routed == Routed::Yes {
            self.dispatch_routed(event, &mut ctx, &mut report);
        } else if config.flight_recorder {
            self.dispatch_flight(None, event, &ctx, &mut report);
        } else {
            self.run_handlers(None, event, &ctx, &mut report);
        }
        report
    }

    /// The handlers of `dispatch` when some bus has a route for `E`: read
    /// this bus's table. Inlined: `emit` and `emit_ref` compile it and the
    /// path of `#[handler]`s alone into two functions
    /// (`dispatch_plain_routed`, `dispatch_plain_slow`), each with its
    /// registers allocated for its own path; `emit_with` and the emit by
    /// name compile both into one.
    #[inline(always)]
    fn dispatch_routed<E: Event>(
        &self,
        event: &E,
        ctx: &mut EventContext<'_>,
        report: &mut EmitReport,
    ) {
        let table = self.inner.routes.load();
        let found = table.route_to_emit::<E>(E::__slot().index());
        match found {
            Some(found) if !found.direct.is_empty() && !self.inner.config.flight_recorder => {
                self.run_direct(found.route, found.direct, event, ctx, report);
            }
            _ => {
                let route = found.map(|found| (found.route, found.stats));
                if let Some((route, _)) = route
                    && route.stamps
                {
                    ctx.stamp();
                }
                let ctx = &*ctx;
                if let Some((route, _)) = route
                    && !route.recorders.is_empty()
                {
                    self.run_recorders(&route.recorders, event, ctx, report);
                }
                if self.inner.config.flight_recorder {
                    self.dispatch_flight(route, event, ctx, report);
                } else {
                    self.run_handlers(route, event, ctx, report);
                }
            }
        }
        // The table may be the last holder of a removed closure: its
        // release is isolated, and a panic in it reported here.
        drop(table);
        if release_failed() {
            self.announce_release_failures(Some(report));
        }
    }

    /// The loop of a route of closures alone, none filtered, with nothing
    /// else to do (`Route::direct`): no match per entry, no vtable.
    #[inline(always)]
    fn run_direct<E: Event>(
        &self,
        route: &Route<E>,
        direct: &[Direct<E>],
        event: &E,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        report.delivered = direct.len();
        for call in direct {
            trace::set_handler_word(call.word);
            if let Err(failure) = isolate(|| call.call(event, ctx)) {
                // Its entry found only now: counting positions in the loop
                // costs every call two instructions.
                self.entry_failed(route.entry_of(call), failure, ctx, report);
            }
        }
    }

    /// The handler loops of `dispatch` (without the flight recorder).
    #[inline(always)]
    fn run_handlers<E: Event>(
        &self,
        route: Option<(&Route<E>, &[Arc<StatsCell>])>,
        event: &E,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        let config = &self.inner.config;
        match route {
            Some((route, [])) => {
                report.delivered = route.entries.len();
                for entry in route.entries.iter() {
                    // A closure without a filter, the common entry, is
                    // told apart by one comparison (not the jump table of
                    // `call_entry`'s match).
                    let result = if let Entry::Typed(sub) = entry
                        && sub.filter.is_none()
                    {
                        trace::set_handler(HandlerKey::Subscription(sub.id));
                        isolate(|| (sub.call)(event, ctx)).map(|()| Called::Yes)
                    } else {
                        call_entry(entry, event, ctx)
                    };
                    match result {
                        Ok(Called::Yes) => {}
                        Ok(Called::Filtered) => report.delivered -= 1,
                        Ok(Called::Skipped) => skipped(entry.skip(), ctx, report),
                        Err(failure) => self.entry_failed(entry, failure, ctx, report),
                    }
                }
            }
            Some((route, stats)) => {
                report.delivered = route.entries.len();
                for (entry, stats) in route.entries.iter().zip(stats) {
                    // Counted always, timed one call in `SAMPLE_EVERY`.
                    let started = stats.start().then(Instant::now);
                    let result = call_entry(entry, event, ctx);
                    self.settle(entry, result, Some((stats, started)), ctx, report);
                }
            }
            None if config.static_handlers => {
                // An async `#[handler]`'s record holds a sync stand-in that
                // fails with `HandlerError::async_skipped`: `static_failed`
                // reports it as skipped, so this loop checks nothing.
                // `delivered` is set when the report is made (see
                // `dispatch_heard`).
                let statics = E::__slot().statics();
                // Read through the slice (the record's address is loaded
                // again after the handler word's store): with `for &record`
                // (the address copied out before the store), one instruction
                // fewer, 100 handlers timed about 10% slower here (best of
                // several interleaved runs each, rustc 1.95, x86-64; the
                // code's placement in the binary may account for part).
                for record in statics {
                    trace::set_handler(HandlerKey::Static(&record.name));
                    if let Err(failure) = isolate(|| record.call(event, ctx)) {
                        self.static_failed(record, failure, ctx, report);
                    }
                }
            }
            None => {}
        }
    }

    /// Accounts for one route entry's call, in the dispatch loops that keep
    /// handler statistics (`timing`: the entry's cell and when the call
    /// started, if it is timed) and in `emit_async`'s.
    #[inline(always)]
    pub(super) fn settle<E: Event>(
        &self,
        entry: &Entry<E>,
        result: Result<Called, Failure>,
        timing: Option<(&StatsCell, Option<Instant>)>,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        match result {
            Ok(Called::Filtered) => {
                if let Some((stats, _)) = timing {
                    stats.not_called();
                }
                report.delivered -= 1;
                return;
            }
            Ok(Called::Skipped) => {
                // Not a call: the count `start` took back.
                if let Some((stats, _)) = timing {
                    stats.not_called();
                }
                return skipped(entry.skip(), ctx, report);
            }
            Err(Failure::Error(err)) if err.skip_reason().is_some() => {
                if let Some((stats, _)) = timing {
                    stats.not_called();
                }
                return self.entry_failed(entry, Failure::Error(err), ctx, report);
            }
            Ok(Called::Yes) | Err(_) => {}
        }
        if let Some((stats, Some(started))) = timing {
            stats.timed(started.elapsed());
        }
        if let Err(failure) = result {
            if let Some((stats, _)) = timing {
                stats.failed(match failure {
                    Failure::Error(_) => Outcome::Error,
                    Failure::Panic(_) => Outcome::Panic,
                });
            }
            self.entry_failed(entry, failure, ctx, report);
        }
    }
}

/// Calls one handler of the route, isolated.
#[inline(always)]
pub(super) fn call_entry<E: Event>(
    entry: &Entry<E>,
    event: &E,
    ctx: &EventContext<'_>,
) -> Result<Called, Failure> {
    trace::set_handler(entry.key());
    match entry {
        Entry::Static(record) => isolate(|| record.call(event, ctx)).map(|()| Called::Yes),
        Entry::Typed(sub) => isolate(|| match &sub.filter {
            Some(filter) if !filter(event, ctx) => Ok(Called::Filtered),
            _ => (sub.call)(event, ctx).map(|()| Called::Yes),
        }),
        Entry::StaticAsync(_) | Entry::TypedAsync(_) => Ok(Called::Skipped),
        Entry::Erased(sub) => {
            let event = AnyEvent::new(event);
            isolate(|| match &sub.filter {
                Some(filter) if !filter(&event, ctx) => Ok(Called::Filtered),
                _ => (sub.call)(&event, ctx).map(|()| Called::Yes),
            })
        }
    }
}

/// Whether a handler was called: a subscription's filter may reject the
/// event, and a synchronous emit skips async handlers.
pub(super) enum Called {
    Yes,
    Filtered,
    Skipped,
}

impl EventBus {
    /// Hands the event being dispatched to a recorder (the history), with
    /// the timestamp and id handlers will see (made now, also for an event
    /// the recorder then refuses). The recorder runs the event's
    /// `Serialize`: isolated, and a failure is reported as the event not
    /// being recorded.
    #[inline(never)]
    pub(super) fn record<E: Event>(
        &self,
        recorder: &dyn Recorder,
        event: &E,
        ctx: &mut EventContext<'_>,
        report: &mut EmitReport,
    ) {
        // Made now, before the context is shared: the recorder reads both.
        ctx.stamp();
        let ctx = &*ctx;
        if let Err(failure) = isolate(|| recorder.record(&AnyEvent::new(event), ctx)) {
            self.not_recorded(recorder.name(), failure, ctx, report);
        }
    }

    /// Runs the route's test recorders, before any handler.
    #[inline(never)]
    pub(super) fn run_recorders<E: Event>(
        &self,
        recorders: &[Arc<ErasedEntry>],
        event: &E,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        let any = AnyEvent::new(event);
        for recorder in recorders {
            if let Err(failure) = isolate(|| (recorder.call)(&any, ctx)) {
                self.not_recorded(&recorder.name, failure, ctx, report);
            }
        }
    }
}
