//! The event bus: synchronous, typed dispatch to `#[handler]`s and run-time
//! subscriptions.
//!
//! # Order
//!
//! For each event, handlers run one after another on the emitting thread, in
//! one merged order:
//!
//! 1. higher `priority` first (default 0; `#[handler(priority = 10)]`,
//!    [`SubscribeOptions::priority`]);
//! 2. at equal priority, `#[handler]` functions before subscriptions;
//! 3. `#[handler]`s by name, then by function path; subscriptions in the order
//!    they were made.
//!
//! The order does not depend on link order, crate or build profile.
//! [`EventBus::handlers`] shows it.
//!
//! # Re-entrancy
//!
//! A handler may emit (through [`EventContext::bus`](crate::EventContext::bus)
//! or any bus it holds). The nested event is delivered immediately,
//! depth-first, in the same trace, before the next handler of the outer event
//! runs. Past [`EventBusBuilder::max_depth`] nested emits (default
//! [`DEFAULT_MAX_DEPTH`]) an emit is refused: nothing is delivered, the report
//! says why ([`Refusal::DepthLimit`]) and a warning is logged. No stack
//! overflow.
//!
//! Handlers may subscribe, unsubscribe (also themselves) and enable or disable
//! handlers while an emit is in progress: the running emit finishes with the
//! handlers it started with, and changes apply from the next emit.
//!
//! # Failures
//!
//! Each handler call is isolated. When a handler returns `Err` or panics, the
//! other handlers still run and `emit` returns normally; the report lists the
//! failure ([`HandlerFailure`]); the failure is logged through `tracing` at
//! ERROR level (target `sbox_events`, with `trace_id`, `event`, `handler`);
//! and an [`ErrorOccurred`] event is emitted in
//! the same trace. A failure while an `error.occurred` is being handled
//! (whoever emitted it, the bus or the application, and including events
//! its handlers emit in turn) is logged and reported but emits no further
//! `error.occurred`, so error handlers cannot loop. A panic payload is
//! dropped inside the isolation too (its `Drop` may panic again), so no
//! panic escapes `emit`. Text from the failure is escaped in the log line
//! ([`crate::escape::LogSafe`]). [`FailurePolicy::Propagate`]
//! re-raises instead (for tests).
//!
//! No user code (a closure, its captures' `Drop`) ever runs while the bus
//! holds a lock: removed subscriptions and replaced route tables are dropped
//! after the lock is released, so a closure may own subscriptions of the
//! same bus, or subscribe from its `Drop`.
//!
//! Panics are caught with `catch_unwind`, which cannot work in a binary built
//! with `panic = "abort"`: there a panicking handler aborts the process. The
//! default panic hook still prints the panic message to stderr.
//!
//! # Cost
//!
//! `emit` takes no lock and writes no shared memory. It reads a few
//! thread-locals (trace, depth, sequence block), builds the context on the
//! stack, and calls each handler through a function pointer (a boxed closure
//! for subscriptions) inside `catch_unwind`. While no bus has a subscription
//! or a disabled handler for the event type (a per-type count that only
//! subscribe/unsubscribe write), it does not even look at the bus's route
//! table; otherwise it loads it through `arc-swap` (no reference-count
//! traffic). An emit outside any trace scope draws a fresh trace id from a
//! per-thread generator. No clock is read unless someone asks for the
//! timestamp (or the bus keeps a history), and nothing is allocated unless a
//! handler fails. Subscribing and unsubscribing copy the route table
//! (copy-on-write, under a mutex only writers take). Measured costs are in
//! the README (`cargo bench -p sbox-events --bench emit`).

use crate::any::{AnyEvent, EventSelector, EventType};
use crate::escape::LogSafe;
use crate::event::{Event, EventContext, Metadata};
use crate::events::ErrorOccurred;
use crate::handler::{HandlerError, HandlerFailure, IntoHandlerResult};
use crate::history::{self, History, RecordedEvent};
use crate::registry::{self, HandlerInfo};
use crate::routes::{
    self, Control, Entry, ErasedEntry, ErasedFilter, ErasedHandler, ErasedSubscription,
    RouteConfig, RouteTable, StatsKey, Subscriber, TypedFilter,
};
use crate::stats::{HandlerStats, Outcome};
use crate::trace::{self, TraceId};
use arc_swap::ArcSwap;
use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Instant;

