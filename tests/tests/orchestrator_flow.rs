//! The orchestrator's run, seen: `--explain`, `--trace-out` and
//! `--history-out` on a real run, and the `flow` example reading what it
//! wrote back.

use sbox_events::flight::RunOutcome;
use sbox_events::history::{EventNode, ImportOptions, TraceTree, import_jsonl};
use sbox_events_examples::flow;
use sbox_events_examples::orchestrator::{self, Options};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("orchestrator-flow")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

struct Run {
    exit_code: u8,
    stdout: String,
    tree: TraceTree,
    dir: PathBuf,
}

/// Runs the orchestrator on `subscription`, explained and traced, on the
/// bus its options ask for.
fn explained(dir: &Path, subscription: &Path) -> Run {
    let options = Options {
        subscriptions: vec![subscription.to_owned()],
        output: dir.join("config.json"),
        audit_log: dir.join("audit.jsonl"),
        explain: true,
        trace_out: Some(dir.join("trace.json")),
        history_out: Some(dir.join("history.jsonl")),
        // What is written must not depend on a sing-box on PATH.
        no_sing_box: true,
        ..Options::defaults()
    };
    let bus = options.bus().expect("bus");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = orchestrator::run(&bus, &options, &mut out, &mut err);
    let trace_id = outcome.trace_id.expect("the run had a trace");
    let tree = bus.history().expect("a history").tree(trace_id);
    Run {
        exit_code: outcome.exit_code,
        stdout: String::from_utf8(out).expect("utf-8"),
        tree,
        dir: dir.to_owned(),
    }
}

/// The chain of a run: each event, then the one it caused.
fn chain(tree: &TraceTree) -> Vec<&EventNode> {
    assert_eq!(tree.roots().len(), 1, "one root: {tree}");
    let mut chain = vec![&tree.roots()[0]];
    while let Some(next) = chain[chain.len() - 1].children().next() {
        chain.push(next);
    }
    chain
}

fn handler_names(node: &EventNode) -> Vec<&str> {
    node.handlers().iter().map(|h| h.name()).collect()
}

#[test]
fn a_successful_run_is_a_chain_of_stages_each_with_its_handlers() {
    let dir = scratch("success");
    let run = explained(&dir, &Options::sample_subscription());
    assert_eq!(run.exit_code, 0, "{}", run.stdout);

    let chain = chain(&run.tree);
    let names: Vec<&str> = chain.iter().map(|n| n.record().name()).collect();
    assert_eq!(
        names,
        [
            "subscription.fetched",
            "subscription.parsed",
            "subscription.validated",
            "config.built",
            "config.validated",
            "config.exported",
            "subscription.processed",
        ]
    );
    assert_eq!(run.tree.len(), chain.len(), "nothing outside the chain");
    // Each stage was caused by the one before it.
    for pair in chain.windows(2) {
        let cause = pair[1].record().envelope().cause().expect("a cause");
        assert_eq!(cause.sequence(), pair[0].record().envelope().sequence());
    }
    let handlers: Vec<Vec<&str>> = chain.iter().map(|n| handler_names(n)).collect();
    assert_eq!(
        handlers,
        [
            vec!["audit", "metrics::totals", "metrics::count"],
            vec!["metrics::count"],
            vec!["metrics::count"],
            vec!["metrics::totals", "metrics::count"],
            vec!["metrics::count"],
            vec!["audit", "metrics::totals", "metrics::count"],
            vec!["audit", "metrics::totals", "metrics::count"],
        ]
    );
    for node in &chain {
        for handler in node.handlers() {
            let ran = handler.run().expect("the flight recorder was on");
            assert_eq!(ran.outcome(), &RunOutcome::Ok, "{}", handler.name());
        }
    }

    // The text on stdout is the tree, aligned.
    let text = run.tree.to_string();
    assert!(run.stdout.contains(&text), "{}", run.stdout);
    assert!(text.contains("└─ then subscription.parsed"), "{text}");

    // The Chrome trace: one slice per event and per handler call, each
    // handler's inside its event's, all with the trace id.
    let written = std::fs::read_to_string(run.dir.join("trace.json")).expect("trace.json");
    let json: serde_json::Value = serde_json::from_str(&written).expect("valid JSON");
    let slices: Vec<&serde_json::Value> = json["traceEvents"]
        .as_array()
        .expect("traceEvents")
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect();
    let calls: usize = handlers.iter().map(Vec::len).sum();
    assert_eq!(slices.len(), chain.len() + calls, "{written}");
    let trace = run.tree.trace_id().to_string();
    assert!(
        slices
            .iter()
            .all(|s| s["args"]["trace_id"] == trace.as_str())
    );
    for event in slices.iter().filter(|s| s["cat"] == "event") {
        let (start, end) = span(event);
        let inside = slices.iter().filter(|s| {
            s["cat"] == "handler" && s["args"]["sequence"] == event["args"]["sequence"]
        });
        for handler in inside {
            let (s, e) = span(handler);
            assert!(start <= s && e <= end + 0.001, "{handler} outside {event}");
            assert_eq!(handler["args"]["outcome"], "ok");
        }
    }

    // The history file reads back into the same tree.
    let file = std::fs::File::open(run.dir.join("history.jsonl")).expect("history");
    let imported = import_jsonl(std::io::BufReader::new(file), &ImportOptions::new())
        .expect("a clean history");
    let again = TraceTree::from_records(&imported.events, run.tree.trace_id());
    assert_eq!(again.to_string(), text);
}

