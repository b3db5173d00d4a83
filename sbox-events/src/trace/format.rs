//! [`TraceIdFormat`]: `tracing_subscriber::fmt` lines that show the trace id
//! of an emit started outside any scope.

use super::implicit;
use core::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Wraps a `tracing_subscriber::fmt` event format: a line written while an
/// emit runs in its implicit trace (started outside any scope), or inside a
/// scope whose span the subscriber's filter disabled, begins with
/// `trace{trace_id=…} `, as lines inside a scope show the scope's span.
///
/// The id is read when a line is written, so an emit costs nothing for it:
/// no span, no allocation. Lines outside any trace are unchanged.
///
/// ```
/// use sbox_events::trace::TraceIdFormat;
/// use tracing_subscriber::fmt;
///
/// let subscriber = fmt()
///     .event_format(TraceIdFormat::new(fmt::format().without_time()))
///     .finish();
/// # let _ = subscriber;
/// ```
#[derive(Clone, Debug, Default)]
pub struct TraceIdFormat<F> {
    inner: F,
}

impl<F> TraceIdFormat<F> {
    /// `inner`, with the implicit trace id in front of its lines.
    pub fn new(inner: F) -> Self {
        TraceIdFormat { inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for TraceIdFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if let Some(id) = implicit() {
            write!(writer, "trace{{trace_id={id}}} ")?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}