/// Default limit of nested emits; see [`EventBusBuilder::max_depth`].
pub const DEFAULT_MAX_DEPTH: u32 = 32;

/// A typed, synchronous event bus. Cheap to clone (a shared handle).
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
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

static_assertions::assert_impl_all!(EventBus: Send, Sync);

pub(crate) struct BusInner {
    config: Config,
    history: Option<History>,
    routes: ArcSwap<RouteTable>,
    control: Mutex<Control>,
}

#[derive(Clone, Copy, Debug)]
struct Config {
    failure_policy: FailurePolicy,
    max_depth: u32,
    static_handlers: bool,
    error_events: bool,
    handler_stats: bool,
    validate_on_emit: bool,
    history_bytes: Option<usize>,
    record_replays: bool,
}

impl Config {
    fn routes(&self) -> RouteConfig {
        RouteConfig {
            static_handlers: self.static_handlers,
            handler_stats: self.handler_stats,
        }
    }
}

static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// How many emits are running on this thread (nesting depth).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// True while an `error.occurred` is dispatched on this thread.
    static IN_ERROR_EVENT: Cell<bool> = const { Cell::new(false) };
    /// True while `EventBus::replay` runs on this thread.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    /// This thread's block of sequence numbers: (next, end).
    static SEQUENCE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

const SEQUENCE_BLOCK: u64 = 1024;
static NEXT_SEQUENCE_BLOCK: AtomicU64 = AtomicU64::new(1);

#[inline]
fn next_sequence() -> u64 {
    SEQUENCE.with(|cell| {
        let (next, end) = cell.get();
        let (n, end) = if next < end {
            (next, end)
        } else {
            let start = NEXT_SEQUENCE_BLOCK.fetch_add(SEQUENCE_BLOCK, Ordering::Relaxed);
            (start, start + SEQUENCE_BLOCK)
        };
        cell.set((n + 1, end));
        n
    })
}

/// Restores the thread's nesting depth when an emit ends (or unwinds).
struct DepthGuard(u32);

impl DepthGuard {
    fn enter(depth: u32) -> DepthGuard {
        DEPTH.with(|d| d.set(depth + 1));
        DepthGuard(depth)
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        let _ = DEPTH.try_with(|d| d.set(self.0));
    }
}

static EMPTY_METADATA: Metadata = Metadata::new();

