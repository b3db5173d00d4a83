//! The async path: `emit_async` runs sync and async handlers in the one
//! dispatch order, awaiting each async handler before the next handler
//! starts.
//!
//! What makes it work on any executor: the emit's thread-local state (trace,
//! nesting depth, "handling error.occurred", "replaying") is captured when
//! the future is created and put back in place around every poll, and
//! around the drop of an unfinished one, by [`EmitAsync`]; between polls
//! nothing is left on the thread, so a task that moves to another thread at
//! an `.await` takes its state with it. Each poll of a handler's future runs
//! inside `catch_unwind`, like a sync handler call.

use super::declared::check_declared;
use super::dispatch::{Called, call_entry};
use super::failures::{Failure, OwnedEvent, drop_payload, isolate, validate};
use super::flight::FlightLog;
use super::release::release_failed;
use super::routes::{Entry, HeldRoute};
use super::state::{DEPTH, DepthGuard, IN_ERROR_EVENT, REPLAYING, next_sequence};
use super::{EmitOptions, EmitReport, EventBus, Refusal};
use crate::context::{CauseOf, EventContext, Lazy};
use crate::envelope::EventId;
use crate::event::Event;
use crate::events::ErrorOccurred;
use crate::handler::{HandlerError, HandlerFuture};
use crate::stats::StatsCell;
use core::num::NonZeroU128;

use crate::trace::{self, Frame, HandlerKey, HandlerWord, TraceBits, TraceId};
use pin_project_lite::pin_project;
use std::any::TypeId;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

/// The thread-local state of one async emit, taken from the thread that
/// creates the future.
#[derive(Clone, Copy)]
pub(super) struct EmitState {
    trace_id: TraceId,
    /// The depth the event runs at (handlers see `depth`, their own emits
    /// run at `depth + 1`).
    depth: u32,
    sequence: u64,
    in_error_event: bool,
    replaying: bool,
    /// What was running when the emit was made: the event's cause.
    cause: Frame,
    /// The event's own frame, for what its handlers emit (the handler
    /// running is set by `CatchUnwind` around each poll).
    frame: Frame,
}

impl EmitState {
    pub(super) fn capture<E: Event>(event_id: Option<EventId>) -> EmitState {
        let sequence = next_sequence();
        EmitState {
            // A fresh trace's id made from the number, as `emit`'s is.
            trace_id: trace::current().unwrap_or_else(|| trace::implicit_id(sequence)),
            depth: DEPTH.with(Cell::get),
            sequence,
            in_error_event: IN_ERROR_EVENT.with(Cell::get)
                || TypeId::of::<E>() == TypeId::of::<ErrorOccurred>(),
            replaying: REPLAYING.with(Cell::get),
            cause: trace::current_frame(),
            frame: Frame {
                event: Some(const { &E::NAME }),
                sequence,
                event_id: event_id.and_then(|id| NonZeroU128::new(id.as_u128())),
                handler: HandlerWord::NONE,
            },
        }
    }

    /// Puts the state in place on this thread until the guard drops.
    fn enter(&self) -> Entered {
        Entered {
            _trace: trace::install(self.trace_id),
            _depth: DepthGuard::enter(self.depth, self.frame),
            in_error_event: IN_ERROR_EVENT.with(|f| f.replace(self.in_error_event)),
            replaying: REPLAYING.with(|r| r.replace(self.replaying)),
        }
    }
}

/// Restores what the thread had before [`EmitState::enter`] (also when a
/// poll unwinds).
struct Entered {
    _trace: trace::Installed,
    _depth: DepthGuard,
    in_error_event: bool,
    replaying: bool,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = IN_ERROR_EVENT.try_with(|f| f.set(self.in_error_event));
        let _ = REPLAYING.try_with(|r| r.set(self.replaying));
    }
}

