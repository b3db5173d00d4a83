//! Event ids and the one envelope: an id is made on first request and is
//! the same for every handler, the stream, the test recorder and the
//! history; JSON Lines keep it with the schema fingerprint, which import
//! checks; replays and emits with a given id keep it.

use sbox_events::history::{HistoryQuery, ImportOptions, LineErrorKind, import_jsonl};
use sbox_events::stream::{Overflow, StreamItem};
use sbox_events::testing::Recorder;
use sbox_events::trace::TraceId;
use sbox_events::{EmitOptions, Event, EventBus, EventContext, EventId};
use sbox_events_tests::exec::block_on;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "ids.probed")]
struct Probed {
    host: String,
}

fn probe() -> Probed {
    Probed {
        host: "198.51.100.7".into(),
    }
}

#[test]
fn one_id_per_event_seen_alike_by_handlers_streams_recorders_and_the_history() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap();
    let recorder = Recorder::all(&bus);
    let mut stream = bus.subscribe_stream::<Probed>(8, Overflow::DropOldest);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..2 {
        let sink = Arc::clone(&seen);
        bus.subscribe(move |_: &Probed, ctx: &EventContext| {
            sink.lock().unwrap().push((ctx.event_id(), ctx.envelope()));
        })
        .detach();
    }
    bus.emit(probe());
    bus.emit(probe());

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    let (first, second) = (seen[0].0, seen[2].0);
    assert_eq!(seen[1].0, first, "both handlers see one id");
    assert_ne!(first, second, "each event has its own");
    assert_eq!(first.version(), 7);
    let envelope = &seen[0].1;
    assert_eq!(envelope.event_id(), first);
    assert_eq!(envelope.name(), "ids.probed");
    assert_eq!(envelope.source(), Probed::SOURCE);
    // The UUIDv7 carries the event's timestamp (to the millisecond).
    let since = envelope
        .timestamp()
        .duration_since(first.timestamp())
        .expect("the id's time is not after the event's");
    assert!(since < Duration::from_millis(1), "{since:?}");

    let Some(StreamItem::Event(delivery)) = block_on(stream.recv()) else {
        panic!("a delivery")
    };
    assert_eq!(delivery.envelope(), envelope, "the stream's envelope");
    assert_eq!(recorder.records()[0].envelope(), envelope, "the recorder's");
    let history = bus.history().expect("history");
    let recorded = history.query(&HistoryQuery::new());
    assert_eq!(recorded[0].envelope(), envelope, "the history's");
}

