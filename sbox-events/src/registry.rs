//! The link-time registry: handler records collected by `inventory`, sorted
//! once per event type into a deterministic order.
//!
//! `#[derive(Event)]` emits, per event type, a hidden local newtype around
//! [`HandlerRecord`] (inventory can only collect local types) and a
//! non-generic static [`EventSlot`] (a static in a generic function would be
//! shared by every event type). `#[handler]` submits a record through
//! [`registration`], a generic `const fn` that wraps it in that newtype. On
//! first use the records are sorted by
//! (priority descending, name, function path) and kept as a `&'static` slice:
//! inventory's own order changes with build settings, ours does not.
//!
//! Cost: the slice is built once per event type per process; after that,
//! finding an event's static handlers is one atomic load.

use crate::bus::{EmitReport, EventBus};
use crate::event::{Event, EventContext};
use crate::handler::HandlerError;
use crate::history::RecordedEvent;
use crate::routes::{Control, RouteConfig, RouteTable};
use std::any::Any;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, size_of};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The signature of the wrapper `#[handler]` generates around a handler.
pub type HandlerFn<E> = fn(&E, &EventContext<'_>) -> Result<(), HandlerError>;

/// One `#[handler]` function, as submitted at link time.
pub struct HandlerRecord<E: 'static> {
    pub(crate) name: &'static str,
    pub(crate) path: &'static str,
    pub(crate) priority: i32,
    pub(crate) call: HandlerFn<E>,
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
            call,
        }
    }

    pub(crate) fn info(&'static self, event: &'static str) -> HandlerInfo {
        HandlerInfo {
            name: Cow::Borrowed(self.name),
            event,
            priority: self.priority,
            origin: HandlerOrigin::Static { path: self.path },
        }
    }
}

/// Implemented by the hidden per-event newtype that inventory collects.
///
/// # Safety
///
/// The implementing type must be a `#[repr(transparent)]` wrapper of
/// `HandlerRecord<E>`: [`registration`] converts one into the other.
pub unsafe trait HandlerRegistry<E: 'static>: inventory::Collect {
    #[doc(hidden)]
    fn record(&self) -> &HandlerRecord<E>;
}

/// Wraps a handler record in `E`'s registry type, for `inventory::submit!`.
///
/// A generic `const fn` (rather than a constructor on the registry type
/// itself) so that a handler whose parameter is not an event gets exactly one
/// error, "`X` is not an event", at that parameter.
#[doc(hidden)]
pub const fn registration<E: Event>(record: HandlerRecord<E>) -> E::__Registry {
    union Cast<E: Event> {
        record: ManuallyDrop<HandlerRecord<E>>,
        registry: ManuallyDrop<E::__Registry>,
    }
    const {
        assert!(size_of::<HandlerRecord<E>>() == size_of::<E::__Registry>());
    }
    // SAFETY: `HandlerRegistry` (an unsafe trait, implemented only by the
    // derive) requires `E::__Registry` to be a `repr(transparent)` wrapper of
    // `HandlerRecord<E>`, so both union fields have the same layout.
    ManuallyDrop::into_inner(unsafe {
        Cast {
            record: ManuallyDrop::new(record),
        }
        .registry
    })
}

/// Per-event-type state, one non-generic static per event (see module docs).
pub struct EventSlot<E: 'static> {
    /// Index into each bus's route table; 0 until first use.
    index: AtomicU32,
    /// How many buses have a route (a table entry) for this type now. While
    /// it is 0, `emit` runs the `#[handler]`s without loading any table.
    pub(crate) routed: AtomicUsize,
    statics: OnceLock<&'static [&'static HandlerRecord<E>]>,
}

static NEXT_INDEX: AtomicU32 = AtomicU32::new(1);

impl<E> EventSlot<E> {
    #[doc(hidden)]
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        EventSlot {
            index: AtomicU32::new(0),
            routed: AtomicUsize::new(0),
            statics: OnceLock::new(),
        }
    }
}

impl<E: Event> EventSlot<E> {
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

