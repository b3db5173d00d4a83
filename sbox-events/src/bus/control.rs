//! Changing a bus's routing, and reading it: enabling and disabling
//! `#[handler]`s by name, per-handler statistics, and the copy-on-write
//! change every writer goes through ([`BusInner::change`]), with the rule
//! that no user code runs under the control lock.

use super::failures::log_release_failures;
use super::hooks::types_with_hooks;
use super::routes::{Control, RouteConfig, RouteTable};
use super::{BusInner, EventBus, UnknownHandlerError};
use crate::any::EventType;
use crate::context::EventContext;
use crate::stats::HandlerStats;
use std::fmt;
use std::sync::{Arc, MutexGuard, PoisonError};

impl EventBus {
    /// A copy-on-write change of the route table (see `BusInner::change`);
    /// what it takes out is dropped after the lock is released, and a
    /// closure whose release panicked is reported.
    pub(super) fn change<R>(
        &self,
        change: impl FnOnce(RouteConfig, &mut Control, &mut RouteTable) -> R,
    ) {
        let removed = self.inner.change(change);
        drop(removed);
        self.report_release_failures();
    }

    /// Stops the `#[handler]` (or handlers) with this name from running on
    /// this bus, for every event type, until [`enable_handler`](EventBus::enable_handler).
    /// The name is the handler's path (`my_crate::audit::on_fetched`) unless
    /// it was given with `#[handler(name = "...")]`.
    ///
    /// Fails if no `#[handler]` linked into the binary has that name.
    pub fn disable_handler(&self, name: &str) -> Result<(), UnknownHandlerError> {
        self.set_handler_enabled(name, false)
    }

    /// Lets a `#[handler]` run on this bus: one disabled by
    /// [`disable_handler`](EventBus::disable_handler), or one of a bus
    /// built with [`static_handlers(false)`](super::EventBusBuilder::static_handlers),
    /// which runs only the handlers enabled by name.
    pub fn enable_handler(&self, name: &str) -> Result<(), UnknownHandlerError> {
        self.set_handler_enabled(name, true)
    }

    /// Whether the `#[handler]` with this name runs on this bus.
    pub fn is_handler_enabled(&self, name: &str) -> bool {
        self.inner
            .lock()
            .enabled(name, self.inner.config.static_handlers)
    }

    fn set_handler_enabled(&self, name: &str, enabled: bool) -> Result<(), UnknownHandlerError> {
        let events: Vec<_> = types_with_hooks()
            .filter(|(event, _)| event.0.has_static_handler(name))
            .map(|(_, hooks)| hooks)
            .collect();
        if events.is_empty() {
            return Err(UnknownHandlerError {
                name: name.to_owned(),
            });
        }
        self.change(|config, control, table| {
            let before = control.enabled(name, config.static_handlers);
            control.overrides.insert(name.to_owned(), enabled);
            if before != enabled {
                for hooks in &events {
                    (hooks.rebuild)(config, control, table);
                }
            }
        });
        Ok(())
    }

    /// Per-handler statistics, for buses built with
    /// [`handler_stats(true)`](super::EventBusBuilder::handler_stats) (empty
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
        drop(table);
        self.report_release_failures();
        all.sort_by_key(|(event, position, _)| (*event, *position));
        all.into_iter().map(|(_, _, stats)| stats).collect()
    }
}

impl Drop for BusInner {
    fn drop(&mut self) {
        // Every closure still subscribed is released here: isolated, and
        // logged (there is no bus left to emit `error.occurred` on).
        let table = self.routes.take();
        table.release_counts();
        drop(table);
        let control = match self.control.get_mut() {
            Ok(control) => std::mem::take(control),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        drop(control);
        // Resources too (each `Held` releases its value in isolation).
        drop(std::mem::take(&mut self.resources));
        log_release_failures();
    }
}

impl<'a> EventContext<'a> {
    /// The bus this event is being dispatched on, to emit follow-up events.
    /// They are delivered immediately (depth-first) in the same trace.
    #[inline]
    pub fn bus(&self) -> &'a EventBus {
        debug_assert!(self.bus.is::<EventBus>());
        // SAFETY: the field is crate-private and only ever set from a
        // `&'a EventBus` (`EventBus::dispatch_heard` and `run_async`, the
        // only places that build an `EventContext`): the `dyn Any` is an
        // `EventBus`, borrowed for `'a`. Casting the data pointer saves the
        // call through `dyn Any` that `downcast_ref` makes on every read
        // (a handler's resource, a nested emit).
        unsafe { &*std::ptr::from_ref(self.bus).cast::<EventBus>() }
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

impl BusInner {
    pub(super) fn lock(&self) -> MutexGuard<'_, Control> {
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
    pub(super) fn change<R>(
        &self,
        change: impl FnOnce(RouteConfig, &mut Control, &mut RouteTable) -> R,
    ) -> R {
        let mut control = self.lock();
        // Read without a hazard slot: under the control lock, a read that
        // ended could otherwise release tables (user code) here.
        let current = self.routes.load_full_locked();
        let mut table = RouteTable::clone(&current);
        let removed = change(self.config.routes(), &mut control, &mut table);
        let table = Arc::new(table);
        let mut released = None;
        current.swap_counts(&table, || {
            released = self.routes.replace(Arc::clone(&table))
        });
        drop(control);
        drop(current);
        drop(released);
        removed
    }
}