fn span(slice: &serde_json::Value) -> (f64, f64) {
    let ts = slice["ts"].as_f64().expect("ts");
    (ts, ts + slice["dur"].as_f64().expect("dur"))
}

#[test]
fn a_failed_run_ends_in_the_failure_and_its_error() {
    let dir = scratch("failure");
    let bad = dir.join("no-servers.txt");
    std::fs::write(&bad, "trojan://pw@host.example.com:0\n").expect("write");
    let run = explained(&dir, &bad);
    assert_eq!(run.exit_code, 1, "{}", run.stdout);
    let names: Vec<&str> = chain(&run.tree).iter().map(|n| n.record().name()).collect();
    assert_eq!(
        names,
        [
            "subscription.fetched",
            "subscription.parsed",
            "subscription.validated",
            "subscription.failed",
            "error.occurred",
        ]
    );
    assert!(
        run.stdout.contains("└─ then error.occurred"),
        "{}",
        run.stdout
    );
}

fn flow_run(args: &[&str]) -> (u8, String, String) {
    use clap::Parser;
    let options =
        flow::Options::try_parse_from(std::iter::once("flow").chain(args.iter().copied()))
            .expect("arguments");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = flow::run(&options, &mut out, &mut err);
    (
        status,
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8"),
    )
}

