//! The event bus: typed dispatch to `#[handler]`s and run-time
//! subscriptions, synchronous (`emit`) or awaiting async handlers
//! (`emit_async`). The rules users rely on (order, re-entrancy, failures,
//! cost) are documented on [`EventBus`].
//!
//! # Where things are
//!
//! * this file: [`EventBus`] and its emit and subscribe API;
//! * `dispatch.rs`: the hot path (one emit, isolated handler calls,
//!   recorders); `emit_async.rs`: the async path;
//! * `state.rs`: each thread's emit state (depth, sequence numbers, error
//!   and replay flags); `failures.rs`: what happens when user code fails
//!   (reports, logs, `error.occurred`); `release.rs`: dropping removed
//!   closures inside isolation; `resources.rs`: application state for
//!   `#[handler]`s;
//! * `subscribe.rs`: run-time subscriptions and their removal; `routes.rs`:
//!   the per-type route tables; `control.rs`: enabling handlers, statistics,
//!   the copy-on-write change of the routes, the bus's `Default`/`Debug`;
//! * `skip.rs`: async handlers a plain emit skips; `report.rs`: what an
//!   emit returns; `builder.rs`: the options; `hooks.rs`: what the bus hands
//!   to lower layers (per-type operations) and takes from higher ones.

mod builder;
mod by_name;
mod control;
mod declared;
mod dispatch;
mod emit_async;
mod failures;
mod flight;
mod hooks;
mod release;
mod report;
mod resources;
mod routes;
mod skip;
mod state;
mod subscribe;
mod table;

pub use builder::{DEFAULT_MAX_DEPTH, EmitOptions, EventBusBuilder, FailurePolicy};
pub use by_name::ByNameError;
#[cfg_attr(not(feature = "history"), allow(unused_imports))]
pub(crate) use dispatch::Given;
pub use emit_async::EmitAsync;
#[cfg_attr(not(feature = "history"), allow(unused_imports))]
pub(crate) use hooks::{JsonRecord, Recorder, hooks, hooks_of};
pub use report::{EmitReport, Refusal, UnknownHandlerError};
pub use resources::{BuildError, MissingResource};
#[doc(hidden)]
pub use resources::{ResourceSlot, failed_future, missing_resource};
pub(crate) use routes::ErasedHandler;
#[cfg_attr(not(feature = "history"), allow(unused_imports))]
pub(crate) use state::ReplayScope;
pub(crate) use subscribe::EachOptions;
pub use subscribe::{SubscribeOptions, Subscription};

use crate::any::{AnyEvent, EventSelector};
use crate::context::EventContext;
use crate::event::Event;
use crate::handler::{HandlerInfo, IntoHandlerResult};
use builder::Config;
use routes::{Control, Entry};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

