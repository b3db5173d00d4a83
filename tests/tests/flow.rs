//! Seeing what happened: the flight recorder (each handler's outcome,
//! start, duration and thread), the causal tree of a trace from a history
//! or from its JSON Lines, and the tree as text, Mermaid and Chrome trace.

use sbox_events::flight::RunOutcome;
use sbox_events::history::{
    HistoryQuery, ImportOptions, RecordedEvent, TraceTree, export_jsonl, import_jsonl,
};
use sbox_events::trace::TraceId;
use sbox_events::{Event, EventBus, EventContext, SubscribeOptions};
use sbox_events_tests::exec::{block_on, yield_now};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "flow2.fetched")]
struct Fetched {
    n: u32,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "flow2.parsed")]
struct Parsed {
    n: u32,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "flow2.built")]
struct Built {
    n: u32,
}

fn bus() -> EventBus {
    EventBus::builder()
        .history(1 << 20)
        .flight_recorder(true)
        .static_handlers(false)
        .build()
        .unwrap()
}

fn named(name: &'static str) -> SubscribeOptions {
    SubscribeOptions::new().name(name)
}

/// fetched → (audit ok, parse ok → parsed → (build error → error.occurred,
/// check filtered)), and an async handler a plain emit skips.
fn pipeline(bus: &EventBus) -> TraceId {
    bus.subscribe_with(named("audit"), |_: &Fetched, _: &EventContext| {})
        .detach();
    bus.subscribe_with(named("parse"), |f: &Fetched, ctx: &EventContext| {
        ctx.bus().emit(Parsed { n: f.n });
    })
    .detach();
    bus.subscribe_async_with(named("upload"), |_: &Fetched, _: &EventContext| async {})
        .detach();
    bus.subscribe_with(named("build"), |_: &Parsed, _: &EventContext| {
        Err::<(), _>("no servers\n\u{1b}[2Jforged")
    })
    .detach();
    bus.subscribe_filtered(
        named("check"),
        |p: &Parsed, _: &EventContext| p.n > 10,
        |_: &Parsed, _: &EventContext| {},
    )
    .detach();
    bus.emit(Fetched { n: 1 }).trace_id()
}

fn records(bus: &EventBus) -> Vec<RecordedEvent> {
    bus.history().unwrap().query(&HistoryQuery::new())
}

#[test]
fn the_flight_recorder_keeps_each_handlers_outcome_time_and_thread() {
    let bus = bus();
    let before = std::time::SystemTime::now();
    pipeline(&bus);
    let records = records(&bus);
    let fetched = &records[0];
    let outcomes: Vec<(&str, &RunOutcome)> = fetched
        .handlers()
        .iter()
        .map(|run| (run.handler(), run.outcome()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("audit", &RunOutcome::Ok),
            ("parse", &RunOutcome::Ok),
            (
                "upload",
                &RunOutcome::Skipped {
                    reason: "async (emit_async runs it)".into()
                }
            ),
        ]
    );
    let parsed = records.iter().find(|r| r.name() == "flow2.parsed").unwrap();
    let outcomes: Vec<&str> = parsed
        .handlers()
        .iter()
        .map(|run| run.outcome().as_str())
        .collect();
    assert_eq!(outcomes, ["error", "filtered"]);
    assert_eq!(
        parsed.handlers()[0].outcome().message(),
        Some("no servers\n\u{1b}[2Jforged")
    );
    // Times: in order, inside the emit; the parse call holds the parsed
    // event's handlers.
    let parse = &fetched.handlers()[1];
    assert!(parse.started() >= before);
    let build = &parsed.handlers()[0];
    assert!(build.started() >= parse.started());
    assert!(build.started() + build.duration() <= parse.started() + parse.duration());
    let here = std::thread::current();
    assert_eq!(parse.thread_name(), here.name());
    assert!(parse.thread() > 0);
}

#[test]
fn without_the_flight_recorder_records_have_no_runs_and_the_tree_still_has_the_causes() {
    let bus = EventBus::builder()
        .history(1 << 20)
        .static_handlers(false)
        .build()
        .unwrap();
    let trace_id = pipeline(&bus);
    assert!(records(&bus).iter().all(|r| r.handlers().is_empty()));
    let tree = bus.history().unwrap().tree(trace_id);
    let root = &tree.roots()[0];
    // Only the handlers that emitted something are known.
    let handlers: Vec<&str> = root.handlers().iter().map(|h| h.name()).collect();
    assert_eq!(handlers, ["parse"]);
    assert!(root.handlers()[0].run().is_none());
    assert_eq!(
        root.handlers()[0].emitted()[0].record().name(),
        "flow2.parsed"
    );
}

