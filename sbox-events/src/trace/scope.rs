//! The current trace of each thread: reading it, scopes that install one,
//! the implicit trace of an emit, and carrying a trace into a new thread.

use super::TraceId;
use super::cause::{Frame, SavedFrame, current_frame, replace_frame, restore_frame};
use core::fmt;
use core::marker::PhantomData;
use std::cell::{Cell, RefCell};

// The current trace of each thread.
//
// `CURRENT` is what `current()` returns, kept up to date so the hot path reads
// one cell (two when it is 0: `PENDING_ROOT` below). It is the top of `SCOPES` (explicit guards) or, under no guard,
// `ROOT` (the implicit trace of an emit that started outside any scope).
// Each guard removes its own entry by id, which is what makes out-of-order
// drops restore the right value.
//
// An implicit root is installed unmade: `PENDING_ROOT` holds the number of
// the emit whose trace it is, and `CURRENT` and `ROOT` stay 0 until someone
// reads the current trace (`current`; `current_bits` declines while one is
// pending), which makes the id from the number (`implicit_id`) and stores it
// in both. An emit whose handlers never ask for the trace never makes it;
// its context and report make the same id from the same number when asked.

thread_local! {
    static CURRENT: Cell<u128> = const { Cell::new(0) };
    static ROOT: Cell<u128> = const { Cell::new(0) };
    /// The number of the emit whose implicit root trace is installed and not
    /// made yet; 0 if none (numbers start at 1).
    static PENDING_ROOT: Cell<u64> = const { Cell::new(0) };
    static SCOPES: RefCell<Vec<(u64, u128)>> = const { RefCell::new(Vec::new()) };
    /// `SCOPES.len()`, readable without touching the `RefCell`.
    static OPEN_SCOPES: Cell<usize> = const { Cell::new(0) };
    /// How many open scopes entered their `tracing` span (a subscriber's
    /// filter may disable it: then log lines do not show the id by it).
    static SPANNED_SCOPES: Cell<usize> = const { Cell::new(0) };
    static NEXT_SCOPE: Cell<u64> = const { Cell::new(1) };
}

/// The current thread's trace: the innermost open scope's, else the
/// implicit trace of the emit running on this thread (one started outside
/// any scope), else `None`. The first read of an emit's implicit trace makes
/// its id (see the [module docs](crate::trace#cost)).
#[inline]
pub fn current() -> Option<TraceId> {
    match TraceId::from_u128(CURRENT.with(Cell::get)) {
        Some(id) => Some(id),
        None => make_pending_root(),
    }
}

/// The implicit root trace installed unmade (see `PENDING_ROOT`), made now
/// and stored as current; `None` if there is none. Called only when
/// `CURRENT` is 0, which no open scope leaves it.
#[inline]
fn make_pending_root() -> Option<TraceId> {
    match PENDING_ROOT.with(Cell::get) {
        0 => None,
        sequence => Some(make_root(sequence)),
    }
}

/// Makes the implicit root trace of the emit numbered `sequence` current.
/// Out of line: once per emit at most, for an emit whose trace is read.
#[cold]
#[inline(never)]
fn make_root(sequence: u64) -> TraceId {
    let id = super::implicit_id(sequence);
    PENDING_ROOT.with(|p| p.set(0));
    ROOT.with(|r| r.set(id.as_u128()));
    CURRENT.with(|c| c.set(id.as_u128()));
    id
}

/// An optional trace id as the 16 bytes of a `u128` in memory (all zero:
/// none), in an array: moving it is one 16-byte copy where a `u128` is two
/// 8-byte ones (see `StaticName` in the registry module for why a report
/// wants that).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct TraceBits([u64; 2]);

impl TraceBits {
    #[inline]
    pub(crate) fn new(id: Option<TraceId>) -> TraceBits {
        // SAFETY: `u128` and `[u64; 2]` are both 16 bytes of plain data,
        // every bit pattern valid.
        TraceBits(unsafe { core::mem::transmute::<u128, [u64; 2]>(id.map_or(0, TraceId::as_u128)) })
    }

    #[inline]
    pub(crate) fn get(self) -> Option<TraceId> {
        // SAFETY: as in `new`.
        TraceId::from_u128(unsafe { core::mem::transmute::<[u64; 2], u128>(self.0) })
    }

    /// The id these bits hold; all zero, the implicit trace's of the emit
    /// numbered `sequence` (see [`emit_trace`]).
    #[inline]
    pub(crate) fn or_implicit(self, sequence: u64) -> TraceId {
        self.get().unwrap_or_else(|| super::implicit_id(sequence))
    }
}

// `current_bits` reads a `u128` as a `TraceBits`.
const _: () = assert!(align_of::<u128>() >= align_of::<TraceBits>());

