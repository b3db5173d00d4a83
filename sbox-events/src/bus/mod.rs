//! The event bus: typed dispatch to `#[handler]`s and run-time
//! subscriptions, synchronous (`emit`) or awaiting async handlers
//! (`emit_async`). The rules users rely on (order, re-entrancy, failures,
//! cost) are documented on [`EventBus`].
//!
//!
//! # Where things are
//!
//! This file holds [`EventBus`] and its emit API; `dispatch.rs` the hot
//! path (thread-local depth, sequence and error state, isolation, failure
//! reporting); `emit_async.rs` the async path (the same state, re-installed
//! around each poll); `subscribe.rs` run-time subscriptions (the `subscribe*`
//! methods) and their removal; `skip.rs` async handlers a plain emit skips;
//! `routes.rs` the per-type route tables; `builder.rs` the options;
//! `report.rs` what an emit returns; `error_occurred.rs` the failure event;
//! `hooks.rs` what the bus hands to lower layers (per-type operations) and
//! takes from higher ones (recorders such as the history).

mod builder;
mod dispatch;
mod emit_async;
mod error_occurred;
mod hooks;
mod report;
mod routes;
mod skip;
mod subscribe;

pub use builder::{DEFAULT_MAX_DEPTH, EmitOptions, EventBusBuilder, FailurePolicy};
use dispatch::EMPTY_METADATA;
#[cfg_attr(not(feature = "history"), allow(unused_imports))]
pub(crate) use dispatch::{ReplayScope, Replayed};
pub use error_occurred::ErrorOccurred;
use hooks::types_with_hooks;
#[cfg_attr(not(feature = "history"), allow(unused_imports))]
pub(crate) use hooks::{JsonEvent, Recorder, hooks, hooks_of};
pub use report::{EmitReport, Refusal, UnknownHandlerError};
pub use subscribe::{SubscribeOptions, Subscription};

use crate::any::EventType;
use crate::context::{EventContext, Metadata};
use crate::event::Event;
use crate::handler::HandlerInfo;
use crate::stats::HandlerStats;
use arc_swap::ArcSwap;
use builder::Config;
use routes::{Control, Entry, RouteConfig, RouteTable};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

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
/// and an [`ErrorOccurred`] event is emitted in
/// the same trace. A failure while an `error.occurred` is being handled
/// (whoever emitted it, the bus or the application, and including events
/// its handlers emit in turn) is logged and reported but emits no further
/// `error.occurred`, so error handlers cannot loop. A panic payload is
/// dropped inside the isolation too (its `Drop` may panic again), so no
/// panic escapes `emit`. Text from the failure is escaped in the log line
/// ([`crate::escape::LogSafe`]). [`FailurePolicy::Propagate`]
/// re-raises instead (for tests).
///
/// No user code (a closure, its captures' `Drop`) ever runs while the bus
/// holds a lock: removed subscriptions and replaced route tables are dropped
/// after the lock is released, so a closure may own subscriptions of the
/// same bus, or subscribe from its `Drop`.
///
/// Panics are caught with `catch_unwind`, which cannot work in a binary built
/// with `panic = "abort"`: there a panicking handler aborts the process. The
/// default panic hook still prints the panic message to stderr.
///
/// # Cost
///
/// `emit` takes no lock. It reads a few thread-locals (trace, depth, sequence
/// block), builds the context on the stack, and calls each handler through a
/// function pointer (a boxed closure for subscriptions) inside
/// `catch_unwind`. Sequence numbers come from a per-thread block of 1024, so
/// one emit in 1024 does a shared atomic `fetch_add`. While no bus has a
/// subscription or a disabled handler for the event type (a per-type count
/// that only subscribe/unsubscribe write), it does not even look at the
/// bus's route table; otherwise it loads it through `arc-swap`. An emit
/// outside any trace scope draws a fresh trace id from a per-thread
/// generator. No clock is read unless someone asks for the timestamp (or the
/// bus keeps a history). Nothing is allocated unless a handler fails (or an
/// async handler is skipped: see [`emit`](EventBus::emit)), with
/// or without a `tracing` subscriber (an emit outside a trace scope opens no
/// span; see [`crate::trace`] for how logs still show its id); a test
/// counts it. A bus with a history also serializes the event and
/// takes the history's mutex ([`crate::history`]); one with handler
/// statistics counts every handler call and times one in eight (two clock
/// reads; [`HandlerStats`]).
/// Subscribing and unsubscribing copy the route table (copy-on-write, under a
/// mutex only writers take). Measured costs are in the README
/// (`cargo bench -p sbox-events --bench emit`).
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

