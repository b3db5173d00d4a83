//! Async handlers that a synchronous emit cannot run: how they are
//! reported (in the [`EmitReport`], never silently) and warned about once
//! per handler.

use super::EmitReport;
use crate::context::EventContext;
use crate::escape::LogSafe;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// An async handler that a synchronous emit skipped: its name, and what
/// makes the warning about it appear once.
pub(super) struct Skip<'a> {
    pub(super) name: Cow<'static, str>,
    pub(super) once: WarnOnce<'a>,
}

/// Whether a skipped handler was warned about already.
pub(super) enum WarnOnce<'a> {
    /// A subscription's own flag.
    Flag(&'a AtomicBool),
    /// A `#[handler]` (records live in statics that inventory builds from
    /// constants, which cannot hold an atomic): by the name of its event
    /// and its own name.
    Named(&'static str),
}

impl WarnOnce<'_> {
    fn first_time(&self, handler: &str) -> bool {
        static WARNED: Mutex<BTreeSet<(&'static str, String)>> = Mutex::new(BTreeSet::new());
        match self {
            WarnOnce::Flag(flag) => !flag.swap(true, Ordering::Relaxed),
            WarnOnce::Named(event) => WARNED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((event, handler.to_owned())),
        }
    }
}

/// Reports an async handler that a synchronous emit cannot run, and warns
/// about it once per handler (per process).
#[cold]
#[inline(never)]
pub(super) fn skipped(skip: Skip<'_>, ctx: &EventContext<'_>, report: &mut EmitReport) {
    report.delivered -= 1;
    if skip.once.first_time(&skip.name) {
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
