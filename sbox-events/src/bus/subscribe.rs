//! Run-time subscriptions: typed, filtered and type-erased
//! (`subscribe_any`), each a RAII [`Subscription`] guard, and their removal.
//!
//! Subscribing and unsubscribing copy the bus's route table (copy-on-write,
//! under the control mutex only writers take); the removed closure and the
//! replaced table are dropped after the mutex is released, so a closure may
//! own subscriptions of the same bus or subscribe from its `Drop`.

use super::hooks::{TypeHooks, types_with_hooks};
use super::routes::{
    self, AsyncTypedHandler, ErasedEntry, ErasedFilter, ErasedHandler, ErasedSubscription,
    StatsKey, Subscriber, TypedFilter,
};
use super::{BusInner, EventBus};
use crate::any::{AnyEvent, EventSelector, EventType};
use crate::context::EventContext;
use crate::event::Event;
use crate::handler::{HandlerError, IntoHandlerResult};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(1);

impl EventBus {
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

    pub(super) fn add_typed<E, F, R>(
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
            future: None,
            skip_warned: AtomicBool::new(false),
        });
        self.add_subscriber(subscriber)
    }

    pub(super) fn add_async<E, F, Fut>(&self, options: SubscribeOptions, handler: F) -> Subscription
    where
        E: Event,
        F: Fn(&E, &EventContext<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoHandlerResult> + Send + 'static,
    {
        let id = NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed);
        let call: AsyncTypedHandler<E> = Box::new(move |event: &E, ctx: &EventContext<'_>| {
            let future = handler(event, ctx);
            Box::pin(async move { future.await.into_handler_result() })
        });
        let subscriber = Arc::new(Subscriber {
            id,
            name: options.name_or(std::any::type_name::<F>()),
            priority: options.priority,
            filter: None,
            // A zero-sized closure: boxing it allocates nothing.
            call: Box::new(|_: &E, _: &EventContext<'_>| {
                Err(HandlerError::new(
                    "an async subscription was called by a synchronous emit",
                    "sbox_events::AsyncHandler",
                ))
            }),
            future: Some(call),
            skip_warned: AtomicBool::new(false),
        });
        self.add_subscriber(subscriber)
    }

    fn add_subscriber<E: Event>(&self, subscriber: Arc<Subscriber<E>>) -> Subscription {
        let id = subscriber.id;
        self.inner.change(|config, control, table| {
            let mut subscribers = routes::subscribers_of::<E>(table);
            subscribers.push(subscriber);
            routes::rebuild_route::<E>(config, control, table, Some(subscribers));
        });
        self.subscription(id, remove_typed::<E>)
    }

    pub(super) fn add_erased<F, R>(
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
        let mut selected: Vec<(EventType, &'static TypeHooks)> = types_with_hooks()
            .filter(|(t, _)| selector.matches(t.name()))
            .collect();
        selected.sort_by_key(|(t, _)| (t.name(), t.rust_type()));
        let entries = selected
            .iter()
            .filter_map(|&(event_type, _)| {
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
            for (_, hooks) in &selected {
                (hooks.rebuild)(config, control, table);
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
        for (event_type, hooks) in types_with_hooks() {
            if removed.selector.matches(event_type.name()) {
                (hooks.rebuild)(config, control, table);
            }
        }
        Some(removed)
    });
    drop(removed);
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
