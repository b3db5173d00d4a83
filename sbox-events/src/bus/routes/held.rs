//! One route held on its own, apart from its table: what an `emit_async`
//! keeps across its `.await`s. Holding the whole table there would keep
//! every closure of the bus that is unsubscribed meanwhile, of any event
//! type, alive for as long as the future lives (a handler waiting on the
//! network, a future never polled again); a route holds only its own
//! type's handlers, the ones the emit may still call.

use super::{Route, RouteTable};
use crate::event::Event;
use crate::stats::StatsCell;
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

/// `E`'s route and its statistics cells, owned.
pub(crate) struct HeldRoute<E> {
    route: Arc<dyn Any + Send + Sync>,
    stats: Arc<[Arc<StatsCell>]>,
    _event: PhantomData<fn() -> E>,
}

impl<E: Event> HeldRoute<E> {
    /// The route, and its statistics cells (empty unless the bus collects
    /// them).
    pub(crate) fn get(&self) -> Option<(&Route<E>, &[Arc<StatsCell>])> {
        let route = self.route.downcast_ref::<Route<E>>()?;
        Some((route, &self.stats))
    }
}

impl RouteTable {
    /// `E`'s route at `index`, held apart from this table; `None` if this
    /// bus has no route for `E`.
    pub(crate) fn hold_route<E: Event>(&self, index: usize) -> Option<HeldRoute<E>> {
        let slot = self.slots.get(index)?.as_ref()?;
        // `E`'s route (by its type's slot, as `route_to_emit` checks; `get`
        // downcasts anyway).
        if !std::ptr::eq(slot.routed, &E::__slot().routed) {
            return None;
        }
        Some(HeldRoute {
            route: Arc::clone(&slot._route),
            stats: Arc::clone(&slot.stats),
            _event: PhantomData,
        })
    }
}
