//! Trace context: which trace the current code belongs to.
//!
//! A [`TraceId`] is a 128-bit, non-zero, random identifier, printed as 32
//! lowercase hex digits exactly as in [W3C Trace Context], with an
//! 8-character [short form](TraceId::short) for people. Every event carries
//! one; handlers read it from [`EventContext::trace_id`](crate::EventContext::trace_id).
//!
//! # Where the id comes from
//!
//! Each thread has a *current trace*. [`EventBus::emit`](crate::EventBus::emit)
//! stamps the event with it. When there is none, `emit` starts a fresh trace
//! for that one event: everything the handlers emit, at any depth, shares it,
//! and when `emit` returns the thread has no current trace again, so the next
//! unrelated emit gets its own.
//!
//! To group several emits into one trace, open a scope:
//!
//! ```
//! use sbox_events::trace::{self, TraceId};
//!
//! let id = TraceId::random();
//! trace::with_trace_id(id, || {
//!     assert_eq!(trace::current(), Some(id));
//!     // every emit in here carries `id`
//! });
//! assert_eq!(trace::current(), None);
//! ```
//!
//! | situation | what to use |
//! |---|---|
//! | a block of code | [`with_trace_id`], [`with_new_trace`], or the guard from [`enter`] |
//! | a future (any executor) | [`TraceFutureExt::with_trace_id`] / [`TraceFutureExt::in_current_trace`] |
//! | a new thread | [`capture`] before spawning, [`CapturedTrace::run`] inside; or [`spawn`] |
//! | an incoming request | [`TraceParent::parse`] on its `traceparent` header |
//!
//! Guards restore what was current before them, also when several are
//! dropped out of order. A guard is tied to its thread (`!Send`). **Do not hold
//! a guard across `.await`**: while the task is suspended the id stays
//! installed on the executor thread and leaks into whatever task runs there
//! next. Wrap the future with [`TraceFutureExt`] instead, which installs the id
//! for each poll only.
//!
//! # Logs
//!
//! Every scope opened here ([`enter`], [`with_trace_id`], the future wrapper,
//! and the implicit trace of an emit outside any scope) also enters a
//! `tracing` span named `trace` with a `trace_id` field, so any `tracing`
//! subscriber that prints span fields (such as `tracing_subscriber::fmt`)
//! shows `trace{trace_id=…}` on every log line written inside it. The span
//! is at ERROR level so that it is on whenever logging is; nothing is
//! recorded when no subscriber is installed.
//!
//! # Cost
//!
//! Reading the current trace is one thread-local read. [`TraceId::random`] uses
//! a per-thread wyrand generator (`fastrand`) seeded once from the operating
//! system: no system call per id, a few nanoseconds.
//!
//! [W3C Trace Context]: https://www.w3.org/TR/trace-context/

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::num::{NonZeroU64, NonZeroU128};
use core::pin::Pin;
use core::str::FromStr;
use core::task::{Context, Poll};
use std::cell::{Cell, RefCell};

/// A 128-bit, non-zero trace identifier (W3C Trace Context `trace-id`).
///
/// `Display` gives 32 lowercase hex digits; [`short`](TraceId::short) gives
/// the first 8. Parsing is strict: exactly 32 lowercase hex digits, not all
/// zero. Serde uses the 32-digit string.
///
/// ```
/// use sbox_events::trace::TraceId;
///
/// let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse()?;
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(id.short().to_string(), "4bf92f35");
///
/// let err = "4BF92F3577B34DA6A3CE929D0E0E4736".parse::<TraceId>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid trace id at byte 1: 'B' is not a lowercase hex digit (W3C ids are lowercase)"
/// );
/// # Ok::<(), sbox_events::trace::ParseTraceError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(NonZeroU128);