/// A handler call that did not return `Ok(())`.
enum Failure {
    Error(HandlerError),
    Panic(Box<dyn Any + Send>),
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
            config: Config {
                failure_policy: FailurePolicy::Isolate,
                max_depth: DEFAULT_MAX_DEPTH,
                static_handlers: true,
                error_events: true,
                handler_stats: false,
                validate_on_emit: false,
                history_bytes: None,
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
    /// [module docs](crate::bus) for order, nesting and failures.
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

    /// Dispatches `record` (deserialized as `E`) as a replay.
    pub(crate) fn dispatch_replay<E: Event>(
        &self,
        event: &E,
        record: &RecordedEvent,
    ) -> EmitReport {
        self.dispatch(event, record.source(), record.metadata(), Some(record))
    }

    /// Re-dispatches recorded (or imported) events to the current handlers,
    /// in the order given, each in its original trace and with its original
    /// timestamp, sequence number, source and metadata;
    /// [`EventContext::is_replay`] is true for them and for anything their
    /// handlers emit. Replays are not recorded in this bus's history unless
    /// it was built with [`record_replays`](EventBusBuilder::record_replays).
    ///
    /// ```
    /// use sbox_events::events::ConfigExported;
    /// use sbox_events::history::HistoryQuery;
    /// use sbox_events::{EventBus, EventContext};
    ///
    /// let bus = EventBus::builder().history(1 << 20).build();
    /// let report = bus.emit(ConfigExported { path: "a.json".into(), export_format: "sing-box".into(), file_size: 1 });
    /// let _debug = bus.subscribe(|e: &ConfigExported, ctx: &EventContext| {
    ///     assert!(ctx.is_replay());
    ///     println!("replaying {} from trace {}", e.path, ctx.trace_id());
    /// });
    /// let history = bus.history().expect("enabled");
    /// let records = history.query(&HistoryQuery::new().trace_id(report.trace_id()));
    /// let replayed = bus.replay(&records);
    /// assert!(replayed.is_ok());
    /// assert_eq!(replayed.reports()[0].trace_id(), report.trace_id());
    /// assert_eq!(history.stats().entries, 1, "the replay was not recorded");
    /// ```
    pub fn replay<'a>(&self, records: impl IntoIterator<Item = &'a RecordedEvent>) -> ReplayReport {
        let previous = REPLAYING.with(|r| r.replace(true));
        let _restore = RestoreReplaying(previous);
        let mut report = ReplayReport::default();
        for record in records {
            let result = trace::with_trace_id(record.trace_id(), || {
                record.event_type().0.replay(self, record)
            });
            match result {
                Ok(emitted) => report.reports.push(emitted),
                Err(message) => report.errors.push(ReplayError {
                    event: record.name(),
                    sequence: record.sequence(),
                    message,
                }),
            }
        }
        report
    }

    /// This bus's event history, if it was built with
    /// [`history`](EventBusBuilder::history).
    pub fn history(&self) -> Option<&History> {
        self.inner.history.as_ref()
    }

    fn dispatch<E: Event>(
        &self,
        event: &E,
        source: &str,
        metadata: &Metadata,
        replayed: Option<&RecordedEvent>,
    ) -> EmitReport {
        let config = &self.inner.config;
        let depth = DEPTH.with(Cell::get);
        let (trace_id, _root) = trace::emit_trace();
        let mut report = EmitReport::new(E::NAME, trace_id);
        if depth >= config.max_depth {
            let limit = config.max_depth;
            return self.refuse(report, Refusal::DepthLimit { depth, limit });
        }
        if config.validate_on_emit
            && let Err(reason) = event.validate()
        {
            return self.refuse(report, Refusal::Invalid { reason });
        }
        let _depth = DepthGuard::enter(depth);
        // Failures while an `error.occurred` is handled (whoever emitted it)
        // never emit another one. Decided at compile time per event type.
        let _error_scope =
            (TypeId::of::<E>() == TypeId::of::<ErrorOccurred>()).then(ErrorScope::enter);
        let replay = replayed.is_some() || REPLAYING.with(Cell::get);
        let ctx = EventContext {
            bus: self,
            name: E::NAME,
            source,
            metadata,
            trace_id,
            sequence: replayed.map_or_else(next_sequence, RecordedEvent::sequence),
            depth,
            timestamp: OnceCell::new(),
            replay,
        };
        if let Some(record) = replayed {
            let _ = ctx.timestamp.set(record.timestamp());
        }
        if let Some(history) = &self.inner.history
            && (!replay || config.record_replays)
        {
            record_in(history, event, &ctx);
        }
        let slot = E::__slot();
        // While no bus has a route for `E`, skip loading the table: the
        // answer would be "no route" (see `EventSlot::routed`).
        let table;
        let route = if slot.routed.load(Ordering::Relaxed) == 0 {
            None
        } else {
            table = self.inner.routes.load();
            table.route::<E>(slot.index())
        };
        match route {
            Some((route, [])) => {
                report.delivered = route.entries.len();
                for entry in route.entries.iter() {
                    match call_entry(entry, event, &ctx) {
                        Ok(Called::Yes) => {}
                        Ok(Called::Filtered) => report.delivered -= 1,
                        Err(failure) => {
                            self.handler_failed(entry.name(), failure, &ctx, &mut report)
                        }
                    }
                }
            }
            Some((route, stats)) => {
                report.delivered = route.entries.len();
                for (entry, stats) in route.entries.iter().zip(stats) {
                    let started = Instant::now();
                    let result = call_entry(entry, event, &ctx);
                    let outcome = match &result {
                        Ok(Called::Filtered) => {
                            report.delivered -= 1;
                            continue;
                        }
                        Ok(Called::Yes) => Outcome::Ok,
                        Err(Failure::Error(_)) => Outcome::Error,
                        Err(Failure::Panic(_)) => Outcome::Panic,
                    };
                    stats.record(started.elapsed(), outcome);
                    if let Err(failure) = result {
                        self.handler_failed(entry.name(), failure, &ctx, &mut report);
                    }
                }
            }
            None if config.static_handlers => {
                let statics = slot.statics();
                report.delivered = statics.len();
                for record in statics {
                    if let Err(failure) = isolate(|| (record.call)(event, &ctx)) {
                        self.handler_failed(record.name, failure, &ctx, &mut report);
                    }
                }
            }
            None => {}
        }
        report
    }