/// [`current`], as it lies in memory, read without a call; `None` while
/// an emit's implicit root is installed unmade (see `PENDING_ROOT`: then
/// only [`current`] gives it, making it).
#[inline(always)]
pub(crate) fn current_bits() -> Option<TraceBits> {
    if PENDING_ROOT.with(Cell::get) != 0 {
        return None;
    }
    // SAFETY: `CURRENT`'s `u128` is 16 bytes without padding, valid as
    // `TraceBits` (a `[u64; 2]`), and aligned at least as much (asserted
    // above); read as such, it is copied as one block.
    Some(CURRENT.with(|c| unsafe { c.as_ptr().cast::<TraceBits>().read() }))
}

/// Recomputes `CURRENT` after a scope closed. `try_with`: during thread
/// teardown the locals may be gone already.
fn refresh_current() {
    let top = SCOPES
        .try_with(|scopes| scopes.borrow().last().map(|&(_, id)| id))
        .ok()
        .flatten();
    let root = ROOT.try_with(Cell::get).unwrap_or(0);
    let _ = CURRENT.try_with(|c| c.set(top.unwrap_or(root)));
}

/// Makes `id` the current trace until the returned guard is dropped.
///
/// ```
/// use sbox_events::trace::{self, TraceId};
///
/// let (a, b) = (TraceId::random(), TraceId::random());
/// let outer = trace::enter(a);
/// let inner = trace::enter(b);
/// drop(outer); // out of order: `b` is still the innermost open scope
/// assert_eq!(trace::current(), Some(b));
/// drop(inner);
/// assert_eq!(trace::current(), None);
/// ```
#[must_use = "the trace is current only while the guard lives"]
pub fn enter(id: TraceId) -> TraceScope {
    // `try_with`: a future dropped by another thread-local's destructor may
    // get here after this thread's scope list is gone. The scope is then
    // inert (nothing is installed, nothing to undo), never a panic.
    let Ok(scope_id) = SCOPES.try_with(|scopes| {
        let scope_id = NEXT_SCOPE.with(|n| n.replace(n.get() + 1));
        scopes.borrow_mut().push((scope_id, id.as_u128()));
        scope_id
    }) else {
        return TraceScope {
            scope_id: INERT,
            _span: None,
            _not_send: PhantomData,
        };
    };
    OPEN_SCOPES.with(|n| n.set(n.get() + 1));
    CURRENT.with(|c| c.set(id.as_u128()));
    // The guard exists before the `tracing` subscriber is called: if it
    // panics, the guard's drop closes the scope again.
    let mut scope = TraceScope {
        scope_id,
        _span: None,
        _not_send: PhantomData,
    };
    scope._span = span_for(id);
    if scope._span.is_some() {
        SPANNED_SCOPES.with(|n| n.set(n.get() + 1));
    }
    scope
}

/// The id of a scope that installed nothing (see [`enter`]).
const INERT: u64 = 0;

/// Guard returned by [`enter`]; dropping it closes the scope. Not `Send`:
/// a scope belongs to the thread that opened it.
pub struct TraceScope {
    scope_id: u64,
    _span: Option<Box<tracing::span::EnteredSpan>>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for TraceScope {
    fn drop(&mut self) {
        if self.scope_id == INERT {
            return;
        }
        let _ = SCOPES.try_with(|scopes| {
            let mut scopes = scopes.borrow_mut();
            if let Some(pos) = scopes.iter().rposition(|&(id, _)| id == self.scope_id) {
                scopes.remove(pos);
            }
        });
        let _ = OPEN_SCOPES.try_with(|n| n.set(n.get().saturating_sub(1)));
        if self._span.is_some() {
            let _ = SPANNED_SCOPES.try_with(|n| n.set(n.get().saturating_sub(1)));
        }
        refresh_current();
    }
}

impl fmt::Debug for TraceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceScope").finish_non_exhaustive()
    }
}

/// Runs `f` with `id` as the current trace, then restores the previous one
/// (also if `f` panics).
pub fn with_trace_id<R>(id: TraceId, f: impl FnOnce() -> R) -> R {
    let _scope = enter(id);
    f()
}

/// Runs `f` in a fresh trace; returns its id with `f`'s result.
pub fn with_new_trace<R>(f: impl FnOnce() -> R) -> (TraceId, R) {
    let id = TraceId::random();
    (id, with_trace_id(id, f))
}

/// The trace an emit runs in: the current one, or a fresh implicit root that
/// is removed again when the returned guard drops. A fresh root's id is
/// derived from `sequence` (the emit's own number, see
/// [`implicit_id`](super::implicit_id)) when first read, and then the
/// returned bits are all zero (the id is the one of that number); without
/// a number of its own, the emit's id is drawn now. The implicit root opens
/// no `tracing` span (that would cost an allocation per emit once a
/// subscriber exists); log lines get its id from `TraceIdFormat`, or from
/// [`implicit`] in a formatter of the application's own.
#[inline]
pub(crate) fn emit_trace(sequence: Option<u64>) -> (TraceBits, Option<RootGuard>) {
    if let Some(id) = current() {
        return (TraceBits::new(Some(id)), None);
    }
    match sequence {
        Some(sequence) => {
            PENDING_ROOT.with(|p| p.set(sequence));
            (TraceBits::new(None), Some(RootGuard(())))
        }
        None => {
            let id = TraceId::random();
            (TraceBits::new(Some(id)), Some(install_root(id)))
        }
    }
}

