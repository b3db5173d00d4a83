//! Async handlers that a synchronous emit cannot run: how they are
//! reported (in the [`EmitReport`], never silently) and warned about once
//! per handler.

use super::EmitReport;
use crate::context::EventContext;
use crate::escape::LogSafe;
use crate::event::Event;
use crate::registry::HandlerRecord;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

/// An async handler that a synchronous emit skipped: its name, and the
/// flag that makes the warning about it appear once.
pub(super) struct Skip<'a> {
    pub(super) name: Cow<'static, str>,
    /// A subscription's own flag, or a `#[handler]`'s in its event's slot.
    pub(super) warned: &'a AtomicBool,
}

impl Skip<'static> {
    /// The skip of `record`, a `#[handler] async fn` of `E`.
    pub(super) fn of_static<E: Event>(record: &'static HandlerRecord<E>) -> Skip<'static> {
        let slot = E::__slot();
        let statics = slot.statics();
        let position = statics
            .iter()
            .position(|r| std::ptr::eq(*r, record))
            .unwrap_or(0);
        Skip {
            name: Cow::Borrowed(record.name),
            warned: slot.skip_warned(position, statics.len()),
        }
    }
}

/// Whether this is the first time: after that, one relaxed load.
fn first_time(warned: &AtomicBool) -> bool {
    !warned.load(Ordering::Relaxed) && !warned.swap(true, Ordering::Relaxed)
}

/// Reports an async handler that a synchronous emit cannot run, and warns
/// about it once per handler (per process).
#[cold]
#[inline(never)]
pub(super) fn skipped(skip: Skip<'_>, ctx: &EventContext<'_>, report: &mut EmitReport) {
    report.delivered -= 1;
    if first_time(skip.warned) {
        tracing::warn!(
            target: "sbox_events",
            trace_id = %ctx.trace_id,
            event = ctx.name,
            handler = %LogSafe(&skip.name),
            "async handler skipped: a synchronous `emit` cannot run it; use `emit_async` \
             (this warning is shown once per handler)"
        );
    }
    report.issues().skipped.push(skip.name);
}
