//! What caused the code running now: the event whose handlers run on this
//! thread (its name, sequence number, and id if it has one yet) and which
//! of its handlers. An event emitted now records it as its cause.
//!
//! Plain data in thread-locals (const-initialized `Cell`s without
//! destructors: readable during thread teardown), kept beside the trace id
//! and carried the same way: the bus sets it around each emit and handler
//! call, `emit_async` captures it and puts it back around every poll, and
//! [`capture`](super::capture) carries it into another thread.

use core::num::NonZeroU128;
use std::cell::Cell;

/// Which handler runs: a `#[handler]` by its name, or a subscription by its
/// id (its name is looked up only when a cause is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum HandlerKey {
    /// No handler: code outside any handler call (a recorder, a filter of
    /// the bus's own), or outside any emit.
    #[default]
    None,
    /// A `#[handler]`, by name.
    Static(&'static str),
    /// A run-time subscription, by id.
    Subscription(u64),
}

/// The event whose handlers run now, and which handler: the cause of an
/// event emitted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Frame {
    /// The event's name; `None` outside any emit.
    pub(crate) event: Option<&'static str>,
    pub(crate) sequence: u64,
    /// The event's id, if it had one made (by a recorder, a stream, a
    /// handler asking for it) before the cause was read.
    pub(crate) event_id: Option<NonZeroU128>,
    pub(crate) handler: HandlerKey,
}

thread_local! {
    static EVENT: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// Also the floor of the sequence numbers handed out on this thread.
    static SEQUENCE: Cell<u64> = const { Cell::new(0) };
    static EVENT_ID: Cell<Option<NonZeroU128>> = const { Cell::new(None) };
    static HANDLER: Cell<HandlerKey> = const { Cell::new(HandlerKey::None) };
}

/// The frame now (what an event emitted now is caused by).
#[inline]
pub(crate) fn current_frame() -> Frame {
    Frame {
        event: EVENT.with(Cell::get),
        sequence: SEQUENCE.with(Cell::get),
        event_id: EVENT_ID.with(Cell::get),
        handler: HANDLER.with(Cell::get),
    }
}

/// The sequence number of the event whose handlers run now (0 if none).
#[inline]
pub(crate) fn current_sequence() -> u64 {
    SEQUENCE.with(Cell::get)
}

/// Makes `frame` current; returns the one it replaces.
#[inline]
pub(crate) fn replace_frame(frame: Frame) -> Frame {
    Frame {
        event: EVENT.with(|c| c.replace(frame.event)),
        sequence: SEQUENCE.with(|c| c.replace(frame.sequence)),
        event_id: EVENT_ID.with(|c| c.replace(frame.event_id)),
        handler: HANDLER.with(|c| c.replace(frame.handler)),
    }
}

/// Puts `frame` back (also during thread teardown, where it does nothing).
#[inline]
pub(crate) fn restore_frame(frame: Frame) {
    let _ = EVENT.try_with(|c| c.set(frame.event));
    let _ = SEQUENCE.try_with(|c| c.set(frame.sequence));
    let _ = EVENT_ID.try_with(|c| c.set(frame.event_id));
    let _ = HANDLER.try_with(|c| c.set(frame.handler));
}

/// The handler about to be called (of the current event).
#[inline]
pub(crate) fn set_handler(handler: HandlerKey) {
    HANDLER.with(|c| c.set(handler));
}

/// The id of the event numbered `sequence`, made while its handlers run:
/// events they emit from now on record it in their cause.
#[inline]
pub(crate) fn event_id_made(sequence: u64, id: u128) {
    let _ = SEQUENCE.try_with(|current| {
        if current.get() == sequence {
            let _ = EVENT_ID.try_with(|c| c.set(NonZeroU128::new(id)));
        }
    });
}
