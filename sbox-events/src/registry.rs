//! The link-time registry: handler records collected by `inventory`, sorted
//! once per event type into a deterministic order.
//!
//! `#[derive(Event)]` emits, per event type, a hidden local newtype around
//! [`HandlerRecord`] (inventory can only collect local types) and a
//! non-generic static [`EventSlot`] (a static in a generic function would be
//! shared by every event type). `#[handler]` submits a record through
//! `registration`, a generic `const fn` that wraps it in that newtype. On
//! first use the records are sorted by
//! (priority descending, name, function path) and kept as a `&'static` slice:
//! inventory's own order changes with build settings, ours does not.
//!
//! Cost: the slice is built once per event type per process; after that,
//! finding an event's static handlers is one atomic load.

use crate::context::EventContext;
use crate::handler::{HandlerError, HandlerFuture, HandlerInfo, HandlerOrigin, ResourceNeed};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::marker::PhantomData;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// The signature of the wrapper `#[handler]` generates around a handler.
///
/// A failure is written to the third argument, which the caller passes as
/// `None` (see [`HandlerRecord::call`]), rather than returned: the wrapper
/// of a handler that cannot fail then writes nothing after calling the
/// handler's function, so the compiler makes that call a jump (the
/// wrapper's frame gone: one call and one return per handler, not two).
pub type HandlerFn<E> = fn(&E, &EventContext<'_>, &mut Option<HandlerError>);

/// The signature of the wrapper `#[handler]` generates around an `async fn`
/// handler: the future borrows the event and the context.
pub type AsyncHandlerFn<E> = for<'a, 'b> fn(&'a E, &'a EventContext<'b>) -> HandlerFuture<'a>;

/// One `#[handler]` function, as submitted at link time.
pub struct HandlerRecord<E: 'static> {
    pub(crate) name: &'static str,
    pub(crate) path: &'static str,
    pub(crate) priority: i32,
    /// The sync wrapper (called through [`call`](HandlerRecord::call));
    /// for an async handler, a stand-in that fails with
    /// `HandlerError::async_skipped`, which a synchronous emit reports as a
    /// skip (on its cold failure path: the dispatch loop checks nothing per
    /// handler).
    pub(crate) sync: HandlerFn<E>,
    /// The async wrapper, for an `async fn` handler.
    pub(crate) future: Option<AsyncHandlerFn<E>>,
    /// The resources its parameters take (`&Storage`), in order.
    pub(crate) resources: &'static [ResourceNeed],
    /// `emits = [...]`: the names of the events it declares it emits.
    pub(crate) emits: Option<&'static [&'static str]>,
}

impl<E> HandlerRecord<E> {
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        path: &'static str,
        priority: i32,
        call: HandlerFn<E>,
    ) -> Self {
        HandlerRecord {
            name,
            path,
            priority,
            sync: call,
            future: None,
            resources: &[],
            emits: None,
        }
    }

    #[doc(hidden)]
    pub const fn new_async(
        name: &'static str,
        path: &'static str,
        priority: i32,
        call: AsyncHandlerFn<E>,
    ) -> Self {
        HandlerRecord {
            name,
            path,
            priority,
            sync: called_synchronously::<E>,
            future: Some(call),
            resources: &[],
            emits: None,
        }
    }

    #[doc(hidden)]
    pub const fn with_resources(mut self, resources: &'static [ResourceNeed]) -> Self {
        self.resources = resources;
        self
    }

    #[doc(hidden)]
    pub const fn with_emits(mut self, emits: &'static [&'static str]) -> Self {
        self.emits = Some(emits);
        self
    }

    /// Calls the sync wrapper: what the handler returned, as a `Result`.
    #[inline(always)]
    pub(crate) fn call(&self, event: &E, ctx: &EventContext<'_>) -> Result<(), HandlerError> {
        let mut failed = None;
        (self.sync)(event, ctx, &mut failed);
        match failed {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// Whether this is an `async fn` handler.
    pub(crate) fn is_async(&self) -> bool {
        self.future.is_some()
    }

    pub(crate) fn info(&'static self, event: &'static str) -> HandlerInfo {
        HandlerInfo {
            name: Cow::Borrowed(self.name),
            event,
            priority: self.priority,
            origin: HandlerOrigin::Static { path: self.path },
            is_async: self.is_async(),
            resources: self.resources,
            missing: Vec::new(),
            emits: self.emits,
        }
    }
}

/// The sync stand-in of an async handler's record.
#[cold]
fn called_synchronously<E>(_: &E, _: &EventContext<'_>, failed: &mut Option<HandlerError>) {
    *failed = Some(HandlerError::async_skipped());
}

impl<E> std::fmt::Debug for HandlerRecord<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerRecord")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("priority", &self.priority)
            .field("is_async", &self.is_async())
            .finish_non_exhaustive()
    }
}

/// Implemented by the hidden per-event newtype that inventory collects.
///
/// # Safety
///
/// The implementing type must be a `#[repr(transparent)]` wrapper of
/// `HandlerRecord<E>`: `registration` converts one into the other.
pub unsafe trait HandlerRegistry<E: 'static>: inventory::Collect {
    #[doc(hidden)]
    fn record(&self) -> &HandlerRecord<E>;
}

/// An event's name, a `&'static str` kept as its two words in one array:
/// moving it is one 16-byte copy where a `&str` is two 8-byte ones. An
/// `EmitReport` is returned through memory and callers copy it by 16-byte
/// blocks; a block written by one store is forwarded to such a copy at
/// once, one written by two stores makes the copy wait for both to reach
/// the cache (a few nanoseconds per block on x86-64).
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct StaticName([*const u8; 2]);