/// The shape of a tree: `event[handler:outcome[child...]...]`.
fn shape(tree: &TraceTree) -> String {
    fn event(node: &sbox_events::history::EventNode, out: &mut String) {
        out.push_str(node.record().name());
        out.push('[');
        for handler in node.handlers() {
            out.push_str(handler.name());
            if let Some(run) = handler.run() {
                out.push(':');
                out.push_str(run.outcome().as_str());
            }
            if !handler.emitted().is_empty() {
                out.push('[');
                for child in handler.emitted() {
                    event(child, out);
                }
                out.push(']');
            }
            out.push(' ');
        }
        out.push(']');
    }
    let mut out = String::new();
    for root in tree.roots() {
        event(root, &mut out);
    }
    out
}

#[test]
fn a_trace_tree_puts_each_event_under_the_handler_that_emitted_it() {
    let bus = bus();
    let trace_id = pipeline(&bus);
    // Another trace, left out.
    bus.emit(Fetched { n: 2 });
    let tree = bus.history().unwrap().tree(trace_id);
    assert_eq!(tree.len(), 3);
    assert_eq!(
        shape(&tree),
        "flow2.fetched[audit:ok parse:ok[flow2.parsed[build:error[error.occurred[]] \
         check:filtered ]] upload:skipped ]",
    );
}

#[test]
fn the_text_tree_is_aligned_escaped_and_has_durations() {
    let bus = bus();
    let trace_id = pipeline(&bus);
    let text = bus.history().unwrap().tree(trace_id).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("trace {trace_id} (3 events)"));
    assert!(lines[1].starts_with("flow2.fetched #"), "{text}");
    assert!(lines[2].starts_with("├─ audit "), "{text}");
    assert!(lines[3].starts_with("├─ parse "), "{text}");
    assert!(lines[4].starts_with("│  └─ flow2.parsed #"), "{text}");
    assert!(lines[5].starts_with("│     ├─ build "), "{text}");
    assert!(
        lines[6].starts_with("│     │  └─ error.occurred #"),
        "{text}"
    );
    assert!(lines[7].starts_with("│     └─ "), "{text}");
    assert!(lines[8].starts_with("└─ upload "), "{text}");
    assert_eq!(lines.len(), 9, "{text}");
    // Outcomes in one column, durations right-aligned after it.
    let column = |line: &str, word: &str| line[..line.find(word).unwrap()].chars().count();
    let ok = column(lines[2], " ok ");
    assert_eq!(column(lines[3], " ok "), ok, "{text}");
    assert_eq!(column(lines[5], " error "), ok, "{text}");
    assert_eq!(column(lines[8], " skipped "), ok, "{text}");
    assert!(lines[2].trim_end().ends_with('s'), "a duration: {text}");
    // The error message, escaped: no raw newline or escape sequence.
    assert!(lines[5].ends_with(r"no servers\n\u{1b}[2Jforged"), "{text}");
    assert!(!text.contains('\u{1b}'));
}

#[test]
fn the_mermaid_picture_has_exactly_the_causal_edges() {
    let bus = bus();
    let trace_id = pipeline(&bus);
    let tree = bus.history().unwrap().tree(trace_id);
    let mermaid = tree.to_mermaid();
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    let edges: Vec<&str> = mermaid
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("-->") || l.contains("-.->"))
        .collect();
    assert_eq!(
        edges,
        [
            "e0 --> h0_0",
            "e0 --> h0_1",
            "h0_1 --> e1",
            "e1 --> h1_0",
            "h1_0 --> e2",
            "e1 --> h1_1",
            "e0 --> h0_2",
        ]
    );
    let seq = |i: usize| tree.events()[i].record().envelope().sequence();
    assert!(mermaid.contains(&format!("e0([\"flow2.fetched ({})\"])", seq(0))));
    assert!(mermaid.contains("h1_0[\"build<br/>error "), "{mermaid}");
    assert!(mermaid.contains("class h1_0 failed"), "{mermaid}");
    assert!(mermaid.contains("class h1_1,h0_2 skipped"), "{mermaid}");
}