static_assertions::assert_impl_all!(EventBus: Send, Sync);

pub(crate) struct BusInner {
    config: Config,
    /// Sees every event before its handlers (the history, for one).
    recorder: Option<Arc<dyn Recorder>>,
    routes: ArcSwap<RouteTable>,
    control: Mutex<Control>,
}

impl EventBus {
    /// A bus with default options: isolate failures, depth limit
    /// [`DEFAULT_MAX_DEPTH`], run `#[handler]`s, emit `error.occurred`, no
    /// handler statistics.
    pub fn new() -> EventBus {
        EventBus::builder().build()
    }

    /// Options for a new bus.
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder {
            recorder: None,
            config: Config {
                failure_policy: FailurePolicy::Isolate,
                max_depth: DEFAULT_MAX_DEPTH,
                static_handlers: true,
                error_events: true,
                handler_stats: false,
                validate_on_emit: false,
                record_replays: false,
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
        self.dispatch(&event, E::SOURCE, &EMPTY_METADATA, None)
    }

    /// Like [`emit`](EventBus::emit), for an event the caller keeps (to
    /// emit it again, store it...): nothing is cloned.
    #[inline]
    pub fn emit_ref<E: Event>(&self, event: &E) -> EmitReport {
        self.dispatch(event, E::SOURCE, &EMPTY_METADATA, None)
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
        let source = options.source.as_deref().unwrap_or(E::SOURCE);
        self.dispatch(&event, source, &options.metadata, None)
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
    /// around the future's drop), so a task that moves to another thread at
    /// an `.await` keeps them, and nothing is left on a thread between
    /// polls. Handlers, failures, nesting and the depth limit behave as for
    /// `emit`; a panic in an async handler's `poll` is caught and reported
    /// like a sync handler's. A failure emits `error.occurred` with a
    /// synchronous [`emit`](EventBus::emit), so async handlers *of*
    /// `error.occurred` are skipped there (and reported as such).
    ///
    /// **Cancellation.** Dropping the future before it completes stops the
    /// emit where it is: the handlers before the current one have run, the
    /// current async handler's future is dropped at its `.await` (with the
    /// emit's trace in place, so its `Drop` logs carry the trace id), and
    /// the handlers after it never run. The report is lost with the future;
    /// nothing is logged and no `error.occurred` is emitted for the
    /// cancellation.
    ///
    /// Cost, beyond `emit`: the future's state (a few hundred bytes plus
    /// the event; box it if you store many), one allocation per async
    /// handler call (its boxed future), and per poll a few thread-local
    /// writes.
    pub fn emit_async<E: Event>(&self, event: E) -> impl Future<Output = EmitReport> + Send + '_ {
        self.dispatch_async(event, None, Metadata::new())
    }

    /// [`emit_async`](EventBus::emit_async) with an explicit source and
    /// metadata, like [`emit_with`](EventBus::emit_with).
    pub fn emit_async_with<E: Event>(
        &self,
        event: E,
        options: EmitOptions,
    ) -> impl Future<Output = EmitReport> + Send + '_ {
        self.dispatch_async(event, options.source, options.metadata)
    }

    /// Stops the `#[handler]` (or handlers) with this name from running on
    /// this bus, for every event type, until [`enable_handler`](EventBus::enable_handler).
    /// The name is the handler's path (`my_crate::audit::on_fetched`) unless
    /// it was given with `#[handler(name = "...")]`.
    ///
    /// Fails if no `#[handler]` linked into the binary has that name.
    pub fn disable_handler(&self, name: &str) -> Result<(), UnknownHandlerError> {
        self.set_handler_enabled(name, false)
    }

    /// Lets a handler disabled by [`disable_handler`](EventBus::disable_handler) run again.
    pub fn enable_handler(&self, name: &str) -> Result<(), UnknownHandlerError> {
        self.set_handler_enabled(name, true)
    }

