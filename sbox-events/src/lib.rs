//! # sbox-events
//!
//! A compile-time typed, in-process event bus, synchronous with async
//! handlers on the side.
//!
//! * [`#[derive(Event)]`](derive@Event) turns a struct into an event with a
//!   checked name (`"subscription.fetched"`).
//! * [`#[handler]`](macro@handler) registers a free function at link time,
//!   from any crate.
//! * [`EventBus::emit`] calls every handler of that event type through a
//!   monomorphized path: no string lookup, no dynamic typing, no lock.
//! * [`EventBus::subscribe`] adds closures at run time, removed when the
//!   [`Subscription`] drops.
//! * Every event carries a [`trace`] id, a sequence number, a lazily read
//!   timestamp, a source and [`Metadata`] ([`EventContext`]).
//! * A failing or panicking handler never stops the others; the caller gets an
//!   [`EmitReport`] and an [`events::ErrorOccurred`] is emitted.
//! * `#[handler] async fn` and [`EventBus::subscribe_async`] are awaited by
//!   [`EventBus::emit_async`], in the same order as the sync handlers, on any
//!   executor; [`EventBus::subscribe_stream`] gives a bounded
//!   [`stream`] of events with explicit lag.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sbox_events::{handler, Event, EventBus, EventContext};
//!
//! #[derive(Event, Serialize, Deserialize)]
//! #[event(name = "proxy.added", source = "proxy_pool")]
//! pub struct ProxyAdded {
//!     pub host: String,
//!     pub port: u16,
//! }
//!
//! #[handler(priority = 10)]
//! fn log_proxy(event: &ProxyAdded, ctx: &EventContext) {
//!     println!("[{}] new proxy {}:{}", ctx.trace_id().short(), event.host, event.port);
//! }
//!
//! let bus = EventBus::new();
//! let report = bus.emit(ProxyAdded { host: "203.0.113.7".into(), port: 443 });
//! assert_eq!(report.delivered(), 1);
//! ```
//!
//! [`EventBus`] documents dispatch order, re-entrancy, failures and costs.
//! Modules: [`trace`] (trace context), [`events`] (the sboxmgr event set),
//! [`audit`] and [`metrics`] (cross-cutting services), [`history`] (bounded
//! history, replay, JSON Lines import/export), [`catalog`] (what is linked
//! in), [`escape`] (text from data made safe for logs), [`stream`] (event
//! streams), [`testing`] (a recorder for unit tests). [`EventSelector`] and
//! [`AnyEvent`] handle events by name or pattern.
//!
//! ## Linking handlers from other crates
//!
//! `#[handler]`s are collected by the linker (through `inventory`). A crate
//! that the final binary never names is not linked at all, and its handlers
//! silently do not exist, even if it is in `Cargo.toml`. If a crate contributes
//! only handlers, name it once, anywhere in the binary:
//!
//! ```ignore
//! sbox_events::link!(my_audit_handlers);
//! ```
//!
//! Every test binary (each file in `tests/`, each doc test) is a binary of
//! its own and must do the same for the crates whose handlers it needs,
//! **including the application's own library crate** when the test uses
//! nothing else from it.
//!
//! Link-time registration works on Linux, macOS, Windows, iOS, Android, the
//! BSDs and WebAssembly; elsewhere no `#[handler]` is found (subscriptions
//! still work).
//!
//! ## Features
//!
//! All on by default; a program that wants only the typed bus builds less
//! with `default-features = false`:
//!
//! * `audit`: [`audit::AuditLogger`], significant events to `tracing` and a
//!   JSON Lines file;
//! * `metrics`: [`metrics::MetricsCollector`] and its Prometheus text;
//! * `history`: the bounded [`history`], replay
//!   ([`EventBus::replay`]) and JSON Lines import/export;
//! * `fmt`: [`trace::TraceIdFormat`], for `tracing_subscriber::fmt` lines
//!   that show the trace id of emits started outside any scope.
//!
//! ## `panic = "abort"`
//!
//! Handler panics are isolated with `catch_unwind`. A binary built with
//! `panic = "abort"` cannot catch them: a panicking handler ends the process.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, missing_debug_implementations)]

// Lets the derive's `::sbox_events::...` paths work inside this crate too.
extern crate self as sbox_events;

// The modules form layers (trace, escape → handler → envelope → context →
// registry → event → stats → any → events → bus → jsonl, stream → history → catalog →
// audit, metrics, testing): each uses only lower ones, as
// `tests/tests/layers.rs` checks.
mod any;
#[cfg(feature = "audit")]
pub mod audit;
mod bus;
pub mod catalog;
mod context;
pub mod envelope;
pub mod escape;
mod event;
pub mod events;
mod finite;
pub mod flight;
mod handler;
#[cfg(feature = "history")]
pub mod history;
#[cfg(any(feature = "audit", feature = "history"))]
mod jsonl;
#[cfg(feature = "metrics")]
pub mod metrics;
mod registry;
mod stats;
pub mod stream;
pub mod testing;
pub mod trace;