pin_project! {
    /// The future of [`EventBus::emit_async`]: the emit, run with its
    /// trace, nesting depth and error state in place during each poll and
    /// while it is dropped unfinished (see `emit_async`).
    ///
    /// [`with_trace_id`](EmitAsync::with_trace_id) sets the trace it runs
    /// in; a future wrapper such as
    /// [`TraceFutureExt::with_trace_id`](crate::trace::TraceFutureExt::with_trace_id)
    /// cannot, since the emit puts its own trace in place inside it.
    #[must_use = "futures do nothing unless polled: `.await` it"]
    pub struct EmitAsync<'a, F> {
        bus: &'a EventBus,
        state: EmitState,
        // The inner future returned its report: dropping it runs no code
        // (an `async` block drops what it holds before it returns, inside
        // its last poll), so no state is put in place for it.
        done: bool,
        // `ManuallyDrop` so that `PinnedDrop` can drop the inner future with
        // the state in place (fields are dropped after it returns).
        #[pin]
        inner: ManuallyDrop<F>,
    }

    impl<F> PinnedDrop for EmitAsync<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let _entered = (!*this.done).then(|| this.state.enter());
            // SAFETY: `inner` is not moved out of: it is dropped in place
            // below, which keeps the pinning promise.
            let inner = unsafe { this.inner.get_unchecked_mut() };
            match *this.done {
                // Finished: the event was dropped (isolated) before the
                // report was returned; nothing of the user's is left.
                // SAFETY: this is the only place `inner` is dropped, and it
                // runs once: `PinnedDrop::drop` is called exactly once, when
                // the `EmitAsync` itself is dropped, and `inner` is not used
                // after it.
                true => unsafe { ManuallyDrop::drop(inner) },
                // Cancelled: the event (given to `emit_async`, or decoded
                // for an emit by name) is dropped with the future, isolated
                // (handler futures have their own isolation, `CatchUnwind`).
                false => {
                    let event = this.state.frame.event.map_or("", |name| *name);
                    // SAFETY: as in the arm above; the closure is called
                    // once, right away, by `drop_isolated`.
                    let drop_inner = move || unsafe { ManuallyDrop::drop(inner) };
                    this.bus.drop_isolated(event, this.state.trace_id, drop_inner);
                }
            }
            // A cancelled emit may have released a removed closure last. (A
            // finished one reported its own before returning; what is
            // pending then came from elsewhere and is reported here, in the
            // dropping code's trace.)
            this.bus.report_release_failures();
        }
    }
}

impl<F> EmitAsync<'_, F> {
    /// Runs the emit in the trace `id`, instead of the trace that was
    /// current when [`emit_async`](EventBus::emit_async) was called (or the
    /// fresh one it started): the report, the handlers and every event they
    /// emit carry `id`.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use sbox_events::{Event, EventBus, EventContext, trace::TraceId};
    /// # #[derive(Event, Serialize, Deserialize)]
    /// # #[event(name = "config.reloaded")]
    /// # struct ConfigReloaded { servers: u32 }
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    /// let bus = EventBus::new();
    /// let id = TraceId::random();
    /// let report = block_on(bus.emit_async(ConfigReloaded { servers: 3 }).with_trace_id(id));
    /// assert_eq!(report.trace_id(), id);
    /// ```
    pub fn with_trace_id(mut self, id: TraceId) -> Self {
        self.state.trace_id = id;
        self
    }

    /// The trace the emit will run in.
    pub fn trace_id(&self) -> TraceId {
        self.state.trace_id
    }
}

impl<F: Future> Future for EmitAsync<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.state.enter();
        // SAFETY: `ManuallyDrop<F>` is a transparent wrapper of `F`, and the
        // projection keeps `inner` pinned: the `F` inside is never moved (it
        // is dropped in place by `PinnedDrop`).
        let inner = unsafe { this.inner.map_unchecked_mut(|inner| &mut **inner) };
        let polled = inner.poll(cx);
        *this.done = polled.is_ready();
        polled
    }
}

impl<F> fmt::Debug for EmitAsync<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmitAsync")
            .field("trace_id", &self.state.trace_id)
            .field("depth", &self.state.depth)
            .finish_non_exhaustive()
    }
}

/// Polls a handler's future inside `catch_unwind`. After a panic the future
/// is dropped at once (its `Drop` is user code too, so inside
/// `catch_unwind` as well). Dropped before it completes (the emit was
/// cancelled), it drops the handler's future inside `catch_unwind` too, and
/// a panic there is logged and emitted as `error.occurred` (the report is
/// gone with the cancelled emit).
struct CatchUnwind<'a, 'c> {
    future: Option<HandlerFuture<'a>>,
    bus: &'a EventBus,
    handler: &'a str,
    /// Put in place around each poll: what the handler emits records it.
    key: HandlerKey,
    ctx: &'a EventContext<'c>,
}

impl<'a, 'c> CatchUnwind<'a, 'c> {
    fn new(
        future: HandlerFuture<'a>,
        bus: &'a EventBus,
        handler: &'a str,
        key: HandlerKey,
        ctx: &'a EventContext<'c>,
    ) -> Self {
        CatchUnwind {
            future: Some(future),
            bus,
            handler,
            key,
            ctx,
        }
    }

    /// The handler, and the event's id if it has one, as the cause of what
    /// this poll emits.
    fn in_frame(&self) {
        trace::set_handler(self.key);
        if let Some(id) = self.ctx.event_id.get() {
            trace::event_id_made(self.ctx.sequence, id.as_u128());
        }
    }
}