    #[cold]
    #[inline(never)]
    fn handler_failed(
        &self,
        name: &str,
        failure: Failure,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        let handler = Cow::Owned(name.to_owned());
        let (failure, payload) = match failure {
            Failure::Error(err) => (HandlerFailure::from_error(handler, ctx.name, err), None),
            Failure::Panic(payload) => (
                HandlerFailure::from_panic(handler, ctx.name, &*payload),
                Some(payload),
            ),
        };
        tracing::error!(
            target: "sbox_events",
            trace_id = %ctx.trace_id,
            event = ctx.name,
            handler = %LogSafe(failure.handler()),
            kind = ?failure.kind(),
            error = %LogSafe(failure.message()),
            "event handler failed"
        );
        if self.inner.config.failure_policy == FailurePolicy::Propagate {
            match payload {
                Some(payload) => resume_unwind(payload),
                None => panic!("{failure}"),
            }
        }
        if let Some(payload) = payload {
            drop_payload(payload);
        }
        if self.inner.config.error_events && !IN_ERROR_EVENT.with(Cell::get) {
            self.emit(ErrorOccurred {
                error: failure.message().to_owned(),
                error_type: failure.error_type().to_owned(),
                event: failure.event().to_owned(),
                handler: failure.handler().to_owned(),
            });
        }
        report.issues().failures.push(failure);
    }

    #[cold]
    #[inline(never)]
    fn refuse(&self, mut report: EmitReport, refusal: Refusal) -> EmitReport {
        tracing::warn!(
            target: "sbox_events",
            trace_id = %report.trace_id,
            event = report.event,
            "emit refused: {refusal}"
        );
        report.issues().refused = Some(refusal);
        report
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

    fn add_typed<E, F, R>(
        &self,
        options: SubscribeOptions,
        filter: Option<TypedFilter<E>>,
        handler: F,
    ) -> Subscription
    where
        E: Event,
        F: Fn(&E, &EventContext<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        let id = NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed);
        let subscriber = Arc::new(Subscriber {
            id,
            name: options.name_or(std::any::type_name::<F>()),
            priority: options.priority,
            filter,
            call: Box::new(move |event: &E, ctx: &EventContext<'_>| {
                handler(event, ctx).into_handler_result()
            }),
        });
        self.inner.change(|config, control, table| {
            let mut subscribers = routes::subscribers_of::<E>(table);
            subscribers.push(subscriber);
            routes::rebuild_route::<E>(config, control, table, Some(subscribers));
        });
        self.subscription(id, remove_typed::<E>)
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

    fn add_erased<F, R>(
        &self,
        options: SubscribeOptions,
        selector: EventSelector,
        filter: Option<ErasedFilter>,
        handler: F,
    ) -> Subscription
    where
        F: Fn(&AnyEvent<'_>, &EventContext<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        let name = options.name_or(std::any::type_name::<F>());
        let call: ErasedHandler = Arc::new(move |event: &AnyEvent<'_>, ctx: &EventContext<'_>| {
            handler(event, ctx).into_handler_result()
        });
        self.subscribe_each(name, options.priority, selector, filter, |_| {
            Some(Arc::clone(&call))
        })
    }

