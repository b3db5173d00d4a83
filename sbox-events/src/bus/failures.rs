//! What happens when user code fails: a handler's `Err` or panic, a
//! panic in code the bus runs for users outside a handler call (a cancelled
//! handler future's `Drop`), and the refusal of an emit. Each is logged
//! with the trace id, emitted as `error.occurred` (unless one is being
//! handled already, so error handlers cannot loop) and, when there is an
//! emit to report to, listed in its [`EmitReport`].

use super::release::{release_failed, take_release_failures};
use super::routes::Entry;
use super::skip::{Skip, skipped};
use super::state::{DEPTH, DepthGuard, IN_ERROR_EVENT};
use super::{EmitReport, EventBus, FailurePolicy, Refusal};
use crate::context::EventContext;
use crate::envelope::EventId;
use crate::escape::LogSafe;
use crate::event::Event;
use crate::events::ErrorOccurred;
pub(super) use crate::handler::drop_payload;
use crate::handler::{FailureKind, HandlerError, HandlerFailure, SkipReason, catch_panic};
use crate::registry::HandlerRecord;
use crate::trace::{self, Frame, HandlerWord, TraceId};
use core::num::NonZeroU128;
use std::any::Any;
use std::borrow::Cow;
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// A handler call that did not return `Ok(())`.
pub(super) enum Failure {
    Error(HandlerError),
    Panic(Box<dyn Any + Send>),
}

#[inline(always)]
pub(super) fn isolate<T>(call: impl FnOnce() -> Result<T, HandlerError>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Failure::Error(err)),
        Err(payload) => Err(Failure::Panic(payload)),
    }
}

impl EventBus {
    #[cold]
    #[inline(never)]
    pub(super) fn handler_failed(
        &self,
        name: &str,
        failure: Failure,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        let (failure, payload) = describe(name, ctx.name, failure);
        if self.inner.config.failure_policy == FailurePolicy::Propagate {
            log_failure(&failure, ctx.trace_id(), "event handler failed");
            match payload {
                Some(payload) => resume_unwind(payload),
                None => panic!("{failure}"),
            }
        }
        self.announce(&failure, payload, ctx.trace_id(), "event handler failed");
        report.issues().failures.push(failure);
    }

    /// A route entry's call failed: a `#[handler]`'s skip marker is a skip
    /// (see `static_failed`), anything else a failure.
    #[cold]
    #[inline(never)]
    pub(super) fn entry_failed<E: Event>(
        &self,
        entry: &Entry<E>,
        failure: Failure,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        match entry {
            Entry::Static(record) | Entry::StaticAsync(record) => {
                self.static_failed(record, failure, ctx, report);
            }
            _ => self.handler_failed(entry.name(), failure, ctx, report),
        }
    }

    /// A `#[handler]`'s call failed, in the loop over an event's static
    /// handlers: a skip marker (an async handler's stand-in, a missing
    /// resource) is a skip, anything else a failure.
    #[cold]
    #[inline(never)]
    pub(super) fn static_failed<E: Event>(
        &self,
        record: &'static HandlerRecord<E>,
        failure: Failure,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        match failure {
            Failure::Error(err) if err.skip_reason().is_some() => {
                let reason = err.skip_reason().unwrap_or(SkipReason::Async);
                err.recycle();
                skipped(Skip::of_static(record, reason), ctx, report);
            }
            failure => self.handler_failed(record.name, failure, ctx, report),
        }
    }

    /// Drops an event the bus owns (one it decoded, for a replay or an
    /// emit by name, or one given to `emit_async`), isolated: a panic in
    /// its `Drop` is logged, emitted as `error.occurred` and listed in the
    /// report's `drop_failures`. No code at all for a type without drop
    /// glue.
    #[inline]
    pub(super) fn drop_event<E>(&self, event: E, report: &mut EmitReport) {
        if std::mem::needs_drop::<E>() {
            self.drop_event_isolated(event, report);
        }
    }