impl TraceId {
    /// A fresh random id: 128 random bits (never zero) from a per-thread
    /// generator seeded from the operating system, so no system call per id.
    pub fn random() -> TraceId {
        RNG_STATE.with(|state| {
            let seed = match state.get() {
                0 => os_seed(),
                seed => seed,
            };
            let mut rng = fastrand::Rng::with_seed(seed);
            let value = loop {
                // Zero has a 2^-128 chance; W3C forbids it, so draw again.
                if let Some(value) = NonZeroU128::new(rng.u128(..)) {
                    break value;
                }
            };
            state.set(rng.get_seed());
            TraceId(value)
        })
    }

    /// The id with this value, or `None` for zero (W3C forbids an all-zero id).
    pub const fn from_u128(value: u128) -> Option<TraceId> {
        match NonZeroU128::new(value) {
            Some(value) => Some(TraceId(value)),
            None => None,
        }
    }

    /// The id as a number.
    pub const fn as_u128(self) -> u128 {
        self.0.get()
    }

    /// The id as 16 big-endian bytes, the W3C binary form.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.get().to_be_bytes()
    }

    /// The first 8 hex digits, for log lines read by people. Not unique: use
    /// the full id to correlate.
    pub const fn short(self) -> ShortTraceId {
        ShortTraceId((self.0.get() >> 96) as u32)
    }

    /// Parses 32 lowercase hex digits (same as [`str::parse`]).
    pub fn parse(input: &str) -> Result<TraceId, ParseTraceError> {
        let bytes = input.as_bytes();
        if bytes.len() != 32 {
            return Err(ParseTraceError::new(
                Subject::TraceId,
                0,
                ErrorKind::Length {
                    expected: 32,
                    found: input.chars().count(),
                },
            ));
        }
        let value = parse_hex(input, 0, 32, Subject::TraceId)?;
        TraceId::from_u128(value)
            .ok_or_else(|| ParseTraceError::new(Subject::TraceId, 0, ErrorKind::AllZero))
    }

    /// A `tracing` span named `trace` carrying this id as `trace_id`; the
    /// scopes of this module enter it for you.
    ///
    /// Its level is ERROR, so it is enabled whenever any logging is: a
    /// subscriber that shows only warnings and errors still shows which trace
    /// they belong to. (A span's level filters the span, not log lines.)
    pub fn span(self) -> tracing::Span {
        tracing::error_span!("trace", trace_id = %self)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0.get())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl FromStr for TraceId {
    type Err = ParseTraceError;
    fn from_str(input: &str) -> Result<TraceId, ParseTraceError> {
        TraceId::parse(input)
    }
}

impl serde::Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TraceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TraceId, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TraceId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a trace id of 32 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<TraceId, E> {
                TraceId::parse(value).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The first 8 hex digits of a [`TraceId`]; see [`TraceId::short`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ShortTraceId(u32);

impl fmt::Display for ShortTraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A parsed W3C `traceparent` header: `version-traceid-parentid-flags`.
///
/// ```
/// use sbox_events::trace::TraceParent;
///
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let parent = TraceParent::parse(header)?;
/// assert_eq!(parent.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(parent.sampled());
/// assert_eq!(parent.to_string(), header);
///
/// let err = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")
///     .unwrap_err();
/// assert_eq!(err.to_string(), "invalid traceparent at byte 36: parent-id is all zeros");
/// # Ok::<(), sbox_events::trace::ParseTraceError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: NonZeroU64,
    flags: u8,
}

impl TraceParent {
    /// A version-00 header value for these parts.
    pub const fn new(trace_id: TraceId, parent_id: NonZeroU64, flags: u8) -> TraceParent {
        TraceParent {
            trace_id,
            parent_id,
            flags,
        }
    }

