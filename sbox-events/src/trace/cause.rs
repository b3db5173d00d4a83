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
use std::mem::MaybeUninit;

/// Which handler runs: a `#[handler]` by its name, or a subscription by its
/// id (its name is looked up only when a cause is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum HandlerKey {
    /// No handler: code outside any handler call (a recorder, a filter of
    /// the bus's own), or outside any emit.
    #[default]
    None,
    /// A `#[handler]`, by name (the name in its record: a reference to it
    /// is one word, which a frame holds as one word: see `HandlerWord`).
    Static(&'static &'static str),
    /// A run-time subscription, by id.
    Subscription(u64),
}

/// A `HandlerKey` in one word, as a frame holds it: setting the handler in
/// a handler loop is one store of a `u64` (an enum's tag and payload were
/// two; on a 32-bit target a `u64` takes two stores itself).
///
/// - 0: no handler;
/// - odd: a subscription, `(id << 1) | 1` (ids are numbered from 1 by one
///   counter per process: they stay below 2^63);
/// - any other value: the address of a `#[handler]`'s name in its record,
///   a `&'static &'static str`, with its provenance exposed. A reference to
///   a `&str` is aligned to at least two bytes, so the address is even.
///
/// The field is private to this module: `NONE`, `Default` and
/// `From<HandlerKey>` are the only makers of a word, which `key` relies on.
/// Shown and compared as the key it holds (a `#[handler]` by its name, as
/// `HandlerKey` does), never as the number: `CapturedTrace`, which holds a
/// frame, is public and derives `Debug` and `Eq`.
#[derive(Clone, Copy, Default)]
pub(crate) struct HandlerWord(u64);

impl std::fmt::Debug for HandlerWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.key(), f)
    }
}

impl PartialEq for HandlerWord {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for HandlerWord {}

impl HandlerWord {
    /// No handler.
    pub(crate) const NONE: HandlerWord = HandlerWord(0);

