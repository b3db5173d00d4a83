//! An event larger than the whole history budget is refused without being
//! serialized in full. A binary of its own: it measures peak memory with a
//! counting global allocator.

use sbox_events::events::ConfigExported;
use sbox_events::{EventBus, EventContext};
use sbox_events_tests::alloc::{self, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn an_event_over_the_cap_costs_at_most_the_cap_to_refuse() {
    const CAP: usize = 1 << 20;
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(CAP)
        .build()
        .unwrap();
    let _handler = bus.subscribe(|e: &ConfigExported, _: &EventContext| {
        std::hint::black_box(e.path.len());
    });
    let huge = ConfigExported {
        path: "p".repeat(50 << 20),
        export_format: "sing-box".into(),
        file_size: 1,
    };
    alloc::reset_peak();
    let before = alloc::live();
    let report = bus.emit_ref(&huge);
    let extra = alloc::peak() - before;
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.delivered(), 1, "still delivered, just not recorded");
    let stats = bus.history().expect("enabled").stats();
    assert_eq!((stats.entries, stats.oversized), (0, 1), "{stats:?}");
    assert!(
        extra <= 2 * CAP as isize,
        "refusing a 50 MiB event took {extra} bytes at its peak (cap {CAP})"
    );
}