pub use any::{AnyEvent, EventSelector, EventType, SelectorError};
pub use bus::{
    BuildError, ByNameError, DEFAULT_MAX_DEPTH, EmitAsync, EmitOptions, EmitReport, EventBus,
    EventBusBuilder, FailurePolicy, MissingResource, Refusal, SubscribeOptions, Subscription,
    UnknownHandlerError,
};
pub use context::EventContext;
pub use envelope::{Cause, Envelope, EventId, Metadata, ParseEventIdError};
pub use event::Event;
pub use handler::{
    FailureKind, HandlerError, HandlerFailure, HandlerInfo, HandlerOrigin, IntoHandlerResult,
    SkipReason,
};
pub use stats::HandlerStats;

/// Derives [`Event`](trait@Event) for a struct.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sbox_events::Event;
///
/// #[derive(Event, Serialize, Deserialize)]
/// #[event(name = "report.exported", source = "reporting")]
/// pub struct ReportExported {
///     pub path: String,
///     pub file_size: u64,
/// }
/// ```
///
/// Keys of `#[event(...)]`:
///
/// * `name` (required): lowercase dotted segments of `[a-z][a-z0-9_]*`, at
///   least two: `"subscription.fetched"`, `"config.v2_built"`. Checked at
///   compile time.
/// * `source` (optional): the default [`EventContext::source`]. Defaults to
///   the name of the package that defines the event (`CARGO_PKG_NAME`).
/// * `validate = path::to::function` (optional): run-time checks, see
///   [`Event::validate`](trait@Event).
/// * `version = N` (optional): the schema version, used as the
///   [`Event::FINGERPRINT`] (`"vN"`) instead of the hash of the fields.
///
/// The struct (named, tuple or unit) must be `Send + Sync + 'static` and
/// implement serde's `Serialize` and `Deserialize`; it cannot be generic or
/// borrow. Enums and unions are rejected: wrap them in a struct. A field of
/// `std`'s `Rc`, `rc::Weak`, `Cell` or `RefCell` (written as imported, as
/// `cell::Cell` or as `std::cell::Cell`, also inside another type:
/// `Vec<Rc<T>>`) is one error at that field saying what to use instead;
/// `Cell` and `RefCell` behind a `Mutex` are accepted (a `Mutex` makes them
/// `Sync`), unless an `Arc` stands between them (`Mutex<Arc<Cell<T>>>` is
/// not `Send`). The macro cannot resolve names: a type of your own with one of
/// those names is not mistaken for std's when written with another path
/// (`sheet::Cell`, `crate::cell::Cell`), and the error says so. Unknown keys
/// in `#[event(...)]` are errors, with the key meant when it is a typo
/// (`nme` → `name`); a repeated key is an error and its first value is kept.
pub use sbox_events_derive::Event;

/// Registers a free function as a handler, at link time.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sbox_events::{handler, Event, EventBus, EventContext};
///
/// #[derive(Event, Serialize, Deserialize)]
/// #[event(name = "report.written")]
/// pub struct ReportWritten { pub path: String }
///
/// /// Runs before handlers with a lower priority.
/// #[handler(priority = 100, name = "audit.report_written")]
/// fn audit(event: &ReportWritten, ctx: &EventContext) -> Result<(), std::io::Error> {
///     println!("{} wrote {}", ctx.source(), event.path);
///     Ok(())
/// }
///
/// #[handler]
/// fn count(_: &ReportWritten) {}
///
/// let handlers = EventBus::new().handlers::<ReportWritten>();
/// assert_eq!(handlers[0].name(), "audit.report_written");
/// assert!(handlers[1].name().ends_with("::count")); // `your_crate::module::count`
///
/// // Still an ordinary function:
/// count(&ReportWritten { path: "out.json".into() });
/// ```
///
/// The function takes `&E` or `(&E, &EventContext)`, then any resources
/// the bus holds for it (`&T`, see [`EventBusBuilder::resource`]), and
/// returns `()` or `Result<(), Err>` with `Err: Display`. It must be a free
/// function (not a method, nor an associated function in an `impl` block),
/// and not generic (no `impl Trait` parameter either) nor `unsafe`. Options:
///
/// * `priority = <i32>`: higher runs first (default 0); see [`EventBus`] for
///   the full order.
/// * `name = "..."`: the name used in reports, logs,
///   [`EventBus::disable_handler`]; default: the function's full path
///   (`my_crate::module::function`).
/// * `emits = [A, B]`: the event types its calls may emit (`[]` for none):
///   shown by [`HandlerInfo::emits`](crate::HandlerInfo::emits) and the
///   catalog; in debug builds, an event it emits that is not listed is
///   logged as a warning.
///
/// The code both macros generate names this crate `::sbox_events`: a crate
/// that renames the dependency in its `Cargo.toml` adds
/// `extern crate new_name as sbox_events;` at its root.
///
/// The handler runs on every bus built with
/// [`static_handlers(true)`](EventBusBuilder::static_handlers) (the default).
///
/// An `async fn` is an async handler, in the same registry and the same
/// order: [`EventBus::emit_async`] awaits it; a plain [`EventBus::emit`]
/// skips it and says so ([`EmitReport::skipped`]). Its future must be `Send`,
/// and the context's lifetime must be spelled out (`&EventContext<'_>`, a
/// rule of `async fn`):
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use sbox_events::{handler, Event, EventBus, EventContext};
/// # #[derive(Event, Serialize, Deserialize)]
/// # #[event(name = "report.written")]
/// # pub struct ReportWritten { pub path: String }
/// # async fn upload(_: &str) -> std::io::Result<()> { Ok(()) }
/// #[handler(name = "upload")]
/// async fn upload_report(event: &ReportWritten, ctx: &EventContext<'_>) -> std::io::Result<()> {
///     upload(&event.path).await?; // the event and context stay borrowed
///     println!("uploaded in trace {}", ctx.trace_id().short());
///     Ok(())
/// }
/// # assert!(EventBus::new().handlers::<ReportWritten>()[0].is_async());
/// ```
///
/// **Linking:** a crate whose handlers nobody names is dropped by the linker,
/// and its handlers with it. Name such a crate with [`link!`].
pub use sbox_events_derive::handler;