impl Future for CatchUnwind<'_, '_> {
    type Output = Result<(), Failure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.in_frame();
        let Some(future) = self.future.as_mut() else {
            // Polled after completion: `emit_async` never does.
            return Poll::Ready(Ok(()));
        };
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
        let result = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(()))) => Ok(()),
            Ok(Poll::Ready(Err(err))) => Err(Failure::Error(err)),
            Err(payload) => Err(Failure::Panic(payload)),
        };
        let done = self.future.take();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(done))) {
            drop_payload(payload);
        }
        Poll::Ready(result)
    }
}

impl Drop for CatchUnwind<'_, '_> {
    fn drop(&mut self) {
        let pending = self.future.take();
        if pending.is_none() {
            return;
        }
        self.in_frame();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(pending))) {
            self.bus
                .failed_outside_emit(self.handler, Failure::Panic(payload), self.ctx);
        }
    }
}

impl EventBus {
    /// The future of `emit_async`/`emit_async_with`.
    pub(super) fn dispatch_async<E: Event>(
        &self,
        event: E,
        options: EmitOptions,
    ) -> EmitAsync<'_, impl Future<Output = EmitReport> + Send + '_> {
        let mut state = EmitState::capture::<E>(options.event_id);
        if options.cause.is_none() {
            check_declared(&state.cause, E::NAME);
        }
        if let Some(id) = options.trace_id {
            state.trace_id = id;
        }
        EmitAsync {
            bus: self,
            state,
            done: false,
            // Dropped isolated even if a propagated failure unwinds.
            inner: ManuallyDrop::new(self.run_async(OwnedEvent::new(event), options, state)),
        }
    }

    /// The emit itself. An `async move` block rather than an `async fn`:
    /// an `async fn` keeps its arguments twice in its state (as passed and
    /// as bound), and this state is moved by value (into `EmitAsync`, by
    /// the caller), so every byte counts (1,616 -> 1,104 bytes, then
    /// 1,040, now 1,056 with the route held apart from its table, for an
    /// 8-byte event). The event comes in its `OwnedEvent` guard already:
    /// wrapped in here, it would be kept twice (1,072 bytes).
    #[allow(clippy::manual_async_fn)]
    fn run_async<E: Event>(
        &self,
        event: OwnedEvent<E>,
        options: EmitOptions,
        state: EmitState,
    ) -> impl Future<Output = EmitReport> + Send + '_ {
        async move {
            let config = &self.inner.config;
            // The trace `EmitAsync` put in place: the one captured when the
            // future was made, unless `with_trace_id` replaced it since.
            let trace_id = trace::current().unwrap_or(state.trace_id);
            let mut report = EmitReport::new(E::NAME, TraceBits::new(Some(trace_id)));
            if state.depth >= config.max_depth {
                let (depth, limit) = (state.depth, config.max_depth);
                let mut report = self.refuse(report, Refusal::DepthLimit { depth, limit });
                self.drop_event(event.into_inner(), &mut report);
                return report;
            }
            if config.validate_on_emit
                && let Err(reason) = validate(&*event)
            {
                let mut report = self.refuse(report, Refusal::Invalid { reason });
                self.drop_event(event.into_inner(), &mut report);
                return report;
            }
            report.sequence = state.sequence;
            let mut ctx = EventContext {
                bus: self,
                name: E::NAME,
                source: options.source.as_deref().unwrap_or(E::SOURCE),
                default_source: E::SOURCE,
                metadata: &options.metadata,
                trace_id: TraceBits::new(Some(trace_id)),
                sequence: state.sequence,
                depth: state.depth,
                timestamp: Lazy::given(options.timestamp),
                event_id: Lazy::given(options.event_id),
                replay: state.replaying,
                remote: options.remote.as_deref(),
                cause: match &options.cause {
                    Some(cause) => CauseOf::Given(Some(cause)),
                    None => CauseOf::Frame(&state.cause),
                },
            };
            if let Some(recorder) = &self.inner.recorder
                && (!state.replaying || config.record_replays)
            {
                self.record(&**recorder, &*event, &mut ctx, &mut report);
            }
            let slot = E::__slot();
            // `E`'s route alone, owned: it is held across the handlers'
            // `.await`s, and holding the table (or a guard of this thread's
            // hazard slot) would keep every closure unsubscribed meanwhile
            // alive, whatever its type, for as long as this future lives.
            let held = match slot.routed.load(Ordering::Relaxed) {
                0 => None,
                _ => self.inner.routes.load().hold_route::<E>(slot.index()),
            };
            let route = held.as_ref().and_then(HeldRoute::get);
            if let Some((route, _)) = route
                && route.stamps
            {
                ctx.stamp();
            }
            if let Some((route, _)) = route
                && !route.recorders.is_empty()
            {
                self.run_recorders(&route.recorders, &*event, &ctx, &mut report);
            }
            // With the flight recorder on, each call is marked before and
            // accounted for after (see `FlightLog`).
            let mut flight = config.flight_recorder.then(|| FlightLog::new(self, &ctx));
            match route {
                Some((route, stats)) => {
                    report.delivered = route.entries.len();
                    for (position, entry) in route.entries.iter().enumerate() {
                        let stats = stats.get(position).map(|cell| &**cell);
                        let started = stats.and_then(|s| s.start().then(Instant::now));
                        // Times the call also if this future is dropped in it.
                        let timer = CallTimer { stats, started };
                        let mark = flight.is_some().then(|| FlightLog::mark(&report));
                        let result = call_entry_async(self, entry, &*event, &ctx).await;
                        // Read only for the flight recorder: a clock read costs.
                        let end = mark.is_some().then(Instant::now);
                        let timing = timer.finished();
                        self.settle(entry, result, timing, &ctx, &mut report);
                        if let (Some(flight), Some(mark), Some(end)) = (&mut flight, mark, end) {
                            flight.ran(entry.name(), mark, end, &report);
                        }
                    }
                }
                None if config.static_handlers => {
                    let statics = slot.statics();
                    report.delivered = statics.len();
                    for record in statics {
                        let mark = flight.is_some().then(|| FlightLog::mark(&report));
                        let result = match record.future {
                            Some(future) => {
                                let key = HandlerKey::Static(&record.name);
                                trace::set_handler(key);
                                CatchUnwind::new(
                                    future(&*event, &ctx),
                                    self,
                                    record.name,
                                    key,
                                    &ctx,
                                )
                                .await
                            }
                            None => {
                                trace::set_handler(HandlerKey::Static(&record.name));
                                isolate(|| record.call(&*event, &ctx))
                            }
                        };
                        // Read only for the flight recorder: a clock read costs.
                        let end = mark.is_some().then(Instant::now);
                        if let Err(failure) = result {
                            self.static_failed(record, failure, &ctx, &mut report);
                        }
                        if let (Some(flight), Some(mark), Some(end)) = (&mut flight, mark, end) {
                            flight.ran(record.name, mark, end, &report);
                        }
                    }
                }
                None => {}
            }
            drop(flight); // hands the runs over
            // Possibly the last holder of a removed closure (see `dispatch`;
            // the table's guard, dropped above, may have been too).
            drop(held);
            if release_failed() {
                self.announce_release_failures(Some(&mut report));
            }
            // What the event's `Drop` causes, no handler did.
            trace::set_handler(HandlerKey::None);
            self.drop_event(event.into_inner(), &mut report);
            report
        }
    }
}

