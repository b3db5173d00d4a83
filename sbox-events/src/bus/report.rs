//! What an emit returns: [`EmitReport`] (delivered, failures, refusal), and
//! the errors of the bus's own API.

use crate::escape::LogSafe;
use crate::handler::{HandlerFailure, SkipReason};
use crate::registry::StaticName;
use crate::trace::{TraceBits, TraceId};
use std::borrow::Cow;
use std::fmt;

/// What happened to one emit.
///
/// Small on purpose (failures and refusals live behind one pointer, which is
/// null when all went well): returning and dropping it is a few moves.
#[derive(Clone)]
// In 16-byte blocks, each written by one store on the path of an emit
// nobody hears (the trace id, the two zero words, the name; see
// `StaticName` in the registry module): a caller that copies the report by
// blocks then reads what the stores forward, without waiting for them.
#[repr(C)]
pub struct EmitReport {
    /// All zero: the emit's own implicit trace (it started outside any
    /// trace), whose id is derived from `sequence` only when asked for.
    trace_id: TraceBits,
    pub(super) delivered: usize,
    issues: Option<Box<Issues>>,
    event: StaticName,
    pub(super) sequence: u64,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Issues {
    pub(super) failures: Vec<HandlerFailure>,
    pub(super) refused: Option<Refusal>,
    pub(super) skipped: Vec<(Cow<'static, str>, SkipReason)>,
    pub(super) not_recorded: Vec<HandlerFailure>,
    pub(super) drop_failures: Vec<HandlerFailure>,
    /// Which of `drop_failures` is the event's own `Drop` (a subscription
    /// may have any name, that one's too).
    pub(super) event_drop_failure: Option<usize>,
}

impl EmitReport {
    /// A report in the trace `trace_id`: all zero for the implicit trace
    /// of the emit's own number, which the report is then given
    /// (`sequence`) or has its id made first (`keep_trace_id`).
    #[inline]
    pub(super) fn new(event: &'static str, trace_id: TraceBits) -> Self {
        EmitReport {
            event: StaticName::new(event),
            trace_id,
            sequence: 0,
            delivered: 0,
            issues: None,
        }
    }

    /// The report of an emit nobody observed, numbered `sequence`; without
    /// a `trace_id`, its trace is the implicit one of that number, made when
    /// [`trace_id`](EmitReport::trace_id) is called.
    #[inline]
    pub(super) fn unheard(event: StaticName, trace_id: TraceBits, sequence: u64) -> Self {
        EmitReport {
            event,
            trace_id,
            sequence,
            delivered: 0,
            issues: None,
        }
    }

    /// Makes the id of the implicit trace of the number `sequence` now if
    /// the report is in it (all-zero `trace_id`), for a report that is not
    /// given that number (a refused emit, numbered 0).
    #[cold]
    pub(super) fn keep_trace_id(&mut self, sequence: u64) {
        self.trace_id = TraceBits::new(Some(self.trace_id.or_implicit(sequence)));
    }

    pub(super) fn issues(&mut self) -> &mut Issues {
        self.issues.get_or_insert_with(Box::default)
    }

    /// The event's name.
    pub fn event(&self) -> &'static str {
        self.event.get()
    }

    /// The trace the event ran in.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id.or_implicit(self.sequence)
    }

    /// The event's sequence number
    /// ([`EventContext::sequence`](crate::EventContext::sequence)); 0 if the
    /// emit was [refused](EmitReport::refused) before it got one.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// How many handlers were called (including the ones that failed; not
    /// the [`skipped`](EmitReport::skipped) ones).
    pub fn delivered(&self) -> usize {
        self.delivered
    }

    /// How many handlers were called and succeeded.
    pub fn succeeded(&self) -> usize {
        self.delivered.saturating_sub(self.failures().len())
    }

    /// The handlers that returned `Err` or panicked, in call order.
    pub fn failures(&self) -> &[HandlerFailure] {
        self.issues.as_ref().map_or(&[], |i| &i.failures)
    }

    /// Why the event was not delivered at all, if it was refused.
    pub fn refused(&self) -> Option<&Refusal> {
        self.issues.as_ref()?.refused.as_ref()
    }

    /// The async handlers (`#[handler] async fn`,
    /// [`subscribe_async`](crate::EventBus::subscribe_async)) that a
    /// synchronous [`emit`](crate::EventBus::emit) did not run, by name, in
    /// dispatch order. Always empty after
    /// [`emit_async`](crate::EventBus::emit_async), which runs them.
    pub fn skipped(&self) -> impl ExactSizeIterator<Item = &str> {
        self.skips().map(|(name, _)| name)
    }

    /// The handlers this emit did not call, by name, with why: async
    /// handlers in a synchronous emit, and `#[handler]`s taking a resource
    /// the bus lacks ([`EventBusBuilder::resource`](crate::EventBusBuilder::resource)).
    pub fn skips(&self) -> impl ExactSizeIterator<Item = (&str, SkipReason)> {
        let skipped = self.issues.as_ref().map_or(&[][..], |i| &i.skipped);
        skipped.iter().map(|(name, reason)| (&**name, *reason))
    }