    /// The `#[handler]`s of this event in dispatch order.
    #[inline]
    pub(crate) fn statics(&self) -> &'static [&'static HandlerRecord<E>] {
        self.statics.get_or_init(|| {
            let mut records: Vec<&'static HandlerRecord<E>> = inventory::iter::<E::__Registry>
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

/// Describes one handler in dispatch order; see
/// [`EventBus::handlers`](crate::EventBus::handlers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerInfo {
    pub(crate) name: Cow<'static, str>,
    pub(crate) event: &'static str,
    pub(crate) priority: i32,
    pub(crate) origin: HandlerOrigin,
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
}

impl fmt::Display for HandlerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (priority {})", self.name, self.priority)
    }
}

/// One event type of the binary, submitted by `#[derive(Event)]`.
pub struct EventMeta {
    pub(crate) vtable: &'static dyn ErasedEvent,
}

inventory::collect!(EventMeta);

impl EventMeta {
    #[doc(hidden)]
    pub const fn of<E: Event>() -> EventMeta {
        EventMeta {
            vtable: EventVTable::<E>::VTABLE,
        }
    }
}

/// Every event type linked into the binary.
pub(crate) fn all_events() -> impl Iterator<Item = &'static dyn ErasedEvent> {
    inventory::iter::<EventMeta>
        .into_iter()
        .map(|meta| meta.vtable)
}

/// What the bus needs to do with an event type it only knows by name.
pub(crate) trait ErasedEvent: Sync {
    fn name(&self) -> &'static str;
    fn source(&self) -> &'static str;
    fn rust_type(&self) -> &'static str;
    fn index(&self) -> usize;
    fn static_handlers(&self) -> Vec<HandlerInfo>;
    fn has_static_handler(&self, name: &str) -> bool;
    fn rebuild(&self, config: RouteConfig, control: &mut Control, table: &mut RouteTable);
    fn to_json(&self, value: &dyn Any) -> Result<serde_json::Value, serde_json::Error>;
    fn fields(&self) -> &'static [(&'static str, &'static str)];
    /// Deserializes `json` as this type and validates it.
    fn check_json(&self, json: &str) -> Result<(), JsonProblem>;
    /// Re-dispatches a record of this type on `bus`.
    fn replay(&self, bus: &EventBus, record: &RecordedEvent) -> Result<EmitReport, String>;
}

/// Why JSON is not a valid event of a type.
pub(crate) enum JsonProblem {
    Schema(String),
    Invalid(String),
}

pub(crate) struct EventVTable<E>(PhantomData<fn() -> E>);

impl<E: Event> EventVTable<E> {
    pub(crate) const VTABLE: &'static dyn ErasedEvent = &EventVTable::<E>(PhantomData);
}

impl<E: Event> ErasedEvent for EventVTable<E> {
    fn name(&self) -> &'static str {
        E::NAME
    }

    fn source(&self) -> &'static str {
        E::SOURCE
    }

    fn rust_type(&self) -> &'static str {
        std::any::type_name::<E>()
    }

    fn index(&self) -> usize {
        E::__slot().index()
    }

    fn static_handlers(&self) -> Vec<HandlerInfo> {
        E::__slot()
            .statics()
            .iter()
            .map(|r| r.info(E::NAME))
            .collect()
    }

    fn has_static_handler(&self, name: &str) -> bool {
        E::__slot().statics().iter().any(|r| r.name == name)
    }

    fn rebuild(&self, config: RouteConfig, control: &mut Control, table: &mut RouteTable) {
        crate::routes::rebuild_route::<E>(config, control, table, None);
    }

    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        E::__FIELDS
    }

    fn check_json(&self, json: &str) -> Result<(), JsonProblem> {
        let event: E =
            serde_json::from_str(json).map_err(|e| JsonProblem::Schema(e.to_string()))?;
        event.validate().map_err(JsonProblem::Invalid)
    }

    fn replay(&self, bus: &EventBus, record: &RecordedEvent) -> Result<EmitReport, String> {
        let event: E = serde_json::from_str(record.data()).map_err(|e| e.to_string())?;
        Ok(bus.dispatch_replay(&event, record))
    }

    fn to_json(&self, value: &dyn Any) -> Result<serde_json::Value, serde_json::Error> {
        match value.downcast_ref::<E>() {
            Some(event) => serde_json::to_value(event),
            None => Err(serde::ser::Error::custom(format_args!(
                "value is not a `{}`",
                std::any::type_name::<E>()
            ))),
        }
    }
}