    /// The key this word holds.
    #[inline]
    pub(crate) fn key(self) -> HandlerKey {
        match self.0 {
            0 => HandlerKey::None,
            word if word & 1 == 1 => HandlerKey::Subscription(word >> 1),
            // A word's bits fit a `usize`: `from` made this one from one.
            address => {
                let name = std::ptr::with_exposed_provenance::<&'static str>(address as usize);
                // SAFETY: only `from` makes an even word other than 0, from
                // a `&'static &'static str` whose provenance it exposed:
                // this is that reference again, valid for `'static`.
                HandlerKey::Static(unsafe { &*name })
            }
        }
    }
}

impl From<HandlerKey> for HandlerWord {
    #[inline(always)]
    fn from(key: HandlerKey) -> Self {
        const { assert!(std::mem::align_of::<&'static str>() >= 2) };
        HandlerWord(match key {
            HandlerKey::None => 0,
            HandlerKey::Static(name) => {
                std::ptr::from_ref::<&'static str>(name).expose_provenance() as u64
            }
            HandlerKey::Subscription(id) => {
                // A larger id would come back without its top bit (a wrong
                // name in a cause, nothing worse): none is ever made.
                debug_assert!(id >> 63 == 0, "subscription id {id} out of range");
                (id << 1) | 1
            }
        })
    }
}

/// The event whose handlers run now, and which handler: the cause of an
/// event emitted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Frame {
    /// The event's name; `None` outside any emit. One word: see
    /// `HandlerKey::Static`.
    pub(crate) event: Option<&'static &'static str>,
    pub(crate) sequence: u64,
    /// The event's id, if it had one made (by a recorder, a stream, a
    /// handler asking for it) before the cause was read.
    pub(crate) event_id: Option<NonZeroU128>,
    pub(crate) handler: HandlerWord,
}

thread_local! {
    /// One cell, so that saving and restoring a frame around an emit is a
    /// few wide moves. Its `sequence` is also the floor of the sequence
    /// numbers handed out on this thread.
    static FRAME: Cell<Frame> = const {
        Cell::new(Frame {
            event: None,
            sequence: 0,
            event_id: None,
            handler: HandlerWord::NONE,
        })
    };
}

/// The frame now (what an event emitted now is caused by).
#[inline]
pub(crate) fn current_frame() -> Frame {
    FRAME.with(Cell::get)
}

/// The sequence number of the event whose handlers run now (0 if none).
#[inline]
pub(crate) fn current_sequence() -> u64 {
    FRAME.with(|frame| frame.get().sequence)
}

/// A frame saved to be put back, kept as the memory it was read from and
/// copied only as such (a `MaybeUninit`, which the compiler copies as a
/// block of bytes: with rustc 1.95 on x86-64, three 16-byte moves).
///
/// Why: an emit saves the thread's frame and puts it back when it ends, and
/// the next emit on the thread saves it again a few dozen instructions
/// later, while the stores that put it back may still wait in the store
/// buffer. A load is served from that buffer only if one store holds all of
/// its bytes. A `Frame` read with `Cell::get` was copied in pieces that
/// straddled two of those stores, each load then waiting for both to reach
/// the cache; copied as the same blocks both ways, each load of the next
/// save matches one store of the last restore. (A nested emit's save
/// follows the handler word's 8-byte store instead, not a block: that
/// case is not helped. The layout of the copies is the compiler's choice.)
#[derive(Clone, Copy)]
pub(crate) struct SavedFrame(MaybeUninit<Frame>);

impl SavedFrame {
    /// The saved frame.
    #[inline]
    pub(crate) fn frame(&self) -> &Frame {
        // SAFETY: `replace_frame` read these bytes from the cell, which
        // held a valid `Frame`.
        unsafe { self.0.assume_init_ref() }
    }
}

/// Makes `frame` current; returns the one it replaces.
#[inline]
pub(crate) fn replace_frame(frame: Frame) -> SavedFrame {
    FRAME.with(|current| {
        // SAFETY: the cell holds a valid `Frame` that nothing borrows (a
        // `Cell` never lends its content out), and `MaybeUninit<Frame>` has
        // the layout of `Frame`: this copies its bytes.
        let saved = unsafe { current.as_ptr().cast::<MaybeUninit<Frame>>().read() };
        current.set(frame);
        SavedFrame(saved)
    })
}

/// Puts a saved frame back (also during thread teardown: the cell has no
/// destructor, so it is still there).
#[inline]
pub(crate) fn restore_frame(saved: SavedFrame) {
    let _ = FRAME.try_with(|current| {
        // SAFETY: the bytes are those of a valid `Frame` (read by
        // `replace_frame`), written back whole into the cell, which nothing
        // borrows: the cell holds a valid `Frame` again.
        unsafe {
            current.as_ptr().cast::<MaybeUninit<Frame>>().write(saved.0);
        }
    });
}

/// The handler about to be called (of the current event).
#[inline]
pub(crate) fn set_handler(handler: HandlerKey) {
    set_handler_word(HandlerWord::from(handler));
}

/// [`set_handler`] with the word made beforehand (once per subscription,
/// not once per call).
#[inline(always)]
pub(crate) fn set_handler_word(handler: HandlerWord) {
    FRAME.with(|current| {
        current.set(Frame {
            handler,
            ..current.get()
        })
    });
}

/// The id of the event numbered `sequence`, made while its handlers run:
/// events they emit from now on record it in their cause.
#[inline]
pub(crate) fn event_id_made(sequence: u64, id: u128) {
    let _ = FRAME.try_with(|current| {
        let frame = current.get();
        if frame.sequence == sequence {
            current.set(Frame {
                event_id: NonZeroU128::new(id),
                ..frame
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{HandlerKey, HandlerWord};

    #[test]
    fn a_handler_word_gives_back_the_key_it_was_made_from() {
        static NAME: &str = "parse";
        let keys = [
            HandlerKey::None,
            HandlerKey::Static(&NAME),
            HandlerKey::Subscription(1),
            HandlerKey::Subscription(2),
            HandlerKey::Subscription((1 << 63) - 1),
        ];
        for key in keys {
            assert_eq!(HandlerWord::from(key).key(), key);
        }
        let HandlerKey::Static(name) = HandlerWord::from(HandlerKey::Static(&NAME)).key() else {
            panic!("a static key")
        };
        assert!(std::ptr::eq(name, &NAME));
        assert_eq!(HandlerWord::default(), HandlerWord::NONE);
        // Shown and compared as keys: a `#[handler]` by its name.
        static SAME_NAME: &str = "parse";
        let word = HandlerWord::from(HandlerKey::Static(&NAME));
        assert_eq!(word, HandlerWord::from(HandlerKey::Static(&SAME_NAME)));
        assert_ne!(word, HandlerWord::from(HandlerKey::Subscription(1)));
        assert_eq!(format!("{word:?}"), r#"Static("parse")"#);
    }
}