    /// The recorders (the bus's [history](crate::history), a
    /// [`testing::Recorder`](crate::testing::Recorder)) that could not
    /// record this event because its `Serialize` failed or panicked: each
    /// failure's [`handler`](HandlerFailure::handler) is the recorder
    /// (`sbox_events::history`, `sbox_events::testing::Recorder`). The
    /// handlers ran all the same.
    pub fn not_recorded(&self) -> &[HandlerFailure] {
        self.issues.as_ref().map_or(&[], |i| &i.not_recorded)
    }

    /// Subscriptions removed while this emit ran whose closure it released
    /// last, and whose captures' `Drop` panicked then: each failure names the
    /// subscription. Such a panic is caught wherever the release happens;
    /// here it was this emit's.
    ///
    /// Also the event itself, when the bus owned it (decoded for
    /// [`replay`](crate::EventBus::replay) or an emit by name, or given to
    /// [`emit_async`](crate::EventBus::emit_async)) and its `Drop` panicked
    /// after the handlers ran: that failure's handler is
    /// ``the event's `Drop` ``. (An event given to
    /// [`emit`](crate::EventBus::emit) is dropped as in any function it is given
    /// to: its `Drop` is not isolated; `emit_ref` leaves it to the caller.)
    pub fn drop_failures(&self) -> &[HandlerFailure] {
        self.issues.as_ref().map_or(&[], |i| &i.drop_failures)
    }

    /// No failure, not refused, no async handler skipped, recorded by every
    /// recorder, and no panicking release.
    pub fn is_ok(&self) -> bool {
        self.issues.is_none()
    }
}

impl Drop for EmitReport {
    /// Inlined, so that dropping the report of an emit that went well is a
    /// null check (the drop glue of the `Box` alone is not inlined).
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(issues) = self.issues.take() {
            drop_issues(issues);
        }
    }
}

// A public type: these are part of its API.
static_assertions::assert_impl_all!(
    EmitReport: Send,
    Sync,
    Clone,
    Unpin,
    std::panic::UnwindSafe,
    std::panic::RefUnwindSafe
);

#[cold]
#[inline(never)]
fn drop_issues(issues: Box<Issues>) {
    drop(issues);
}

impl fmt::Debug for EmitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmitReport")
            .field("event", &self.event.get())
            .field("trace_id", &self.trace_id())
            .field("sequence", &self.sequence)
            .field("delivered", &self.delivered)
            .field("issues", &self.issues)
            .finish()
    }
}

impl fmt::Display for EmitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(refusal) = self.refused() {
            write!(f, "`{}` refused: {refusal}", self.event.get())?;
            return self.fmt_drop_failures(f);
        }
        write!(
            f,
            "`{}` delivered to {} handler(s), {} failed",
            self.event.get(),
            self.delivered,
            self.failures().len()
        )?;
        for failure in self.failures() {
            write!(f, "; {failure}")?;
        }
        for failure in self.not_recorded() {
            write!(
                f,
                "; not recorded by `{}`: {}",
                LogSafe(failure.handler()),
                LogSafe(failure.message())
            )?;
        }
        self.fmt_drop_failures(f)?;
        let asyncs = self
            .skips()
            .filter(|(_, reason)| *reason == SkipReason::Async)
            .count();
        if asyncs > 0 {
            write!(
                f,
                "; {asyncs} async handler(s) skipped (emit_async runs them):"
            )?;
            for (name, _) in self.skips().filter(|(_, r)| *r == SkipReason::Async) {
                write!(f, " `{}`", LogSafe(name))?;
            }
        }
        for (name, reason) in self.skips() {
            if let SkipReason::MissingResource { .. } = reason {
                write!(f, "; `{}` skipped: {reason}", LogSafe(name))?;
            }
        }
        Ok(())
    }
}

impl EmitReport {
    fn fmt_drop_failures(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let event_drop = self.issues.as_ref().and_then(|i| i.event_drop_failure);
        for (at, failure) in self.drop_failures().iter().enumerate() {
            if Some(at) == event_drop {
                let message = LogSafe(failure.message());
                write!(f, "; the event panicked while it was dropped: {message}")?;
            } else {
                write!(f, "; {failure} (while its closure was dropped)")?;
            }
        }
        Ok(())
    }
}

/// Why an emit delivered nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The emit would nest deeper than the bus allows.
    DepthLimit {
        /// The depth the event would have run at.
        depth: u32,
        /// The bus's [`max_depth`](crate::EventBusBuilder::max_depth).
        limit: u32,
    },
    /// The event failed its validation on a bus built with
    /// [`validate_on_emit`](crate::EventBusBuilder::validate_on_emit).
    Invalid {
        /// What the validation said.
        reason: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::DepthLimit { depth, limit } => write!(
                f,
                "an emit at nesting depth {depth} is over the limit: max_depth {limit} allows \
                 depths 0 to {} (does a handler re-emit in a loop?)",
                limit.saturating_sub(1)
            ),
            Refusal::Invalid { reason } => {
                write!(f, "the event is invalid: {}", LogSafe(reason))
            }
        }
    }
}

/// [`EventBus::disable_handler`](crate::EventBus::disable_handler) was given a name no `#[handler]` has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownHandlerError {
    pub(super) name: String,
}

impl UnknownHandlerError {
    /// The name that was asked for.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownHandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no #[handler] named `{}` is linked into this binary \
             (names are full paths like `my_crate::module::function` unless set with `name = \"..\"`)",
            self.name
        )
    }
}

impl std::error::Error for UnknownHandlerError {}