    /// Whether the `#[handler]` with this name runs on this bus (`false` also
    /// when the bus runs no `#[handler]`s at all).
    pub fn is_handler_enabled(&self, name: &str) -> bool {
        self.inner.config.static_handlers && !self.inner.lock().disabled.contains(name)
    }

    fn set_handler_enabled(&self, name: &str, enabled: bool) -> Result<(), UnknownHandlerError> {
        let events: Vec<_> = types_with_hooks()
            .filter(|(event, _)| event.0.has_static_handler(name))
            .map(|(_, hooks)| hooks)
            .collect();
        if events.is_empty() {
            return Err(UnknownHandlerError {
                name: name.to_owned(),
            });
        }
        self.inner.change(|config, control, table| {
            let changed = if enabled {
                control.disabled.remove(name)
            } else {
                control.disabled.insert(name.to_owned())
            };
            if changed {
                for hooks in &events {
                    (hooks.rebuild)(config, control, table);
                }
            }
        });
        Ok(())
    }

    /// The handlers an `E` emitted now would reach, in dispatch order.
    pub fn handlers<E: Event>(&self) -> Vec<HandlerInfo> {
        let slot = E::__slot();
        let table = self.inner.routes.load();
        match table.route::<E>(slot.index()) {
            Some((route, _)) => route.entries.iter().map(Entry::info).collect(),
            None if self.inner.config.static_handlers => {
                slot.statics().iter().map(|r| r.info(E::NAME)).collect()
            }
            None => Vec::new(),
        }
    }

    /// Per-handler statistics, for buses built with
    /// [`handler_stats(true)`](EventBusBuilder::handler_stats) (empty
    /// otherwise): every handler of every event type, sorted by event name
    /// then dispatch order. Handlers that were never called show zero calls;
    /// a dropped subscription's statistics go with it.
    pub fn handler_stats(&self) -> Vec<HandlerStats> {
        let table = self.inner.routes.load();
        let mut all: Vec<(&'static str, usize, HandlerStats)> = Vec::new();
        for event_type in EventType::all() {
            for (position, cell) in table.stats_of(event_type.index()).iter().enumerate() {
                all.push((event_type.name(), position, cell.snapshot()));
            }
        }
        all.sort_by_key(|(event, position, _)| (*event, *position));
        all.into_iter().map(|(_, _, stats)| stats).collect()
    }

    /// The recorder this bus was built with, if any.
    #[cfg_attr(not(feature = "history"), allow(dead_code))]
    pub(crate) fn recorder(&self) -> Option<&Arc<dyn Recorder>> {
        self.inner.recorder.as_ref()
    }
}

impl<'a> EventContext<'a> {
    /// The bus this event is being dispatched on, to emit follow-up events.
    /// They are delivered immediately (depth-first) in the same trace.
    pub fn bus(&self) -> &'a EventBus {
        match self.bus.downcast_ref::<EventBus>() {
            Some(bus) => bus,
            // Only `EventBus::dispatch` builds contexts, from a `&EventBus`.
            None => unreachable!("an EventContext always refers to an EventBus"),
        }
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

static GLOBAL: OnceLock<EventBus> = OnceLock::new();

impl Drop for BusInner {
    fn drop(&mut self) {
        self.routes.load().release_counts();
    }
}

impl BusInner {
    fn lock(&self) -> MutexGuard<'_, Control> {
        // Only our own code runs under this lock; a poisoned lock means it
        // panicked mid-update, and the data is still consistent (the table
        // is swapped in one store).
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy-on-write change of the route table, under the control lock.
    ///
    /// No user code runs under the lock: whatever `change` takes out (the
    /// removed subscriptions, returned as `R`) and the replaced table, which
    /// may hold the last reference to a closure whose captures' `Drop` can
    /// subscribe or unsubscribe on this very bus, are dropped after it is
    /// released.
    fn change<R>(&self, change: impl FnOnce(RouteConfig, &mut Control, &mut RouteTable) -> R) -> R {
        let mut control = self.lock();
        let current = self.routes.load_full();
        let mut table = RouteTable::clone(&current);
        let removed = change(self.config.routes(), &mut control, &mut table);
        let table = Arc::new(table);
        current.swap_counts(&table, || self.routes.store(Arc::clone(&table)));
        drop(control);
        drop(current);
        removed
    }
}