    /// A type-erased subscription whose handler is made once per selected
    /// event type by `make` (which may return `None` to skip a type), so it
    /// can keep per-type state without looking anything up on emit.
    pub(crate) fn subscribe_each(
        &self,
        name: Cow<'static, str>,
        priority: i32,
        selector: EventSelector,
        filter: Option<ErasedFilter>,
        mut make: impl FnMut(EventType) -> Option<ErasedHandler>,
    ) -> Subscription {
        let id = NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed);
        let selected: Vec<EventType> = EventType::all()
            .into_iter()
            .filter(|t| selector.matches(t.name()))
            .collect();
        let entries = selected
            .iter()
            .filter_map(|&event_type| {
                let call = make(event_type)?;
                let entry = ErasedEntry {
                    id,
                    name: name.clone(),
                    priority,
                    filter: filter.clone(),
                    call,
                };
                Some((event_type.index(), Arc::new(entry)))
            })
            .collect();
        let subscription = Arc::new(ErasedSubscription {
            id,
            selector,
            entries,
        });
        self.inner.change(|config, control, table| {
            control.erased.push(subscription);
            for event_type in &selected {
                event_type.0.rebuild(config, control, table);
            }
        });
        self.subscription(id, remove_erased)
    }

    fn subscription(&self, id: u64, remove: fn(&BusInner, u64)) -> Subscription {
        Subscription {
            bus: Arc::downgrade(&self.inner),
            id,
            remove,
        }
    }

    /// Stops the `#[handler]` (or handlers) with this name from running on
    /// this bus, for every event type, until [`enable_handler`](EventBus::enable_handler).
    /// The name is the handler's path (`my_crate::audit::on_fetched`) unless
    /// it was given with `#[handler(name = "...")]`.
    ///
    /// Fails if no `#[handler]` linked into the binary has that name.
    pub fn disable_handler(&self, name: &str) -> Result<(), UnknownHandler> {
        self.set_handler_enabled(name, false)
    }

    /// Lets a handler disabled by [`disable_handler`](EventBus::disable_handler) run again.
    pub fn enable_handler(&self, name: &str) -> Result<(), UnknownHandler> {
        self.set_handler_enabled(name, true)
    }

    /// Whether the `#[handler]` with this name runs on this bus (`false` also
    /// when the bus runs no `#[handler]`s at all).
    pub fn is_handler_enabled(&self, name: &str) -> bool {
        self.inner.config.static_handlers && !self.inner.lock().disabled.contains(name)
    }

    fn set_handler_enabled(&self, name: &str, enabled: bool) -> Result<(), UnknownHandler> {
        let events: Vec<_> = registry::all_events()
            .filter(|event| event.has_static_handler(name))
            .collect();
        if events.is_empty() {
            return Err(UnknownHandler {
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
                for event in &events {
                    event.rebuild(config, control, table);
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
}

/// Calls one handler of the route, isolated.
#[inline(always)]
fn call_entry<E: Event>(
    entry: &Entry<E>,
    event: &E,
    ctx: &EventContext<'_>,
) -> Result<Called, Failure> {
    match entry {
        Entry::Static(record) => isolate(|| (record.call)(event, ctx)).map(|()| Called::Yes),
        Entry::Typed(sub) => isolate(|| match &sub.filter {
            Some(filter) if !filter(event, ctx) => Ok(Called::Filtered),
            _ => (sub.call)(event, ctx).map(|()| Called::Yes),
        }),
        Entry::Erased(sub) => {
            let event = AnyEvent::new(event);
            isolate(|| match &sub.filter {
                Some(filter) if !filter(&event, ctx) => Ok(Called::Filtered),
                _ => (sub.call)(&event, ctx).map(|()| Called::Yes),
            })
        }
    }
}

/// Whether a subscription's filter let the event through.
enum Called {
    Yes,
    Filtered,
}

#[inline(always)]
fn isolate<T>(call: impl FnOnce() -> Result<T, HandlerError>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Failure::Error(err)),
        Err(payload) => Err(Failure::Panic(payload)),
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

struct RestoreReplaying(bool);

impl Drop for RestoreReplaying {
    fn drop(&mut self) {
        let _ = REPLAYING.try_with(|r| r.set(self.0));
    }
}

/// Appends the event being dispatched to the history, with the timestamp
/// handlers will see.
#[inline(never)]
fn record_in<E: Event>(history: &History, event: &E, ctx: &EventContext<'_>) {
    let record = history::record(
        event,
        history.data_limit(),
        ctx.source,
        ctx.trace_id,
        ctx.timestamp(),
        ctx.sequence,
        ctx.metadata,
    );
    match record {
        Ok(record) => history.push(record),
        Err(history::NotRecorded::Oversized) => history.push_oversized(),
        Err(history::NotRecorded::Serialize) => {}
    }
}

/// Marks the thread as handling an `error.occurred` until dropped.
struct ErrorScope(bool);

impl ErrorScope {
    fn enter() -> ErrorScope {
        ErrorScope(IN_ERROR_EVENT.with(|f| f.replace(true)))
    }
}

impl Drop for ErrorScope {
    fn drop(&mut self) {
        let _ = IN_ERROR_EVENT.try_with(|f| f.set(self.0));
    }
}

/// Drops a caught panic payload. Its `Drop` is user code and may panic in
/// turn (`panic_any(Bomb)`): that panic is caught too, and so on a few
/// times; a payload that keeps panicking is leaked rather than let out.
fn drop_payload(payload: Box<dyn Any + Send>) {
    let mut payload = payload;
    for _ in 0..4 {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}

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

fn remove_typed<E: Event>(bus: &BusInner, id: u64) {
    let removed = bus.change(|config, control, table| {
        let (kept, removed): (Vec<_>, Vec<_>) = routes::subscribers_of::<E>(table)
            .into_iter()
            .partition(|sub| sub.id != id);
        control
            .stats
            .retain(|(_, key), _| *key != StatsKey::Subscription(id));
        routes::rebuild_route::<E>(config, control, table, Some(kept));
        removed
    });
    drop(removed);
}

fn remove_erased(bus: &BusInner, id: u64) {
    let removed = bus.change(|config, control, table| {
        let position = control.erased.iter().position(|sub| sub.id == id)?;
        let removed = control.erased.remove(position);
        control
            .stats
            .retain(|(_, key), _| *key != StatsKey::Subscription(id));
        for event_type in EventType::all() {
            if removed.selector.matches(event_type.name()) {
                event_type.0.rebuild(config, control, table);
            }
        }
        Some(removed)
    });
    drop(removed);
}

/// Options for [`EventBus::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct EventBusBuilder {
    config: Config,
}

impl EventBusBuilder {
    /// What a failing handler does to the emit (default: [`FailurePolicy::Isolate`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.config.failure_policy = policy;
        self
    }

    /// How many emits may be nested inside handlers before an emit is refused
    /// (default [`DEFAULT_MAX_DEPTH`]). An emit outside any handler is at
    /// depth 0, so `max_depth(1)` allows no nested emit. `0` refuses every emit.
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.config.max_depth = depth;
        self
    }

    /// Whether `#[handler]` functions run on this bus (default `true`). A bus
    /// without them runs only its subscriptions: what a test usually wants.
    pub fn static_handlers(mut self, enabled: bool) -> Self {
        self.config.static_handlers = enabled;
        self
    }

    /// Whether handler failures are emitted as [`ErrorOccurred`]
    /// (default `true`).
    pub fn error_events(mut self, enabled: bool) -> Self {
        self.config.error_events = enabled;
        self
    }

    /// Whether to time every handler call (default `false`); read the
    /// results with [`EventBus::handler_stats`]. See [`crate::stats`] for
    /// what it costs.
    pub fn handler_stats(mut self, enabled: bool) -> Self {
        self.config.handler_stats = enabled;
        self
    }

    /// Refuse events whose [`Event::validate`] fails (default `false`): they
    /// are not delivered, and the report says why ([`Refusal::Invalid`]).
    /// Costs one call of the event's validation per emit when on.
    pub fn validate_on_emit(mut self, enabled: bool) -> Self {
        self.config.validate_on_emit = enabled;
        self
    }

    /// Keep a history of emitted events, bounded to `bytes` (clamped to
    /// [`MAX_HISTORY_BYTES`](crate::history::MAX_HISTORY_BYTES)); see
    /// [`crate::history`] for what is counted and what it costs. Off by
    /// default; [`DEFAULT_HISTORY_BYTES`](crate::history::DEFAULT_HISTORY_BYTES)
    /// is a good size.
    pub fn history(mut self, bytes: usize) -> Self {
        self.config.history_bytes = Some(bytes);
        self
    }

    /// Record replayed events in the history too (default `false`).
    pub fn record_replays(mut self, enabled: bool) -> Self {
        self.config.record_replays = enabled;
        self
    }

    /// The bus.
    pub fn build(self) -> EventBus {
        let bus = EventBus {
            inner: Arc::new(BusInner {
                config: self.config,
                history: self.config.history_bytes.map(History::new),
                routes: ArcSwap::from_pointee(RouteTable::default()),
                control: Mutex::new(Control::default()),
            }),
        };
        if self.config.handler_stats {
            // Every event type needs a route to carry its statistics cells.
            bus.inner.change(|config, control, table| {
                for event_type in EventType::all() {
                    event_type.0.rebuild(config, control, table);
                }
            });
        }
        bus
    }
}

/// What a failing handler does to the emit that called it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Record the failure, log it, emit `error.occurred`, run the remaining
    /// handlers, return normally.
    #[default]
    Isolate,
    /// Log it, then re-raise: a panic resumes with its original payload, an
    /// `Err` panics with the failure's description. Remaining handlers do not
    /// run. Useful in tests.
    Propagate,
}

/// Source and metadata for one emit; see [`EventBus::emit_with`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct EmitOptions {
    source: Option<Cow<'static, str>>,
    metadata: Metadata,
}

