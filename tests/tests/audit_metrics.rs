//! AuditLogger and MetricsCollector on a bus: what they record, how records
//! resist injection, how I/O trouble is reported, and the Prometheus text.

use sbox_events::audit::{AuditLogger, DEFAULT_EVENTS};
use sbox_events::events::{
    ConfigBuilt, ConfigExported, ErrorOccurred, SubscriptionFailed, SubscriptionFetched,
    SubscriptionProcessed,
};
use sbox_events::metrics::{Family, MetricsCollector, MetricsSource};
use sbox_events::trace::{self, TraceId};
use sbox_events::{EmitOptions, Event, EventBus, EventContext, EventSelector};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("audit")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn bus() -> EventBus {
    EventBus::builder().static_handlers(false).build().unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON record per line: {e}: {l}"))
        })
        .collect()
}

fn processed(url: &str, servers: u64, ms: u64) -> SubscriptionProcessed {
    SubscriptionProcessed {
        url: url.into(),
        servers_count: servers,
        success: true,
        duration_ms: ms,
    }
}

#[test]
fn significant_events_are_recorded_once_with_their_trace() {
    let dir = scratch("once");
    let path = dir.join("audit.jsonl");
    let bus = bus();
    let audit = AuditLogger::builder()
        .jsonl(&path)
        .attach(&bus)
        .expect("open");
    // A handler that reacts to a processed subscription with an export: nested.
    let _export = bus.subscribe(|p: &SubscriptionProcessed, ctx: &EventContext| {
        ctx.bus().emit(ConfigExported {
            path: format!("{}.json", p.url),
            export_format: "sing-box".into(),
            file_size: 10,
        });
    });
    let id = TraceId::random();
    trace::with_trace_id(id, || {
        bus.emit(SubscriptionFetched {
            url: "a".into(),
            content_length: 1,
            content_type: "text/plain".into(),
            cache_hit: false,
            duration_ms: 1,
        });
        bus.emit_with(
            processed("a", 3, 5),
            EmitOptions::new().metadata("user", "alice"),
        );
    });
    let other = bus.emit(SubscriptionFailed {
        url: "b".into(),
        error: "boom".into(),
        error_type: "io".into(),
    });

    let records = lines(&path);
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "subscription.processed",
            "config.exported",
            "subscription.failed"
        ]
    );
    assert_eq!(audit.records(), 3);
    assert_eq!(audit.write_errors(), 0);
    assert_eq!(records[0]["trace_id"], id.to_string());
    assert_eq!(records[1]["trace_id"], id.to_string());
    assert_eq!(records[2]["trace_id"], other.trace_id().to_string());
    assert_eq!(records[0]["metadata"], serde_json::json!({"user": "alice"}));
    assert_eq!(
        records[0]["data"],
        serde_json::json!({"url": "a", "servers_count": 3, "success": true, "duration_ms": 5})
    );
    assert_eq!(
        (records[0]["depth"].as_u64(), records[1]["depth"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(records[0]["source"], "subscription_manager");
    let seq: Vec<u64> = records
        .iter()
        .map(|r| r["sequence"].as_u64().expect("sequence"))
        .collect();
    assert!(seq[0] < seq[1] && seq[1] < seq[2]);
    let stamp = records[0]["timestamp"].as_str().expect("timestamp");
    assert!(humantime_like_rfc3339(stamp), "{stamp}");
}

/// `2026-11-27T06:32:20.123456789Z`: RFC 3339, UTC, nanoseconds (the
/// envelope the history's JSON Lines use too).
fn humantime_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 30
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && s.ends_with('Z')
        && s.chars().filter(char::is_ascii_digit).count() == 23
}

#[test]
fn the_default_set_is_the_original_designs() {
    assert_eq!(
        DEFAULT_EVENTS,
        [
            "subscription.processed",
            "subscription.failed",
            "config.exported",
            "error.occurred"
        ]
    );
    let bus = bus();
    let audit = AuditLogger::attach(&bus);
    bus.emit(processed("a", 1, 1));
    bus.emit(ConfigBuilt {
        servers_count: 1,
        rules_count: 0,
        export_format: "x".into(),
        file_size: 1,
        duration_ms: 1,
    });
    bus.emit(ErrorOccurred {
        error: "e".into(),
        error_type: "t".into(),
        event: String::new(),
        handler: "h".into(),
    });
    assert_eq!(audit.records(), 2);
    assert_eq!(audit.path(), None);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.note_added")]
struct NoteAdded {
    text: String,
}

#[test]
fn data_cannot_forge_or_break_records() {
    let dir = scratch("injection");
    let path = dir.join("audit.jsonl");
    let bus = bus();
    let audit = AuditLogger::builder()
        .events(EventSelector::all())
        .jsonl(&path)
        .attach(&bus)
        .expect("open");
    let nasty = [
        "line one\n{\"name\":\"config.exported\",\"trace_id\":\"00000000000000000000000000000001\"}",
        "quote \" backslash \\ and \r carriage return",
        "controls \u{0}\u{1}\u{1b}[31m\u{7f} and \u{2028} separators",
        "}\n\n{",
    ];
    for text in nasty {
        bus.emit_with(
            NoteAdded { text: text.into() },
            EmitOptions::new().metadata("k\n\"", "v\n"),
        );
    }
    let records = lines(&path);
    assert_eq!(
        records.len(),
        nasty.len(),
        "one line per record, nothing forged"
    );
    assert_eq!(audit.records(), nasty.len() as u64);
    for (record, text) in records.iter().zip(nasty) {
        assert_eq!(record["name"], "test.note_added");
        assert_eq!(record["data"]["text"], text, "round-trips exactly");
        assert_eq!(record["metadata"]["k\n\""], "v\n");
    }
}

#[test]
fn an_unopenable_path_is_a_clear_error() {
    let dir = scratch("unopenable");
    let path = dir.join("missing-dir/audit.jsonl");
    let err = AuditLogger::builder()
        .jsonl(&path)
        .attach(&bus())
        .expect_err("no such directory");
    assert_eq!(err.path(), path);
    assert_eq!(
        err.to_string(),
        format!("cannot open audit log {} for appending", path.display())
    );
    // The cause is the error's source, as error reporters expect.
    assert_eq!(err.io_error().kind(), std::io::ErrorKind::NotFound);
    let source = std::error::Error::source(&err).expect("a source");
    assert!(
        source.to_string().contains("No such file or directory"),
        "{source}"
    );
}

#[test]
fn appending_after_a_torn_last_line_starts_a_fresh_line_and_keeps_old_records() {
    let dir = scratch("torn");
    let path = dir.join("audit.jsonl");
    let old = "{\"name\":\"subscription.processed\"}\n{\"name\":\"subscr";
    std::fs::write(&path, old).expect("write");
    let bus = bus();
    let _audit = AuditLogger::builder()
        .jsonl(&path)
        .fsync(true)
        .attach(&bus)
        .expect("open");
    bus.emit(processed("a", 1, 1));
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with(old), "old bytes untouched");
    let last = text[old.len()..].strip_prefix('\n').expect("fresh line");
    let record: serde_json::Value =
        serde_json::from_str(last.trim_end()).expect("new record is whole");
    assert_eq!(record["name"], "subscription.processed");
}

#[cfg(target_os = "linux")]
#[test]
fn write_errors_are_counted_and_do_not_stop_other_handlers() {
    // Writes to /dev/full fail with "No space left on device".
    let bus = bus();
    let audit = AuditLogger::builder()
        .jsonl("/dev/full")
        .attach(&bus)
        .expect("open /dev/full");
    let later = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let l = std::sync::Arc::clone(&later);
    let _after = bus.subscribe(move |_: &SubscriptionProcessed, _: &EventContext| {
        l.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    let report = bus.emit(processed("a", 1, 1));
    assert!(report.is_ok(), "{report}");
    assert_eq!(later.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        (audit.records(), audit.write_errors()),
        (0, 1),
        "nothing readable was written, and the count says so"
    );
}

#[test]
fn metrics_count_the_known_sequence() {
    let bus = bus();
    let metrics = MetricsCollector::attach(&bus);
    for (servers, ms) in [(3, 4), (5, 40), (0, 4_000)] {
        bus.emit(processed("u", servers, ms));
    }
    for error_type in ["io", "io", "no_servers"] {
        bus.emit(SubscriptionFailed {
            url: "u".into(),
            error: "x".into(),
            error_type: error_type.into(),
        });
    }
    bus.emit(ConfigBuilt {
        servers_count: 8,
        rules_count: 3,
        export_format: "sing-box".into(),
        file_size: 900,
        duration_ms: 2,
    });
    bus.emit(ConfigExported {
        path: "a".into(),
        export_format: "sing-box".into(),
        file_size: 900,
    });
    bus.emit(ConfigExported {
        path: "b".into(),
        export_format: "sing-box".into(),
        file_size: 100,
    });

    let s = metrics.snapshot();
    assert_eq!(
        (
            s.subscriptions_processed,
            s.servers_total,
            s.subscriptions_failed
        ),
        (3, 8, 3)
    );
    assert_eq!(
        s.failures_by_type,
        BTreeMap::from([("io".to_owned(), 2), ("no_servers".to_owned(), 1)])
    );
    assert_eq!(
        (s.configs_built, s.configs_exported, s.config_bytes_exported),
        (1, 2, 1000)
    );
    assert_eq!(s.events_by_name["subscription.processed"], 3);
    assert_eq!(s.events_by_name["config.exported"], 2);
    assert_eq!(
        s.events_by_name["application.started"], 0,
        "zero counts are listed"
    );
    let h = &s.subscription_processing_seconds;
    assert_eq!(h.count, 3);
    assert!((h.sum - 4.044).abs() < 1e-9);
    let at = |bound: f64| {
        h.buckets
            .iter()
            .find(|(b, _)| *b == bound)
            .expect("bucket")
            .1
    };
    assert_eq!(
        (at(0.001), at(0.005), at(0.05), at(2.5), at(5.0), at(10.0)),
        (0, 1, 2, 2, 3, 3)
    );
    assert_eq!(s.config_build_seconds.count, 1);
    assert!(
        s.handlers.is_empty(),
        "the bus collects no handler statistics"
    );
    let json = serde_json::to_value(&s).expect("snapshot serializes");
    assert_eq!(json["servers_total"], 8);
}

/// Checks the text exposition format line by line: HELP and TYPE before a
/// family's samples, valid names and labels, numeric values.
fn check_prometheus(text: &str) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| -> ! { panic!("line {}: {why}: {line:?}", n + 1) };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .unwrap_or_else(|| fail("HELP without text"));
            assert!(!help.is_empty() && !help.contains('\n'));
            current = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| fail("TYPE without kind"));
            if current.as_deref() != Some(name) {
                fail("TYPE does not follow its HELP");
            }
            if !["counter", "gauge", "histogram", "summary"].contains(&kind) {
                fail("unknown type");
            }
            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                fail("a family written twice");
            }
        } else if line.starts_with('#') {
            // A comment: ignored by readers.
        } else {
            let family = current
                .as_deref()
                .unwrap_or_else(|| fail("sample before HELP/TYPE"));
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| fail("no value"));
            value
                .parse::<f64>()
                .unwrap_or_else(|_| fail("value is not a number"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (
                    name,
                    labels
                        .strip_suffix('}')
                        .unwrap_or_else(|| fail("unclosed labels")),
                ),
                None => (series, ""),
            };
            let suffixes = ["", "_bucket", "_sum", "_count"];
            if !suffixes.iter().any(|s| name == format!("{family}{s}")) {
                fail("sample outside its family");
            }
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                fail("bad metric name");
            }
            check_labels(labels).unwrap_or_else(|why| fail(&why));
            let mut labels: Vec<&str> = labels.split(',').collect();
            labels.sort();
            if !seen.insert((name.to_owned(), labels.join(","))) {
                fail("a series written twice");
            }
        }
    }
    types
}