/// Makes `id` the implicit root trace (no span) until the guard drops; only
/// while no trace is current.
#[inline]
fn install_root(id: TraceId) -> RootGuard {
    ROOT.with(|r| r.set(id.as_u128()));
    CURRENT.with(|c| c.set(id.as_u128()));
    RootGuard(())
}

/// Makes `id` current for one poll of an async emit (see `bus::emit_async`):
/// nothing to do if it is current already; the implicit root (no span, as
/// for a synchronous emit) if no trace is current; else a scope.
#[inline]
pub(crate) fn install(id: TraceId) -> Installed {
    match current() {
        Some(current) if current == id => Installed::Already,
        None => Installed::Root {
            _root: install_root(id),
        },
        Some(_) => Installed::Scope { _scope: enter(id) },
    }
}

/// What [`install`] did; dropping it undoes it.
pub(crate) enum Installed {
    Already,
    Root { _root: RootGuard },
    Scope { _scope: TraceScope },
}

/// The current trace when no scope's span shows it in logs, else `None`:
/// the implicit trace of an emit started outside any scope, or a scope's
/// whose `trace` span the subscriber's filter disabled (say, one that logs
/// only the application's own target). For log formatters: see the
/// [module docs](crate::trace#logs).
#[inline]
pub fn implicit() -> Option<TraceId> {
    if SPANNED_SCOPES.with(Cell::get) != 0 {
        return None;
    }
    current()
}

/// The `trace` span of an explicit scope, entered;
/// boxed so guards stay one pointer wide. No span at all (not even a disabled
/// one) until some `tracing` subscriber has been installed: that check is one
/// relaxed load.
#[inline]
fn span_for(id: TraceId) -> Option<Box<tracing::span::EnteredSpan>> {
    if !tracing::dispatcher::has_been_set() {
        return None;
    }
    enter_span(id)
}

#[cold]
#[inline(never)]
fn enter_span(id: TraceId) -> Option<Box<tracing::span::EnteredSpan>> {
    let span = id.span();
    (!span.is_disabled()).then(|| Box::new(span.entered()))
}

/// Removes the implicit root trace of an emit when dropped.
pub(crate) struct RootGuard(());

impl Drop for RootGuard {
    #[inline]
    fn drop(&mut self) {
        if let Ok(sequence) = PENDING_ROOT.try_with(|p| p.replace(0))
            && sequence != 0
        {
            // Never made: `ROOT` and `CURRENT` were not set for it.
            return;
        }
        let _ = ROOT.try_with(|r| r.set(0));
        if OPEN_SCOPES.try_with(Cell::get).unwrap_or(0) == 0 {
            let _ = CURRENT.try_with(|c| c.set(0));
        } else {
            refresh_current();
        }
    }
}

/// The current trace (and the event and handler running, if any),
/// captured to be carried to another thread: events emitted there belong
/// to the trace and record that handler as their cause.
///
/// ```
/// use sbox_events::trace::{self, TraceId};
///
/// let id = TraceId::random();
/// let seen = trace::with_trace_id(id, || {
///     let captured = trace::capture();
///     std::thread::spawn(move || captured.run(trace::current)).join()
/// });
/// assert_eq!(seen.ok().flatten(), Some(id));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapturedTrace {
    trace: Option<TraceId>,
    frame: Frame,
}

/// Captures the current trace (possibly none), and the event and handler
/// running, to re-install them elsewhere.
pub fn capture() -> CapturedTrace {
    CapturedTrace {
        trace: current(),
        frame: current_frame(),
    }
}

impl CapturedTrace {
    /// The captured id, if a trace was current.
    pub fn trace_id(self) -> Option<TraceId> {
        self.trace
    }

    /// Runs `f` with the captured trace current, and the captured handler
    /// as the cause of what `f` emits. If no trace was current when it was
    /// captured, `f` runs in whatever trace this thread has (none, on a
    /// fresh thread).
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        let _frame = FrameGuard(replace_frame(self.frame));
        match self.trace {
            Some(id) => with_trace_id(id, f),
            None => f(),
        }
    }
}

/// Puts the frame a captured trace replaced back (also on unwind).
struct FrameGuard(SavedFrame);

impl Drop for FrameGuard {
    fn drop(&mut self) {
        restore_frame(self.0);
    }
}

/// Spawns a thread that runs `f` in the caller's current trace (see
/// [`capture`]).
pub fn spawn<F, T>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let captured = capture();
    std::thread::spawn(move || captured.run(f))
}