#[test]
fn mermaid_labels_cannot_break_out_of_their_quotes() {
    let bus = bus();
    bus.subscribe_with(
        named("say \"hi\" <b>#1</b>\n"),
        |_: &Fetched, _: &EventContext| {},
    )
    .detach();
    let trace_id = bus.emit(Fetched { n: 1 }).trace_id();
    let mermaid = bus.history().unwrap().tree(trace_id).to_mermaid();
    assert!(
        mermaid.contains("h0_0[\"say #quot;hi#quot; #lt;b#gt;#35;1#lt;/b#gt;\\n<br/>ok "),
        "{mermaid}"
    );
    assert_eq!(mermaid.lines().count(), 4, "{mermaid}");
}

#[test]
fn the_chrome_trace_is_valid_trace_event_json_with_nested_slices() {
    let bus = bus();
    let trace_id = pipeline(&bus);
    let json = bus.history().unwrap().tree(trace_id).to_chrome_trace();
    let trace: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(trace["otherData"]["trace_id"], trace_id.to_string());
    let events = trace["traceEvents"].as_array().unwrap();
    for event in events {
        for field in ["ph", "pid", "tid", "name"] {
            assert!(event.get(field).is_some(), "{field} missing: {event}");
        }
        match event["ph"].as_str().unwrap() {
            "X" => {
                assert!(event["ts"].as_f64().unwrap() >= 0.0, "{event}");
                assert!(event["dur"].as_f64().unwrap() >= 0.0, "{event}");
            }
            // An event no handler took: an instant on the events' track.
            "i" => assert_eq!(
                (&event["name"], &event["tid"]),
                (&"error.occurred".into(), &0.into())
            ),
            "M" => assert_eq!(event["name"], "thread_name"),
            other => panic!("unexpected phase {other}: {event}"),
        }
    }
    let slice = |cat: &str, name: &str| {
        events
            .iter()
            .find(|e| e["cat"] == cat && e["name"] == name)
            .unwrap_or_else(|| panic!("no {cat} {name}: {json}"))
    };
    let span = |e: &Value| {
        let ts = e["ts"].as_f64().unwrap();
        (ts, ts + e["dur"].as_f64().unwrap())
    };
    let (parse, parsed, build) = (
        span(slice("handler", "parse")),
        span(slice("event", "flow2.parsed")),
        span(slice("handler", "build")),
    );
    // The parsed event's slice is inside the parse call, build inside it.
    assert!(parse.0 <= parsed.0 && parsed.1 <= parse.1, "{json}");
    assert!(parsed.0 <= build.0 && build.1 <= parsed.1, "{json}");
    let build = slice("handler", "build");
    assert_eq!(build["args"]["outcome"], "error");
    assert_eq!(build["args"]["trace_id"], trace_id.to_string());
    assert_eq!(build["tid"], slice("handler", "parse")["tid"]);
    let names: Vec<&Value> = events
        .iter()
        .filter(|e| e["ph"] == "M")
        .map(|e| &e["tid"])
        .collect();
    assert!(
        names.contains(&&build["tid"]),
        "its thread is named: {json}"
    );
}

