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
//! the same trace. A failure while handling `error.occurred` is logged and
//! reported but does not emit another `error.occurred`, so error handlers
//! cannot loop. [`FailurePolicy::Propagate`] re-raises instead (for tests).
//!
//! Panics are caught with `catch_unwind`, which cannot work in a binary built
//! with `panic = "abort"`: there a panicking handler aborts the process. The
//! default panic hook still prints the panic message to stderr.
//!
//! # Cost
//!
//! `emit` takes no lock and writes no shared memory: it reads two
//! thread-locals (trace, depth), loads the bus's route table through
//! `arc-swap` (no reference-count traffic), and calls each handler through a
//! function pointer (or a boxed closure for subscriptions) inside
//! `catch_unwind`. It reads no clock unless a handler asks for the timestamp,
//! and allocates nothing unless a handler fails. Subscribing and
//! unsubscribing copy the route table (copy-on-write, under a mutex that only
//! writers take).

use crate::event::{Event, EventContext, Metadata};
use crate::events::ErrorOccurred;
use crate::handler::{HandlerError, HandlerFailure, IntoHandlerResult};
use crate::registry::{self, HandlerInfo, HandlerOrigin, HandlerRecord};
use crate::trace::{self, TraceId};
use arc_swap::ArcSwap;
use std::any::Any;
use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::collections::BTreeSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

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
    routes: ArcSwap<RouteTable>,
    control: Mutex<Control>,
}

#[derive(Clone, Copy, Debug)]
struct Config {
    failure_policy: FailurePolicy,
    max_depth: u32,
    static_handlers: bool,
    error_events: bool,
}

/// Writer-side state; readers never take this lock.
pub(crate) struct Control {
    disabled: BTreeSet<String>,
}

/// Per-event-type routes of one bus, indexed by `EventSlot::index`. A `None`
/// (or missing) slot means "the `#[handler]`s, if this bus runs them".
#[derive(Clone, Default)]
pub(crate) struct RouteTable {
    slots: Vec<Option<Arc<dyn Any + Send + Sync>>>,
}

impl RouteTable {
    #[inline]
    fn route<E: Event>(&self, index: usize) -> Option<&Route<E>> {
        self.slots
            .get(index)?
            .as_deref()?
            .downcast_ref::<Route<E>>()
    }

    fn set(&mut self, index: usize, route: Option<Arc<dyn Any + Send + Sync>>) {
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        self.slots[index] = route;
    }
}

/// This bus's handlers for one event type, in dispatch order.
struct Route<E: 'static> {
    entries: Box<[Entry<E>]>,
    /// The subscriptions, in subscription order (the source of truth).
    subscribers: Vec<Arc<Subscriber<E>>>,
}

enum Entry<E: 'static> {
    Static(&'static HandlerRecord<E>),
    Dynamic(Arc<Subscriber<E>>),
}

type BoxedHandler<E> = Box<dyn Fn(&E, &EventContext<'_>) -> Result<(), HandlerError> + Send + Sync>;

struct Subscriber<E: 'static> {
    id: u64,
    name: Cow<'static, str>,
    priority: i32,
    call: BoxedHandler<E>,
}

impl<E> Subscriber<E> {
    fn info(&self, event: &'static str) -> HandlerInfo {
        HandlerInfo {
            name: self.name.clone(),
            event,
            priority: self.priority,
            origin: HandlerOrigin::Subscription { id: self.id },
        }
    }
}

static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// How many emits are running on this thread (nesting depth).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// True while an `error.occurred` produced by a failure is dispatched.
    static IN_ERROR_EVENT: Cell<bool> = const { Cell::new(false) };
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

