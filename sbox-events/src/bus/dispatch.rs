//! The hot path: one emit, from the thread-local state it reads (nesting
//! depth, sequence block, "handling error.occurred", "replaying") to the
//! isolated handler calls and the failure report.
//!
//! Cost, per emit: a few thread-local reads and writes, the context built on
//! the stack, one route lookup (skipped while no bus routes the type), and
//! per handler a function-pointer call (a boxed closure for subscriptions)
//! inside `catch_unwind`. Failures take the cold path (`handler_failed`).

// Replay and recording are used by the `history` feature only.
#![cfg_attr(not(feature = "history"), allow(dead_code))]

use super::routes::Entry;
use super::skip::{Skip, WarnOnce, skipped};
use super::{EmitReport, ErrorOccurred, EventBus, FailurePolicy, Recorder, Refusal};
use crate::any::AnyEvent;
use crate::context::{EventContext, Metadata};
use crate::escape::LogSafe;
use crate::event::Event;
use crate::handler::{HandlerError, HandlerFailure};
use crate::stats::{Outcome, StatsCell};
use crate::trace;
use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

thread_local! {
    /// How many emits are running on this thread (nesting depth).
    pub(super) static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// True while an `error.occurred` is dispatched on this thread.
    pub(super) static IN_ERROR_EVENT: Cell<bool> = const { Cell::new(false) };
    /// True while `EventBus::replay` runs on this thread.
    pub(super) static REPLAYING: Cell<bool> = const { Cell::new(false) };
    /// This thread's block of sequence numbers: (next, end).
    static SEQUENCE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

const SEQUENCE_BLOCK: u64 = 1024;
static NEXT_SEQUENCE_BLOCK: AtomicU64 = AtomicU64::new(1);

#[inline]
pub(super) fn next_sequence() -> u64 {
    SEQUENCE.with(|cell| {
        let (next, end) = cell.get();
        let (n, end) = if next < end {
            (next, end)
        } else {
            let start = NEXT_SEQUENCE_BLOCK.fetch_add(SEQUENCE_BLOCK, Ordering::Relaxed);
            (start, start + SEQUENCE_BLOCK)
        };
        cell.set((n + 1, end));
        n
    })
}

/// Restores the thread's nesting depth when an emit ends (or unwinds).
struct DepthGuard(u32);

impl DepthGuard {
    #[inline]
    fn enter(depth: u32) -> DepthGuard {
        DEPTH.with(|d| d.set(depth + 1));
        DepthGuard(depth)
    }
}

impl Drop for DepthGuard {
    #[inline]
    fn drop(&mut self) {
        let _ = DEPTH.try_with(|d| d.set(self.0));
    }
}

pub(super) static EMPTY_METADATA: Metadata = Metadata::new();

/// A handler call that did not return `Ok(())`.
pub(super) enum Failure {
    Error(HandlerError),
    Panic(Box<dyn Any + Send>),
}

/// The original envelope of an event being replayed.
pub(crate) struct Replayed {
    pub(crate) timestamp: SystemTime,
    pub(crate) sequence: u64,
}

impl EventBus {
    pub(super) fn dispatch<E: Event>(
        &self,
        event: &E,
        source: &str,
        metadata: &Metadata,
        replayed: Option<&Replayed>,
    ) -> EmitReport {
        let config = &self.inner.config;
        let depth = DEPTH.with(Cell::get);
        let (trace_id, _root) = trace::emit_trace();
        let mut report = EmitReport::new(E::NAME, trace_id);
        if depth >= config.max_depth {
            let limit = config.max_depth;
            return self.refuse(report, Refusal::DepthLimit { depth, limit });
        }
        if config.validate_on_emit
            && let Err(reason) = event.validate()
        {
            return self.refuse(report, Refusal::Invalid { reason });
        }
        let _depth = DepthGuard::enter(depth);
        // Failures while an `error.occurred` is handled (whoever emitted it)
        // never emit another one. Decided at compile time per event type.
        let _error_scope =
            (TypeId::of::<E>() == TypeId::of::<ErrorOccurred>()).then(ErrorScope::enter);
        let replay = replayed.is_some() || REPLAYING.with(Cell::get);
        let ctx = EventContext {
            bus: self,
            name: E::NAME,
            source,
            metadata,
            trace_id,
            sequence: replayed.map_or_else(next_sequence, |r| r.sequence),
            depth,
            timestamp: OnceLock::new(),
            replay,
        };
        if let Some(replayed) = replayed {
            let _ = ctx.timestamp.set(replayed.timestamp);
        }
        if let Some(recorder) = &self.inner.recorder
            && (!replay || config.record_replays)
        {
            record(&**recorder, event, &ctx);
        }
        let slot = E::__slot();
        // While no bus has a route for `E`, skip loading the table: the
        // answer would be "no route" (see `EventSlot::routed`).
        let table;
        let route = if slot.routed.load(Ordering::Relaxed) == 0 {
            None
        } else {
            table = self.inner.routes.load();
            table.route::<E>(slot.index())
        };
        match route {
            Some((route, [])) => {
                report.delivered = route.entries.len();
                for entry in route.entries.iter() {
                    match call_entry(entry, event, &ctx) {
                        Ok(Called::Yes) => {}
                        Ok(Called::Filtered) => report.delivered -= 1,
                        Ok(Called::Skipped) => skipped(entry.skip(), &ctx, &mut report),
                        Err(failure) => {
                            self.handler_failed(entry.name(), failure, &ctx, &mut report)
                        }
                    }
                }
            }
            Some((route, stats)) => {
                report.delivered = route.entries.len();
                for (entry, stats) in route.entries.iter().zip(stats) {
                    // Counted always, timed one call in `SAMPLE_EVERY`.
                    let started = stats.start().then(Instant::now);
                    let result = call_entry(entry, event, &ctx);
                    self.settle(entry, result, Some((stats, started)), &ctx, &mut report);
                }
            }
            None if config.static_handlers => {
                // An async `#[handler]`'s record holds a sync stand-in that
                // fails with `HandlerError::async_skipped`: `handler_failed`
                // reports it as skipped, so this loop checks nothing.
                let statics = slot.statics();
                report.delivered = statics.len();
                for record in statics {
                    if let Err(failure) = isolate(|| (record.call)(event, &ctx)) {
                        self.handler_failed(record.name, failure, &ctx, &mut report);
                    }
                }
            }
            None => {}
        }
        report
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
                    stats.filtered();
                }
                report.delivered -= 1;
                return;
            }
            Ok(Called::Skipped) => return skipped(entry.skip(), ctx, report),
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
            self.handler_failed(entry.name(), failure, ctx, report);
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn handler_failed(
        &self,
        name: &str,
        failure: Failure,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        if let Failure::Error(err) = &failure
            && err.is_async_skip()
        {
            let skip = Skip {
                name: Cow::Owned(name.to_owned()),
                once: WarnOnce::Named(ctx.name),
            };
            return skipped(skip, ctx, report);
        }
        let handler = Cow::Owned(name.to_owned());
        let (failure, payload) = match failure {
            Failure::Error(err) => (HandlerFailure::from_error(handler, ctx.name, err), None),
            Failure::Panic(payload) => (
                HandlerFailure::from_panic(handler, ctx.name, &*payload),
                Some(payload),
            ),
        };
        tracing::error!(
            target: "sbox_events",
            trace_id = %ctx.trace_id,
            event = ctx.name,
            handler = %LogSafe(failure.handler()),
            kind = ?failure.kind(),
            error = %LogSafe(failure.message()),
            "event handler failed"
        );
        if self.inner.config.failure_policy == FailurePolicy::Propagate {
            match payload {
                Some(payload) => resume_unwind(payload),
                None => panic!("{failure}"),
            }
        }
        if let Some(payload) = payload {
            drop_payload(payload);
        }
        if self.inner.config.error_events && !IN_ERROR_EVENT.with(Cell::get) {
            self.emit(ErrorOccurred {
                error: failure.message().to_owned(),
                error_type: failure.error_type().to_owned(),
                event: failure.event().to_owned(),
                handler: failure.handler().to_owned(),
            });
        }
        report.issues().failures.push(failure);
    }

    #[cold]
    #[inline(never)]
    pub(super) fn refuse(&self, mut report: EmitReport, refusal: Refusal) -> EmitReport {
        tracing::warn!(
            target: "sbox_events",
            trace_id = %report.trace_id,
            event = report.event,
            "emit refused: {refusal}"
        );
        report.issues().refused = Some(refusal);
        report
    }
}

