//! What handlers return and how their failures are described.
//!
//! A handler returns `()` or `Result<(), E>` with `E: Display`
//! ([`IntoHandlerResult`]). An `Err` or a panic becomes a [`HandlerFailure`] in
//! the [`EmitReport`](crate::EmitReport); the other handlers still run.

use crate::escape::LogSafe;
use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;

/// The future of an async handler call, boxed: what `#[handler] async fn`
/// and [`EventBus::subscribe_async`](crate::EventBus::subscribe_async)
/// closures are turned into. `Send`, so `emit_async` futures can move
/// between threads.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// The error of a handler that returned `Err`: its message and error type.
///
/// One pointer wide: a closure's `Result<(), HandlerError>` comes back in a
/// register, and the failure a `#[handler]` wrapper writes to its
/// out-parameter (`Option<HandlerError>`, `None` on success) is one word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError(Box<ErrorInner>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct ErrorInner {
    message: Cow<'static, str>,
    error_type: &'static str,
    /// A marker of a handler that could not run here (the sync stand-in of
    /// an async `#[handler]`, a missing resource): the bus reports it as
    /// skipped, not failed (users cannot make one).
    skip: Option<SkipReason>,
}

/// Why a handler was not called; see
/// [`EmitReport::skipped`](crate::EmitReport::skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// An async handler, which a synchronous `emit` cannot run.
    Async,
    /// A `#[handler]` taking a resource this bus does not hold.
    MissingResource {
        /// The resource's type (`my_app::Storage`).
        type_name: &'static str,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Async => f.write_str("async (emit_async runs it)"),
            SkipReason::MissingResource { type_name } => {
                write!(f, "the bus has no `{type_name}` resource")
            }
        }
    }
}

impl HandlerError {
    /// An error with this message; `error_type` names its kind (the
    /// [`IntoHandlerResult`] conversion uses the Rust type name of `E`).
    pub fn new(message: impl Into<String>, error_type: &'static str) -> HandlerError {
        HandlerError(Box::new(ErrorInner {
            message: Cow::Owned(message.into()),
            error_type,
            skip: None,
        }))
    }

    /// What the sync stand-in of an async `#[handler]` returns when a
    /// synchronous emit calls it: one marker per thread, handed back by
    /// [`recycle`](HandlerError::recycle) once the skip is reported, so a
    /// skip allocates nothing after the first on each thread.
    pub(crate) fn async_skipped() -> HandlerError {
        SKIP_MARKER
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                HandlerError(Box::new(ErrorInner {
                    message: Cow::Borrowed("an async handler cannot run in a synchronous emit"),
                    error_type: "sbox_events::AsyncHandler",
                    skip: Some(SkipReason::Async),
                }))
            })
    }

    /// How a `#[handler]` fails when the bus lacks the resource `T`.
    pub(crate) fn missing_resource(type_name: &'static str) -> HandlerError {
        HandlerError(Box::new(ErrorInner {
            message: Cow::Borrowed("a resource is missing"),
            error_type: "sbox_events::MissingResource",
            skip: Some(SkipReason::MissingResource { type_name }),
        }))
    }

    /// Gives an [`async_skipped`](HandlerError::async_skipped) marker back.
    pub(crate) fn recycle(self) {
        if self.0.skip == Some(SkipReason::Async) {
            let _ = SKIP_MARKER.try_with(|marker| marker.set(Some(self)));
        }
    }

    /// Why the handler could not run, if this is a skip marker.
    pub(crate) fn skip_reason(&self) -> Option<SkipReason> {
        self.0.skip
    }

    /// The error's `Display` text.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The kind of error, e.g. `std::io::error::Error`.
    pub fn error_type(&self) -> &'static str {
        self.0.error_type
    }
}