#[test]
fn json_lines_keep_ids_and_fingerprints_and_import_checks_the_fingerprint() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap();
    let id = EventId::new(UNIX_EPOCH + Duration::from_secs(1_764_748_800));
    bus.emit_with(probe(), EmitOptions::new().event_id(id));
    let history = bus.history().expect("history");
    let mut jsonl = Vec::new();
    history
        .export_jsonl(&HistoryQuery::new(), &mut jsonl)
        .expect("export");
    let text = String::from_utf8(jsonl).expect("UTF-8");
    assert!(
        text.contains(&format!(r#""fingerprint":"{}""#, Probed::FINGERPRINT)),
        "{text}"
    );
    assert!(text.contains(&format!(r#""event_id":"{id}""#)), "{text}");

    let imported = import_jsonl(text.as_bytes(), &ImportOptions::new()).expect("imports");
    assert_eq!(imported.events[0].envelope().event_id(), id);

    // A line from a different version of the type is refused, not misread.
    let foreign = text.replace(Probed::FINGERPRINT, "0123456789abcdef");
    let err = import_jsonl(foreign.as_bytes(), &ImportOptions::new()).expect_err("mismatch");
    assert!(
        matches!(
            err.errors()[0].kind(),
            LineErrorKind::Fingerprint { expected, found, .. }
                if expected == Probed::FINGERPRINT && found == "0123456789abcdef"
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("a different version of the event type"),
        "{err}"
    );

    // Lines written before ids existed get one, the same on every import.
    let old = r#"{"name":"ids.probed","source":"s","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","timestamp":"2026-11-27T06:32:20Z","sequence":1,"data":{"host":"h"}}"#;
    let once = import_jsonl(old.as_bytes(), &ImportOptions::new()).expect("old line");
    let twice = import_jsonl(old.as_bytes(), &ImportOptions::new()).expect("old line");
    assert_eq!(
        once.events[0].envelope().event_id(),
        twice.events[0].envelope().event_id()
    );
}

#[test]
fn replays_and_remote_emits_keep_the_original_envelope() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap();
    bus.emit(probe());
    let records = bus.history().unwrap().query(&HistoryQuery::new());
    let original = records[0].envelope().clone();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let _sub = bus.subscribe(move |_: &Probed, ctx: &EventContext| {
        sink.lock().unwrap().push(ctx.envelope());
    });
    assert!(bus.replay(&records).is_ok());
    let replayed = seen.lock().unwrap().pop().expect("replayed");
    assert_eq!(replayed.event_id(), original.event_id());
    assert!(replayed.is_replay());

    // What a bridge does with an event from another process.
    let trace_id = TraceId::random();
    let options = EmitOptions::new()
        .trace_id(trace_id)
        .event_id(original.event_id())
        .timestamp(original.timestamp())
        .remote("orchestrator-7f3a");
    let report = block_on(bus.emit_async_with(probe(), options.clone()));
    assert_eq!(report.trace_id(), trace_id);
    let remote = seen.lock().unwrap().pop().expect("remote");
    assert_eq!(remote.event_id(), original.event_id());
    assert_eq!(remote.trace_id(), trace_id);
    assert_eq!(remote.remote(), Some("orchestrator-7f3a"));
    assert!(!remote.is_replay());
    let report = bus.emit_with(probe(), options);
    assert_eq!(report.trace_id(), trace_id);
    assert_eq!(
        seen.lock().unwrap().pop().expect("sync").remote(),
        Some("orchestrator-7f3a")
    );
}

#[test]
fn fresh_ids_are_rfc_9562_version_7_uuids_of_their_millisecond() {
    let at = UNIX_EPOCH + Duration::from_millis(1_733_300_000_123) + Duration::from_micros(456);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1_000 {
        let id = EventId::new(at);
        let text = id.to_string();
        // xxxxxxxx-xxxx-7xxx-Vxxx-xxxxxxxxxxxx, V in 8..=b (variant 0b10).
        assert_eq!(&text[14..15], "7", "{text}");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        // The first 48 bits are the millisecond, big-endian.
        assert_eq!(&text[..13], "019390bb-157b", "{text}");
        assert_eq!(id.version(), 7);
        assert_eq!(
            id.timestamp(),
            UNIX_EPOCH + Duration::from_millis(1_733_300_000_123)
        );
        assert!(seen.insert(id), "{text} twice");
    }
    // The 74 random bits vary (each of them, over a thousand draws).
    let ored = seen.iter().fold(0u128, |acc, id| acc | id.as_u128());
    let anded = seen.iter().fold(u128::MAX, |acc, id| acc & id.as_u128());
    let random = ((1u128 << 12) - 1) << 64 | ((1u128 << 62) - 1);
    assert_eq!((ored ^ anded) & random, random);
    // Before 1970: stamped as 1970.
    assert_eq!(
        EventId::new(UNIX_EPOCH - Duration::from_secs(5)).timestamp(),
        UNIX_EPOCH
    );
}

#[test]
fn threads_asking_one_context_at_once_all_get_the_same_id_and_timestamp() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&answers);
    let _sub = bus.subscribe(move |_: &Probed, ctx: &EventContext| {
        // Four threads ask together, the id first or the timestamp first.
        let barrier = std::sync::Barrier::new(4);
        let seen: Vec<_> = std::thread::scope(|s| {
            let askers: Vec<_> = (0..4)
                .map(|n| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        if n % 2 == 0 {
                            (ctx.event_id(), ctx.timestamp())
                        } else {
                            let at = ctx.timestamp();
                            (ctx.event_id(), at)
                        }
                    })
                })
                .collect();
            askers
                .into_iter()
                .map(|a| a.join().expect("asker"))
                .collect()
        });
        log.lock().expect("answers").push(seen);
    });
    for _ in 0..300 {
        assert!(bus.emit(probe()).is_ok());
    }
    let answers = answers.lock().expect("answers");
    assert_eq!(answers.len(), 300);
    let mut ids = std::collections::HashSet::new();
    for seen in answers.iter() {
        assert!(seen.iter().all(|answer| *answer == seen[0]), "{seen:?}");
        let (id, at) = seen[0];
        let millis = at
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        assert_eq!(
            id.timestamp(),
            UNIX_EPOCH + Duration::from_millis(millis as u64)
        );
        assert!(ids.insert(id), "one id per event");
    }
}