#[test]
fn an_imported_history_gives_the_same_tree_and_handler_runs() {
    let bus = bus();
    let trace_id = pipeline(&bus);
    let mut jsonl = Vec::new();
    export_jsonl(&records(&bus), &mut jsonl).unwrap();
    let text = String::from_utf8(jsonl).unwrap();
    assert!(text.contains(r#""handlers":[{"handler":"audit","outcome":"ok","started_ns":"#));
    let imported = import_jsonl(text.as_bytes(), &ImportOptions::new()).unwrap();
    let from_file = TraceTree::from_records(&imported.events, trace_id);
    let from_history = bus.history().unwrap().tree(trace_id);
    assert_eq!(shape(&from_file), shape(&from_history));
    assert_eq!(from_file.to_string(), from_history.to_string());
    assert_eq!(imported.events[0].handlers(), records(&bus)[0].handlers());
}

#[test]
fn async_handlers_are_timed_from_first_poll_to_completion_across_awaits() {
    let bus = bus();
    bus.subscribe_async_with(named("slow"), |_: &Fetched, ctx: &EventContext| {
        let bus = ctx.bus().clone();
        async move {
            yield_now().await;
            bus.emit(Built { n: 1 });
            yield_now().await;
        }
    })
    .detach();
    let report = block_on(bus.emit_async(Fetched { n: 1 }));
    let tree = bus.history().unwrap().tree(report.trace_id());
    let slow = &tree.roots()[0].handlers()[0];
    assert_eq!(slow.run().unwrap().outcome(), &RunOutcome::Ok);
    assert_eq!(slow.emitted()[0].record().name(), "flow2.built");
    let built = slow.emitted()[0].record();
    assert!(built.envelope().timestamp() >= slow.run().unwrap().started());
}

#[test]
fn a_crafted_file_with_a_cycle_of_causes_still_gives_a_tree() {
    let trace = TraceId::random();
    let line = |seq: u64, parent: u64| {
        format!(
            r#"{{"name":"flow2.parsed","source":"s","trace_id":"{trace}","timestamp":"2026-12-03T10:00:00Z","sequence":{seq},"cause":{{"event":"flow2.parsed","sequence":{parent}}},"data":{{"n":1}}}}"#
        )
    };
    let text = [line(1, 2), line(2, 1), line(3, 3)].join("\n");
    let imported = import_jsonl(text.as_bytes(), &ImportOptions::new()).unwrap();
    let tree = TraceTree::from_records(&imported.events, trace);
    assert_eq!(tree.len(), 3);
    assert_eq!(tree.events().len(), 3, "every event shown once");
    assert!(!tree.roots().is_empty());
}

#[test]
fn a_cycle_of_causes_cuts_one_link_and_keeps_the_events_that_lead_into_it() {
    let trace = TraceId::random();
    let line = |seq: u64, parent: u64| {
        format!(
            r#"{{"name":"flow2.parsed","source":"s","trace_id":"{trace}","timestamp":"2026-12-03T10:00:00Z","sequence":{seq},"cause":{{"event":"flow2.parsed","sequence":{parent}}},"data":{{"n":1}}}}"#
        )
    };
    // #1 is caused by #2; #2 and #3 cause each other; #4 by #1.
    let text = [line(1, 2), line(2, 3), line(3, 2), line(4, 1)].join("\n");
    let imported = import_jsonl(text.as_bytes(), &ImportOptions::new()).unwrap();
    let tree = TraceTree::from_records(&imported.events, trace);
    let roots: Vec<u64> = tree
        .roots()
        .iter()
        .map(|root| root.record().envelope().sequence())
        .collect();
    assert_eq!(
        roots,
        [2],
        "one link of the cycle cut (the first record's): {tree}"
    );
    let sequences = |nodes: Vec<&sbox_events::history::EventNode>| -> Vec<u64> {
        let mut sequences: Vec<u64> = nodes
            .iter()
            .map(|node| node.record().envelope().sequence())
            .collect();
        sequences.sort();
        sequences
    };
    let root = &tree.roots()[0];
    assert_eq!(sequences(root.children().collect()), [1, 3], "{tree}");
    let first = root
        .children()
        .find(|node| node.record().envelope().sequence() == 1)
        .expect("#1 under #2");
    assert_eq!(sequences(first.children().collect()), [4], "{tree}");
}

#[test]
fn a_cause_is_found_by_its_event_id_when_it_has_one_and_by_name_and_sequence_otherwise() {
    let trace = TraceId::random();
    let line = |name: &str, seq: u64, id: &str, cause: &str| {
        format!(
            r#"{{"name":"{name}","source":"s","trace_id":"{trace}","event_id":"{id}","timestamp":"2026-12-03T10:00:00Z","sequence":{seq},"cause":{cause},"data":{{"n":1}}}}"#
        )
    };
    let local = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    let elsewhere = "0190a1b2-c3d4-7e5f-8a9b-ffffffffffff";
    let text = [
        // #5 of this process.
        line("flow2.fetched", 5, local, "null"),
        // Caused by #5 of another process (its id is not here): a root.
        line(
            "flow2.parsed",
            6,
            "0190a1b2-c3d4-7e5f-8a9b-000000000006",
            &format!(r#"{{"event":"flow2.fetched","sequence":5,"event_id":"{elsewhere}"}}"#),
        ),
        // No id, a cause of another name with the same number: a root.
        line(
            "flow2.built",
            7,
            "0190a1b2-c3d4-7e5f-8a9b-000000000007",
            r#"{"event":"flow2.parsed","sequence":5}"#,
        ),
        // No id, the right name and number: a child.
        line(
            "flow2.parsed",
            8,
            "0190a1b2-c3d4-7e5f-8a9b-000000000008",
            r#"{"event":"flow2.fetched","sequence":5}"#,
        ),
    ]
    .join("\n");
    let imported = import_jsonl(text.as_bytes(), &ImportOptions::new()).unwrap();
    let tree = TraceTree::from_records(&imported.events, trace);
    let roots: Vec<u64> = tree
        .roots()
        .iter()
        .map(|r| r.record().envelope().sequence())
        .collect();
    assert_eq!(roots, [5, 6, 7], "{tree}");
    let children: Vec<u64> = tree.roots()[0]
        .children()
        .map(|c| c.record().envelope().sequence())
        .collect();
    assert_eq!(children, [8]);
}

#[test]
fn handler_runs_stay_within_the_historys_byte_cap() {
    let cap = 8 << 10;
    let bus = EventBus::builder()
        .history(cap)
        .flight_recorder(true)
        .static_handlers(false)
        .build()
        .unwrap();
    // The runs of one event nearly fill the history on their own.
    for _ in 0..60 {
        bus.subscribe_with(named("count"), |_: &Fetched, _: &EventContext| {})
            .detach();
    }
    for n in 0..3 {
        bus.emit(Fetched { n });
        let stats = bus.history().unwrap().stats();
        assert!(
            stats.bytes <= stats.capacity_bytes,
            "after emit {n}: {stats:?}"
        );
        eprintln!(
            "{stats:?} {}",
            bus.history()
                .unwrap()
                .query(&HistoryQuery::new())
                .iter()
                .map(|r| r.handlers().len())
                .sum::<usize>()
        );
    }
    // Replayed and recorded again: the original's runs are not counted twice.
    let bus = EventBus::builder()
        .history(1 << 20)
        .flight_recorder(true)
        .record_replays(true)
        .static_handlers(false)
        .build()
        .unwrap();
    bus.subscribe_with(named("ok"), |_: &Fetched, _: &EventContext| {})
        .detach();
    bus.emit(Fetched { n: 1 });
    let history = bus.history().unwrap();
    let before = history.stats();
    let records = history.query(&HistoryQuery::new());
    for _ in 0..100 {
        bus.replay(&records);
    }
    let after = history.stats();
    let per_record = before.bytes / before.entries.max(1);
    assert!(
        after.bytes <= per_record * (after.entries + 1) + 4096,
        "{before:?} → {after:?}"
    );
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "flow2.checked", validate = positive)]
struct Checked {
    n: u32,
}

fn positive(checked: &Checked) -> Result<(), String> {
    match checked.n {
        0 => Err("`n` is 0".to_owned()),
        _ => Ok(()),
    }
}

#[test]
fn a_refused_emit_has_no_sequence_to_be_caused_by() {
    let bus = EventBus::builder()
        .validate_on_emit(true)
        .static_handlers(false)
        .build()
        .unwrap();
    let refused = bus.emit(Checked { n: 0 });
    assert!(refused.refused().is_some());
    assert_eq!(refused.sequence(), 0);
    let refused = block_on(bus.emit_async(Checked { n: 0 }));
    assert!(refused.refused().is_some());
    assert_eq!(refused.sequence(), 0, "emit_async");
    assert_ne!(block_on(bus.emit_async(Checked { n: 1 })).sequence(), 0);
}

#[test]
fn runs_that_ended_are_kept_when_the_emit_unwinds_or_is_dropped() {
    use sbox_events::FailurePolicy;
    let propagating = EventBus::builder()
        .history(1 << 20)
        .flight_recorder(true)
        .failure_policy(FailurePolicy::Propagate)
        .static_handlers(false)
        .build()
        .unwrap();
    propagating
        .subscribe_with(named("first"), |_: &Fetched, _: &EventContext| {})
        .detach();
    propagating
        .subscribe_with(named("second"), |_: &Fetched, _: &EventContext| {
            panic!("propagated")
        })
        .detach();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        propagating.emit(Fetched { n: 1 });
    }));
    assert!(unwound.is_err(), "Propagate re-raises the panic");
    let kept: Vec<String> = records(&propagating)[0]
        .handlers()
        .iter()
        .map(|run| run.handler().to_owned())
        .collect();
    assert_eq!(kept, ["first"]);

    // An emit_async dropped while its second handler is pending.
    let bus = bus();
    bus.subscribe_with(named("first"), |_: &Parsed, _: &EventContext| {})
        .detach();
    bus.subscribe_async_with(named("stuck"), |_: &Parsed, _: &EventContext| {
        std::future::pending::<()>()
    })
    .detach();
    let mut pending = Box::pin(bus.emit_async(Parsed { n: 2 }));
    assert!(sbox_events_tests::exec::poll_once(pending.as_mut()).is_pending());
    drop(pending);
    let kept: Vec<String> = records(&bus)[0]
        .handlers()
        .iter()
        .map(|run| run.handler().to_owned())
        .collect();
    assert_eq!(kept, ["first"]);
}
