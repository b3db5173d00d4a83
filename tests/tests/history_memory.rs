//! Memory, measured with a counting global allocator: a million emits with
//! history on stay under the history's cap; without history, memory does not
//! grow. One test function, so nothing else allocates concurrently.

use sbox_events::events::SubscriptionProcessed;
use sbox_events::history::DEFAULT_HISTORY_BYTES;
use sbox_events::{EventBus, EventContext};
use sbox_events_tests::alloc::Counting;

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
    sbox_events_tests::alloc::live()
}

#[test]
fn memory_stays_bounded() {
    // With history: the live memory it holds stays under its cap.
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(DEFAULT_HISTORY_BYTES)
        .build()
        .unwrap();
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
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
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