// SAFETY: a `StaticName` is a `&'static str` (`new` is its only maker: the
// field is private to this module): shared, immutable and `'static`, so
// `Send` and `Sync`.
unsafe impl Send for StaticName {}
// SAFETY: as above.
unsafe impl Sync for StaticName {}

impl StaticName {
    #[inline]
    pub(crate) const fn new(name: &'static str) -> StaticName {
        StaticName([name.as_ptr(), std::ptr::without_provenance(name.len())])
    }

    #[inline]
    pub(crate) fn get(self) -> &'static str {
        let [data, len] = self.0;
        // SAFETY: the pointer and length of a `&'static str` (`new`): valid
        // UTF-8 for `'static`.
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(data, len.addr())) }
    }
}

/// Per-event-type state, one non-generic static per event (see module docs).
///
/// Invariant in `E` (see `_invariant`): a slot of one type is never one of
/// its subtype's or supertype's. The same coercion compiles for a
/// covariant type (`PhantomData`) and fails for the slot:
///
/// ```
/// use std::marker::PhantomData;
/// type General = for<'x> fn(&'x ());
/// fn coerce(s: &'static PhantomData<General>) -> &'static PhantomData<fn(&'static ())> {
///     s
/// }
/// ```
///
/// ```compile_fail,E0308
/// use sbox_events::__private::EventSlot;
/// type General = for<'x> fn(&'x ());
/// fn coerce(s: &'static EventSlot<General>) -> &'static EventSlot<fn(&'static ())> {
///     s
/// }
/// ```
pub struct EventSlot<E: 'static> {
    /// `Event::NAME`, read from memory (a constant would be written into a
    /// report as two immediates: see [`StaticName`]).
    name: StaticName,
    /// Index into each bus's route table; 0 until first use.
    index: AtomicU32,
    /// How many buses have a route (a table entry) for this type now. While
    /// it is 0, `emit` runs the `#[handler]`s without loading any table.
    pub(crate) routed: AtomicUsize,
    statics: OnceLock<&'static [&'static HandlerRecord<E>]>,
    /// Per static handler, in `statics` order: whether a synchronous emit
    /// has warned that it skipped it (made on the first skip).
    skip_warned: OnceLock<Box<[AtomicBool]>>,
    /// Invariant in `E`: a `&EventSlot<A>` never coerces to a
    /// `&EventSlot<B>` for another type `B` (as it could between a type and
    /// its subtype if the slot were co- or contravariant). `statics`'s
    /// `OnceLock` already makes it so; this keeps it if the fields change.
    /// A bus's route table relies on it: a route whose slot is
    /// `E::__slot()` (compared by address) is a `Route<E>`.
    _invariant: PhantomData<fn(E) -> E>,
}

impl<E> std::fmt::Debug for EventSlot<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSlot")
            .field("index", &self.index)
            .field("routed", &self.routed)
            .finish_non_exhaustive()
    }
}

static NEXT_INDEX: AtomicU32 = AtomicU32::new(1);

impl<E> EventSlot<E> {
    #[doc(hidden)]
    pub const fn new(name: &'static str) -> Self {
        EventSlot {
            name: StaticName::new(name),
            index: AtomicU32::new(0),
            routed: AtomicUsize::new(0),
            statics: OnceLock::new(),
            skip_warned: OnceLock::new(),
            _invariant: PhantomData,
        }
    }
}

impl<E> EventSlot<E> {
    /// This event type's position in route tables (dense, from 0).
    #[inline]
    pub(crate) fn index(&self) -> usize {
        match self.index.load(Ordering::Relaxed) {
            0 => self.assign_index(),
            n => n as usize - 1,
        }
    }

    #[cold]
    fn assign_index(&self) -> usize {
        let fresh = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
        let n = match self
            .index
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh,
            Err(existing) => existing,
        };
        n as usize - 1
    }

    /// The "warned about being skipped" flag of the static handler at
    /// `position` (of `len`).
    pub(crate) fn skip_warned(&self, position: usize, len: usize) -> &AtomicBool {
        let flags = self
            .skip_warned
            .get_or_init(|| (0..len.max(1)).map(|_| AtomicBool::new(false)).collect());
        &flags[position.min(flags.len() - 1)]
    }

    /// The event's name (`Event::NAME`).
    #[inline(always)]
    pub(crate) fn name(&self) -> StaticName {
        self.name
    }

    /// The `#[handler]`s of this event, if `statics_in` collected them.
    #[inline(always)]
    pub(crate) fn statics_if_collected(&self) -> Option<&'static [&'static HandlerRecord<E>]> {
        self.statics.get().copied()
    }

    /// The `#[handler]`s of this event in dispatch order, collected once
    /// from `R`, the event's registry type.
    #[inline]
    pub(crate) fn statics_in<R: HandlerRegistry<E>>(&self) -> &'static [&'static HandlerRecord<E>] {
        self.statics.get_or_init(|| {
            let mut records: Vec<&'static HandlerRecord<E>> = inventory::iter::<R>
                .into_iter()
                .map(HandlerRegistry::record)
                .collect();
            records.sort_by(|a, b| {
                (Reverse(a.priority), a.name, a.path).cmp(&(Reverse(b.priority), b.name, b.path))
            });
            Vec::leak(records)
        })
    }
}