/// A handler call's statistics cell and, if the call is timed, its start:
/// dropped before [`finished`](CallTimer::finished) (the emit's future
/// dropped while the call is pending), it records the call's duration up
/// to then, so that a cancelled call is timed like any other.
struct CallTimer<'a> {
    stats: Option<&'a StatsCell>,
    started: Option<Instant>,
}

impl<'a> CallTimer<'a> {
    /// The call returned: what `settle` records.
    fn finished(self) -> Option<(&'a StatsCell, Option<Instant>)> {
        let this = ManuallyDrop::new(self);
        this.stats.map(|stats| (stats, this.started))
    }
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        if let (Some(stats), Some(started)) = (self.stats, self.started) {
            stats.timed(started.elapsed());
        }
    }
}

/// Calls one handler of the route, isolated; awaits it if it is async.
async fn call_entry_async<E: Event>(
    bus: &EventBus,
    entry: &Entry<E>,
    event: &E,
    ctx: &EventContext<'_>,
) -> Result<Called, Failure> {
    trace::set_handler(entry.key());
    let future: HandlerFuture<'_> = match entry {
        Entry::StaticAsync(record) => match record.future {
            Some(future) => future(event, ctx),
            None => return call_entry(entry, event, ctx),
        },
        Entry::TypedAsync(sub) => match &sub.future {
            // The closure itself runs now (user code: isolated too).
            Some(future) => isolate(|| Ok::<_, HandlerError>(future(event, ctx)))?,
            None => return call_entry(entry, event, ctx),
        },
        Entry::Static(_) | Entry::Typed(_) | Entry::Erased(_) => {
            return call_entry(entry, event, ctx);
        }
    };
    CatchUnwind::new(future, bus, entry.name(), entry.key(), ctx)
        .await
        .map(|()| Called::Yes)
}