fn check_labels(mut labels: &str) -> Result<(), String> {
    while !labels.is_empty() {
        let (name, rest) = labels.split_once("=\"").ok_or("label without =\"")?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => return Err("bad escape in label value".into()),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some(_) => {}
                None => return Err("unterminated label value".into()),
            }
        };
        labels = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    Ok(())
}

#[test]
fn prometheus_output_is_well_formed_and_escapes_labels() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .handler_stats(true)
        .build()
        .unwrap();
    let metrics = MetricsCollector::attach(&bus);
    bus.emit(processed("u", 2, 30));
    bus.emit(SubscriptionFailed {
        url: "u".into(),
        error: "x".into(),
        error_type: "weird \"type\"\\\nline".into(),
    });
    let text = metrics.render_prometheus();
    let types = check_prometheus(&text);
    assert_eq!(types["sbox_subscriptions_processed_total"], "counter");
    assert_eq!(
        types["sbox_subscription_processing_duration_seconds"],
        "histogram"
    );
    assert_eq!(types["sbox_handler_duration_seconds"], "summary");
    assert!(text.contains("sbox_servers_total 2\n"), "{text}");
    assert!(
        text.contains(
            "sbox_subscriptions_failed_total{error_type=\"weird \\\"type\\\"\\\\\\nline\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("sbox_subscription_processing_duration_seconds_bucket{le=\"0.025\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("sbox_subscription_processing_duration_seconds_bucket{le=\"0.05\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("sbox_subscription_processing_duration_seconds_bucket{le=\"+Inf\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "sbox_handler_calls_total{event=\"subscription.processed\",handler=\"metrics::totals\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        check_labels("a=\"x\nb\"").is_err(),
        "the checker itself rejects raw newlines"
    );
}

/// A source whose families repeat themselves and the collector's names.
struct Repeating;

impl MetricsSource for Repeating {
    fn families(&self) -> Vec<Family> {
        let mut jobs = Family::counter("app_jobs_total", "Jobs.").unwrap();
        jobs.sample(&[("queue", "a"), ("host", "h")], 1.0);
        jobs.sample(&[("host", "h"), ("queue", "a")], 2.0);
        let mut again = Family::counter("app_jobs_total", "Jobs.").unwrap();
        again.sample(&[("queue", "b")], 4.0);
        let as_gauge = Family::gauge("app_jobs_total", "Jobs, as a gauge.").unwrap();
        let mut taken = Family::counter("sbox_events_total", "Mine.").unwrap();
        taken.sample(&[("event", "x")], 5.0);
        vec![jobs, again, as_gauge, taken]
    }
}

#[test]
fn prometheus_output_has_each_family_and_series_once_and_counters_never_go_down() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .handler_stats(true)
        .build()
        .unwrap();
    let metrics = MetricsCollector::attach(&bus);
    // A second collector: its subscriptions have the first one's names.
    let _second = MetricsCollector::attach(&bus);
    let source = Arc::new(Repeating);
    metrics.register(source.clone());
    metrics.register(source);
    bus.emit(processed("u", u64::MAX - 1, 30));
    bus.emit(processed("u", 5, 30));
    let text = metrics.render_prometheus();
    check_prometheus(&text);
    assert!(
        text.contains(&format!("sbox_servers_total {}\n", u64::MAX)),
        "{text}"
    );
    assert!(
        text.contains(
            "sbox_handler_calls_total{event=\"subscription.processed\",handler=\"metrics::totals\"} 4\n"
        ),
        "two handlers of one name, two events each: {text}"
    );
    assert!(
        text.contains("app_jobs_total{queue=\"a\",host=\"h\"} 6\n"),
        "{text}"
    );
    assert!(text.contains("app_jobs_total{queue=\"b\"} 8\n"), "{text}");
    assert!(!text.contains("sbox_events_total{event=\"x\"}"), "{text}");
    assert!(
        text.contains("# sbox-events: a registered family named sbox_events_total was left out"),
        "{text}"
    );
}
