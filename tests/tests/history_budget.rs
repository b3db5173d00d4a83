//! The history's byte budget with records of every size: each record held
//! reads back exactly as it was emitted (its JSON wraps around the end of
//! the ring of bytes the records share), the budget holds after every emit,
//! a record that fits the budget alone is kept also after many small ones
//! took the room (and several records of an eighth of it), and what the
//! history counts is what it holds (measured
//! with a counting global allocator: one test function, so nothing else
//! allocates concurrently).

use sbox_events::history::{HistoryQuery, RecordedEvent};
use sbox_events::{EmitOptions, Event, EventBus};
use sbox_events_tests::alloc::{self, Counting};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "budget.blob")]
struct Blob {
    text: String,
}

const CAP: usize = 64 << 10;

/// What an emit should have recorded.
struct Expected {
    sequence: u64,
    text: String,
    source: Option<String>,
    label: Option<String>,
}

fn check(record: &RecordedEvent, expected: &Expected) {
    let blob = record
        .to_event::<Blob>()
        .expect("a blob")
        .expect("its JSON reads back");
    assert_eq!(blob.text, expected.text, "record #{}", expected.sequence);
    let envelope = record.envelope();
    assert_eq!(
        envelope.source(),
        expected.source.as_deref().unwrap_or(Blob::SOURCE)
    );
    assert_eq!(envelope.metadata().get("label"), expected.label.as_deref());
}

#[test]
fn records_of_every_size_stay_within_the_budget_and_read_back() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(CAP)
        .build()
        .unwrap();
    let history = bus.history().expect("enabled");
    let mut held: VecDeque<Expected> = VecDeque::new();
    let emit = |held: &mut VecDeque<Expected>, text: String, i: u64| {
        let source = i.is_multiple_of(5).then(|| format!("source-{i}"));
        let label = i.is_multiple_of(7).then(|| format!("label-{i}"));
        let mut options = EmitOptions::new();
        if let Some(source) = &source {
            options = options.source(source.clone());
        }
        if let Some(label) = &label {
            options = options.metadata("label", label.clone());
        }
        let report = bus.emit_with(Blob { text: text.clone() }, options);
        assert!(report.is_ok() && report.not_recorded().is_empty());
        held.push_back(Expected {
            sequence: report.sequence(),
            text,
            source,
            label,
        });
        let stats = history.stats();
        assert!(stats.bytes <= CAP, "{stats:?}");
        assert_eq!(stats.oversized, 0, "every record fits alone: {stats:?}");
        assert_eq!(stats.entries as u64 + stats.evicted, stats.recorded);
        while held.len() > stats.entries {
            held.pop_front();
        }
    };
    let check_all = |held: &VecDeque<Expected>| {
        let records = history.query(&HistoryQuery::new());
        assert_eq!(records.len(), held.len());
        for (record, expected) in records.iter().zip(held) {
            assert_eq!(record.envelope().sequence(), expected.sequence);
            check(record, expected);
        }
    };

    // Sizes from nothing to a sixteenth of the budget, in a fixed
    // pseudo-random order, with some owned sources and metadata.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..3_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % (CAP as u64 / 16)) as usize;
        let text: String = (0..len)
            .map(|k| (b'a' + ((k + i) % 26) as u8) as char)
            .collect();
        emit(&mut held, text, i as u64);
        if i.is_multiple_of(97) {
            check_all(&held);
        }
    }
    check_all(&held);

    // Many small records took the room, then larger ones come: the slot
    // array gives its room to their bytes.
    for i in 0..2_000 {
        emit(&mut held, format!("small {i}"), 1);
    }
    for i in 0..100 {
        emit(&mut held, format!("{i:0>width$}", width = CAP / 8), 1);
    }
    check_all(&held);
    assert!(history.stats().entries >= 5, "{:?}", history.stats());

    // Many small records took the room; one that fits the budget only
    // alone is still kept (everything else makes way), then small ones
    // again.
    for i in 0..2_000 {
        emit(&mut held, format!("small {i}"), 1);
    }
    let large = "L".repeat(CAP - 1024);
    emit(&mut held, large, 1);
    check_all(&held);
    assert_eq!(history.stats().entries, 1);
    for i in 0..2_000 {
        emit(&mut held, format!("small again {i}"), 1);
    }
    check_all(&held);
    assert!(history.stats().entries > 100, "{:?}", history.stats());

    // What the history counts is what it holds.
    let counted = history.stats().bytes;
    let before = alloc::live();
    history.clear();
    let freed = before - alloc::live();
    assert!(
        freed > 0 && freed as usize <= counted,
        "freed {freed} bytes, counted {counted}"
    );
    assert_eq!(history.stats().entries, 0);
}