thread_local! {
    static SKIP_MARKER: Cell<Option<HandlerError>> = const { Cell::new(None) };
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for HandlerError {}

/// What a handler may return: `()` or `Result<(), E>` where `E: Display`.
///
/// ```
/// use sbox_events::{HandlerError, IntoHandlerResult};
///
/// assert_eq!(().into_handler_result(), Ok(()));
/// let failed: Result<(), std::num::ParseIntError> = "x".parse::<u8>().map(drop);
/// let err = failed.into_handler_result().unwrap_err();
/// assert_eq!(err.message(), "invalid digit found in string");
/// assert_eq!(err.error_type(), "core::num::error::ParseIntError");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by an event handler",
    label = "handlers return `()` or `Result<(), E>` where `E: Display`",
    note = "return `()`, or `Result<(), E>` with an error type that implements `Display` \
            (e.g. `Result<(), String>`, `std::io::Result<()>`)"
)]
pub trait IntoHandlerResult {
    /// Converts the handler's return value.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

#[diagnostic::do_not_recommend]
impl IntoHandlerResult for () {
    #[inline]
    fn into_handler_result(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

// A closure whose body always panics returns `!` (edition 2024 no longer
// falls back to `()`). `!` cannot be named on stable Rust, but a function
// pointer's output type can name it for us.
#[doc(hidden)]
pub trait FnOutput {
    type Output;
}

impl<O> FnOutput for fn() -> O {
    type Output = O;
}

type Never = <fn() -> ! as FnOutput>::Output;

#[diagnostic::do_not_recommend]
impl IntoHandlerResult for Never {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self
    }
}

#[diagnostic::do_not_recommend]
impl<E: fmt::Display> IntoHandlerResult for Result<(), E> {
    #[inline]
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(|err| handler_error(&err, std::any::type_name::<E>()))
    }
}

/// Where the wrapper `#[handler]` generates puts what its handler
/// returned: a failure is written to `failed`, success writes nothing (and,
/// inlined, leaves no code after the handler's call).
#[doc(hidden)]
#[inline(always)]
pub fn settle(result: Result<(), HandlerError>, failed: &mut Option<HandlerError>) {
    if let Err(error) = result {
        *failed = Some(error);
    }
}

#[cold]
#[inline(never)]
fn handler_error(err: &dyn fmt::Display, error_type: &'static str) -> HandlerError {
    HandlerError::new(err.to_string(), error_type)
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Drops a caught panic payload. Its `Drop` is user code and may panic in
/// turn (`panic_any(Bomb)`): that panic is caught too, and so on a few
/// times; a payload that keeps panicking is leaked rather than let out.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    let mut payload = payload;
    for _ in 0..4 {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}

/// Runs user code that may panic (a `Deserialize`, a validator): a panic
/// becomes an error saying `what` panicked, with its message.
pub(crate) fn catch_panic<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = format!("{what} panicked: {}", panic_message(&*payload));
            drop_payload(payload);
            Err(message)
        }
    }
}

/// One handler that failed during an emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerFailure {
    pub(crate) handler: Cow<'static, str>,
    pub(crate) event: &'static str,
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    pub(crate) error_type: &'static str,
}

/// How a handler failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// It returned `Err`.
    Error,
    /// It panicked.
    Panic,
}

impl HandlerFailure {
    pub(crate) fn from_error(
        handler: Cow<'static, str>,
        event: &'static str,
        err: HandlerError,
    ) -> Self {
        HandlerFailure {
            handler,
            event,
            kind: FailureKind::Error,
            message: err.0.message.into_owned(),
            error_type: err.0.error_type,
        }
    }

    pub(crate) fn from_panic(
        handler: Cow<'static, str>,
        event: &'static str,
        payload: &(dyn Any + Send),
    ) -> Self {
        let message = panic_message(payload);
        HandlerFailure {
            handler,
            event,
            kind: FailureKind::Panic,
            message,
            error_type: "panic",
        }
    }

    /// The failing handler's name.
    pub fn handler(&self) -> &str {
        &self.handler
    }

    /// The name of the event it was handling.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// Whether it returned `Err` or panicked.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The error's text or the panic message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error's type name, or `"panic"`.
    pub fn error_type(&self) -> &'static str {
        self.error_type
    }
}

impl fmt::Display for HandlerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.kind {
            FailureKind::Error => "failed",
            FailureKind::Panic => "panicked",
        };
        write!(
            f,
            "handler `{}` {verb} on `{}`: {}",
            LogSafe(&self.handler),
            self.event,
            LogSafe(&self.message)
        )
    }
}

impl std::error::Error for HandlerFailure {}

