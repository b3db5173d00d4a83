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
    StatsKey, Subscriber, ThinCall, TypedFilter, TypedHandler,
};
use super::{BusInner, EventBus};
use crate::any::{AnyEvent, EventSelector, EventType};
use crate::context::{EventContext, register_subscription_name};
use crate::event::Event;
use crate::handler::{HandlerError, IntoHandlerResult};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(1);

impl EventBus {
    pub(crate) fn add_typed<E, F, R>(
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
        let (call, thin) = typed_handler(move |event: &E, ctx: &EventContext<'_>| {
            handler(event, ctx).into_handler_result()
        });
        let subscriber = Arc::new(Subscriber {
            id,
            name: options.name_or(std::any::type_name::<F>()),
            priority: options.priority,
            filter,
            call,
            thin,
            future: None,
            skip_warned: AtomicBool::new(false),
            keeps_envelope: options.keeps_envelope,
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
        let (stand_in, thin) = typed_handler(|_: &E, _: &EventContext<'_>| {
            Err(HandlerError::new(
                "an async subscription was called by a synchronous emit",
                "sbox_events::AsyncHandler",
            ))
        });
        let subscriber = Arc::new(Subscriber {
            id,
            name: options.name_or(std::any::type_name::<F>()),
            priority: options.priority,
            filter: None,
            // A zero-sized closure: boxing it allocates nothing.
            call: stand_in,
            thin,
            future: Some(call),
            skip_warned: AtomicBool::new(false),
            keeps_envelope: false,
        });
        self.add_subscriber(subscriber)
    }

    fn add_subscriber<E: Event>(&self, subscriber: Arc<Subscriber<E>>) -> Subscription {
        let id = subscriber.id;
        register_subscription_name(id, subscriber.name.clone());
        self.change(|config, control, table| {
            let mut subscribers = routes::subscribers_of::<E>(table);
            // Room for one more, not twice as many (the clone is usually
            // exactly full; the route keeps this vector).
            subscribers.reserve_exact(1);
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
        let options = EachOptions {
            name,
            priority: options.priority,
            recorder: false,
            keeps_envelope: false,
            keep: Some(Box::new(Arc::clone(&call))),
        };
        self.subscribe_each(options, selector, filter, |_| Some(Arc::clone(&call)))
    }

    /// A type-erased subscription whose handler is made once per selected
    /// event type by `make` (which may return `None` to skip a type), so it
    /// can keep per-type state without looking anything up on emit.
    pub(crate) fn subscribe_each(
        &self,
        options: EachOptions,
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
                    name: options.name.clone(),
                    event: event_type.name(),
                    priority: options.priority,
                    recorder: options.recorder,
                    keeps_envelope: options.keeps_envelope,
                    filter: filter.clone(),
                    skip_warned: AtomicBool::new(false),
                    call: ManuallyDrop::new(call),
                };
                Some((event_type.index(), Arc::new(entry)))
            })
            .collect();
        register_subscription_name(id, options.name.clone());
        let subscription = Arc::new(ErasedSubscription {
            id,
            selector,
            entries,
            kept: options.keep.map(|kept| (options.name, kept)),
        });
        self.change(|config, control, table| {
            control.erased.push(subscription);
            for (_, hooks) in &selected {
                (hooks.rebuild)(config, control, table);
            }
        });
        self.subscription(id, remove_erased)
    }

    fn subscription(&self, id: u64, remove: fn(&EventBus, u64)) -> Subscription {
        Subscription {
            bus: Arc::downgrade(&self.inner),
            id,
            remove,
        }
    }
}

fn remove_typed<E: Event>(bus: &EventBus, id: u64) {
    bus.change(|config, control, table| {
        let (kept, removed): (Vec<_>, Vec<_>) = routes::subscribers_of::<E>(table)
            .into_iter()
            .partition(|sub| sub.id != id);
        control
            .stats
            .retain(|(_, key), _| *key != StatsKey::Subscription(id));
        routes::rebuild_route::<E>(config, control, table, Some(kept));
        removed
    });
}

fn remove_erased(bus: &EventBus, id: u64) {
    bus.change(|config, control, table| {
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
}

/// How [`EventBus::subscribe_each`] subscribes: name, priority, whether
/// the subscription is a recorder (it sees each event before its handlers,
/// and is not one of them), whether it reads every event's envelope
/// (`ErasedEntry::keeps_envelope`), and what it keeps until it is unsubscribed
/// (what its closures share, so that a selector picking no event type does
/// not drop it at once; released in isolation like the closures).
pub(crate) struct EachOptions {
    pub(crate) name: Cow<'static, str>,
    pub(crate) priority: i32,
    pub(crate) recorder: bool,
    pub(crate) keeps_envelope: bool,
    pub(crate) keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// Name and priority of a subscription; see [`EventBus::subscribe_with`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SubscribeOptions {
    name: Option<Cow<'static, str>>,
    priority: i32,
    /// The handler keeps every event's envelope (a stream's): see
    /// `Subscriber::keeps_envelope`. Set only inside the crate.
    keeps_envelope: bool,
}

impl SubscribeOptions {
    /// The options of a subscription that keeps every event's envelope.
    pub(crate) fn keeping_envelopes(mut self) -> Self {
        self.keeps_envelope = true;
        self
    }

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
///
/// The closure, and everything it captured (a stream's sender included), is
/// released before `drop` returns, unless an emit of this bus is running at
/// that moment: a synchronous emit holds the bus's whole route table while
/// it runs, so any such emit (on any thread, of any event type; an outer
/// emit on this thread too) delays the release until the last of them
/// ends. A pending [`emit_async`](crate::EventBus::emit_async) holds only
/// its own event type's route across its `.await`s: it delays the release
/// of the closures that route holds, until it finishes or is dropped. A
/// subscription to several event types (by
/// [selector](crate::EventBus::subscribe_any), a
/// [JSON stream](crate::EventBus::subscribe_json_stream), an audit logger)
/// shares what it captured (a JSON stream's sender) across all their
/// routes, so a pending `emit_async` of any type it selects delays its
/// release. An idle thread never keeps a closure alive.
#[must_use = "dropping a Subscription unsubscribes at once; call .detach() to keep it"]
pub struct Subscription {
    bus: Weak<BusInner>,
    id: u64,
    remove: fn(&EventBus, u64),
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
        if let Some(inner) = self.bus.upgrade() {
            (self.remove)(&EventBus { inner }, self.id);
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

/// `handler` boxed as a subscriber's `call`, and the function that calls it
/// through its address (its `thin`): made together, so they agree.
fn typed_handler<E, G>(handler: G) -> (ManuallyDrop<TypedHandler<E>>, ThinCall<E>)
where
    E: Event,
    G: Fn(&E, &EventContext<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    /// # Safety
    /// `data` is the address of a live `G`.
    unsafe fn call_as<E, G>(
        data: *const (),
        event: &E,
        ctx: &EventContext<'_>,
        failed: &mut Option<HandlerError>,
    ) where
        G: Fn(&E, &EventContext<'_>) -> Result<(), HandlerError>,
    {
        // SAFETY: the caller's contract.
        let handler = unsafe { &*data.cast::<G>() };
        crate::handler::settle(handler(event, ctx), failed);
    }
    (ManuallyDrop::new(Box::new(handler)), call_as::<E, G>)
}
