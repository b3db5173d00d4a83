//! What an event is: the [`Event`] trait, and the per-type descriptor that
//! lets the rest of the crate handle an event type it only knows by name
//! (its name, fields, static handlers, JSON conversions), collected at link
//! time in [`EventMeta`].
//!
//! Operations that belong to higher layers (rebuilding a bus's routes for a
//! type, dispatching a type from JSON) are not reachable from here: the bus
//! hands them down as opaque hooks stored in each [`EventMeta`].

use crate::finite::Finite;
use crate::handler::catch_panic;
use crate::registry::{EventSlot, HandlerRecord, HandlerRegistry};
use std::any::Any;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, size_of};

/// A statically typed event: a struct with a name, checked at compile time.
///
/// Implement it with [`#[derive(Event)]`](derive@crate::Event), never by hand
/// (the hidden items hold the link-time handler registry):
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use sbox_events::Event;
///
/// #[derive(Event, Serialize, Deserialize)]
/// #[event(name = "proxy.added", source = "proxy_pool")]
/// struct ProxyAdded {
///     host: String,
///     port: u16,
/// }
///
/// assert_eq!(ProxyAdded::NAME, "proxy.added");
/// assert_eq!(ProxyAdded::SOURCE, "proxy_pool");
/// ```
///
/// Events are `Send + Sync + 'static` (handlers may run on any thread) and
/// serde-serializable (for audit logs, history and replay).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event type",
    note = "derive it: `#[derive(sbox_events::Event, Serialize, Deserialize)]` \
            with `#[event(name = \"area.happened\")]`"
)]
pub trait Event: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// The event's name: lowercase dotted segments, e.g. `subscription.fetched`.
    const NAME: &'static str;

    /// The default source recorded with each emit (overridable per emit with
    /// [`EmitOptions::source`](crate::EmitOptions::source)).
    const SOURCE: &'static str;

    /// The event's schema fingerprint: 16 hex digits of a hash of its name
    /// and of each field's name and type as written, or `v<N>` when the
    /// struct declares `#[event(version = N)]`. Changing a field (its
    /// name, type or place) changes it; JSON Lines files and bridges carry
    /// it, so a record written by another version of the type is detected
    /// instead of misread. Declare a version to keep the fingerprint across
    /// changes that stay compatible (an added `#[serde(default)]` field).
    const FINGERPRINT: &'static str;

    /// Checks the event's values at run time: the function given with
    /// `#[event(validate = path::to::function)]`, or always `Ok` without one.
    ///
    /// Applied when events are imported
    /// ([`history::import_jsonl`](crate::history::import_jsonl)) and, on buses
    /// built with [`validate_on_emit`](crate::EventBusBuilder::validate_on_emit),
    /// before delivery (an invalid event is refused, not delivered).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    #[doc(hidden)]
    const __FIELDS: &'static [(&'static str, &'static str)];

    #[doc(hidden)]
    type __Registry: HandlerRegistry<Self>;

    #[doc(hidden)]
    fn __slot() -> &'static EventSlot<Self>;
}

/// Wraps a handler record in `E`'s registry type, for `inventory::submit!`.
///
/// A generic `const fn` (rather than a constructor on the registry type
/// itself) so that a handler whose parameter is not an event gets exactly one
/// error, "`X` is not an event", at that parameter.
#[doc(hidden)]
pub const fn registration<E: Event>(record: HandlerRecord<E>) -> E::__Registry {
    // `repr(C)`: every field starts at offset 0 (guaranteed only under it).
    #[repr(C)]
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

/// One event type of the binary, submitted by `#[derive(Event)]`: its
/// descriptor, and the hooks higher layers registered for it.
pub struct EventMeta {
    pub(crate) vtable: &'static dyn ErasedEvent,
    /// The bus's per-type operations (route rebuilds, dispatch from JSON),
    /// opaque here; see the module docs.
    pub(crate) hooks: &'static (dyn Any + Send + Sync),
}

inventory::collect!(EventMeta);

impl EventMeta {
    /// The entry of `E`, with `hooks` from the layers above.
    pub(crate) const fn new<E: Event>(hooks: &'static (dyn Any + Send + Sync)) -> EventMeta {
        EventMeta {
            vtable: EventVTable::<E>::VTABLE,
            hooks,
        }
    }
}

impl std::fmt::Debug for EventMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventMeta")
            .field("name", &self.vtable.name())
            .finish_non_exhaustive()
    }
}

/// Every event type linked into the binary.
pub(crate) fn all_metas() -> impl Iterator<Item = &'static EventMeta> {
    inventory::iter::<EventMeta>.into_iter()
}