    /// Parses a `traceparent` header value strictly, as W3C Trace Context
    /// level 1 says: version 00 is exactly 55 characters; a higher version may
    /// carry more fields after a `-`; version `ff`, uppercase hex and all-zero
    /// ids are errors.
    pub fn parse(input: &str) -> Result<TraceParent, ParseTraceError> {
        const LEN: usize = 55;
        let s = Subject::TraceParent;
        let bytes = input.as_bytes();
        if bytes.len() < LEN {
            return Err(ParseTraceError::new(
                s,
                0,
                ErrorKind::Length {
                    expected: LEN,
                    found: input.chars().count(),
                },
            ));
        }
        let version = parse_hex(input, 0, 2, s)? as u8;
        if version == 0xff {
            return Err(ParseTraceError::new(s, 0, ErrorKind::ForbiddenVersion));
        }
        for at in [2, 35, 52] {
            expect_dash(input, at)?;
        }
        let trace_id = parse_hex(input, 3, 32, s)?;
        let parent_id = parse_hex(input, 36, 16, s)? as u64;
        let flags = parse_hex(input, 53, 2, s)? as u8;
        if version == 0 && bytes.len() != LEN {
            return Err(ParseTraceError::new(s, LEN, ErrorKind::TrailingData));
        }
        if bytes.len() > LEN {
            expect_dash(input, LEN)?;
        }
        let trace_id = TraceId::from_u128(trace_id)
            .ok_or_else(|| ParseTraceError::new(s, 3, ErrorKind::AllZero))?;
        let parent_id = NonZeroU64::new(parent_id)
            .ok_or_else(|| ParseTraceError::new(s, 36, ErrorKind::ParentAllZero))?;
        Ok(TraceParent::new(trace_id, parent_id, flags))
    }

    /// The trace this request belongs to.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The caller's span id (`parent-id`).
    pub const fn parent_id(&self) -> NonZeroU64 {
        self.parent_id
    }

