//! In debug builds, checks what a `#[handler(emits = [...])]` emits against
//! what it declares: an event it did not declare is logged as a warning,
//! once per handler and event. Release builds compile the check away.
//! `error.occurred` is never checked: the bus emits it for a failed handler
//! (with that handler's call as its cause), and anyone may report one.

use crate::trace::Frame;

/// `event` is being emitted with `cause` running (the frame of the event
/// whose handler emits it).
#[cfg(debug_assertions)]
#[inline]
pub(super) fn check_declared(cause: &Frame, event: &'static str) {
    use crate::event::Event;
    if event == crate::events::ErrorOccurred::NAME {
        return;
    }
    if let crate::trace::HandlerKey::Static(handler) = cause.handler.key() {
        check(handler, event);
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub(super) fn check_declared(_: &Frame, _: &'static str) {}

#[cfg(debug_assertions)]
#[cold]
#[inline(never)]
fn check(handler: &'static str, event: &'static str) {
    use crate::any::EventType;
    use crate::escape::LogSafe;
    use std::collections::{HashMap, HashSet};
    use std::sync::{Mutex, OnceLock, PoisonError};

    /// Every `#[handler]` that declares what it emits, by name (two
    /// handlers given one name share the union of their lists).
    static DECLARED: OnceLock<HashMap<String, Vec<&'static str>>> = OnceLock::new();
    /// The (handler, event) pairs warned about.
    static WARNED: Mutex<Option<HashSet<(&'static str, &'static str)>>> = Mutex::new(None);

    let declared = DECLARED.get_or_init(|| {
        let mut map: HashMap<String, Vec<&'static str>> = HashMap::new();
        for event_type in EventType::all() {
            for info in event_type.static_handlers() {
                if let Some(emits) = info.emits() {
                    let list = map.entry(info.name().to_owned()).or_default();
                    list.extend_from_slice(emits);
                }
            }
        }
        map
    });
    let Some(list) = declared.get(handler) else {
        return; // declares nothing: not checked
    };
    if list.contains(&event) {
        return;
    }
    let mut warned = WARNED.lock().unwrap_or_else(PoisonError::into_inner);
    if warned
        .get_or_insert_with(HashSet::new)
        .insert((handler, event))
    {
        drop(warned);
        tracing::warn!(
            handler = %LogSafe(handler),
            event,
            "#[handler] emitted an event it does not declare: add it to its \
             #[handler(emits = [...])] (checked in debug builds only)"
        );
    }
}
