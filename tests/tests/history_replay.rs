//! Bounded history, queries, replay, JSON Lines export and import, and
//! validation on import and on emit.

use sbox_events::events::{ConfigExported, SubscriptionFailed, SubscriptionProcessed};
use sbox_events::history::{
    HistoryQuery, ImportOptions, LineErrorKind, MAX_HISTORY_BYTES, RecordedEvent, export_jsonl,
    import_jsonl,
};
use sbox_events::trace::{self, TraceId};
use sbox_events::{EmitOptions, Event, EventBus, EventContext, EventSelector, Refusal};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "test.reading_taken", validate = plausible)]
struct ReadingTaken {
    sensor: String,
    celsius: f64,
}

fn plausible(r: &ReadingTaken) -> Result<(), String> {
    if !(-90.0..=60.0).contains(&r.celsius) {
        return Err(format!(
            "{} °C is not a plausible air temperature",
            r.celsius
        ));
    }
    Ok(())
}

fn reading(sensor: &str, celsius: f64) -> ReadingTaken {
    ReadingTaken {
        sensor: sensor.into(),
        celsius,
    }
}

fn history_bus(bytes: usize) -> EventBus {
    EventBus::builder()
        .static_handlers(false)
        .history(bytes)
        .build()
        .unwrap()
}

#[test]
fn history_is_bounded_by_bytes_and_evicts_oldest_first() {
    let bus = history_bus(16 * 1024);
    for i in 0..2_000 {
        bus.emit(reading(&format!("sensor-{i}"), 20.0));
    }
    let history = bus.history().expect("enabled");
    let stats = history.stats();
    assert!(stats.bytes <= 16 * 1024, "{stats:?}");
    assert_eq!(stats.recorded, 2_000);
    assert_eq!(stats.evicted as usize + stats.entries, 2_000, "{stats:?}");
    assert!(stats.entries > 10, "{stats:?}");
    let kept = history.query(&HistoryQuery::new());
    let first = kept[0]
        .to_event::<ReadingTaken>()
        .expect("type")
        .expect("fields");
    let last = kept
        .last()
        .expect("some")
        .to_event::<ReadingTaken>()
        .expect("type")
        .expect("fields");
    assert_eq!(
        first.sensor,
        format!("sensor-{}", stats.evicted),
        "the oldest went first"
    );
    assert_eq!(last.sensor, "sensor-1999");
    history.clear();
    assert_eq!(history.stats().entries, 0);
}

#[test]
fn budgets_are_clamped_and_oversized_records_are_counted() {
    let bus = history_bus(usize::MAX);
    assert_eq!(
        bus.history().expect("enabled").stats().capacity_bytes,
        MAX_HISTORY_BYTES
    );
    let tiny = history_bus(1_000);
    tiny.emit(reading(&"x".repeat(2_000), 1.0));
    tiny.emit(reading("ok", 1.0));
    let stats = tiny.history().expect("enabled").stats();
    assert_eq!((stats.oversized, stats.entries), (1, 1));
    assert!(EventBus::new().history().is_none(), "off by default");
}

#[test]
fn queries_by_pattern_trace_and_time() {
    let bus = history_bus(1 << 20);
    let before = SystemTime::now();
    let id = TraceId::random();
    trace::with_trace_id(id, || {
        bus.emit(reading("a", 1.0));
        bus.emit(SubscriptionFailed {
            url: "u".into(),
            error: "e".into(),
            error_type: "io".into(),
        });
    });
    std::thread::sleep(Duration::from_millis(5));
    let middle = SystemTime::now();
    bus.emit(reading("b", 2.0));
    let history = bus.history().expect("enabled");
    let names = |q: HistoryQuery| {
        history
            .query(&q)
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(HistoryQuery::new().trace_id(id)),
        ["test.reading_taken", "subscription.failed"]
    );
    assert_eq!(
        names(HistoryQuery::new().events(EventSelector::pattern("*.failed").expect("valid"))),
        ["subscription.failed"]
    );
    assert_eq!(names(HistoryQuery::new().since(middle)).len(), 1);
    assert_eq!(
        names(HistoryQuery::new().since(before).until(middle)).len(),
        2
    );
    let first = &history.query(&HistoryQuery::new())[0];
    assert!(first.envelope().timestamp() >= before && first.envelope().timestamp() <= middle);
}