impl EventBus {
    /// A bus with default options: isolate failures, depth limit
    /// [`DEFAULT_MAX_DEPTH`], run `#[handler]`s, emit `error.occurred`.
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
        self.dispatch(&event, E::SOURCE, &EMPTY_METADATA)
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
        self.dispatch(&event, source, &options.metadata)
    }

    fn dispatch<E: Event>(&self, event: &E, source: &str, metadata: &Metadata) -> EmitReport {
        let depth = DEPTH.with(Cell::get);
        let (trace_id, _root) = trace::emit_trace();
        let mut report = EmitReport::new(E::NAME, trace_id);
        if depth >= self.inner.config.max_depth {
            return self.refuse(report, depth);
        }
        let _depth = DepthGuard::enter(depth);
        let ctx = EventContext {
            bus: self,
            name: E::NAME,
            source,
            metadata,
            trace_id,
            sequence: next_sequence(),
            depth,
            timestamp: OnceCell::new(),
        };
        let slot = E::__slot();
        let table = self.inner.routes.load();
        match table.route::<E>(slot.index()) {
            Some(route) => {
                for entry in route.entries.iter() {
                    match entry {
                        Entry::Static(record) => self.invoke(
                            record.name,
                            || (record.call)(event, &ctx),
                            &ctx,
                            &mut report,
                        ),
                        Entry::Dynamic(sub) => {
                            self.invoke(&sub.name, || (sub.call)(event, &ctx), &ctx, &mut report)
                        }
                    }
                }
            }
            None if self.inner.config.static_handlers => {
                for record in slot.statics() {
                    self.invoke(
                        record.name,
                        || (record.call)(event, &ctx),
                        &ctx,
                        &mut report,
                    );
                }
            }
            None => {}
        }
        report
    }

    #[inline(always)]
    fn invoke(
        &self,
        name: &str,
        call: impl FnOnce() -> Result<(), HandlerError>,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        report.delivered += 1;
        let outcome = match catch_unwind(AssertUnwindSafe(call)) {
            Ok(Ok(())) => return,
            Ok(Err(err)) => Err(err),
            Err(payload) => Ok(payload),
        };
        self.handler_failed(name, outcome, ctx, report);
    }

    /// `outcome`: `Err(error)` for a returned error, `Ok(payload)` for a panic.
    #[cold]
    #[inline(never)]
    fn handler_failed(
        &self,
        name: &str,
        outcome: Result<Box<dyn Any + Send>, HandlerError>,
        ctx: &EventContext<'_>,
        report: &mut EmitReport,
    ) {
        let handler = Cow::Owned(name.to_owned());
        let (failure, payload) = match outcome {
            Err(err) => (HandlerFailure::from_error(handler, ctx.name, err), None),
            Ok(payload) => (
                HandlerFailure::from_panic(handler, ctx.name, &*payload),
                Some(payload),
            ),
        };
        tracing::error!(
            target: "sbox_events",
            trace_id = %ctx.trace_id,
            event = ctx.name,
            handler = %failure.handler(),
            kind = ?failure.kind(),
            error = %failure.message(),
            "event handler failed"
        );
        if self.inner.config.failure_policy == FailurePolicy::Propagate {
            match payload {
                Some(payload) => resume_unwind(payload),
                None => panic!("{failure}"),
            }
        }
        let in_error_event = IN_ERROR_EVENT.with(Cell::get);
        if self.inner.config.error_events && !in_error_event {
            IN_ERROR_EVENT.with(|f| f.set(true));
            let _reset = ResetErrorFlag;
            self.emit(ErrorOccurred {
                error: failure.message().to_owned(),
                error_type: failure.error_type().to_owned(),
                event: failure.event().to_owned(),
                handler: failure.handler().to_owned(),
            });
        }
        report.failures.push(failure);
    }

    #[cold]
    #[inline(never)]
    fn refuse(&self, mut report: EmitReport, depth: u32) -> EmitReport {
        let refusal = Refusal::DepthLimit {
            depth,
            limit: self.inner.config.max_depth,
        };
        tracing::warn!(
            target: "sbox_events",
            trace_id = %report.trace_id,
            event = report.event,
            depth,
            limit = self.inner.config.max_depth,
            "emit refused: {refusal}"
        );
        report.refused = Some(refusal);
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
        let id = NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed);
        let subscriber = Arc::new(Subscriber {
            id,
            name: options
                .name
                .unwrap_or(Cow::Borrowed(std::any::type_name::<F>())),
            priority: options.priority,
            call: Box::new(move |event: &E, ctx: &EventContext<'_>| {
                handler(event, ctx).into_handler_result()
            }),
        });
        self.update::<E>(|subscribers| subscribers.push(subscriber));
        Subscription {
            bus: Arc::downgrade(&self.inner),
            id,
            event: E::NAME,
            remove: remove_subscriber::<E>,
        }
    }

    /// Copy-on-write change of `E`'s subscriber list.
    fn update<E: Event>(&self, change: impl FnOnce(&mut Vec<Arc<Subscriber<E>>>)) {
        self.inner.update::<E>(change);
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
        let mut control = self.inner.lock();
        let changed = if enabled {
            control.disabled.remove(name)
        } else {
            control.disabled.insert(name.to_owned())
        };
        if changed {
            let mut table = RouteTable::clone(&self.inner.routes.load());
            for event in events {
                event.rebuild(&self.inner, &control, &mut table);
            }
            self.inner.routes.store(Arc::new(table));
        }
        Ok(())
    }

    /// The handlers an `E` emitted now would reach, in dispatch order.
    pub fn handlers<E: Event>(&self) -> Vec<HandlerInfo> {
        let slot = E::__slot();
        let table = self.inner.routes.load();
        match table.route::<E>(slot.index()) {
            Some(route) => route
                .entries
                .iter()
                .map(|entry| match entry {
                    Entry::Static(record) => record.info(E::NAME),
                    Entry::Dynamic(sub) => sub.info(E::NAME),
                })
                .collect(),
            None if self.inner.config.static_handlers => {
                slot.statics().iter().map(|r| r.info(E::NAME)).collect()
            }
            None => Vec::new(),
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

struct ResetErrorFlag;

impl Drop for ResetErrorFlag {
    fn drop(&mut self) {
        let _ = IN_ERROR_EVENT.try_with(|f| f.set(false));
    }
}

impl BusInner {
    fn lock(&self) -> MutexGuard<'_, Control> {
        // Only our own code runs under this lock; a poisoned lock means it
        // panicked mid-update, and the data is still consistent (the table
        // is swapped in one store).
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update<E: Event>(&self, change: impl FnOnce(&mut Vec<Arc<Subscriber<E>>>)) {
        let control = self.lock();
        let mut table = RouteTable::clone(&self.routes.load());
        let mut subscribers = table
            .route::<E>(E::__slot().index())
            .map(|route| route.subscribers.clone())
            .unwrap_or_default();
        change(&mut subscribers);
        rebuild_route::<E>(self, &control, &mut table, Some(subscribers));
        self.routes.store(Arc::new(table));
    }
}

/// Re-applies the bus's disabled set to `E`'s entry in `table`, keeping its
/// subscribers. Caller holds the control lock.
pub(crate) fn reapply_disabled<E: Event>(
    bus: &BusInner,
    control: &Control,
    table: &mut RouteTable,
) {
    rebuild_route::<E>(bus, control, table, None);
}

/// Rebuilds `E`'s entry in `table` from its subscribers (`None`: keep the
/// current ones) and the bus's disabled set. Caller holds the control lock.
fn rebuild_route<E: Event>(
    bus: &BusInner,
    control: &Control,
    table: &mut RouteTable,
    subscribers: Option<Vec<Arc<Subscriber<E>>>>,
) {
    let slot = E::__slot();
    let index = slot.index();
    let subscribers = subscribers.unwrap_or_else(|| {
        table
            .route::<E>(index)
            .map(|route| route.subscribers.clone())
            .unwrap_or_default()
    });
    let all_statics = if bus.config.static_handlers {
        slot.statics()
    } else {
        &[]
    };
    let statics: Vec<_> = all_statics
        .iter()
        .filter(|record| !control.disabled.contains(record.name))
        .collect();
    if subscribers.is_empty() && statics.len() == all_statics.len() {
        // The default route (all `#[handler]`s) needs no table entry.
        table.set(index, None);
        return;
    }
    let mut entries: Vec<(i32, bool, Entry<E>)> = statics
        .into_iter()
        .map(|record| (record.priority, false, Entry::Static(record)))
        .chain(
            subscribers
                .iter()
                .map(|sub| (sub.priority, true, Entry::Dynamic(Arc::clone(sub)))),
        )
        .collect();
    // Stable: statics keep their (name, path) order, subscriptions theirs.
    entries.sort_by_key(|&(priority, dynamic, _)| (std::cmp::Reverse(priority), dynamic));
    let route = Route {
        entries: entries.into_iter().map(|(_, _, entry)| entry).collect(),
        subscribers,
    };
    table.set(index, Some(Arc::new(route)));
}

fn remove_subscriber<E: Event>(bus: &BusInner, id: u64) {
    bus.update::<E>(|subscribers| subscribers.retain(|sub| sub.id != id));
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

    /// Whether handler failures are emitted as
    /// [`ErrorOccurred`] (default `true`).
    pub fn error_events(mut self, enabled: bool) -> Self {
        self.config.error_events = enabled;
        self
    }

    /// The bus.
    pub fn build(self) -> EventBus {
        EventBus {
            inner: Arc::new(BusInner {
                config: self.config,
                routes: ArcSwap::from_pointee(RouteTable::default()),
                control: Mutex::new(Control {
                    disabled: BTreeSet::new(),
                }),
            }),
        }
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
    event: &'static str,
    remove: fn(&BusInner, u64),
}

impl Subscription {
    /// A process-unique id, also shown in [`HandlerOrigin::Subscription`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name of the event subscribed to.
    pub fn event(&self) -> &'static str {
        self.event
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
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

/// What happened to one emit.
#[derive(Clone, Debug)]
pub struct EmitReport {
    event: &'static str,
    trace_id: TraceId,
    delivered: usize,
    failures: Vec<HandlerFailure>,
    refused: Option<Refusal>,
}

impl EmitReport {
    fn new(event: &'static str, trace_id: TraceId) -> Self {
        EmitReport {
            event,
            trace_id,
            delivered: 0,
            failures: Vec::new(),
            refused: None,
        }
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
        self.delivered - self.failures.len()
    }

    /// The handlers that returned `Err` or panicked, in call order.
    pub fn failures(&self) -> &[HandlerFailure] {
        &self.failures
    }

    /// Why the event was not delivered at all, if it was refused.
    pub fn refused(&self) -> Option<&Refusal> {
        self.refused.as_ref()
    }

    /// No failure and not refused.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty() && self.refused.is_none()
    }
}

impl fmt::Display for EmitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(refusal) = &self.refused {
            return write!(f, "`{}` refused: {refusal}", self.event);
        }
        write!(
            f,
            "`{}` delivered to {} handler(s), {} failed",
            self.event,
            self.delivered,
            self.failures.len()
        )?;
        for failure in &self.failures {
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
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::DepthLimit { depth, limit } => write!(
                f,
                "nesting depth {depth} reached the limit of {limit} nested emits \
                 (does a handler re-emit in a loop?)"
            ),
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