    /// The trace flags byte.
    pub const fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled this trace (flag bit 0).
    pub const fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{:016x}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

impl FromStr for TraceParent {
    type Err = ParseTraceError;
    fn from_str(input: &str) -> Result<TraceParent, ParseTraceError> {
        TraceParent::parse(input)
    }
}

fn expect_dash(input: &str, at: usize) -> Result<(), ParseTraceError> {
    match input.as_bytes().get(at) {
        Some(b'-') => Ok(()),
        _ => Err(ParseTraceError::new(
            Subject::TraceParent,
            at,
            ErrorKind::Delimiter {
                found: char_at(input, at),
            },
        )),
    }
}

/// Lowercase hex digits `input[start..start + len]` (callers check the length).
fn parse_hex(
    input: &str,
    start: usize,
    len: usize,
    subject: Subject,
) -> Result<u128, ParseTraceError> {
    let mut value: u128 = 0;
    for (offset, byte) in input.as_bytes()[start..start + len].iter().enumerate() {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            _ => {
                let at = start + offset;
                let kind = if byte.is_ascii_hexdigit() {
                    ErrorKind::Uppercase {
                        found: char_at(input, at),
                    }
                } else {
                    ErrorKind::NotHex {
                        found: char_at(input, at),
                    }
                };
                return Err(ParseTraceError::new(subject, at, kind));
            }
        };
        value = value << 4 | u128::from(digit);
    }
    Ok(value)
}

/// The character starting at byte `at`; every byte before it is ASCII (we
/// scan left to right and stop at the first bad one), so `at` is a boundary.
fn char_at(input: &str, at: usize) -> char {
    input
        .get(at..)
        .and_then(|rest| rest.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Why a trace id or `traceparent` header was rejected, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseTraceError {
    subject: Subject,
    position: usize,
    kind: ErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    TraceId,
    TraceParent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ErrorKind {
    Length { expected: usize, found: usize },
    NotHex { found: char },
    Uppercase { found: char },
    Delimiter { found: char },
    AllZero,
    ParentAllZero,
    ForbiddenVersion,
    TrailingData,
}

impl ParseTraceError {
    fn new(subject: Subject, position: usize, kind: ErrorKind) -> Self {
        ParseTraceError {
            subject,
            position,
            kind,
        }
    }

    /// The byte offset in the input where the problem is.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl fmt::Display for ParseTraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match self.subject {
            Subject::TraceId => "trace id",
            Subject::TraceParent => "traceparent",
        };
        write!(f, "invalid {subject} at byte {}: ", self.position)?;
        match &self.kind {
            ErrorKind::Length { expected, found } if self.subject == Subject::TraceId => {
                write!(
                    f,
                    "expected {expected} lowercase hex digits, found {found} characters"
                )
            }
            ErrorKind::Length { expected, found } => write!(
                f,
                "expected at least {expected} characters \
                 (version-traceid-parentid-flags), found {found}"
            ),
            ErrorKind::NotHex { found } => write!(f, "{found:?} is not a hex digit"),
            ErrorKind::Uppercase { found } => write!(
                f,
                "{found:?} is not a lowercase hex digit (W3C ids are lowercase)"
            ),
            ErrorKind::Delimiter { found } => write!(f, "expected '-', found {found:?}"),
            ErrorKind::AllZero => f.write_str("trace-id is all zeros"),
            ErrorKind::ParentAllZero => f.write_str("parent-id is all zeros"),
            ErrorKind::ForbiddenVersion => f.write_str("version ff is forbidden"),
            ErrorKind::TrailingData => f.write_str("version 00 has exactly 55 characters"),
        }
    }
}

impl std::error::Error for ParseTraceError {}

// ---------------------------------------------------------------------------
// The current trace of each thread.
//
// `CURRENT` is what `current()` returns, kept up to date so the hot path reads
// one cell. It is the top of `SCOPES` (explicit guards) or, under no guard,
// `ROOT` (the implicit trace of an emit that started outside any scope).
// Each guard removes its own entry by id, which is what makes out-of-order
// drops restore the right value.

thread_local! {
    /// The trace-id generator's state; 0 until first use on the thread.
    static RNG_STATE: Cell<u64> = const { Cell::new(0) };
    static CURRENT: Cell<u128> = const { Cell::new(0) };
    static ROOT: Cell<u128> = const { Cell::new(0) };
    static SCOPES: RefCell<Vec<(u64, u128)>> = const { RefCell::new(Vec::new()) };
    /// `SCOPES.len()`, readable without touching the `RefCell`.
    static OPEN_SCOPES: Cell<usize> = const { Cell::new(0) };
    static NEXT_SCOPE: Cell<u64> = const { Cell::new(1) };
}

/// 64 random bits from the OS: std's `RandomState` keys come from the
/// operating system's generator (once per thread, then varied per instance).
fn os_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5b0c_e7e1_u64) | 1
}

/// The current thread's trace, if any scope is open.
#[inline]
pub fn current() -> Option<TraceId> {
    TraceId::from_u128(CURRENT.with(Cell::get))
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
    let scope_id = NEXT_SCOPE.with(|n| {
        let v = n.get();
        n.set(v + 1);
        v
    });
    SCOPES.with(|scopes| scopes.borrow_mut().push((scope_id, id.as_u128())));
    OPEN_SCOPES.with(|n| n.set(n.get() + 1));
    CURRENT.with(|c| c.set(id.as_u128()));
    TraceScope {
        scope_id,
        _span: span_for(id),
        _not_send: PhantomData,
    }
}

