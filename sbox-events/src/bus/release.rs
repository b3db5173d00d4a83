//! Releasing a subscription's closures: they are user code down to their
//! captures' `Drop`, and are dropped by whoever holds the last reference
//! (an unsubscribe, an emit that still held the route, the bus's own drop).
//! A panic there is caught and kept on the thread until the bus reports it
//! (`failures.rs`).

use crate::handler::{HandlerFailure, drop_payload};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    /// Panics from releasing closures on this thread, not yet reported.
    static RELEASE_FAILURES: RefCell<Vec<HandlerFailure>> = const { RefCell::new(Vec::new()) };
    /// Whether `RELEASE_FAILURES` has any (read on the hot path: no
    /// destructor, one load).
    static RELEASE_PENDING: Cell<bool> = const { Cell::new(false) };
}

/// Drops a subscription's closures: user code (the `Drop` of everything they
/// captured), run by whoever releases the last reference (an unsubscribe,
/// an emit that still held the route, the bus's own drop). A panic there is
/// caught and kept as a failure of the subscription `name` on `event` until
/// the bus reports it ([`take_release_failures`]).
pub(super) fn release<T>(name: &str, event: &'static str, closures: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(closures))) {
        let failure = HandlerFailure::from_panic(Cow::Owned(name.to_owned()), event, &*payload);
        drop_payload(payload);
        let _ = RELEASE_FAILURES.try_with(|failures| failures.borrow_mut().push(failure));
        let _ = RELEASE_PENDING.try_with(|pending| pending.set(true));
    }
}

/// Whether a release on this thread failed since the last
/// [`take_release_failures`].
#[inline]
pub(super) fn release_failed() -> bool {
    RELEASE_PENDING.try_with(Cell::get).unwrap_or(false)
}

/// The release failures on this thread not reported yet.
#[cold]
pub(super) fn take_release_failures() -> Vec<HandlerFailure> {
    let _ = RELEASE_PENDING.try_with(|pending| pending.set(false));
    RELEASE_FAILURES
        .try_with(|failures| std::mem::take(&mut *failures.borrow_mut()))
        .unwrap_or_default()
}