/// A typed event bus. Cheap to clone (a shared handle).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sbox_events::{Event, EventBus, EventContext};
///
/// #[derive(Event, Serialize, Deserialize)]
/// #[event(name = "config.reloaded")]
/// struct ConfigReloaded { servers: u32 }
///
/// let bus = EventBus::new();
/// let subscription = bus.subscribe(|event: &ConfigReloaded, ctx: &EventContext| {
///     println!("{} servers (trace {})", event.servers, ctx.trace_id().short());
/// });
/// let report = bus.emit(ConfigReloaded { servers: 12 });
/// assert_eq!(report.delivered(), 1);
/// assert!(report.is_ok());
/// drop(subscription); // unsubscribes
/// ```
///
/// # Order
///
/// For each event, handlers run one after another (on the emitting thread,
/// or in the `emit_async` future, each async handler awaited before the next
/// handler starts), in one merged order, sync and async alike:
///
/// 1. higher `priority` first (default 0; `#[handler(priority = 10)]`,
///    [`SubscribeOptions::priority`]);
/// 2. at equal priority, `#[handler]` functions before subscriptions;
/// 3. `#[handler]`s by name, then by function path; subscriptions in the order
///    they were made.
///
/// The order does not depend on link order, crate or build profile.
/// [`EventBus::handlers`] shows it.
///
/// # Re-entrancy
///
/// A handler may emit (through [`EventContext::bus`]
/// or any bus it holds). The nested event is delivered immediately,
/// depth-first, in the same trace, before the next handler of the outer event
/// runs. Past [`EventBusBuilder::max_depth`] nested emits (default
/// [`DEFAULT_MAX_DEPTH`]) an emit is refused: nothing is delivered, the report
/// says why ([`Refusal::DepthLimit`]) and a warning is logged. No stack
/// overflow.
///
/// Handlers may subscribe, unsubscribe (also themselves) and enable or disable
/// handlers while an emit is in progress: the running emit finishes with the
/// handlers it started with, and changes apply from the next emit.
///
/// # Failures
///
/// Each handler call is isolated. When a handler returns `Err` or panics, the
/// other handlers still run and `emit` returns normally; the report lists the
/// failure ([`HandlerFailure`](crate::HandlerFailure)); the failure is logged through `tracing` at
/// ERROR level (target `sbox_events`, with `trace_id`, `event`, `handler`);
/// and an [`ErrorOccurred`](crate::events::ErrorOccurred) event is emitted in
/// the same trace. A failure while an `error.occurred` is being handled
/// (whoever emitted it, the bus or the application, and including events
/// its handlers emit in turn) is logged and reported but emits no further
/// `error.occurred`, so error handlers cannot loop. A panic payload is
/// dropped inside the isolation too (its `Drop` may panic again), so no
/// panic escapes `emit`. Text from the failure is escaped in the log line
/// ([`crate::escape::LogSafe`]). [`FailurePolicy::Propagate`]
/// re-raises instead (for tests).
///
/// # User code
///
/// The bus runs user code beyond handlers: closures and filters, the `Drop` of
/// their captures, of async handlers' futures and of its resources (when the
/// bus is dropped, or a builder's resource is replaced), an event's
/// `Serialize` (for a history or a test recorder), `Deserialize` (replay, the
/// recorder's `events`), `validate` and `Drop` (of an event the bus owns:
/// decoded, or given to `emit_async`; not `emit`'s), the `Display` of
/// handler errors, and the wakers of stream consumers. Two rules hold:
///
/// * **A panic is caught where it happens** and never unwinds out of `emit`,
///   `emit_async`, a `drop` (of a [`Subscription`], an [`EmitAsync`] future,
///   the bus, its builder) or any bus or builder method. It is logged and
///   emitted as `error.occurred` (only logged when the bus itself is being
///   dropped), and when an emit is running it is in its report: a handler's in
///   [`EmitReport::failures`], a recorder's in [`EmitReport::not_recorded`]
///   (the handlers still run), the release of a removed closure or the
///   event's drop in [`EmitReport::drop_failures`]; a panicking validator is
///   a [`Refusal::Invalid`]. A cancelled `emit_async` has no report: a panic
///   while its event or handler's future is dropped is logged and emitted.
/// * **No user code runs while a lock of the library is held**: removed
///   subscriptions and replaced route tables are dropped after the control
///   lock is released (so a closure may own subscriptions of the same bus,
///   or subscribe from its `Drop`), events are serialized and deserialized
///   outside the history's and the recorder's locks, and a stream's waker is
///   cloned, woken and dropped outside its queue's lock. Any of them may
///   emit on the same bus.
///
/// Panics are caught with `catch_unwind`, which cannot work in a binary built
/// with `panic = "abort"`: there a panicking handler aborts the process. The
/// default panic hook still prints the panic message to stderr.
///
/// # Cost
///
/// `emit` takes no lock on its usual path (exceptions below). `emit` and
/// `emit_ref` call one out-of-line function per event type. When nobody can
/// hear the event (no `#[handler]` for it or static handlers off; nothing
/// routed for it on any bus: subscription, stream, selector, disabled handler,
/// handler statistics; no history or recorder; no validation), that function
/// takes a sequence number and returns the report: a few loads and stores, and
/// in release builds no further call (an emit in a handler whose trace nobody
/// read yet takes the full path, which makes that id). Otherwise it reads a few
/// thread-locals (trace, depth, sequence block), builds the context on the
/// stack, and calls each handler through a function pointer (a boxed closure
/// for subscriptions) inside `catch_unwind`. Sequence numbers come from a
/// per-thread block of 1024, so one emit in 1024 does a shared atomic
/// `fetch_add`. While no bus has a subscription or a disabled handler for the
/// event type (a per-type count that only subscribe/unsubscribe write), it does
/// not even look at the bus's route table; otherwise it reads it with plain
/// loads and stores in a per-thread slot (no lock, no read-modify-write, unless
/// the table it read was replaced meanwhile: then it takes a lock once to give
/// it back; and a read nested deeper than 16 emits on one thread, or a thread's
/// first, takes that lock and clones an `Arc` instead; writers pay otherwise:
/// see below). An emit outside any trace scope gets a fresh trace id made from
/// its sequence number (two multiplications; see [`crate::trace`]) when someone
/// first reads it (a handler, a log line, a nested emit, the report). No clock
/// is read unless someone asks for the timestamp (or the bus keeps a history).
/// Nothing is allocated unless a handler fails or is skipped (an async handler
/// in a sync emit, see [`emit`](EventBus::emit), or one taking a resource the
/// bus lacks: [`SkipReason`](crate::SkipReason)), with or without a `tracing`
/// subscriber (an emit outside a trace scope opens no span; see
/// [`crate::trace`] for how logs still show its id); a test counts it. A bus
/// with a history also serializes the event and takes the history's mutex
/// ([`crate::history`]); one with handler statistics counts every handler call
/// and times one in eight (two clock reads;
/// [`HandlerStats`](crate::HandlerStats)). Subscribing and unsubscribing copy
/// the route table (copy-on-write, under a mutex only writers take) and, on
/// Linux, make every thread of the process pass a memory barrier (`membarrier`:
/// a system call of a few microseconds), so that emits need none. Measured
/// costs are in the README (`cargo bench -p sbox-events --bench emit`).
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