impl EmitOptions {
    /// No overrides: the event's default source, no metadata.
    pub fn new() -> Self {
        EmitOptions::default()
    }

    /// Who emits the event (instead of `Event::SOURCE`).
    pub fn source(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Adds one metadata entry.
    pub fn metadata(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.metadata.insert(key, value);
        self
    }

    /// Replaces all metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Name and priority of a subscription; see [`EventBus::subscribe_with`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SubscribeOptions {
    name: Option<Cow<'static, str>>,
    priority: i32,
}

impl SubscribeOptions {
    fn name_or(&self, default: &'static str) -> Cow<'static, str> {
        self.name.clone().unwrap_or(Cow::Borrowed(default))
    }

    /// Priority 0, named after the closure's type.
    pub fn new() -> Self {
        SubscribeOptions::default()
    }

    /// The name shown in failure reports, logs and [`EventBus::handlers`].
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Higher runs first; default 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

/// A run-time subscription; dropping it unsubscribes.
///
/// The change applies from the next emit (an emit already running on another
/// thread, or an outer emit on this one, may still call the handler once).
/// To keep the handler for the bus's lifetime, call [`detach`](Subscription::detach).
#[must_use = "dropping a Subscription unsubscribes at once; call .detach() to keep it"]
pub struct Subscription {
    bus: Weak<BusInner>,
    id: u64,
    remove: fn(&BusInner, u64),
}

impl Subscription {
    /// A process-unique id, also shown in [`HandlerOrigin::Subscription`](crate::HandlerOrigin::Subscription).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Unsubscribes now (same as dropping).
    pub fn unsubscribe(self) {
        drop(self);
    }

    /// Keeps the handler subscribed until the bus itself is dropped.
    pub fn detach(mut self) {
        self.bus = Weak::new();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            (self.remove)(&bus, self.id);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What happened to one emit.
///
/// Small on purpose (failures and refusals live behind one pointer, which is
/// null when all went well): returning and dropping it is a few moves.
#[derive(Clone, Debug)]
pub struct EmitReport {
    event: &'static str,
    trace_id: TraceId,
    delivered: usize,
    issues: Option<Box<Issues>>,
}

#[derive(Clone, Debug, Default)]
struct Issues {
    failures: Vec<HandlerFailure>,
    refused: Option<Refusal>,
}

impl EmitReport {
    fn new(event: &'static str, trace_id: TraceId) -> Self {
        EmitReport {
            event,
            trace_id,
            delivered: 0,
            issues: None,
        }
    }

    fn issues(&mut self) -> &mut Issues {
        self.issues.get_or_insert_with(Box::default)
    }

    /// The event's name.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// The trace the event ran in.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// How many handlers were called (including the ones that failed).
    pub fn delivered(&self) -> usize {
        self.delivered
    }

    /// How many handlers were called and succeeded.
    pub fn succeeded(&self) -> usize {
        self.delivered - self.failures().len()
    }

    /// The handlers that returned `Err` or panicked, in call order.
    pub fn failures(&self) -> &[HandlerFailure] {
        self.issues.as_ref().map_or(&[], |i| &i.failures)
    }

    /// Why the event was not delivered at all, if it was refused.
    pub fn refused(&self) -> Option<&Refusal> {
        self.issues.as_ref()?.refused.as_ref()
    }

    /// No failure and not refused.
    pub fn is_ok(&self) -> bool {
        self.issues.is_none()
    }
}

impl fmt::Display for EmitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(refusal) = self.refused() {
            return write!(f, "`{}` refused: {refusal}", self.event);
        }
        write!(
            f,
            "`{}` delivered to {} handler(s), {} failed",
            self.event,
            self.delivered,
            self.failures().len()
        )?;
        for failure in self.failures() {
            write!(f, "; {failure}")?;
        }
        Ok(())
    }
}

/// Why an emit delivered nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The emit would nest deeper than the bus allows.
    DepthLimit {
        /// The depth the event would have run at.
        depth: u32,
        /// The bus's [`max_depth`](EventBusBuilder::max_depth).
        limit: u32,
    },
    /// The event failed its validation on a bus built with
    /// [`validate_on_emit`](EventBusBuilder::validate_on_emit).
    Invalid {
        /// What the validation said.
        reason: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::DepthLimit { depth, limit } => write!(
                f,
                "nesting depth {depth} reached the limit of {limit} nested emits \
                 (does a handler re-emit in a loop?)"
            ),
            Refusal::Invalid { reason } => {
                write!(f, "the event is invalid: {}", LogSafe(reason))
            }
        }
    }
}

/// [`EventBus::disable_handler`] was given a name no `#[handler]` has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownHandler {
    name: String,
}

impl UnknownHandler {
    /// The name that was asked for.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no #[handler] named `{}` is linked into this binary \
             (names are full paths like `my_crate::module::function` unless set with `name = \"..\"`)",
            self.name
        )
    }
}

impl std::error::Error for UnknownHandler {}

/// What [`EventBus::replay`] did.
#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    reports: Vec<EmitReport>,
    errors: Vec<ReplayError>,
}

impl ReplayReport {
    /// One report per replayed event, in order.
    pub fn reports(&self) -> &[EmitReport] {
        &self.reports
    }

    /// Records that could not be turned back into their event type.
    pub fn errors(&self) -> &[ReplayError] {
        &self.errors
    }

    /// Every record replayed, and every emit ok.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty() && self.reports.iter().all(EmitReport::is_ok)
    }
}

/// A record that could not be replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayError {
    /// Its event name.
    pub event: &'static str,
    /// Its sequence number.
    pub sequence: u64,
    /// Why.
    pub message: String,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot replay `{}` #{}: {}",
            self.event, self.sequence, self.message
        )
    }
}

impl std::error::Error for ReplayError {}
