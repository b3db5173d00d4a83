//! What the bus hands down and takes in, so that no lower layer names it and
//! it names no higher one.
//!
//! * Down: per event type, the operations only the bus can do for a type it
//!   knows by name only ([`TypeHooks`]: rebuild a route, dispatch from
//!   JSON). `#[derive(Event)]` stores them, opaque, in the type's
//!   `EventMeta`.
//! * In: a [`Recorder`] sees every event before its handlers; the history is
//!   one, plugged in by its own layer.

// Replay and recording are used by the `history` feature only.
#![cfg_attr(not(feature = "history"), allow(dead_code))]

use super::dispatch::Given;
use super::failures::OwnedEvent;
use super::routes::{self, Control, RouteConfig, RouteTable};
use super::{EmitOptions, EmitReport, EventBus};
use crate::any::{AnyEvent, EventType};
use crate::context::EventContext;
use crate::event::{Event, all_metas};
use crate::flight::HandlerRun;
use crate::handler::{HandlerError, catch_panic};
use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::OnceLock;

/// The bus's operations on one event type.
pub(crate) struct TypeHooks {
    /// Rebuilds the type's route in `table` from the control state.
    pub(crate) rebuild: fn(RouteConfig, &mut Control, &mut RouteTable),
    /// Deserializes an event of this type and dispatches it (a replay, an
    /// event received from elsewhere).
    pub(crate) dispatch_json: fn(&EventBus, &JsonRecord<'_>) -> Result<EmitReport, String>,
    /// Deserializes an event of this type and makes its `emit_async`.
    pub(crate) dispatch_json_async:
        for<'b> fn(&'b EventBus, &str, EmitOptions) -> Result<BoxedEmit<'b>, String>,
}

/// An `emit_async` of a type known by name.
pub(crate) type BoxedEmit<'b> = Pin<Box<dyn Future<Output = EmitReport> + Send + 'b>>;

/// An event of a type known by name, as JSON with its original envelope.
pub(crate) struct JsonRecord<'a> {
    pub(crate) json: &'a str,
    pub(crate) given: Given<'a>,
}

struct HooksOf<E>(PhantomData<fn() -> E>);

impl<E: Event> HooksOf<E> {
    const HOOKS: &'static TypeHooks = &TypeHooks {
        rebuild: rebuild::<E>,
        dispatch_json: dispatch_json::<E>,
        dispatch_json_async: dispatch_json_async::<E>,
    };
}

fn rebuild<E: Event>(config: RouteConfig, control: &mut Control, table: &mut RouteTable) {
    routes::rebuild_route::<E>(config, control, table, None);
}

fn dispatch_json<E: Event>(bus: &EventBus, event: &JsonRecord<'_>) -> Result<EmitReport, String> {
    let value = OwnedEvent::new(decode::<E>(event.json)?);
    let mut report = bus.dispatch(&*value, &event.given);
    bus.drop_decoded(value, event.given.event_id, &mut report);
    Ok(report)
}

fn dispatch_json_async<'b, E: Event>(
    bus: &'b EventBus,
    json: &str,
    options: EmitOptions,
) -> Result<BoxedEmit<'b>, String> {
    let value: E = decode(json)?;
    Ok(Box::pin(bus.emit_async_with(value, options)))
}

/// An `E` from JSON. `Deserialize` is user code: isolated.
fn decode<E: Event>(json: &str) -> Result<E, String> {
    catch_panic("its `Deserialize`", || {
        serde_json::from_str(json).map_err(|e| e.to_string())
    })
}

/// `E`'s hooks, for its `EventMeta` (see `__private::event_meta`).
pub(crate) const fn hooks<E: Event>() -> &'static (dyn Any + Send + Sync) {
    HooksOf::<E>::HOOKS
}

/// Every linked event type with its hooks.
pub(crate) fn types_with_hooks() -> impl Iterator<Item = (EventType, &'static TypeHooks)> {
    all_metas().filter_map(|meta| {
        let hooks = meta.hooks.downcast_ref::<TypeHooks>()?;
        Some((EventType(meta.vtable), hooks))
    })
}

/// The hooks of a linked event type.
pub(crate) fn hooks_of(event_type: EventType) -> Option<&'static TypeHooks> {
    // Built once: every linked type gets its index while the table is made,
    // and no type is linked later.
    static BY_INDEX: OnceLock<Vec<Option<&'static TypeHooks>>> = OnceLock::new();
    let by_index = BY_INDEX.get_or_init(|| {
        let mut table = Vec::new();
        for (event_type, hooks) in types_with_hooks() {
            let index = event_type.index();
            if table.len() <= index {
                table.resize(index + 1, None);
            }
            table[index] = Some(hooks);
        }
        table
    });
    by_index.get(event_type.index()).copied().flatten()
}

/// Sees every event a bus dispatches, before its handlers, with the
/// timestamp they will see.
pub(crate) trait Recorder: Any + Send + Sync {
    /// Its name in reports and logs (`sbox_events::history`).
    fn name(&self) -> &'static str;

    /// Records one event (not replays, unless the bus records them). Runs
    /// the event's `Serialize`: the bus isolates the call, and an `Err` or
    /// a panic is reported as the event not being recorded.
    fn record(&self, event: &AnyEvent<'_>, ctx: &EventContext<'_>) -> Result<(), HandlerError>;

    /// The event `ctx` describes (recorded before) had its handlers run:
    /// how each went, with the flight recorder on.
    fn handlers_ran(&self, ctx: &EventContext<'_>, runs: Vec<HandlerRun>) {
        let _ = (ctx, runs);
    }
}
