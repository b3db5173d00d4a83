//! Each thread's emit state: the nesting depth, whether an
//! `error.occurred` or a replay is being dispatched, and the block of
//! sequence numbers it hands out. `dispatch` reads and sets it around each
//! emit; `emit_async` captures it when the future is made and puts it back
//! around every poll.
//!
//! Every thread-local here is a const-initialized `Cell` without a
//! destructor: reading it works even while the thread is torn down.

// Replay is used by the `history` feature only.
#![cfg_attr(not(feature = "history"), allow(dead_code))]

use crate::trace::{self, Frame, SavedFrame};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// How many emits are running on this thread (nesting depth).
    pub(super) static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// True while an `error.occurred` is dispatched on this thread.
    pub(super) static IN_ERROR_EVENT: Cell<bool> = const { Cell::new(false) };
    /// True while `EventBus::replay` runs on this thread.
    pub(super) static REPLAYING: Cell<bool> = const { Cell::new(false) };
    /// This thread's block of sequence numbers: (next, end).
    static SEQUENCE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

const SEQUENCE_BLOCK: u64 = 1024;
static NEXT_SEQUENCE_BLOCK: AtomicU64 = AtomicU64::new(1);

/// The next sequence number for an event emitted on this thread: unique in
/// the process, and above the sequence of the event whose handler emits it
/// (its parent), wherever that number came from: this thread's block,
/// another thread's (an `emit_async` task that moved), or a replayed record
/// (unless that record's number is above 2^63: see `refill`).
#[inline]
pub(super) fn next_sequence() -> u64 {
    match next_sequence_in_block() {
        Some(sequence) => sequence,
        None => SEQUENCE.with(|cell| refill(cell, trace::current_sequence())),
    }
}

/// [`next_sequence`] when this thread's block has one (above the parent's):
/// no call, no atomic. `None`: a new block is needed.
#[inline]
pub(super) fn next_sequence_in_block() -> Option<u64> {
    // The event whose handlers run now (0 if none).
    let parent = trace::current_sequence();
    let (next, end) = SEQUENCE.get();
    if next < end && next > parent {
        SEQUENCE.set((next + 1, end));
        return Some(next);
    }
    None
}

/// Parents numbered higher (only a record from elsewhere can be: a process
/// hands out 2^63 numbers in no lifetime) do not move the counter: after
/// following one, at least 2^63 − 1 numbers are left before it would wrap
/// and hand out numbers again (thousands of years of emits; 2^32 left, as
/// near the end of the range, would last about a minute on one thread).
/// Under a parent numbered higher, each nested emit takes a new block (its
/// numbers are not above the parent's), which costs speed only.
const LAST_PARENT_FOLLOWED: u64 = 1 << 63;

/// Takes a new block of numbers, all above `parent` (unless `parent` is
/// above [`LAST_PARENT_FOLLOWED`]: then ordinary ones, still unique).
#[cold]
#[inline(never)]
fn refill(cell: &Cell<(u64, u64)>, parent: u64) -> u64 {
    let mut start = NEXT_SEQUENCE_BLOCK.fetch_add(SEQUENCE_BLOCK, Ordering::Relaxed);
    if start <= parent && parent <= LAST_PARENT_FOLLOWED {
        // The parent's number is above every block handed out so far (a
        // replayed record from a longer-lived process): move the counter
        // past it. Numbers stay unique; the ones skipped are never used.
        NEXT_SEQUENCE_BLOCK.fetch_max(parent.saturating_add(1), Ordering::Relaxed);
        start = NEXT_SEQUENCE_BLOCK.fetch_add(SEQUENCE_BLOCK, Ordering::Relaxed);
    }
    cell.set((
        start.saturating_add(1),
        start.saturating_add(SEQUENCE_BLOCK),
    ));
    start
}

/// Restores the thread's nesting depth and frame (the event whose handlers
/// run, and which) when an emit ends (or unwinds).
pub(super) struct DepthGuard {
    depth: u32,
    parent: SavedFrame,
}

impl DepthGuard {
    /// The handlers of the event at `depth` described by `frame` run now.
    #[inline]
    pub(super) fn enter(depth: u32, frame: Frame) -> DepthGuard {
        DEPTH.with(|d| d.set(depth + 1));
        DepthGuard {
            depth,
            parent: trace::replace_frame(frame),
        }
    }

    /// The frame this emit replaced: what caused its event.
    #[inline]
    pub(super) fn parent(&self) -> &Frame {
        self.parent.frame()
    }
}

impl Drop for DepthGuard {
    #[inline]
    fn drop(&mut self) {
        let _ = DEPTH.try_with(|d| d.set(self.depth));
        trace::restore_frame(self.parent);
    }
}

/// Marks the thread as handling an `error.occurred` until dropped.
pub(super) struct ErrorScope(bool);

impl ErrorScope {
    pub(super) fn enter() -> ErrorScope {
        ErrorScope(IN_ERROR_EVENT.with(|f| f.replace(true)))
    }
}

impl Drop for ErrorScope {
    fn drop(&mut self) {
        let _ = IN_ERROR_EVENT.try_with(|f| f.set(self.0));
    }
}

struct RestoreReplaying(bool);

impl Drop for RestoreReplaying {
    fn drop(&mut self) {
        let _ = REPLAYING.try_with(|r| r.set(self.0));
    }
}

/// Marks the thread as replaying until dropped (nested emits are replays too).
pub(crate) struct ReplayScope {
    _restore: RestoreReplaying,
}

impl ReplayScope {
    pub(crate) fn enter() -> ReplayScope {
        ReplayScope {
            _restore: RestoreReplaying(REPLAYING.with(|r| r.replace(true))),
        }
    }
}
