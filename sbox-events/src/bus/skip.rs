//! Handlers that cannot run in an emit (an async handler in a synchronous
//! emit, a `#[handler]` whose resource the bus lacks): how they are
//! reported (in the [`EmitReport`], never silently) and warned about once
//! per handler.

use super::EmitReport;
use crate::context::EventContext;
use crate::escape::LogSafe;
use crate::event::Event;
use crate::handler::SkipReason;
use crate::registry::HandlerRecord;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

/// A handler that an emit skipped: its name, why, and the flag that makes
/// the warning about it appear once.
pub(super) struct Skip<'a> {
    pub(super) name: Cow<'static, str>,
    pub(super) reason: SkipReason,
    /// A subscription's own flag, or a `#[handler]`'s in its event's slot.
    pub(super) warned: &'a AtomicBool,
}

impl Skip<'static> {
    /// The skip of `record`, a `#[handler]` of `E`.
    pub(super) fn of_static<E: Event>(
        record: &'static HandlerRecord<E>,
        reason: SkipReason,
    ) -> Skip<'static> {
        let slot = E::__slot();
        let statics = slot.statics();
        let position = statics
            .iter()
            .position(|r| std::ptr::eq(*r, record))
            .unwrap_or(0);
        Skip {
            name: Cow::Borrowed(record.name),
            reason,
            warned: slot.skip_warned(position, statics.len()),
        }
    }
}

/// Whether this is the first time: after that, one relaxed load.
fn first_time(warned: &AtomicBool) -> bool {
    !warned.load(Ordering::Relaxed) && !warned.swap(true, Ordering::Relaxed)
}

/// Reports a handler an emit cannot run, and warns about it once per
/// handler (per process).
#[cold]
#[inline(never)]
pub(super) fn skipped(skip: Skip<'_>, ctx: &EventContext<'_>, report: &mut EmitReport) {
    report.delivered -= 1;
    if first_time(skip.warned) {
        match skip.reason {
            SkipReason::MissingResource { type_name } => tracing::warn!(
                target: "sbox_events",
                trace_id = %ctx.trace_id(),
                event = ctx.name,
                handler = %LogSafe(&skip.name),
                resource = type_name,
                "handler skipped: the bus has no `{type_name}` resource; add it with \
                 `EventBus::builder().resource(..)` (this warning is shown once per handler)"
            ),
            _ => tracing::warn!(
                target: "sbox_events",
                trace_id = %ctx.trace_id(),
                event = ctx.name,
                handler = %LogSafe(&skip.name),
                "async handler skipped: a synchronous `emit` cannot run it; use `emit_async` \
                 (this warning is shown once per handler)"
            ),
        }
    }
    report.issues().skipped.push((skip.name, skip.reason));
}
