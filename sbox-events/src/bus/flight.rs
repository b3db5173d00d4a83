//! The flight recorder: when it is on, each handler call of an emit is
//! timed and its outcome kept ([`HandlerRun`]), and the runs are handed to
//! the bus's recorder (the history) once the event's handlers are done.
//!
//! Off, it costs one branch per emit. On: two clock reads per handler
//! call, two per event, and one record per call (see
//! `EventBusBuilder::flight_recorder` for the allocations).

use super::dispatch::{Called, call_entry};
use super::failures::isolate;
use super::routes::Route;
use super::{EmitReport, EventBus};
use crate::context::EventContext;
use crate::event::Event;
use crate::flight::{HandlerRun, RunOutcome, this_thread};
use crate::handler::FailureKind;
use crate::stats::StatsCell;
use crate::trace::{self, HandlerKey};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The runs of one event's handlers, handed to the bus's recorder when it
/// is dropped: after the last handler, and also when the emit unwinds
/// (`FailurePolicy::Propagate`) or its `emit_async` future is dropped (the
/// runs that ended are kept).
pub(super) struct FlightLog<'a, 'c> {
    /// The wall clock and the monotonic clock read together, to place each
    /// run (timed with the monotonic clock) on the wall clock.
    wall: SystemTime,
    at: Instant,
    runs: Vec<HandlerRun>,
    bus: &'a EventBus,
    ctx: &'a EventContext<'c>,
}

/// The report's state before a handler call, and when and where it
/// started.
pub(super) struct Mark {
    at: Instant,
    failures: usize,
    skips: usize,
    delivered: usize,
    thread: (u64, Option<Arc<str>>),
}

impl<'a, 'c> FlightLog<'a, 'c> {
    pub(super) fn new(bus: &'a EventBus, ctx: &'a EventContext<'c>) -> Self {
        FlightLog {
            wall: SystemTime::now(),
            at: Instant::now(),
            runs: Vec::new(),
            bus,
            ctx,
        }
    }

    /// Right before a handler's call (on the thread of its first poll).
    #[inline]
    pub(super) fn mark(report: &EmitReport) -> Mark {
        Mark {
            at: Instant::now(),
            failures: report.failures().len(),
            skips: report.skips().len(),
            delivered: report.delivered,
            thread: this_thread(),
        }
    }

    /// Once the call of `handler` (which ended at `end`) is accounted for
    /// in `report`: its outcome is what the report gained.
    pub(super) fn ran(&mut self, handler: &str, mark: Mark, end: Instant, report: &EmitReport) {
        // (A skip is also taken off `delivered`: checked first.)
        let outcome = if let Some((_, reason)) = report.skips().nth(mark.skips) {
            let mut reason = reason.to_string();
            reason.shrink_to_fit(); // counted by its length in the history
            RunOutcome::Skipped { reason }
        } else if report.delivered < mark.delivered {
            RunOutcome::Filtered
        } else if let Some(failure) = report.failures().get(mark.failures) {
            let message = failure.message().to_owned();
            match failure.kind() {
                FailureKind::Panic => RunOutcome::Panic { message },
                _ => RunOutcome::Error { message },
            }
        } else {
            RunOutcome::Ok
        };
        let (thread, thread_name) = mark.thread;
        self.runs.push(HandlerRun {
            handler: Cow::Owned(handler.to_owned()),
            outcome,
            started: self.wall + mark.at.saturating_duration_since(self.at),
            duration: end.saturating_duration_since(mark.at),
            thread,
            thread_name,
        });
    }
}

impl Drop for FlightLog<'_, '_> {
    /// Hands the runs to the bus's recorder, if it records this event.
    fn drop(&mut self) {
        let (bus, ctx) = (self.bus, self.ctx);
        let config = &bus.inner.config;
        if let Some(recorder) = &bus.inner.recorder
            && (!ctx.replay || config.record_replays)
            && !self.runs.is_empty()
        {
            let runs = std::mem::take(&mut self.runs);
            // Maybe during an unwind: nothing may panic out of here.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                recorder.handlers_ran(ctx, runs);
            }));
        }
    }
}

impl EventBus {
    /// The handler loops of `dispatch` with the flight recorder on.
    #[inline(never)]
    pub(super) fn dispatch_flight<E: Event>(
        &self,
        route: Option<(&Route<E>, &[Arc<StatsCell>])>,
        event: &E,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        let mut flight = FlightLog::new(self, ctx);
        match route {
            Some((route, stats)) => {
                report.delivered = route.entries.len();
                for (position, entry) in route.entries.iter().enumerate() {
                    let stats = stats.get(position).map(|cell| &**cell);
                    let started = stats.and_then(|s| s.start().then(Instant::now));
                    let mark = FlightLog::mark(report);
                    let result = call_entry(entry, event, ctx);
                    let end = Instant::now();
                    let timing = stats.map(|stats| (stats, started));
                    self.settle(entry, result, timing, ctx, report);
                    flight.ran(entry.name(), mark, end, report);
                }
            }
            None if self.inner.config.static_handlers => {
                let statics = E::__slot().statics();
                report.delivered = statics.len();
                for record in statics {
                    trace::set_handler(HandlerKey::Static(&record.name));
                    let mark = FlightLog::mark(report);
                    let result = isolate(|| record.call(event, ctx)).map(|()| Called::Yes);
                    let end = Instant::now();
                    if let Err(failure) = result {
                        self.static_failed(record, failure, ctx, report);
                    }
                    flight.ran(record.name, mark, end, report);
                }
            }
            None => {}
        }
        drop(flight); // hands the runs over
    }
}