    #[inline(never)]
    fn drop_event_isolated<E>(&self, event: E, report: &mut EmitReport) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(event))) {
            let failure = Failure::Panic(payload);
            let (failure, payload) = describe(EVENT_DROP, report.event(), failure);
            self.announce(&failure, payload, report.trace_id(), EVENT_DROP_FAILED);
            let issues = report.issues();
            issues.event_drop_failure = Some(issues.drop_failures.len());
            issues.drop_failures.push(failure);
        }
    }

    /// [`drop_event`](Self::drop_event) for an event the bus decoded (a
    /// replay, an emit by name), as the last part of its emit: under its
    /// own trace, frame and nesting depth, with no handler current. What
    /// its `Drop` causes (an `error.occurred` if it panics, any event it
    /// emits) is then caused by that event and counts against the nesting
    /// limit, wherever the emit was called from (inside another event's
    /// handler, say). A refused event never got that far: it is dropped
    /// where the caller is.
    pub(super) fn drop_decoded<E: Event>(
        &self,
        event: OwnedEvent<E>,
        event_id: Option<EventId>,
        report: &mut EmitReport,
    ) {
        let event = event.into_inner();
        if !std::mem::needs_drop::<E>() || report.refused().is_some() {
            return self.drop_event(event, report);
        }
        let frame = Frame {
            event: Some(const { &E::NAME }),
            sequence: report.sequence(),
            event_id: event_id.and_then(|id| NonZeroU128::new(id.as_u128())),
            handler: HandlerWord::NONE,
        };
        let _trace = trace::install(report.trace_id());
        let _frame = DepthGuard::enter(DEPTH.with(Cell::get), frame);
        self.drop_event(event, report);
    }

    /// [`drop_event`](Self::drop_event) where no report is left to list it
    /// (a cancelled `emit_async`): `drop` runs `f`, which drops the event
    /// (with whatever else it drops), isolated; a panic is logged and
    /// emitted as `error.occurred`.
    pub(super) fn drop_isolated(
        &self,
        event: &'static str,
        trace_id: TraceId,
        drop: impl FnOnce(),
    ) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(drop)) {
            let (failure, payload) = describe(EVENT_DROP, event, Failure::Panic(payload));
            self.announce(&failure, payload, trace_id, EVENT_DROP_FAILED);
        }
    }

    /// Reports a failure of user code that the bus ran for `ctx`'s event
    /// outside a handler call, where no report can carry it (the `Drop` of
    /// a cancelled handler future): logged and emitted as `error.occurred`,
    /// never re-raised (it happens inside a `drop`).
    #[cold]
    #[inline(never)]
    pub(super) fn failed_outside_emit(&self, name: &str, failure: Failure, ctx: &EventContext<'_>) {
        let (failure, payload) = describe(name, ctx.name, failure);
        self.announce(&failure, payload, ctx.trace_id(), "event handler failed");
    }

    /// A recorder (the history, a test recorder) could not record the
    /// event: its `Serialize` failed or panicked. Reported in the emit's
    /// report, logged and emitted as `error.occurred`; never re-raised
    /// (recording is not a handler).
    #[cold]
    #[inline(never)]
    pub(super) fn not_recorded(
        &self,
        recorder: &str,
        failure: Failure,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        let (failure, payload) = describe(recorder, ctx.name, failure);
        self.announce(&failure, payload, ctx.trace_id(), "event not recorded");
        report.issues().not_recorded.push(failure);
    }

    /// Logs `failure`, drops its panic payload (isolated), and emits it as
    /// `error.occurred` unless one is being handled on this thread.
    pub(super) fn announce(
        &self,
        failure: &HandlerFailure,
        payload: Option<Box<dyn Any + Send>>,
        trace_id: TraceId,
        what: &str,
    ) {
        log_failure(failure, trace_id, what);
        if let Some(payload) = payload {
            drop_payload(payload);
        }
        if self.inner.config.error_events && !IN_ERROR_EVENT.with(Cell::get) {
            let event = ErrorOccurred {
                error: error_text(failure),
                error_type: failure.error_type().to_owned(),
                event: failure.event().to_owned(),
                handler: failure.handler().to_owned(),
            };
            // In the failure's trace, even where it is not the current one
            // (an event dropped after its emit's scope ended).
            if trace::current() == Some(trace_id) {
                drop(self.emit(event));
            } else {
                drop(trace::with_trace_id(trace_id, || self.emit(event)));
            }
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn refuse(&self, mut report: EmitReport, refusal: Refusal) -> EmitReport {
        tracing::warn!(
            target: "sbox_events",
            trace_id = %report.trace_id(),
            event = report.event(),
            "emit refused: {refusal}"
        );
        report.issues().refused = Some(refusal);
        report
    }
}

/// What `error.occurred` says for `failure`: its message, or, since the
/// event's own validation refuses an empty `error`, what kind of empty
/// failure it was (`Err(String::new())`, `panic!("")`).
fn error_text(failure: &HandlerFailure) -> String {
    if !failure.message().trim().is_empty() {
        return failure.message().to_owned();
    }
    match failure.kind() {
        FailureKind::Panic => "panicked with an empty message".to_owned(),
        _ => format!(
            "returned an error with an empty message ({})",
            failure.error_type()
        ),
    }
}

/// The failure of the handler (or other user code) named `name` on
/// `event`, and its panic payload if it panicked.
pub(super) fn describe(
    name: &str,
    event: &'static str,
    failure: Failure,
) -> (HandlerFailure, Option<Box<dyn Any + Send>>) {
    let handler = Cow::Owned(name.to_owned());
    match failure {
        Failure::Error(err) => (HandlerFailure::from_error(handler, event, err), None),
        Failure::Panic(payload) => (
            HandlerFailure::from_panic(handler, event, &*payload),
            Some(payload),
        ),
    }
}

fn log_failure(failure: &HandlerFailure, trace_id: TraceId, what: &str) {
    tracing::error!(
        target: "sbox_events",
        trace_id = %trace_id,
        event = failure.event(),
        handler = %LogSafe(failure.handler()),
        kind = ?failure.kind(),
        error = %LogSafe(failure.message()),
        "{what}"
    );
}

/// The event's [`Event::validate`], isolated: a panicking validator is a
/// failed validation.
pub(super) fn validate<E: Event>(event: &E) -> Result<(), String> {
    catch_panic("validation", || event.validate())
}

impl EventBus {
    /// Reports the closures whose release panicked on this thread since the
    /// last report: logged and emitted as `error.occurred`.
    #[inline]
    pub(super) fn report_release_failures(&self) {
        if release_failed() {
            self.announce_release_failures(None);
        }
    }

    /// Like [`report_release_failures`](Self::report_release_failures), and
    /// lists them in the report of the emit that released them.
    #[cold]
    #[inline(never)]
    pub(super) fn announce_release_failures(&self, mut report: Option<&mut EmitReport>) {
        if report.is_some() {
            // At the end of an emit, which released what it held: caused by
            // its event, not by the handler that ran last. (The emit is
            // over: nothing reads the handler after this.)
            trace::set_handler(trace::HandlerKey::None);
        }
        for failure in take_release_failures() {
            let trace_id = trace::current().unwrap_or_else(TraceId::random);
            self.announce(&failure, None, trace_id, RELEASE_FAILED);
            if let Some(report) = report.as_deref_mut() {
                report.issues().drop_failures.push(failure);
            }
        }
    }
}

/// An event the bus owns while its handlers run (decoded for a replay or
/// an emit by name, or given to `emit_async`). Handed back by
/// [`into_inner`](OwnedEvent::into_inner) to be dropped with
/// [`EventBus::drop_event`]; dropped while a panic unwinds (a handler's,
/// under [`FailurePolicy::Propagate`], or any other: an executor dropping
/// an unfinished `emit_async` as it unwinds), a panic of the event's own
/// `Drop` is caught and only logged, since a second panic during an unwind
/// would abort the process (and `error.occurred` would run handlers inside
/// another panic's unwind). Dropped otherwise
/// (a cancelled `emit_async`, whose caller isolates the drop), it drops
/// the event as it is.
pub(super) struct OwnedEvent<E: Event>(ManuallyDrop<E>);

impl<E: Event> OwnedEvent<E> {
    #[inline(always)]
    pub(super) fn new(event: E) -> Self {
        OwnedEvent(ManuallyDrop::new(event))
    }

    #[inline(always)]
    pub(super) fn into_inner(self) -> E {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped (`ManuallyDrop`) nor used again,
        // so the event is taken out exactly once.
        unsafe { ManuallyDrop::take(&mut this.0) }
    }
}

impl<E: Event> Deref for OwnedEvent<E> {
    type Target = E;

    #[inline(always)]
    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E: Event> Drop for OwnedEvent<E> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and `self.0` is not used after it;
        // `into_inner`, the only other taker, forgets `self`.
        let event = unsafe { ManuallyDrop::take(&mut self.0) };
        if !std::mem::needs_drop::<E>() || !std::thread::panicking() {
            drop(event);
            return;
        }
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(event))) {
            let (failure, payload) = describe(EVENT_DROP, E::NAME, Failure::Panic(payload));
            let trace_id = trace::current().unwrap_or_else(TraceId::random);
            log_failure(&failure, trace_id, EVENT_DROP_FAILED_UNWINDING);
            if let Some(payload) = payload {
                drop_payload(payload);
            }
        }
    }
}

const EVENT_DROP_FAILED_UNWINDING: &str =
    "an event panicked while the bus dropped it, during an unwind";

/// What a panic in an event's own `Drop` is named in reports.
pub(crate) const EVENT_DROP: &str = "the event's `Drop`";

const EVENT_DROP_FAILED: &str = "an event panicked while the bus dropped it";

const RELEASE_FAILED: &str =
    "a removed subscription's closure, or a bus's resource, panicked while it was dropped";

/// Logs the release failures on this thread (when the bus itself is gone).
#[cold]
pub(super) fn log_release_failures() {
    if release_failed() {
        for failure in take_release_failures() {
            log_failure(
                &failure,
                trace::current().unwrap_or_else(TraceId::random),
                RELEASE_FAILED,
            );
        }
    }
}
