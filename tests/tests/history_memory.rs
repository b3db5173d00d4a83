//! Memory, measured with a counting global allocator: a million emits with
//! history on stay under the history's cap; without history, memory does not
//! grow. One test function, so nothing else allocates concurrently.

use sbox_events::events::SubscriptionProcessed;
use sbox_events::history::DEFAULT_HISTORY_BYTES;
use sbox_events::{EventBus, EventContext};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator unchanged; the counter
// only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const EMITS: u64 = 1_000_000;

/// A typical event: a URL-sized string and a few numbers.
fn event(i: u64) -> SubscriptionProcessed {
    SubscriptionProcessed {
        url: format!("https://provider.example.net/sub/{i:08}?token=abcdef"),
        servers_count: 1 + i % 40,
        success: true,
        duration_ms: i % 1_000,
    }
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn memory_stays_bounded() {
    // With history: the live memory it holds stays under its cap.
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(DEFAULT_HISTORY_BYTES)
        .build();
    let _handler = bus.subscribe(|e: &SubscriptionProcessed, _: &EventContext| {
        std::hint::black_box(e.servers_count);
    });
    for i in 0..EMITS {
        bus.emit(event(i));
    }
    let history = bus.history().expect("enabled");
    let stats = history.stats();
    assert!(stats.bytes <= DEFAULT_HISTORY_BYTES, "{stats:?}");
    assert_eq!(stats.entries as u64 + stats.evicted, EMITS, "{stats:?}");
    let holding = live();
    history.clear();
    let held = holding - live();
    eprintln!(
        "history: {} entries in {} accounted bytes ({} per event), {held} bytes freed by clear()",
        stats.entries,
        stats.bytes,
        stats.bytes / stats.entries.max(1)
    );
    assert!(
        held > 0 && held as usize <= DEFAULT_HISTORY_BYTES,
        "held {held} bytes, cap {DEFAULT_HISTORY_BYTES}"
    );
    assert!(
        held as usize <= stats.bytes,
        "the accounting does not under-count: held {held}, counted {}",
        stats.bytes
    );
    drop(bus);

    // Without history: a million emits leave nothing behind.
    let bus = EventBus::builder().static_handlers(false).build();
    let _handler = bus.subscribe(|e: &SubscriptionProcessed, _: &EventContext| {
        std::hint::black_box(e.servers_count);
    });
    bus.emit(event(0)); // warm up thread-locals and lazily built tables
    let before = live();
    for i in 0..EMITS {
        bus.emit(event(i));
    }
    let grown = live() - before;
    assert!(
        grown.abs() < 4096,
        "memory grew by {grown} bytes over {EMITS} emits"
    );
}