/// Forces crates that only contain `#[handler]`s to be linked.
///
/// The linker only includes crates the program names; `#[handler]`s in a crate
/// nothing refers to silently disappear. Put this anywhere in the final
/// binary, test or example:
///
/// ```ignore
/// sbox_events::link!(audit_handlers, metrics_handlers);
/// ```
///
/// It expands to `use audit_handlers as _;` for each crate.
#[macro_export]
macro_rules! link {
    ($($krate:ident),+ $(,)?) => {
        $(
            #[allow(unused_imports)]
            use $krate as _;
        )+
    };
}

/// Adds a unit test to this crate that fails when two event types linked
/// into its test binary share a name, naming both.
///
/// Two types with one name compile and link (the linker cannot know), but
/// make every name-based feature ambiguous: JSON Lines import, selectors,
/// audit sets. The test binary of a crate links the crate and everything it
/// depends on, so one line in each crate that defines or depends on events
/// catches a clash before it ships:
///
/// ```ignore
/// // In src/lib.rs (or main.rs):
/// sbox_events::event_names_test!();
/// ```
///
/// It expands to a `#[cfg(test)] #[test]` function that calls
/// [`catalog::check`] and panics with its message:
///
/// ```text
/// event name "config.built" is claimed by 2 types: sbox_events::events::ConfigBuilt,
/// my_app::ConfigBuilt; give all but one another #[event(name = "...")]
/// ```
#[macro_export]
macro_rules! event_names_test {
    () => {
        #[cfg(test)]
        #[test]
        fn sbox_events_event_names_are_unique() {
            if let ::core::result::Result::Err(err) = $crate::catalog::check() {
                ::core::panic!("{err}");
            }
        }
    };
}

// Two of this crate's own event types never share a name.
event_names_test!();

// The README's examples are compiled and run as doc tests (they use every
// optional part). `README.md` is a link to the repository's README, which
// `cargo package` copies into the package.
#[cfg(all(doctest, feature = "audit", feature = "metrics", feature = "history"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Not public API: what `#[derive(Event)]` expands to besides the `impl
/// Event` itself: the event's hidden registry newtype (inventory collects
/// only local types), its per-type slot (a non-generic static: a static in a
/// generic fn would be shared by every event type; given the event's name
/// as written, not through the `Event` impl, so that a type missing one of
/// `Event`'s bounds gets one error per bound) and its entry in the
/// link-time list of event types.
#[doc(hidden)]
#[macro_export]
macro_rules! __register_event {
    ($event:ty, $name:expr) => {
        #[doc(hidden)]
        #[derive(::core::fmt::Debug)]
        #[repr(transparent)]
        pub struct __SboxEventsRegistry($crate::__private::HandlerRecord<$event>);

        $crate::__private::inventory::collect!(__SboxEventsRegistry);

        // SAFETY: a `repr(transparent)` wrapper of `HandlerRecord<$event>`,
        // as `HandlerRegistry` requires.
        unsafe impl $crate::__private::HandlerRegistry<$event> for __SboxEventsRegistry {
            #[inline]
            fn record(&self) -> &$crate::__private::HandlerRecord<$event> {
                &self.0
            }
        }

        static __SBOX_EVENTS_SLOT: $crate::__private::EventSlot<$event> =
            $crate::__private::EventSlot::new($name);

        $crate::__private::inventory::submit! {
            $crate::__private::event_meta::<$event>()
        }
    };
}

/// Not public API: used by the code the macros generate.
#[doc(hidden)]
pub mod __private {
    pub use crate::__register_event as register_event;
    pub use crate::bus::{ResourceSlot, failed_future, missing_resource};
    pub use crate::event::{EventMeta, registration};
    pub use crate::handler::{HandlerFuture, settle};
    pub use crate::handler::{Resource, ResourceNeed};
    pub use crate::registry::{EventSlot, HandlerRecord, HandlerRegistry};
    pub use inventory;

    /// `E`'s entry in the link-time list of event types, with the hooks
    /// the bus hands down for it.
    pub const fn event_meta<E: crate::Event>() -> EventMeta {
        EventMeta::new::<E>(crate::bus::hooks::<E>())
    }
}