/// Guard returned by [`enter`]; dropping it closes the scope. Not `Send`:
/// a scope belongs to the thread that opened it.
pub struct TraceScope {
    scope_id: u64,
    _span: Option<Box<tracing::span::EnteredSpan>>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for TraceScope {
    fn drop(&mut self) {
        let _ = SCOPES.try_with(|scopes| {
            let mut scopes = scopes.borrow_mut();
            if let Some(pos) = scopes.iter().rposition(|&(id, _)| id == self.scope_id) {
                scopes.remove(pos);
            }
        });
        let _ = OPEN_SCOPES.try_with(|n| n.set(n.get().saturating_sub(1)));
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
/// is removed again when the returned guard drops.
pub(crate) fn emit_trace() -> (TraceId, Option<RootGuard>) {
    if let Some(id) = current() {
        return (id, None);
    }
    let id = TraceId::random();
    ROOT.with(|r| r.set(id.as_u128()));
    CURRENT.with(|c| c.set(id.as_u128()));
    (
        id,
        Some(RootGuard {
            _span: span_for(id),
        }),
    )
}

/// The `trace` span of a scope (explicit or the implicit root), entered;
/// boxed so guards stay one pointer wide. No span at all (not even a disabled
/// one) until some `tracing` subscriber has been installed: that check is one
/// relaxed load.
fn span_for(id: TraceId) -> Option<Box<tracing::span::EnteredSpan>> {
    if !tracing::dispatcher::has_been_set() {
        return None;
    }
    let span = id.span();
    (!span.is_disabled()).then(|| Box::new(span.entered()))
}

pub(crate) struct RootGuard {
    _span: Option<Box<tracing::span::EnteredSpan>>,
}

impl Drop for RootGuard {
    fn drop(&mut self) {
        let _ = ROOT.try_with(|r| r.set(0));
        if OPEN_SCOPES.try_with(Cell::get).unwrap_or(0) == 0 {
            let _ = CURRENT.try_with(|c| c.set(0));
        } else {
            refresh_current();
        }
    }
}

/// The current trace, captured to be carried to another thread.
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
pub struct CapturedTrace(Option<TraceId>);

/// Captures the current trace (possibly none) to re-install it elsewhere.
pub fn capture() -> CapturedTrace {
    CapturedTrace(current())
}

impl CapturedTrace {
    /// The captured id, if a trace was current.
    pub fn trace_id(self) -> Option<TraceId> {
        self.0
    }

    /// Runs `f` with the captured trace current (or none, if none was).
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        match self.0 {
            Some(id) => with_trace_id(id, f),
            None => f(),
        }
    }
}

/// Spawns a thread that runs `f` in the caller's current trace.
pub fn spawn<F, T>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let captured = capture();
    std::thread::spawn(move || captured.run(f))
}

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

    /// Carries the trace current *now* (if any) into every poll.
    fn in_current_trace(self) -> Traced<Self> {
        Traced::new(current(), self)
    }
}

impl<F: Future> TraceFutureExt for F {}

/// A future that runs inside a trace; see [`TraceFutureExt`].
pub struct Traced<F> {
    trace: Option<TraceId>,
    // ManuallyDrop so `Drop` can drop the inner future inside the trace.
    inner: ManuallyDrop<F>,
}

impl<F> Traced<F> {
    fn new(trace: Option<TraceId>, inner: F) -> Self {
        Traced {
            trace,
            inner: ManuallyDrop::new(inner),
        }
    }

    fn scope(&self) -> Option<TraceScope> {
        self.trace.map(enter)
    }
}

impl<F: Future> Future for Traced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _scope = self.scope();
        // SAFETY: `inner` is structurally pinned: it is never moved out of
        // `self` (not here, not in `Drop`, which drops it in place), and
        // `Traced` is `Unpin` only when `F` is.
        let inner = unsafe { self.map_unchecked_mut(|this| &mut *this.inner) };
        inner.poll(cx)
    }
}

impl<F> Drop for Traced<F> {
    fn drop(&mut self) {
        let _scope = self.scope();
        // SAFETY: `inner` is dropped exactly once, here, in place (which the
        // pinning guarantee allows), and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.inner) }
    }
}