static_assertions::assert_impl_all!(EventBus: Send, Sync);

pub(crate) struct BusInner {
    config: Config,
    /// Sees every event before its handlers (the history, for one).
    recorder: Option<Arc<dyn Recorder>>,
    routes: table::Tables,
    control: Mutex<Control>,
    /// By resource type index (see `resources.rs`); fixed when built.
    resources: resources::Resources,
}

impl EventBus {
    /// A bus with default options: isolate failures, depth limit
    /// [`DEFAULT_MAX_DEPTH`], run `#[handler]`s, emit `error.occurred`, no
    /// handler statistics.
    pub fn new() -> EventBus {
        EventBus::builder().build_unchecked()
    }

    /// Options for a new bus.
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder {
            recorder: None,
            resources: Vec::new(),
            overrides: Vec::new(),
            config: Config {
                failure_policy: FailurePolicy::Isolate,
                max_depth: DEFAULT_MAX_DEPTH,
                static_handlers: true,
                error_events: true,
                handler_stats: false,
                validate_on_emit: false,
                record_replays: false,
                flight_recorder: false,
            },
        }
    }

    /// The process-wide bus, created with default options on first use
    /// (or the one given to [`install_global`](EventBus::install_global)).
    pub fn global() -> &'static EventBus {
        GLOBAL.get_or_init(EventBus::new)
    }

    /// Makes `bus` the process-wide bus. Fails, giving `bus` back, if
    /// [`global`](EventBus::global) was already used or installed.
    pub fn install_global(bus: EventBus) -> Result<(), EventBus> {
        GLOBAL.set(bus)
    }

    /// Dispatches `event` to every handler, synchronously; see the
    /// [type docs](EventBus#order) for order, nesting and failures.
    ///
    /// Async handlers (`#[handler] async fn`,
    /// [`subscribe_async`](EventBus::subscribe_async)) cannot be awaited
    /// here: they are not called, the report lists them in
    /// [`EmitReport::skipped`] (so it is not [`is_ok`](EmitReport::is_ok)),
    /// and a warning is logged the first time each one is skipped. Use
    /// [`emit_async`](EventBus::emit_async) for types that have them.
    #[inline]
    pub fn emit<E: Event>(&self, event: E) -> EmitReport {
        self.dispatch_plain(&event)
    }

    /// Like [`emit`](EventBus::emit), for an event the caller keeps (to
    /// emit it again, store it...): nothing is cloned.
    #[inline]
    pub fn emit_ref<E: Event>(&self, event: &E) -> EmitReport {
        self.dispatch_plain(event)
    }

    /// Like [`emit`](EventBus::emit), with an explicit source and metadata.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use sbox_events::{EmitOptions, Event, EventBus, EventContext};
    /// # #[derive(Event, Serialize, Deserialize)]
    /// # #[event(name = "config.reloaded")]
    /// # struct ConfigReloaded { servers: u32 }
    ///
    /// let bus = EventBus::new();
    /// let _sub = bus.subscribe(|_: &ConfigReloaded, ctx: &EventContext| {
    ///     assert_eq!(ctx.source(), "admin_api");
    ///     assert_eq!(ctx.metadata().get("user"), Some("alice"));
    /// });
    /// let options = EmitOptions::new().source("admin_api").metadata("user", "alice");
    /// assert!(bus.emit_with(ConfigReloaded { servers: 3 }, options).is_ok());
    /// ```
    pub fn emit_with<E: Event>(&self, event: E, options: EmitOptions) -> EmitReport {
        self.dispatch_given(&event, &Given::with_options::<E>(&options))
    }

    /// Dispatches `event` to every handler, sync and async, in the
    /// [one order](EventBus#order), awaiting each async handler before the
    /// next handler starts; resolves to the same [`EmitReport`] as
    /// [`emit`](EventBus::emit).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use sbox_events::{Event, EventBus, EventContext};
    /// # #[derive(Event, Serialize, Deserialize)]
    /// # #[event(name = "config.reloaded")]
    /// # struct ConfigReloaded { servers: u32 }
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    ///
    /// let bus = EventBus::new();
    /// let _upload = bus.subscribe_async(|event: &ConfigReloaded, _: &EventContext| {
    ///     let servers = event.servers; // the future owns what it needs
    ///     async move { println!("uploading a config of {servers} servers") }
    /// });
    /// let report = block_on(bus.emit_async(ConfigReloaded { servers: 12 }));
    /// assert_eq!(report.delivered(), 1);
    /// assert!(report.is_ok());
    /// ```
    ///
    /// The future is `Send` and works on any executor: the emit's trace,
    /// nesting depth and error state are taken from the calling thread when
    /// `emit_async` is called, and put in place around every poll (and
    /// around the drop of an unfinished future), so a task that moves to
    /// another thread at an `.await` keeps them, and nothing is left on a
    /// thread between polls. Handlers, failures, nesting and the depth limit
    /// behave as for `emit`; a panic in an async handler's `poll` is caught
    /// and reported like a sync handler's. A failure emits `error.occurred`
    /// with a synchronous [`emit`](EventBus::emit), so async handlers *of*
    /// `error.occurred` are skipped there (and reported as such).
    ///
    /// **Cancellation.** Dropping the future before it completes stops the
    /// emit where it is: the handlers before the current one have run, the
    /// current async handler's future is dropped at its `.await` (with the
    /// emit's trace in place, so its `Drop` logs carry the trace id), and
    /// the handlers after it never run. The report is lost with the future;
    /// nothing is logged and no `error.occurred` is emitted for the
    /// cancellation. The event is dropped too: a panic in its `Drop` is
    /// logged and emitted as `error.occurred` (only logged if the thread is
    /// already unwinding from another panic, as an executor may be).
    ///
    /// Cost, beyond `emit`: the future's state (about 1 KiB plus the event:
    /// 1,056 bytes for an 8-byte event in a release build with rustc 1.95,
    /// and it varies with the compiler; box it if you store many), one
    /// allocation per async handler call (its boxed future), and per poll a
    /// few thread-local writes.
    pub fn emit_async<E: Event>(
        &self,
        event: E,
    ) -> EmitAsync<'_, impl Future<Output = EmitReport> + Send + '_> {
        self.dispatch_async(event, EmitOptions::new())
    }

    /// [`emit_async`](EventBus::emit_async) with an explicit source and
    /// metadata, like [`emit_with`](EventBus::emit_with).
    pub fn emit_async_with<E: Event>(
        &self,
        event: E,
        options: EmitOptions,
    ) -> EmitAsync<'_, impl Future<Output = EmitReport> + Send + '_> {
        self.dispatch_async(event, options)
    }

    /// Calls `handler` for every `E` emitted on this bus until the returned
    /// [`Subscription`] is dropped. Default options: priority 0, named after
    /// the closure's type.
    ///
    /// The closure takes the event and its context and returns `()` or
    /// `Result<(), E: Display>`. It must not own a clone of this bus (that
    /// would be a reference cycle, keeping the bus alive forever): use
    /// [`EventContext::bus`] to emit from inside it.
    pub fn subscribe<E, F, R>(&self, handler: F) -> Subscription
    where
        E: Event,
        F: Fn(&E, &EventContext<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.subscribe_with(SubscribeOptions::new(), handler)
    }

    /// [`subscribe`](EventBus::subscribe) with a name and priority.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use sbox_events::{Event, EventBus, EventContext, SubscribeOptions};
    /// # #[derive(Event, Serialize, Deserialize)]
    /// # #[event(name = "config.reloaded")]
    /// # struct ConfigReloaded { servers: u32 }
    ///
    /// let bus = EventBus::new();
    /// let audit = bus.subscribe_with(
    ///     SubscribeOptions::new().name("audit").priority(100),
    ///     |_: &ConfigReloaded, _: &EventContext| Ok::<(), String>(()),
    /// );
    /// let names: Vec<String> =
    ///     bus.handlers::<ConfigReloaded>().iter().map(|h| h.name().to_owned()).collect();
    /// assert_eq!(names, ["audit"]);
    /// audit.detach(); // stays subscribed for the bus's lifetime
    /// ```
    pub fn subscribe_with<E, F, R>(&self, options: SubscribeOptions, handler: F) -> Subscription
    where
        E: Event,
        F: Fn(&E, &EventContext<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.add_typed(options, None, handler)
    }

    /// Calls the async `handler` for every `E` emitted with
    /// [`emit_async`](EventBus::emit_async) until the returned
    /// [`Subscription`] is dropped.
    ///
    /// The closure runs synchronously, in dispatch order, and returns the
    /// future to await: a `Send + 'static` future that owns what it needs
    /// (copy fields out of the event first, as for `tokio::spawn`). Its
    /// output is `()` or `Result<(), E: Display>`. Inside it,
    /// [`trace::current`](crate::trace::current) is the event's trace, and
    /// an emit on a bus it owns (`ctx.bus().clone()`, taken before the
    /// `async` block) nests under the event. A plain [`emit`](EventBus::emit)
    /// cannot await it: it reports it in [`EmitReport::skipped`] and logs a
    /// warning once.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use sbox_events::{Event, EventBus, EventContext, trace};
    /// # #[derive(Event, Serialize, Deserialize)]
    /// # #[event(name = "config.reloaded")]
    /// # struct ConfigReloaded { servers: u32 }
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    ///
    /// let bus = EventBus::new();
    /// let _sub = bus.subscribe_async(|event: &ConfigReloaded, ctx: &EventContext| {
    ///     let (servers, trace_id) = (event.servers, ctx.trace_id());
    ///     async move {
    ///         assert_eq!(trace::current(), Some(trace_id)); // also after `.await`s
    ///         if servers == 0 { Err("empty config") } else { Ok(()) }
    ///     }
    /// });
    /// let report = block_on(bus.emit_async(ConfigReloaded { servers: 0 }));
    /// assert_eq!(report.failures()[0].message(), "empty config");
    ///
    /// let report = bus.emit(ConfigReloaded { servers: 1 }); // not awaited
    /// assert_eq!(report.delivered(), 0);
    /// assert_eq!(report.skipped().len(), 1);
    /// ```
    pub fn subscribe_async<E, F, Fut>(&self, handler: F) -> Subscription
    where
        E: Event,
        F: Fn(&E, &EventContext<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoHandlerResult> + Send + 'static,
    {
        self.add_async(SubscribeOptions::new(), handler)
    }

    /// [`subscribe_async`](EventBus::subscribe_async) with a name and
    /// priority.
    pub fn subscribe_async_with<E, F, Fut>(
        &self,
        options: SubscribeOptions,
        handler: F,
    ) -> Subscription
    where
        E: Event,
        F: Fn(&E, &EventContext<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoHandlerResult> + Send + 'static,
    {
        self.add_async(options, handler)
    }

    /// [`subscribe_with`](EventBus::subscribe_with), calling `handler` only
    /// for the events `filter` accepts. The filter sees the event and its
    /// context, so it can look at fields, [`source`](EventContext::source)
    /// or [`metadata`](EventContext::metadata).
    ///
    /// Cost: one more boxed-closure call per event of that type, inside the
    /// same panic isolation (a panicking filter is reported as the
    /// subscription's failure). Events it rejects are not counted in
    /// [`EmitReport::delivered`].
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use sbox_events::{EmitOptions, Event, EventBus, EventContext, SubscribeOptions};
    /// # #[derive(Event, Serialize, Deserialize)]
    /// # #[event(name = "config.reloaded")]
    /// # struct ConfigReloaded { servers: u32 }
    ///
    /// let bus = EventBus::new();
    /// let _big = bus.subscribe_filtered(
    ///     SubscribeOptions::new().name("big reloads from the API"),
    ///     |e: &ConfigReloaded, ctx: &EventContext| e.servers > 100 && ctx.source() == "admin_api",
    ///     |e: &ConfigReloaded, _: &EventContext| println!("{} servers", e.servers),
    /// );
    /// assert_eq!(bus.emit(ConfigReloaded { servers: 500 }).delivered(), 0);
    /// let from_api = EmitOptions::new().source("admin_api");
    /// assert_eq!(bus.emit_with(ConfigReloaded { servers: 500 }, from_api).delivered(), 1);
    /// ```
    pub fn subscribe_filtered<E, P, F, R>(
        &self,
        options: SubscribeOptions,
        filter: P,
        handler: F,
    ) -> Subscription
    where
        E: Event,
        P: Fn(&E, &EventContext<'_>) -> bool + Send + Sync + 'static,
        F: Fn(&E, &EventContext<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.add_typed(options, Some(Box::new(filter)), handler)
    }

    /// Calls `handler` for every event whose type `selector` picks, seen as
    /// an [`AnyEvent`] (name, typed access by downcast, fields as JSON).
    ///
    /// The selector is resolved once, now, against every event type linked
    /// into the binary; emits never compare names. The subscription takes
    /// part in each selected type's order like any other subscription.
    pub fn subscribe_any<F, R>(&self, selector: EventSelector, handler: F) -> Subscription
    where
        F: Fn(&AnyEvent<'_>, &EventContext<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.subscribe_any_with(SubscribeOptions::new(), selector, handler)
    }

    /// [`subscribe_any`](EventBus::subscribe_any) with a name and priority.
    pub fn subscribe_any_with<F, R>(
        &self,
        options: SubscribeOptions,
        selector: EventSelector,
        handler: F,
    ) -> Subscription
    where
        F: Fn(&AnyEvent<'_>, &EventContext<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.add_erased(options, selector, None, handler)
    }

    /// [`subscribe_any_with`](EventBus::subscribe_any_with), calling
    /// `handler` only for the events `filter` accepts; see
    /// [`subscribe_filtered`](EventBus::subscribe_filtered) for the cost.
    pub fn subscribe_any_filtered<P, F, R>(
        &self,
        options: SubscribeOptions,
        selector: EventSelector,
        filter: P,
        handler: F,
    ) -> Subscription
    where
        P: Fn(&AnyEvent<'_>, &EventContext<'_>) -> bool + Send + Sync + 'static,
        F: Fn(&AnyEvent<'_>, &EventContext<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.add_erased(options, selector, Some(Arc::new(filter)), handler)
    }

    /// The handlers an `E` emitted now would reach, in dispatch order.
    pub fn handlers<E: Event>(&self) -> Vec<HandlerInfo> {
        let slot = E::__slot();
        let table = self.inner.routes.load();
        let mut handlers: Vec<HandlerInfo> = match table.route::<E>(slot.index()) {
            Some((route, _)) => route.entries.iter().map(Entry::info).collect(),
            None if self.inner.config.static_handlers => {
                slot.statics().iter().map(|r| r.info(E::NAME)).collect()
            }
            None => Vec::new(),
        };
        for handler in &mut handlers {
            handler.missing = handler
                .resources
                .iter()
                .filter(|need| !self.has_resource(need))
                .map(|need| need.type_name())
                .collect();
        }
        // The table read may be the last holder of a removed closure.
        drop(table);
        self.report_release_failures();
        handlers
    }

    /// The recorder this bus was built with, if any.
    #[cfg_attr(not(feature = "history"), allow(dead_code))]
    pub(crate) fn recorder(&self) -> Option<&Arc<dyn Recorder>> {
        self.inner.recorder.as_ref()
    }
}

static GLOBAL: OnceLock<EventBus> = OnceLock::new();