#[test]
fn replay_by_trace_preserves_the_envelope_and_is_not_recorded() {
    let bus = history_bus(1 << 20);
    let id = TraceId::random();
    trace::with_trace_id(id, || {
        bus.emit_with(
            reading("a", 3.5),
            EmitOptions::new()
                .source("field-station")
                .metadata("site", "north"),
        );
        bus.emit(reading("b", 4.5));
    });
    bus.emit(reading("other trace", 9.0));
    let history = bus.history().expect("enabled");
    let recorded = history.query(&HistoryQuery::new().trace_id(id));
    assert_eq!(recorded.len(), 2);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let _debugger = bus.subscribe(move |r: &ReadingTaken, ctx: &EventContext| {
        s.lock().expect("seen").push((
            r.clone(),
            ctx.trace_id(),
            ctx.is_replay(),
            ctx.timestamp(),
            ctx.sequence(),
            ctx.source().to_owned(),
            ctx.metadata().get("site").map(str::to_owned),
        ));
    });
    let report = bus.replay(&recorded);
    assert!(report.is_ok());
    assert_eq!(report.reports().len(), 2);
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.len(), 2);
    for ((event, trace_id, replay, timestamp, sequence, _, _), original) in
        seen.iter().zip(&recorded)
    {
        assert_eq!(*trace_id, id);
        assert!(replay);
        assert_eq!(*timestamp, original.envelope().timestamp());
        assert_eq!(*sequence, original.envelope().sequence());
        assert_eq!(
            Some(Ok(event.clone())),
            original
                .to_event::<ReadingTaken>()
                .map(|r| r.map_err(|e| e.to_string()))
        );
    }
    assert_eq!(
        (seen[0].5.as_str(), seen[0].6.as_deref()),
        ("field-station", Some("north"))
    );
    assert_eq!(history.stats().recorded, 3, "replays were not recorded");
    assert_eq!(trace::current(), None);

    let recording = EventBus::builder()
        .history(1 << 20)
        .record_replays(true)
        .build()
        .unwrap();
    recording.replay(&recorded);
    assert_eq!(recording.history().expect("enabled").stats().recorded, 2);
}

#[test]
fn nested_emits_during_replay_are_replays_too() {
    let bus = history_bus(1 << 20);
    bus.emit(reading("a", 1.0));
    let recorded = bus.history().expect("enabled").query(&HistoryQuery::new());
    let flags = Arc::new(Mutex::new(Vec::new()));
    let f = Arc::clone(&flags);
    let _chain = bus.subscribe(move |_: &ReadingTaken, ctx: &EventContext| {
        ctx.bus().emit(ConfigExported {
            path: "p".into(),
            export_format: "json".into(),
            file_size: 1,
        });
    });
    let _leaf = bus.subscribe(move |_: &ConfigExported, ctx: &EventContext| {
        f.lock().expect("flags").push(ctx.is_replay())
    });
    bus.replay(&recorded);
    bus.emit(ConfigExported {
        path: "p".into(),
        export_format: "json".into(),
        file_size: 1,
    });
    assert_eq!(*flags.lock().expect("flags"), [true, false]);
    assert_eq!(
        bus.history().expect("enabled").stats().recorded,
        2,
        "only the live emit was added"
    );
}

#[test]
fn export_import_replay_round_trip() {
    let bus = history_bus(1 << 20);
    trace::with_trace_id(TraceId::random(), || {
        bus.emit_with(
            reading("quote\"and\nnewline", -12.25),
            EmitOptions::new().metadata("k", "v"),
        );
        bus.emit(SubscriptionProcessed {
            url: "u".into(),
            servers_count: 2,
            success: true,
            duration_ms: 9,
        });
    });
    let original = bus.history().expect("enabled").query(&HistoryQuery::new());
    let mut jsonl = Vec::new();
    assert_eq!(export_jsonl(&original, &mut jsonl).expect("export"), 2);
    let text = String::from_utf8(jsonl.clone()).expect("utf-8");
    assert_eq!(text.lines().count(), 2);

    let imported = import_jsonl(&jsonl[..], &ImportOptions::new()).expect("valid file");
    assert!(imported.skipped.is_empty());
    assert_eq!(
        imported.events, original,
        "every field survives the round trip"
    );

    let fresh = EventBus::builder().static_handlers(false).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let _sub = fresh.subscribe(move |r: &ReadingTaken, ctx: &EventContext| {
        s.lock().expect("seen").push((r.clone(), ctx.trace_id()))
    });
    assert!(fresh.replay(&imported.events).is_ok());
    assert_eq!(
        *seen.lock().expect("seen"),
        [(
            reading("quote\"and\nnewline", -12.25),
            original[0].envelope().trace_id()
        )]
    );
}

const GOOD: &str = r#"{"name":"test.reading_taken","source":"s","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","timestamp":"2026-11-27T06:32:20.5Z","sequence":1,"metadata":{},"data":{"sensor":"a","celsius":20.0}}"#;

