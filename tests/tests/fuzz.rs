//! Property-based fuzzing of the parsers that take outside input: trace ids,
//! `traceparent` headers, and JSON Lines import. In the test suite each
//! property runs a bounded number of cases (PROPTEST_CASES, default 256) and
//! the committed corpus under `corpus/` is replayed; `scripts/fuzz.sh` runs
//! the same properties for a longer, time-bounded session.

use proptest::prelude::*;
use sbox_events::history::{ImportOptions, RecordedEvent, export_jsonl, import_jsonl};
use sbox_events::trace::{TraceId, TraceParent};
use sbox_events::{EmitOptions, Event, EventBus};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU64;
use std::path::Path;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "fuzz.note_taken")]
struct NoteTaken {
    text: String,
    value: i64,
}

/// Non-blank lines as the importer splits them (by `\n`, one `\r` trimmed).
fn non_blank_lines(bytes: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(i, line)| {
            let last = *i == bytes.split(|&b| b == b'\n').count() - 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            !(last && line.is_empty())
                && std::str::from_utf8(line).map_or(true, |t| !t.trim().is_empty())
        })
        .count()
}

/// What must hold for any input: no panic; lenient = strict's content;
/// every line accounted for exactly once, in order, numbered within range.
fn check_import(bytes: &[u8]) {
    let lines = bytes.split(|&b| b == b'\n').count();
    let lenient =
        import_jsonl(bytes, &ImportOptions::new().lenient(true)).expect("lenient never fails");
    assert_eq!(
        lenient.events.len() + lenient.skipped.len(),
        non_blank_lines(bytes)
    );
    assert!(
        lenient
            .skipped
            .windows(2)
            .all(|w| w[0].line() < w[1].line())
    );
    assert!(
        lenient
            .skipped
            .iter()
            .all(|e| e.line() >= 1 && e.line() <= lines)
    );
    // Text quoted from the input is escaped, by the error and by its kind.
    for error in &lenient.skipped {
        for text in [error.to_string(), error.kind().to_string()] {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
    match import_jsonl(bytes, &ImportOptions::new()) {
        Ok(strict) => {
            assert!(lenient.skipped.is_empty());
            assert_eq!(strict.events, lenient.events);
        }
        Err(err) => {
            assert_eq!(err.errors(), lenient.skipped);
            assert_eq!(err.imported(), lenient.events, "valid lines are never lost");
        }
    }
}

fn envelope_line() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        "fuzz.note_taken",
        "subscription.failed",
        "no.such_event",
        "",
    ]);
    let data = prop::sample::select(vec![
        r#"{"text":"a","value":1}"#,
        r#"{"text":"a"}"#,
        r#"{"text":1,"value":"a"}"#,
        r#"{"url":"u","error":"e","error_type":"io"}"#,
        r#"[]"#,
        r#"null"#,
    ]);
    let trace = prop::sample::select(vec![
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00000000000000000000000000000000",
        "XYZ",
    ]);
    let stamp = prop::sample::select(vec![
        "2026-11-27T06:32:20Z",
        "2026-11-27T06:32:20.123456789Z",
        "not a time",
    ]);
    (names, data, trace, stamp, any::<u64>(), any::<bool>()).prop_map(|(name, data, trace, stamp, seq, meta)| {
        let metadata = if meta { r#","metadata":{"k":"v"}"# } else { "" };
        format!(r#"{{"name":"{name}","source":"s","trace_id":"{trace}","timestamp":"{stamp}","sequence":{seq}{metadata},"data":{data}}}"#)
    })
}

proptest! {
    #[test]
    fn trace_id_parsing_never_panics_and_round_trips(input in "\\PC{0,40}") {
        if let Ok(id) = TraceId::parse(&input) {
            prop_assert_eq!(id.to_string(), input);
        }
    }

    #[test]
    fn every_non_zero_value_is_a_trace_id(value in 1u128..) {
        let id = TraceId::from_u128(value).expect("non-zero");
        prop_assert_eq!(TraceId::parse(&id.to_string()), Ok(id));
        prop_assert_eq!(serde_json::from_str::<TraceId>(&serde_json::to_string(&id).expect("json")).expect("parse"), id);
    }

    #[test]
    fn traceparent_parsing_never_panics(input in "[0-9a-fA-F\\-é]{0,70}") {
        if let Ok(parent) = TraceParent::parse(&input) {
            prop_assert!(input.len() >= 55);
            prop_assert_eq!(parent.to_string(), format!("00{}", &input[2..55]));
        }
    }

    #[test]
    fn traceparent_round_trips(trace in 1u128.., parent in 1u64.., flags in any::<u8>()) {
        let header = TraceParent::new(
            TraceId::from_u128(trace).expect("non-zero"),
            NonZeroU64::new(parent).expect("non-zero"),
            flags,
        );
        prop_assert_eq!(TraceParent::parse(&header.to_string()), Ok(header));
    }

    #[test]
    fn import_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_import(&bytes);
    }

    #[test]
    fn import_survives_damaged_records(lines in prop::collection::vec(envelope_line(), 0..8), cut in any::<prop::sample::Index>()) {
        let mut text = lines.join("\n");
        check_import(text.as_bytes());
        // Cut the file anywhere (at a char boundary), as a crash would.
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        check_import(text.as_bytes());
    }

    #[test]
    fn export_then_import_is_lossless(text in "\\PC*", value in any::<i64>(), key in "\\PC{0,8}", meta in "\\PC{0,8}") {
        let bus = EventBus::builder().static_handlers(false).history(1 << 20).build().unwrap();
        bus.emit_with(NoteTaken { text, value }, EmitOptions::new().metadata(key, meta));
        let recorded: Vec<RecordedEvent> = bus.history().expect("enabled").query(&Default::default());
        let mut out = Vec::new();
        export_jsonl(&recorded, &mut out).expect("export");
        let imported = import_jsonl(&out[..], &ImportOptions::new()).expect("exported lines import");
        prop_assert_eq!(imported.events, recorded);
    }
}

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_trace_corpus_parses_as_named() {
    let files = corpus("trace");
    assert!(files.len() >= 10);
    for (name, bytes) in files {
        let text = String::from_utf8(bytes).expect("corpus inputs are text");
        let ok = TraceId::parse(&text).is_ok() || TraceParent::parse(&text).is_ok();
        assert_eq!(ok, name.starts_with("ok-"), "{name}: {text:?}");
    }
}

#[test]
fn the_import_corpus_imports_as_named() {
    let files = corpus("import");
    assert!(files.len() >= 10);
    for (name, bytes) in files {
        check_import(&bytes);
        let result = import_jsonl(&bytes[..], &ImportOptions::new());
        match name.strip_prefix("ok-") {
            Some(rest) => {
                let expected: usize = rest
                    .split('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("ok-<count>-...");
                let imported = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(imported.events.len(), expected, "{name}");
            }
            None => assert!(result.is_err(), "{name} should be rejected"),
        }
    }
}