/// Every event type linked into the binary.
pub(crate) fn all_events() -> impl Iterator<Item = &'static dyn ErasedEvent> {
    all_metas().map(|meta| meta.vtable)
}

impl<E: Event> EventSlot<E> {
    /// The `#[handler]`s of this event in dispatch order.
    #[inline]
    pub(crate) fn statics(&self) -> &'static [&'static HandlerRecord<E>] {
        self.statics_in::<E::__Registry>()
    }
}

/// What the bus needs to do with an event type it only knows by name.
pub(crate) trait ErasedEvent: Sync {
    fn name(&self) -> &'static str;
    fn source(&self) -> &'static str;
    fn fingerprint(&self) -> &'static str;
    fn rust_type(&self) -> &'static str;
    fn index(&self) -> usize;
    fn static_handlers(&self) -> Vec<crate::handler::HandlerInfo>;
    fn has_static_handler(&self, name: &str) -> bool;
    fn to_json(&self, value: &dyn Any) -> Result<serde_json::Value, serde_json::Error>;
    fn fields(&self) -> &'static [(&'static str, &'static str)];
    /// Deserializes `json` as this type and validates it.
    #[cfg_attr(not(feature = "history"), allow(dead_code))]
    fn check_json(&self, json: &str) -> Result<(), JsonProblem>;
    /// Writes `value` (an event of this type) as JSON.
    fn write_json(&self, value: &dyn Any, out: &mut JsonBuffer<'_>) -> serde_json::Result<()>;
}

/// Why JSON is not a valid event of a type.
#[cfg_attr(not(feature = "history"), allow(dead_code))]
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

    fn fingerprint(&self) -> &'static str {
        E::FINGERPRINT
    }

    fn rust_type(&self) -> &'static str {
        std::any::type_name::<E>()
    }

    fn index(&self) -> usize {
        E::__slot().index()
    }

    fn static_handlers(&self) -> Vec<crate::handler::HandlerInfo> {
        E::__slot()
            .statics()
            .iter()
            .map(|r| r.info(E::NAME))
            .collect()
    }

    fn has_static_handler(&self, name: &str) -> bool {
        E::__slot().statics().iter().any(|r| r.name == name)
    }

    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        E::__FIELDS
    }

    fn check_json(&self, json: &str) -> Result<(), JsonProblem> {
        // `Deserialize` and `validate` are user code: isolated.
        let event: E = catch_panic("the event's `Deserialize`", || {
            serde_json::from_str(json).map_err(|e| e.to_string())
        })
        .map_err(JsonProblem::Schema)?;
        let validated = catch_panic("validation", || event.validate());
        // Its `Drop` too: a value that panics when dropped is refused.
        let dropped = catch_panic("the event's `Drop`", move || {
            drop(event);
            Ok(())
        });
        validated.and(dropped).map_err(JsonProblem::Invalid)
    }

    fn write_json(&self, value: &dyn Any, out: &mut JsonBuffer<'_>) -> serde_json::Result<()> {
        match value.downcast_ref::<E>() {
            Some(event) => serde_json::to_writer(out, &Finite::new(event)),
            None => Err(serde::ser::Error::custom(format_args!(
                "value is not a `{}`",
                std::any::type_name::<E>()
            ))),
        }
    }

    fn to_json(&self, value: &dyn Any) -> Result<serde_json::Value, serde_json::Error> {
        match value.downcast_ref::<E>() {
            Some(event) => serde_json::to_value(Finite::new(event)),
            None => Err(serde::ser::Error::custom(format_args!(
                "value is not a `{}`",
                std::any::type_name::<E>()
            ))),
        }
    }
}

/// A buffer that JSON is serialized into, refusing to grow past `limit`
/// bytes (an I/O error that stops serialization there).
///
/// A concrete type, not `dyn Write`: serde_json writes many small pieces,
/// and each is then an inlined bounds check and copy instead of a virtual
/// call through `write_all`'s loop.
pub(crate) struct JsonBuffer<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
    pub(crate) limit: usize,
}

impl JsonBuffer<'_> {
    #[cold]
    fn grow(&mut self, needed: usize) -> std::io::Result<()> {
        if needed > self.limit {
            return Err(std::io::Error::other("over the budget"));
        }
        // Doubling from 64 bytes, never past the limit.
        let target = (self.buf.capacity() * 2).max(64).clamp(needed, self.limit);
        self.buf.reserve_exact(target - self.buf.len());
        Ok(())
    }
}

impl std::io::Write for JsonBuffer<'_> {
    #[inline]
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        let needed = self.buf.len() + data.len();
        if needed > self.buf.capacity() {
            self.grow(needed)?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