/// Calls one handler of the route, isolated.
#[inline(always)]
pub(super) fn call_entry<E: Event>(
    entry: &Entry<E>,
    event: &E,
    ctx: &EventContext<'_>,
) -> Result<Called, Failure> {
    match entry {
        Entry::Static(record) => isolate(|| (record.call)(event, ctx)).map(|()| Called::Yes),
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

#[inline(always)]
pub(super) fn isolate<T>(call: impl FnOnce() -> Result<T, HandlerError>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Failure::Error(err)),
        Err(payload) => Err(Failure::Panic(payload)),
    }
}

struct RestoreReplaying(bool);

impl Drop for RestoreReplaying {
    fn drop(&mut self) {
        let _ = REPLAYING.try_with(|r| r.set(self.0));
    }
}

/// Marks the thread as replaying until dropped (nested emits are replays too).
pub(crate) struct ReplayScope {
    _restore: RestoreReplaying,
}

impl ReplayScope {
    pub(crate) fn enter() -> ReplayScope {
        ReplayScope {
            _restore: RestoreReplaying(REPLAYING.with(|r| r.replace(true))),
        }
    }
}

/// Hands the event being dispatched to the recorder, with the timestamp
/// handlers will see (read now).
#[inline(never)]
pub(super) fn record<E: Event>(recorder: &dyn Recorder, event: &E, ctx: &EventContext<'_>) {
    ctx.timestamp();
    recorder.record(&AnyEvent::new(event), ctx);
}

/// Marks the thread as handling an `error.occurred` until dropped.
struct ErrorScope(bool);

impl ErrorScope {
    fn enter() -> ErrorScope {
        ErrorScope(IN_ERROR_EVENT.with(|f| f.replace(true)))
    }
}

impl Drop for ErrorScope {
    fn drop(&mut self) {
        let _ = IN_ERROR_EVENT.try_with(|f| f.set(self.0));
    }
}

/// Drops a caught panic payload. Its `Drop` is user code and may panic in
/// turn (`panic_any(Bomb)`): that panic is caught too, and so on a few
/// times; a payload that keeps panicking is leaked rather than let out.
pub(super) fn drop_payload(payload: Box<dyn Any + Send>) {
    let mut payload = payload;
    for _ in 0..4 {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}
