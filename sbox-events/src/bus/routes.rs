//! Each bus's routing state: for every event type, the handlers an emit
//! calls, in order, merged from `#[handler]`s, typed subscriptions and
//! type-erased (`subscribe_any`) subscriptions.
//!
//! Readers (`emit`) load an immutable [`RouteTable`] through hazard slots
//! (`table.rs`: no read-modify-write). Writers (subscribe, unsubscribe,
//! enable/disable) take the bus's control mutex, copy the table, rebuild the
//! affected event types' routes and store the new table: copy-on-write, so
//! a running emit keeps the table it loaded.

use super::release::release;
use super::skip::Skip;
use crate::any::{AnyEvent, EventSelector};
use crate::context::{EventContext, forget_subscription_name};
use crate::event::Event;
use crate::handler::{HandlerError, HandlerFuture};
use crate::handler::{HandlerInfo, HandlerOrigin, SkipReason};
use crate::registry::HandlerRecord;
use crate::stats::StatsCell;
use crate::trace::{HandlerKey, HandlerWord};
use std::any::Any;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

mod held;
pub(crate) use held::HeldRoute;

/// Writer-side state of a bus; `emit` never takes its lock.
#[derive(Default)]
pub(crate) struct Control {
    /// `#[handler]`s on or off by name, over the default (`static_handlers`).
    pub(crate) overrides: BTreeMap<String, bool>,
    pub(crate) erased: Vec<Arc<ErasedSubscription>>,
    /// Per-handler statistics cells, kept across rebuilds.
    pub(crate) stats: HashMap<(usize, StatsKey), Arc<StatsCell>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StatsKey {
    Static(&'static str),
    Subscription(u64),
}

impl Control {
    /// Whether the `#[handler]` named `name` runs, on a bus that runs
    /// `#[handler]`s by default or not (`static_handlers`).
    pub(crate) fn enabled(&self, name: &str, static_handlers: bool) -> bool {
        self.overrides.get(name).copied().unwrap_or(static_handlers)
    }
}

/// What rebuilding needs to know about the bus.
#[derive(Clone, Copy)]
pub(crate) struct RouteConfig {
    pub(crate) static_handlers: bool,
    pub(crate) handler_stats: bool,
}

/// Per-event-type routes of one bus, indexed by `EventSlot::index`. A `None`
/// (or missing) slot means "the `#[handler]`s, if this bus runs them".
#[derive(Clone, Default)]
pub(crate) struct RouteTable {
    slots: Vec<Option<Slot>>,
}

#[derive(Clone)]
struct Slot {
    /// A `Route<E>` for the slot's event type (read through `data`).
    _route: Arc<dyn Any + Send + Sync>,
    /// Where `_route`'s `Route<E>` is (read without `dyn Any`).
    data: NonNull<()>,
    /// `E::__slot().routed`, the type's count of buses with a route; its
    /// address says which type the route is for (`route_to_emit`).
    routed: &'static AtomicUsize,
    /// Parallel to the route's entries when the bus collects handler
    /// statistics, empty otherwise.
    stats: Arc<[Arc<StatsCell>]>,
    /// The route's `direct` calls (a `*const Direct<E>`, `direct_len` of
    /// them) if an emit needs nothing else of it (no recorder, statistics
    /// or `Route::stamps`), so that it need not load the route; else 0.
    direct: *const (),
    direct_len: usize,
}

// SAFETY: `data` points at `_route`'s route and `direct` into the slice
// that route owns; the route is `Send + Sync` and never changed, and a slot
// gives only shared access to it.
unsafe impl Send for Slot {}
// SAFETY: as for `Send`.
unsafe impl Sync for Slot {}

impl Slot {
    fn new<E: Event>(route: Route<E>, stats: Arc<[Arc<StatsCell>]>) -> Slot {
        let route = Arc::new(route);
        let data = NonNull::from(&*route).cast::<()>();
        let direct_len = if route.recorders.is_empty() && stats.is_empty() && !route.stamps {
            route.direct.len()
        } else {
            0
        };
        Slot {
            direct: route.direct.as_ptr().cast::<()>(),
            direct_len,
            _route: route,
            data,
            routed: &E::__slot().routed,
            stats,
        }
    }
}

impl RouteTable {
    /// `E`'s route at `index` and its statistics cells (empty unless the
    /// bus collects them); `None` if this bus has no route for `E`.
    #[inline]
    pub(crate) fn route<E: Event>(&self, index: usize) -> Option<(&Route<E>, &[Arc<StatsCell>])> {
        self.route_to_emit::<E>(index)
            .map(|found| (found.route, found.stats))
    }

    /// What [`route`](Self::route) finds, and the route's `direct` calls
    /// when they are all an emit needs (see `Slot::direct`), else empty.
    #[inline(always)]
    pub(crate) fn route_to_emit<E: Event>(&self, index: usize) -> Option<RouteToEmit<'_, E>> {
        let slot = self.slots.get(index)?.as_ref()?;
        // `E`'s? Told by its slot's address (not two 64-bit `TypeId`s).
        if !std::ptr::eq(slot.routed, &E::__slot().routed) {
            return None;
        }
        // SAFETY: `Slot::new::<X>`, the only maker of slots, stores
        // `&X::__slot().routed`: equal addresses are one `'static` slot
        // (never freed, so never reused) seen as `EventSlot<X>` and
        // `EventSlot<E>`, so `X` is `E` (slots are invariant in their type,
        // `EventSlot::_invariant`). `data` points at the `Route<E>` that
        // `slot._route` keeps alive (unchanged) while `self` is borrowed;
        // `direct` and `direct_len` were taken from its `direct` (or are
        // empty), which the route never changes.
        let (route, direct) = unsafe {
            let direct =
                std::slice::from_raw_parts(slot.direct.cast::<Direct<E>>(), slot.direct_len);
            (slot.data.cast::<Route<E>>().as_ref(), direct)
        };
        Some(RouteToEmit {
            route,
            stats: &slot.stats,
            direct,
        })
    }

    /// The statistics cells of the route at `index` (empty if none).
    pub(crate) fn stats_of(&self, index: usize) -> &[Arc<StatsCell>] {
        match self.slots.get(index).and_then(Option::as_ref) {
            Some(slot) => &slot.stats,
            None => &[],
        }
    }

    /// Keeps each event type's `routed` count in step when `next` replaces
    /// `self` as a bus's current table: counts go up before the swap (an
    /// emit that sees the count then finds the route) and down after it.
    pub(crate) fn swap_counts(&self, next: &RouteTable, swap: impl FnOnce()) {
        let len = self.slots.len().max(next.slots.len());
        let at =
            |t: &RouteTable, i: usize| t.slots.get(i).and_then(Option::as_ref).map(|s| s.routed);
        for i in 0..len {
            if let (None, Some(routed)) = (at(self, i), at(next, i)) {
                routed.fetch_add(1, Ordering::Relaxed);
            }
        }
        swap();
        for i in 0..len {
            if let (Some(routed), None) = (at(self, i), at(next, i)) {
                routed.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Gives back this (current) table's counts when its bus is dropped.
    pub(crate) fn release_counts(&self) {
        for slot in self.slots.iter().flatten() {
            slot.routed.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn set(&mut self, index: usize, slot: Option<Slot>) {
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        self.slots[index] = slot;
    }
}

/// What [`RouteTable::route_to_emit`] finds.
pub(crate) struct RouteToEmit<'a, E: Event> {
    pub(crate) route: &'a Route<E>,
    pub(crate) stats: &'a [Arc<StatsCell>],
    /// The route's `direct` calls if they are all an emit needs; else empty.
    pub(crate) direct: &'a [Direct<E>],
}

/// This bus's handlers for one event type, in dispatch order.
pub(crate) struct Route<E: Event> {
    pub(crate) entries: Box<[Entry<E>]>,
    /// When every entry is a synchronous typed subscription without a
    /// filter (the common route of closures): their calls, parallel to
    /// `entries`, read without the `dyn` vtable or the entry's match.
    /// Empty otherwise.
    pub(crate) direct: Box<[Direct<E>]>,
    /// Test recorders: they see the event before any handler, in
    /// subscription order, and are not handlers (not counted, not listed).
    pub(crate) recorders: Box<[Arc<ErasedEntry>]>,
    /// Some entry or recorder keeps every event's envelope (a stream, a
    /// test recorder): the emit makes the timestamp and id before the
    /// route runs, with plain writes (`EventContext::stamp`), as for a
    /// history. Its slot has no `direct` calls: the emit stamps first.
    pub(crate) stamps: bool,
    /// The typed subscriptions, in subscription order (the source of truth).
    subscribers: Vec<Arc<Subscriber<E>>>,
}

impl<E: Event> Route<E> {
    /// The entry that `direct`, one of `self.direct`, calls.
    pub(crate) fn entry_of(&self, direct: &Direct<E>) -> &Entry<E> {
        let offset = std::ptr::from_ref(direct).addr() - self.direct.as_ptr().addr();
        // `direct` parallels `entries`.
        &self.entries[offset / size_of::<Direct<E>>()]
    }
}

/// A filterless synchronous typed subscription's closure as its route
/// calls it: the closure's address and a function made for its type (one
/// load less than through the `dyn` vtable), and the frame's word for it
/// made once.
pub(crate) struct Direct<E: Event> {
    pub(crate) word: HandlerWord,
    data: *const (),
    call: ThinCall<E>,
}

// SAFETY: `data` is a shared borrow of a subscription's closure, which is
// `Send + Sync` (`add_typed` requires it): calling it through `&` from any
// thread is what `Sync` allows.
unsafe impl<E: Event> Send for Direct<E> {}
// SAFETY: as for `Send`.
unsafe impl<E: Event> Sync for Direct<E> {}

impl<E: Event> Direct<E> {
    /// The direct call of `sub`'s closure.
    ///
    /// # Safety
    /// `sub` must outlive every call of the result: the route that holds
    /// the result holds `sub` in its entries.
    unsafe fn of(sub: &Subscriber<E>) -> Direct<E> {
        Direct {
            word: HandlerWord::from(HandlerKey::Subscription(sub.id)),
            data: std::ptr::from_ref::<TypedFn<E>>(&**sub.call).cast::<()>(),
            call: sub.thin,
        }
    }

    #[inline(always)]
    pub(crate) fn call(&self, event: &E, ctx: &EventContext<'_>) -> Result<(), HandlerError> {
        let mut failed = None;
        // SAFETY: `data` is the address of the closure that `call` was made
        // for (`typed_handler` makes both from one closure, and `of` takes
        // both from one subscriber). That subscriber outlives this call
        // (`of`'s contract), and a subscriber's closure is released only by
        // its `Drop`: the closure is alive and unmoved.
        unsafe { (self.call)(self.data, event, ctx, &mut failed) };
        match failed {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }
}

/// One handler of a route. Async handlers have their own variants, so the
/// synchronous dispatch loop tells them apart in the match it does anyway.
pub(crate) enum Entry<E: Event> {
    Static(&'static HandlerRecord<E>),
    StaticAsync(&'static HandlerRecord<E>),
    Typed(Arc<Subscriber<E>>),
    TypedAsync(Arc<Subscriber<E>>),
    Erased(Arc<ErasedEntry>),
}

impl<E: Event> Entry<E> {
    fn of_record(record: &'static HandlerRecord<E>) -> Entry<E> {
        if record.is_async() {
            Entry::StaticAsync(record)
        } else {
            Entry::Static(record)
        }
    }

    fn of_subscriber(sub: &Arc<Subscriber<E>>) -> Entry<E> {
        if sub.future.is_some() {
            Entry::TypedAsync(Arc::clone(sub))
        } else {
            Entry::Typed(Arc::clone(sub))
        }
    }

    pub(crate) fn info(&self) -> HandlerInfo {
        match self {
            Entry::Static(record) | Entry::StaticAsync(record) => record.info(E::NAME),
            Entry::Typed(sub) | Entry::TypedAsync(sub) => HandlerInfo {
                is_async: sub.future.is_some(),
                ..subscription_info(&sub.name, E::NAME, sub.priority, sub.id)
            },
            Entry::Erased(entry) => {
                subscription_info(&entry.name, E::NAME, entry.priority, entry.id)
            }
        }
    }

    fn priority(&self) -> i32 {
        match self {
            Entry::Static(record) | Entry::StaticAsync(record) => record.priority,
            Entry::Typed(sub) | Entry::TypedAsync(sub) => sub.priority,
            Entry::Erased(entry) => entry.priority,
        }
    }

    /// Statics before subscriptions at equal priority; subscriptions by id.
    fn tie_break(&self) -> (bool, u64) {
        match self {
            Entry::Static(_) | Entry::StaticAsync(_) => (false, 0),
            Entry::Typed(sub) | Entry::TypedAsync(sub) => (true, sub.id),
            Entry::Erased(entry) => (true, entry.id),
        }
    }

    fn stats_key(&self) -> StatsKey {
        match self {
            Entry::Static(record) | Entry::StaticAsync(record) => StatsKey::Static(record.path),
            Entry::Typed(sub) | Entry::TypedAsync(sub) => StatsKey::Subscription(sub.id),
            Entry::Erased(entry) => StatsKey::Subscription(entry.id),
        }
    }

    /// What a synchronous emit reports when it skips this (async) entry.
    pub(super) fn skip(&self) -> Skip<'_> {
        match self {
            Entry::Static(record) | Entry::StaticAsync(record) => {
                Skip::of_static(record, SkipReason::Async)
            }
            Entry::Typed(sub) | Entry::TypedAsync(sub) => Skip {
                name: sub.name.clone(),
                reason: SkipReason::Async,
                warned: &sub.skip_warned,
            },
            // Type-erased subscriptions are synchronous: never skipped.
            Entry::Erased(entry) => Skip {
                name: entry.name.clone(),
                reason: SkipReason::Async,
                warned: &entry.skip_warned,
            },
        }
    }

    /// Which handler this is, for the causes of what it emits.
    #[inline]
    pub(crate) fn key(&self) -> HandlerKey {
        match self {
            Entry::Static(record) | Entry::StaticAsync(record) => HandlerKey::Static(&record.name),
            Entry::Typed(sub) | Entry::TypedAsync(sub) => HandlerKey::Subscription(sub.id),
            Entry::Erased(entry) => HandlerKey::Subscription(entry.id),
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Entry::Static(record) | Entry::StaticAsync(record) => record.name,
            Entry::Typed(sub) | Entry::TypedAsync(sub) => &sub.name,
            Entry::Erased(entry) => &entry.name,
        }
    }
}

fn subscription_info(name: &str, event: &'static str, priority: i32, id: u64) -> HandlerInfo {
    HandlerInfo {
        name: Cow::Owned(name.to_owned()),
        event,
        priority,
        origin: HandlerOrigin::Subscription { id },
        is_async: false,
        resources: &[],
        missing: Vec::new(),
        emits: None,
    }
}

pub(crate) type TypedFn<E> =
    dyn Fn(&E, &EventContext<'_>) -> Result<(), HandlerError> + Send + Sync;

pub(crate) type TypedHandler<E> = Box<TypedFn<E>>;

/// Calls a [`TypedHandler`]'s closure given its address (see [`Direct`]);
/// a failure is written to the last argument, as a `#[handler]` wrapper's
/// is ([`HandlerFn`](crate::registry::HandlerFn)), so that a closure that
/// cannot fail is called with a jump.
pub(crate) type ThinCall<E> =
    unsafe fn(*const (), &E, &EventContext<'_>, &mut Option<HandlerError>);

/// A `subscribe_async` closure: called synchronously, it returns the future
/// to await (which owns what it needs: `'static`).
pub(crate) type AsyncTypedHandler<E> =
    Box<dyn Fn(&E, &EventContext<'_>) -> HandlerFuture<'static> + Send + Sync>;

pub(crate) type ErasedHandler =
    Arc<dyn Fn(&AnyEvent<'_>, &EventContext<'_>) -> Result<(), HandlerError> + Send + Sync>;

pub(crate) type TypedFilter<E> = Box<dyn Fn(&E, &EventContext<'_>) -> bool + Send + Sync>;

pub(crate) type ErasedFilter = Arc<dyn Fn(&AnyEvent<'_>, &EventContext<'_>) -> bool + Send + Sync>;

pub(crate) struct Subscriber<E: Event> {
    pub(crate) id: u64,
    pub(crate) name: Cow<'static, str>,
    pub(crate) priority: i32,
    /// Events it rejects are not passed to `call` (and not counted).
    pub(crate) filter: Option<TypedFilter<E>>,
    /// The handler; for an async subscription, a stand-in the bus never
    /// calls (its entry is `Entry::TypedAsync`). Dropped only by `Drop`.
    pub(crate) call: ManuallyDrop<TypedHandler<E>>,
    /// Calls `call`'s closure given its address: made with it by
    /// `subscribe::typed_handler`.
    pub(crate) thin: ThinCall<E>,
    /// The async handler of a `subscribe_async` subscription.
    pub(crate) future: Option<AsyncTypedHandler<E>>,
    /// Set once a synchronous `emit` has warned that it skipped this (async)
    /// subscription.
    pub(crate) skip_warned: AtomicBool,
    /// Keeps the envelope of every event it is given (a stream): see
    /// `Route::stamps`.
    pub(crate) keeps_envelope: bool,
}

/// A `subscribe_any` subscription, resolved once per matching event type.
pub(crate) struct ErasedSubscription {
    pub(crate) id: u64,
    pub(crate) selector: EventSelector,
    /// Keyed by event index.
    pub(crate) entries: HashMap<usize, Arc<ErasedEntry>>,
    /// What it shares with its entries' closures, held for as long as it
    /// is subscribed also when it selects no event type (with its name).
    pub(crate) kept: Option<(Cow<'static, str>, Box<dyn Any + Send + Sync>)>,
}

pub(crate) struct ErasedEntry {
    pub(crate) id: u64,
    pub(crate) name: Cow<'static, str>,
    /// The event type this entry is for.
    pub(crate) event: &'static str,
    pub(crate) priority: i32,
    /// Records the event before its handlers run (a test recorder), instead
    /// of taking part in the handlers' order.
    pub(crate) recorder: bool,
    /// As `Subscriber::keeps_envelope`.
    pub(crate) keeps_envelope: bool,
    pub(crate) filter: Option<ErasedFilter>,
    /// Never set: type-erased subscriptions are synchronous (see `Skip`).
    pub(crate) skip_warned: AtomicBool,
    /// Shared by the entries of every selected type. Dropped only by `Drop`.
    pub(crate) call: ManuallyDrop<ErasedHandler>,
}

// A subscription's closures are user code down to their captures' `Drop`:
// released inside isolation, by whoever holds the last reference.

impl<E: Event> Drop for Subscriber<E> {
    fn drop(&mut self) {
        forget_subscription_name(self.id);
        // SAFETY: `call` is taken here only, once, and never used again:
        // `drop` runs once and the subscriber is gone after it.
        let call = unsafe { ManuallyDrop::take(&mut self.call) };
        let closures = (call, self.filter.take(), self.future.take());
        release(&self.name, E::NAME, closures);
    }
}

impl Drop for ErasedSubscription {
    fn drop(&mut self) {
        forget_subscription_name(self.id);
        if let Some((name, kept)) = self.kept.take() {
            release(&name, "(no event type)", kept);
        }
    }
}

impl Drop for ErasedEntry {
    fn drop(&mut self) {
        // SAFETY: as for `Subscriber`: taken once, in `drop`.
        let call = unsafe { ManuallyDrop::take(&mut self.call) };
        release(&self.name, self.event, (call, self.filter.take()));
    }
}

/// Rebuilds `E`'s route in `table` from its typed subscribers (`None`: keep
/// the current ones), the erased subscriptions and the disabled set.
pub(crate) fn rebuild_route<E: Event>(
    config: RouteConfig,
    control: &mut Control,
    table: &mut RouteTable,
    subscribers: Option<Vec<Arc<Subscriber<E>>>>,
) {
    let index = E::__slot().index();
    let subscribers = subscribers.unwrap_or_else(|| {
        table
            .route::<E>(index)
            .map(|(route, _)| route.subscribers.clone())
            .unwrap_or_default()
    });
    let all_statics = E::__slot().statics();
    let statics: Vec<_> = all_statics
        .iter()
        .filter(|record| control.enabled(record.name, config.static_handlers))
        .collect();
    let (recorders, erased): (Vec<_>, Vec<_>) = control
        .erased
        .iter()
        .filter_map(|sub| sub.entries.get(&index))
        .partition(|entry| entry.recorder);
    if subscribers.is_empty()
        && erased.is_empty()
        && recorders.is_empty()
        && statics.len() == all_statics.len()
        && config.static_handlers
        && !config.handler_stats
    {
        // The default route (all `#[handler]`s) needs no table entry.
        table.set(index, None);
        return;
    }
    let mut entries: Vec<Entry<E>> = statics
        .into_iter()
        .map(|record| Entry::of_record(record))
        .chain(subscribers.iter().map(Entry::of_subscriber))
        .chain(
            erased
                .into_iter()
                .map(|entry| Entry::Erased(Arc::clone(entry))),
        )
        .collect();
    // Stable: statics keep their (name, path) order.
    entries.sort_by_key(|entry| (Reverse(entry.priority()), entry.tie_break()));
    let stats: Arc<[Arc<StatsCell>]> = if config.handler_stats {
        entries
            .iter()
            .map(|entry| {
                let cell = control
                    .stats
                    .entry((index, entry.stats_key()))
                    .or_insert_with(|| Arc::new(StatsCell::new(entry.info())));
                Arc::clone(cell)
            })
            .collect()
    } else {
        Arc::new([])
    };
    let direct = entries
        .iter()
        .map(|entry| match entry {
            // SAFETY: `direct` goes into the route below, with `entries`,
            // which holds `sub`.
            Entry::Typed(sub) if sub.filter.is_none() => Some(unsafe { Direct::of(sub) }),
            _ => None,
        })
        .collect::<Option<Box<[_]>>>()
        .unwrap_or_default();
    let stamps = recorders.iter().any(|entry| entry.keeps_envelope)
        || entries.iter().any(|entry| match entry {
            Entry::Typed(sub) | Entry::TypedAsync(sub) => sub.keeps_envelope,
            Entry::Erased(entry) => entry.keeps_envelope,
            Entry::Static(_) | Entry::StaticAsync(_) => false,
        });
    let route = Route {
        entries: entries.into_boxed_slice(),
        direct,
        stamps,
        recorders: recorders.into_iter().map(Arc::clone).collect(),
        subscribers,
    };
    table.set(index, Some(Slot::new(route, stats)));
}

/// `E`'s typed subscribers in `table`.
pub(crate) fn subscribers_of<E: Event>(table: &RouteTable) -> Vec<Arc<Subscriber<E>>> {
    table
        .route::<E>(E::__slot().index())
        .map(|(route, _)| route.subscribers.clone())
        .unwrap_or_default()
}