impl<F> fmt::Debug for Traced<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traced")
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn random_ids_are_distinct_and_well_formed() {
        let ids: std::collections::HashSet<TraceId> =
            (0..1000).map(|_| TraceId::random()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids {
            let text = id.to_string();
            assert_eq!(text.len(), 32);
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert_eq!(TraceId::parse(&text), Ok(id));
            assert_eq!(id.short().to_string(), text[..8]);
        }
    }

    #[test]
    fn trace_id_errors_say_what_and_where() {
        let cases = [
            (
                "",
                "invalid trace id at byte 0: expected 32 lowercase hex digits, found 0 characters",
            ),
            (
                &ID[..31],
                "invalid trace id at byte 0: expected 32 lowercase hex digits, found 31 characters",
            ),
            (
                "4bf92f3577b34da6a3ce929d0e0e473g",
                "invalid trace id at byte 31: 'g' is not a hex digit",
            ),
            (
                "4bf92f3577b34da6a3ce929d0e0e473A",
                "invalid trace id at byte 31: 'A' is not a lowercase hex digit (W3C ids are lowercase)",
            ),
            (
                "00000000000000000000000000000000",
                "invalid trace id at byte 0: trace-id is all zeros",
            ),
            (
                "4bf92f3577b34da6a3ce929d0e0e47é",
                "invalid trace id at byte 30: 'é' is not a hex digit",
            ),
        ];
        for (input, message) in cases {
            let err = TraceId::parse(input).expect_err(input);
            assert_eq!(err.to_string(), message, "{input:?}");
        }
    }

    #[test]
    fn traceparent_follows_w3c() {
        let ok = format!("00-{ID}-00f067aa0ba902b7-01");
        let parsed = TraceParent::parse(&ok).expect("valid header");
        assert_eq!(parsed.parent_id().get(), 0x00f0_67aa_0ba9_02b7);
        assert_eq!(parsed.flags(), 1);
        // Higher versions may append fields.
        let future = format!("01-{ID}-00f067aa0ba902b7-00-extra");
        assert!(
            !TraceParent::parse(&future)
                .expect("future version")
                .sampled()
        );

        let cases = [
            (
                format!("00-{ID}-00f067aa0ba902b7-0"),
                "invalid traceparent at byte 0: expected at least 55 characters (version-traceid-parentid-flags), found 54",
            ),
            (
                format!("ff-{ID}-00f067aa0ba902b7-01"),
                "invalid traceparent at byte 0: version ff is forbidden",
            ),
            (
                format!("00_{ID}-00f067aa0ba902b7-01"),
                "invalid traceparent at byte 2: expected '-', found '_'",
            ),
            (
                format!("00-{ID}-00f067aa0ba902b7-01-x"),
                "invalid traceparent at byte 55: version 00 has exactly 55 characters",
            ),
            (
                format!("01-{ID}-00f067aa0ba902b7-01x"),
                "invalid traceparent at byte 55: expected '-', found 'x'",
            ),
            (
                format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
                "invalid traceparent at byte 3: trace-id is all zeros",
            ),
            (
                format!("00-{ID}-00F067aa0ba902b7-01"),
                "invalid traceparent at byte 38: 'F' is not a lowercase hex digit (W3C ids are lowercase)",
            ),
            (
                format!("0x-{ID}-00f067aa0ba902b7-01"),
                "invalid traceparent at byte 1: 'x' is not a hex digit",
            ),
        ];
        for (input, message) in cases {
            let err = TraceParent::parse(&input).expect_err(&input);
            assert_eq!(err.to_string(), message, "{input:?}");
        }
    }

    #[test]
    fn serde_uses_the_hex_string() {
        let id = TraceId::parse(ID).expect("valid");
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, format!("\"{ID}\""));
        assert_eq!(
            serde_json::from_str::<TraceId>(&json).expect("deserialize"),
            id
        );
        let err = serde_json::from_str::<TraceId>("\"xyz\"").expect_err("bad id");
        assert!(
            err.to_string().contains("expected 32 lowercase hex digits"),
            "{err}"
        );
    }
}
