//! Futures that run inside a trace: [`TraceFutureExt`] and [`Traced`].

use super::{TraceId, TraceScope, current, enter};
use core::fmt;
use core::future::Future;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::task::{Context, Poll};
use pin_project_lite::pin_project;

/// Runs futures inside a trace, on any executor.
///
/// ```
/// use sbox_events::trace::{self, TraceFutureExt, TraceId};
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
///
/// let id = TraceId::random();
/// let seen = block_on(async { trace::current() }.with_trace_id(id));
/// assert_eq!(seen, Some(id));
/// ```
pub trait TraceFutureExt: Future + Sized {
    /// Makes `id` current during every poll of this future (and while it is
    /// dropped), and only then.
    fn with_trace_id(self, id: TraceId) -> Traced<Self> {
        Traced::new(Some(id), self)
    }

    /// Carries the trace current *now* into every poll. If none is, each
    /// poll runs in whatever trace the polling thread has.
    fn in_current_trace(self) -> Traced<Self> {
        Traced::new(current(), self)
    }
}

impl<F: Future> TraceFutureExt for F {}

pin_project! {
    /// A future that runs inside a trace; see [`TraceFutureExt`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Traced<F> {
        trace: Option<TraceId>,
        // `ManuallyDrop` so that `PinnedDrop` can drop the inner future
        // inside the trace (fields are dropped after it returns).
        #[pin]
        inner: ManuallyDrop<F>,
    }

    impl<F> PinnedDrop for Traced<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let _scope = this.trace.map(enter);
            // SAFETY: this is the only place `inner` is dropped, and it runs
            // once: `PinnedDrop::drop` is called exactly once, when the
            // `Traced` itself is dropped, and `inner` is not used after it.
            // Dropping in place keeps the pinning promise.
            unsafe { ManuallyDrop::drop(this.inner.get_unchecked_mut()) }
        }
    }
}

impl<F> Traced<F> {
    fn new(trace: Option<TraceId>, inner: F) -> Self {
        Traced {
            trace,
            inner: ManuallyDrop::new(inner),
        }
    }
}

impl<F: Future> Future for Traced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _scope: Option<TraceScope> = this.trace.map(enter);
        // SAFETY: `ManuallyDrop<F>` is a transparent wrapper of `F`, and the
        // projection keeps `inner` pinned: the `F` inside is never moved
        // (it is dropped in place by `PinnedDrop`).
        let inner = unsafe { this.inner.map_unchecked_mut(|inner| &mut **inner) };
        inner.poll(cx)
    }
}

impl<F> fmt::Debug for Traced<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traced")
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}