fn line(name: &str, data: &str) -> String {
    GOOD.replace("test.reading_taken", name)
        .replace(r#"{"sensor":"a","celsius":20.0}"#, data)
}

#[test]
fn every_import_error_names_its_line_and_reason() {
    let input = [
        GOOD.to_owned(),                                                 // 1 ok
        "{\"name\": ".to_owned(),                                        // 2 malformed
        "".to_owned(),                                                   // 3 blank: skipped
        line("test.no_such_event", r#"{}"#),                             // 4 unknown
        line("test.reading_taken", r#"{"sensor":"a"}"#),                 // 5 schema
        line("test.reading_taken", r#"{"sensor":"a","celsius":900.0}"#), // 6 invalid
        GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", "xyz"),         // 7 envelope
        format!("{GOOD}{}", " ".repeat(300)),                            // 8 too long
        GOOD.replace(r#""sequence":1"#, r#""sequence":1,"extra":true"#), // 9 unknown key
        GOOD.replace("2026-11-27T06:32:20.5Z", "yesterday"),             // 10 timestamp
        GOOD.to_owned(),                                                 // 11 ok
    ]
    .join("\n");
    let mut input = input.into_bytes();
    input.extend_from_slice(b"\n\xff"); // 12: not UTF-8
    let options = ImportOptions::new().max_line_bytes(GOOD.len() + 100);
    let err = import_jsonl(&input[..], &options).expect_err("bad lines");
    assert_eq!(err.imported().len(), 2, "valid lines are never lost");
    let described: Vec<String> = err.errors().iter().map(ToString::to_string).collect();
    let expected = [
        "line 2: malformed JSON at column 9: EOF while parsing a value",
        "line 4: unknown event name \"test.no_such_event\" (no such event type is linked into this binary)",
        "line 5: fields do not fit `test.reading_taken`: missing field `celsius`",
        "line 6: invalid `test.reading_taken`: 900 °C is not a plausible air temperature",
        "line 7: not an event record: invalid trace id at byte 0: expected 32 lowercase hex digits, found 3 characters (column 58)",
        &format!(
            "line 8: line is {} bytes, longer than the limit of {}",
            GOOD.len() + 300,
            GOOD.len() + 100
        ),
        "line 9: not an event record: unknown field `extra`, expected one of `name`, `fingerprint`, `event_id`, `source`, `trace_id`, `timestamp`, `sequence`, `depth`, `replay`, `remote`, `metadata`, `cause`, `handlers`, `data` (column 145)",
        "line 10: not an event record: timestamp \"yesterday\" is not RFC 3339 UTC: timestamp format is invalid",
        "line 12: not UTF-8",
    ];
    assert_eq!(described, expected);
    assert!(matches!(
        *err.errors()[1].kind(),
        LineErrorKind::UnknownEvent { .. }
    ));
    assert!(
        err.to_string()
            .starts_with("import failed: line 2: malformed JSON")
    );

    let lenient = import_jsonl(&input[..], &options.clone().lenient(true)).expect("lenient");
    assert_eq!((lenient.events.len(), lenient.skipped.len()), (2, 9));
    assert_eq!(lenient.skipped, err.errors());
}

#[test]
fn the_line_limit_counts_neither_a_byte_order_mark_nor_a_crlf_ending() {
    let long = format!("{GOOD}{}", " ".repeat(40));
    let input = format!("\u{feff}{GOOD}\r\n{long}\r\n{GOOD}\r\n");
    let options = ImportOptions::new().max_line_bytes(GOOD.len());
    let err = import_jsonl(input.as_bytes(), &options).expect_err("line 2 is too long");
    assert_eq!(err.imported().len(), 2, "line 1 is exactly at the limit");
    let described: Vec<String> = err.errors().iter().map(ToString::to_string).collect();
    assert_eq!(
        described,
        [format!(
            "line 2: line is {} bytes, longer than the limit of {}",
            long.len(),
            GOOD.len()
        )]
    );
}

#[test]
fn a_read_error_is_reported_at_its_line() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk went away"));
            }
            self.0 -= 1;
            let line = format!("{GOOD}\n");
            buf[..line.len()].copy_from_slice(line.as_bytes());
            Ok(line.len())
        }
    }
    let reader = std::io::BufReader::with_capacity(4096, Failing(2));
    let err = import_jsonl(reader, &ImportOptions::new()).expect_err("read error");
    assert_eq!(err.imported().len(), 2);
    assert_eq!(
        err.errors()[0].to_string(),
        "line 3: read error: disk went away"
    );
}

#[test]
fn audit_logs_import_too() {
    let audit_line = r#"{"name":"subscription.failed","source":"subscription_manager","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","timestamp":"2026-11-27T06:32:20.123456Z","sequence":3,"depth":1,"metadata":{},"data":{"url":"u","error":"e","error_type":"io"}}"#;
    let imported =
        import_jsonl(audit_line.as_bytes(), &ImportOptions::new()).expect("audit record");
    let record: &RecordedEvent = &imported.events[0];
    assert_eq!(
        (
            record.name(),
            record.envelope().sequence(),
            record.envelope().source()
        ),
        ("subscription.failed", 3, "subscription_manager")
    );
}

#[test]
fn validation_on_emit_refuses_invalid_events() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .validate_on_emit(true)
        .history(1 << 20)
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(0));
    let c = Arc::clone(&calls);
    let _sub =
        bus.subscribe(move |_: &ReadingTaken, _: &EventContext| *c.lock().expect("calls") += 1);
    let refused = bus.emit(reading("hot", 500.0));
    assert_eq!(
        refused.refused(),
        Some(&Refusal::Invalid {
            reason: "500 °C is not a plausible air temperature".into()
        })
    );
    assert_eq!(
        refused.to_string(),
        "`test.reading_taken` refused: the event is invalid: 500 °C is not a plausible air temperature"
    );
    assert!(bus.emit(reading("fine", 20.0)).is_ok());
    assert_eq!(*calls.lock().expect("calls"), 1);
    assert_eq!(
        bus.history().expect("enabled").stats().recorded,
        1,
        "refused events are not recorded"
    );
    // Without the option, validation is not applied on emit.
    assert!(
        EventBus::builder()
            .static_handlers(false)
            .build()
            .unwrap()
            .emit(reading("hot", 500.0))
            .is_ok()
    );
}