/// A resource a `#[handler]` takes: a type the bus must hold (see
/// [`EventBusBuilder::resource`](crate::EventBusBuilder::resource)).
#[derive(Clone, Copy)]
pub struct ResourceNeed {
    type_id: fn() -> TypeId,
    type_name: fn() -> &'static str,
}

impl ResourceNeed {
    #[doc(hidden)]
    pub const fn of<T: ?Sized + 'static>() -> ResourceNeed {
        ResourceNeed {
            type_id: TypeId::of::<T>,
            type_name: std::any::type_name::<T>,
        }
    }

    /// The resource's type id.
    pub(crate) fn type_id(&self) -> TypeId {
        (self.type_id)()
    }

    /// The resource's type, as Rust names it (`my_app::Storage`).
    pub fn type_name(&self) -> &'static str {
        (self.type_name)()
    }
}

impl PartialEq for ResourceNeed {
    fn eq(&self, other: &Self) -> bool {
        self.type_id() == other.type_id()
    }
}

impl Eq for ResourceNeed {}

impl std::fmt::Debug for ResourceNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name())
    }
}

/// What a resource must be: shared by every handler, on every thread, for
/// the bus's lifetime.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler resource: the bus shares it with every handler on every thread",
    label = "not `Sync + 'static`",
    note = "wrap what is not `Sync` (`Mutex<T>`, an atomic) and own what is borrowed (`String`, `Arc<T>`)"
)]
pub trait Resource: 'static {}

// One bound, so a type that is neither `Send` nor `Sync` (`Rc`) gets one
// error at the parameter, not one per trait. Handlers need `Sync` (they
// share it); `EventBusBuilder::resource` also asks for `Send`.
impl<T: ?Sized + Sync + 'static> Resource for T {}

/// Describes one handler in dispatch order; see
/// [`EventBus::handlers`](crate::EventBus::handlers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerInfo {
    pub(crate) name: Cow<'static, str>,
    pub(crate) event: &'static str,
    pub(crate) priority: i32,
    pub(crate) origin: HandlerOrigin,
    pub(crate) is_async: bool,
    /// The resources a `#[handler]` takes (none for subscriptions).
    pub(crate) resources: &'static [ResourceNeed],
    /// Those the bus lacks (the handler is skipped and reported).
    pub(crate) missing: Vec<&'static str>,
    /// The events a `#[handler(emits = [...])]` declares it emits.
    pub(crate) emits: Option<&'static [&'static str]>,
}

/// Where a handler comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerOrigin {
    /// A `#[handler]` function, with its full path.
    Static {
        /// `crate::module::function`.
        path: &'static str,
    },
    /// A run-time subscription, with its id.
    Subscription {
        /// See [`Subscription::id`](crate::Subscription::id).
        id: u64,
    },
}

impl HandlerInfo {
    /// The handler's name (for `#[handler]`, its path unless `name = ".."`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event it handles.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// Its priority (higher runs first).
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Static handler or run-time subscription.
    pub fn origin(&self) -> HandlerOrigin {
        self.origin
    }

    /// The types of the resources it takes (`#[handler] fn store(e: &E,
    /// storage: &Storage)` takes `my_app::Storage`), in parameter order.
    pub fn resources(&self) -> impl ExactSizeIterator<Item = &'static str> + '_ {
        self.resources.iter().map(ResourceNeed::type_name)
    }

    /// The resources it takes that this bus lacks: such a handler is not
    /// called, and every report lists it in
    /// [`EmitReport::skipped`](crate::EmitReport::skipped).
    pub fn missing_resources(&self) -> &[&'static str] {
        &self.missing
    }

    /// The names of the events it declares it emits
    /// (`#[handler(emits = [ConfigBuilt])]`), or `None` if it declares
    /// nothing (subscriptions never do). In debug builds, an event it emits
    /// that is not in the list is logged as a warning.
    pub fn emits(&self) -> Option<&'static [&'static str]> {
        self.emits
    }

    /// Whether it is an async handler (`#[handler] async fn` or
    /// [`subscribe_async`](crate::EventBus::subscribe_async)): only
    /// [`emit_async`](crate::EventBus::emit_async) runs it.
    pub fn is_async(&self) -> bool {
        self.is_async
    }
}

impl fmt::Display for HandlerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (priority {})", self.name, self.priority)
    }
}