#[test]
fn the_flow_tool_shows_a_written_history() {
    let dir = scratch("flow-tool");
    let first = explained(&dir, &Options::sample_subscription());
    let history = dir.join("history.jsonl");
    let history_arg = history.to_str().expect("utf-8 path");
    let trace = first.tree.trace_id().to_string();

    // One trace: shown without --trace.
    let (status, out, err) = flow_run(&[history_arg]);
    assert_eq!((status, err.as_str()), (0, ""));
    assert_eq!(out, first.tree.to_string());

    // Mermaid by a prefix of the id: the chain as dotted edges.
    let (status, out, _) = flow_run(&[history_arg, "--trace", &trace[..10], "--format", "mermaid"]);
    assert_eq!(status, 0);
    assert!(out.starts_with("flowchart TD\n"), "{out}");
    for i in 0..6 {
        assert!(
            out.contains(&format!("    e{i} -.-> e{}\n", i + 1)),
            "{out}"
        );
    }

    // Chrome JSON to a file.
    let chrome = dir.join("chrome.json");
    let (status, _, _) = flow_run(&[
        history_arg,
        "--format",
        "chrome",
        "--output",
        chrome.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(status, 0);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&chrome).expect("written")).expect("JSON");
    assert!(json["traceEvents"].as_array().is_some_and(|a| a.len() > 7));

    // Two traces: listed; an unknown one is status 1; a short prefix too.
    let mut both = std::fs::read(&history).expect("history");
    let second = explained(&scratch("flow-tool-2"), &Options::sample_subscription());
    both.extend(std::fs::read(second.dir.join("history.jsonl")).expect("second history"));
    // A line of an event type this program does not know, with a terminal
    // escape in its name: skipped, and said so escaped.
    both.extend_from_slice(
        b"{\"name\":\"evil.\\u001b[31mred\",\"trace_id\":\"0123456789abcdef0123456789abcdef\",\"data\":{}}\n",
    );
    let merged = dir.join("merged.jsonl");
    std::fs::write(&merged, both).expect("write");
    let merged_arg = merged.to_str().expect("utf-8 path");
    let (status, out, err) = flow_run(&[merged_arg]);
    assert_eq!(status, 0, "{err}");
    assert!(out.starts_with("2 traces in "), "{out}");
    assert!(out.contains(&trace) && out.contains(&second.tree.trace_id().to_string()));
    assert!(
        err.contains("skipped") && !err.contains('\u{1b}'),
        "{err:?}"
    );
    let (status, _, err) = flow_run(&[merged_arg, "--trace", "ffffffffffff"]);
    assert_eq!(status, 1);
    assert!(err.contains("ffffffffffff"), "{err}");
    let short = <flow::Options as clap::Parser>::try_parse_from([
        "flow",
        merged_arg,
        "--trace",
        &trace[..4],
    ]);
    let short = short.expect_err("too short").to_string();
    assert!(short.contains("its first 8 or more"), "{short}");
    let options = flow::Options {
        file: merged.clone(),
        trace: Some("zz".to_owned()),
        format: flow::Format::Text,
        output: None,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        flow::run(&options, &mut out, &mut err),
        2,
        "a malformed id is a bad argument"
    );

    // A file none of whose lines could be read (another program's events,
    // or not JSON at all): status 2, not an empty list of traces.
    let unreadable = dir.join("unreadable.jsonl");
    std::fs::write(
        &unreadable,
        b"not json\n{\"name\":\"other.event\",\"data\":{}}\n",
    )
    .expect("write");
    let (status, out, err) = flow_run(&[unreadable.to_str().expect("utf-8 path")]);
    assert_eq!((status, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("no event could be read"), "{err}");

    // A file that is not there is status 2.
    let (status, _, err) = flow_run(&[dir.join("nope.jsonl").to_str().expect("utf-8 path")]);
    assert_eq!(status, 2);
    assert!(err.contains("nope.jsonl"), "{err}");
}

/// A tree's text with what changes from run to run (trace ids, sequence
/// numbers, durations) blanked.
fn normalized(text: &str) -> String {
    text.lines()
        .map(|line| {
            line.split(' ')
                .map(|word| {
                    let hex = word.len() == 32 && word.bytes().all(|b| b.is_ascii_hexdigit());
                    let duration = word.starts_with(|c: char| c.is_ascii_digit())
                        && ["ns", "µs", "ms", "s"].iter().any(|u| word.ends_with(u));
                    let sequence = word.starts_with('#');
                    match hex || duration || sequence {
                        true => "_".repeat(word.chars().count()),
                        false => word.to_owned(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_shows_a_real_explained_run() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let start = readme
        .find("```text\ntrace ")
        .expect("the README shows an --explain tree")
        + "```text\n".len();
    let shown = &readme[start..start + readme[start..].find("```").expect("end")];
    let dir = scratch("readme");
    let run = explained(&dir, &Options::sample_subscription());
    let real = run.tree.to_string();
    // Durations may differ in width; compare the words of each line.
    let words = |text: &str| -> Vec<Vec<String>> {
        normalized(text)
            .lines()
            .map(|l| l.split_whitespace().map(|w| w.replace('_', "")).collect())
            .collect()
    };
    assert_eq!(
        words(shown),
        words(&real),
        "README:\n{shown}\nreal:\n{real}"
    );
}