#[test]
fn the_original_events_have_real_rules() {
    let cases: [(Result<(), String>, &str); 5] = [
        (
            SubscriptionProcessed {
                url: "".into(),
                servers_count: 1,
                success: true,
                duration_ms: 1,
            }
            .validate(),
            "`url` is empty",
        ),
        (
            SubscriptionProcessed {
                url: "u".into(),
                servers_count: 0,
                success: true,
                duration_ms: 1,
            }
            .validate(),
            "`success` is true but `servers_count` is 0",
        ),
        (
            SubscriptionProcessed {
                url: "u".into(),
                servers_count: 3,
                success: false,
                duration_ms: 1,
            }
            .validate(),
            "`success` is false but `servers_count` is 3",
        ),
        (
            ConfigExported {
                path: "p".into(),
                export_format: "xml".into(),
                file_size: 1,
            }
            .validate(),
            "`export_format` \"xml\" is not one of sing-box, clash, xray, json",
        ),
        (
            ConfigExported {
                path: "p".into(),
                export_format: "sing-box".into(),
                file_size: 0,
            }
            .validate(),
            "`file_size` is 0",
        ),
    ];
    for (result, message) in cases {
        assert_eq!(result, Err(message.to_owned()));
    }
    assert_eq!(
        SubscriptionProcessed {
            url: "u".into(),
            servers_count: 0,
            success: false,
            duration_ms: 1
        }
        .validate(),
        Ok(())
    );
}

#[test]
fn a_utf8_bom_before_the_first_line_is_accepted() {
    let input = format!("\u{feff}{GOOD}\n{GOOD}\n");
    let imported = import_jsonl(input.as_bytes(), &ImportOptions::new()).expect("BOM accepted");
    assert_eq!(imported.events.len(), 2);
    // Only before line 1: a BOM inside the file is data, and not JSON.
    let input = format!("{GOOD}\n\u{feff}{GOOD}\n");
    let err = import_jsonl(input.as_bytes(), &ImportOptions::new()).expect_err("BOM on line 2");
    assert_eq!(err.errors()[0].line(), 2);
    assert_eq!(err.imported().len(), 1);
}

#[test]
fn metadata_with_many_keys_imports_in_linear_time() {
    // 200,000 keys: quadratic de-duplication would take hours here; the
    // watchdog only catches that, it is not a speed target.
    const KEYS: usize = 200_000;
    let mut metadata = String::from("{");
    for i in 0..KEYS {
        metadata.push_str(&format!("\"k{i}\":\"v{i}\","));
    }
    metadata.push_str("\"k7\":\"last wins\"}");
    let record = GOOD.replace(r#""metadata":{}"#, &format!(r#""metadata":{metadata}"#));
    let imported = sbox_events_tests::within(
        Duration::from_secs(120),
        "importing 200,000 metadata keys",
        move || {
            import_jsonl(
                record.as_bytes(),
                &ImportOptions::new().max_line_bytes(64 << 20),
            )
        },
    )
    .expect("imported");
    let metadata = imported.events[0].envelope().metadata();
    assert_eq!(metadata.len(), KEYS, "duplicate keys are merged");
    assert_eq!(metadata.get("k7"), Some("last wins"));
    assert_eq!(metadata.get("k199999"), Some("v199999"));
    let keys: Vec<&str> = metadata.iter().take(3).map(|(k, _)| k).collect();
    assert_eq!(keys, ["k0", "k1", "k2"], "first-insertion order is kept");
}
