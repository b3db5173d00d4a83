//! The orchestrator example, run end to end on a real bus: success on the
//! bundled sample, and every failure path.

use sbox_events::trace::TraceId;
use sbox_events::{AnyEvent, EventBus, EventContext, EventSelector};
use sbox_events_examples::orchestrator::{self, Options};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A fresh directory under the target dir, unique per test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("orchestrator")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

type Events = Arc<Mutex<Vec<(String, TraceId, serde_json::Value)>>>;

struct Run {
    exit_code: u8,
    trace_id: Option<TraceId>,
    stdout: String,
    stderr: String,
    events: Vec<(String, TraceId, serde_json::Value)>,
    options: Options,
}

fn run(dir: &Path, subscription: &Path) -> Run {
    let options = Options {
        subscription: subscription.to_owned(),
        output: dir.join("out/config.json"),
        audit_log: dir.join("out/audit.jsonl"),
        prometheus: true,
        verbose: false,
    };
    let bus = EventBus::new();
    let events: Events = Arc::default();
    let e = Arc::clone(&events);
    let _recorder = bus.subscribe_any(
        EventSelector::all(),
        move |event: &AnyEvent, ctx: &EventContext| {
            let fields = event.to_json().map_err(|err| err.to_string())?;
            e.lock()
                .expect("events")
                .push((event.name().to_owned(), ctx.trace_id(), fields));
            Ok::<(), String>(())
        },
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = orchestrator::run(&bus, &options, &mut out, &mut err);
    let events = events.lock().expect("events").clone();
    Run {
        exit_code: outcome.exit_code,
        trace_id: outcome.trace_id,
        stdout: String::from_utf8(out).expect("utf-8"),
        stderr: String::from_utf8(err).expect("utf-8"),
        events,
        options,
    }
}

impl Run {
    fn names(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|(name, _, _)| name.as_str())
            .collect()
    }

    /// The events of the subscription's trace (all but application.*).
    fn traced(&self) -> Vec<&(String, TraceId, serde_json::Value)> {
        self.events
            .iter()
            .filter(|(name, _, _)| !name.starts_with("application."))
            .collect()
    }

    fn event(&self, name: &str) -> &serde_json::Value {
        &self
            .events
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .2
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.options.audit_log)
            .expect("audit log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each audit line is JSON"))
            .collect()
    }
}

#[test]
fn the_sample_subscription_becomes_a_sing_box_config() {
    let dir = scratch("success");
    let run = run(&dir, &Options::sample_subscription());
    assert_eq!(run.exit_code, 0, "{}", run.stderr);
    assert_eq!(
        run.names(),
        [
            "application.started",
            "subscription.fetched",
            "subscription.parsed",
            "subscription.validated",
            "config.built",
            "config.validated",
            "config.exported",
            "subscription.processed",
            "application.stopped",
        ]
    );
    let trace_id = run.trace_id.expect("a trace");
    assert!(
        run.traced().iter().all(|(_, t, _)| *t == trace_id),
        "one trace for the subscription"
    );
    assert_eq!(
        run.event("subscription.fetched")["content_type"],
        "text/plain"
    );
    assert_eq!(run.event("subscription.parsed")["format"], "base64");
    assert_eq!(run.event("subscription.parsed")["servers_count"], 9);
    assert_eq!(run.event("subscription.validated")["valid_count"], 6);
    assert_eq!(run.event("subscription.validated")["invalid_count"], 3);
    assert_eq!(run.event("subscription.processed")["servers_count"], 6);

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run.options.output).expect("config"))
            .expect("JSON");
    let outbounds = config["outbounds"].as_array().expect("outbounds");
    let kinds: Vec<&str> = outbounds
        .iter()
        .map(|o| o["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        kinds,
        [
            "selector",
            "shadowsocks",
            "shadowsocks",
            "vless",
            "vless",
            "trojan",
            "vmess",
            "direct"
        ]
    );
    assert_eq!(
        outbounds[0]["outbounds"].as_array().expect("members").len(),
        6
    );
    assert_eq!(outbounds[3]["tag"], "Frankfurt VLESS");
    assert_eq!(outbounds[3]["transport"]["path"], "/edge");
    assert_eq!(config["route"]["final"], "proxy");
    let size = std::fs::metadata(&run.options.output)
        .expect("config")
        .len();
    assert_eq!(run.event("config.exported")["file_size"], size);

    let audit = run.audit_lines();
    let audited: Vec<&str> = audit
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(audited, ["config.exported", "subscription.processed"]);
    assert!(audit.iter().all(|r| r["trace_id"] == trace_id.to_string()));

    assert!(
        run.stdout.contains("servers    6 kept, 3 invalid dropped"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("trace      {trace_id}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("metrics    processed=1 servers=6 failed=0 exported=1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("sbox_events_total{event=\"config.built\"} 1\n"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

fn assert_fails(run: &Run, error_type: &str, message: &str) {
    assert_eq!(run.exit_code, 1);
    assert!(run.stderr.contains(message), "stderr: {}", run.stderr);
    let trace_id = run.trace_id.expect("a trace");
    let failed = run.event("subscription.failed");
    assert_eq!(failed["error_type"], error_type);
    assert!(failed["error"].as_str().expect("error").contains(message));
    let error = run.event("error.occurred");
    assert_eq!(
        (error["error_type"].as_str(), error["handler"].as_str()),
        (Some(error_type), Some("orchestrator"))
    );
    assert!(
        run.traced().iter().all(|(_, t, _)| *t == trace_id),
        "one trace: {:?}",
        run.names()
    );
    assert!(!run.names().contains(&"subscription.processed"));
    assert!(!run.names().contains(&"config.exported"));
    let audit = run.audit_lines();
    let audited: Vec<&str> = audit
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(audited, ["subscription.failed", "error.occurred"]);
    assert!(audit.iter().all(|r| r["trace_id"] == trace_id.to_string()));
    assert!(run.stdout.contains("failed=1"), "{}", run.stdout);
}

#[test]
fn a_missing_file_fails_cleanly() {
    let dir = scratch("missing");
    let run = run(&dir, &dir.join("nope.txt"));
    assert_fails(&run, "io", "nope.txt: No such file or directory");
    assert_eq!(run.names()[1], "subscription.failed", "nothing was fetched");
}

#[test]
fn an_empty_file_fails_cleanly() {
    let dir = scratch("empty");
    let path = dir.join("empty.txt");
    std::fs::write(&path, "\n  \n").expect("write");
    assert_fails(&run(&dir, &path), "empty", "the subscription is empty");
}

#[test]
fn garbage_fails_cleanly() {
    let dir = scratch("garbage");
    let path = dir.join("garbage.txt");
    std::fs::write(&path, "%%% definitely not a subscription %%%").expect("write");
    assert_fails(
        &run(&dir, &path),
        "format",
        "neither a list of proxy URIs nor base64",
    );
}

#[test]
fn a_list_without_valid_servers_fails_and_keeps_the_previous_config() {
    let dir = scratch("no-servers");
    let path = dir.join("bad.txt");
    std::fs::write(&path, "vless://nope@h:1\ntrojan://pw@host:0\n").expect("write");
    let previous = dir.join("out/config.json");
    std::fs::create_dir_all(previous.parent().expect("dir")).expect("dir");
    std::fs::write(&previous, "{\"previous\": true}\n").expect("write");

    let run = run(&dir, &path);
    assert_fails(
        &run,
        "no_servers",
        "no valid servers among 2 entries (first problem: line 1: invalid user id",
    );
    assert_eq!(run.event("subscription.validated")["invalid_count"], 2);
    assert_eq!(
        std::fs::read_to_string(&previous).expect("config"),
        "{\"previous\": true}\n"
    );
}

#[test]
fn an_unwritable_audit_log_is_a_setup_error() {
    let dir = scratch("unwritable");
    let mut options = Options::defaults();
    options.audit_log = dir.join("is-a-dir");
    std::fs::create_dir_all(&options.audit_log).expect("dir");
    options.output = dir.join("config.json");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = orchestrator::run(&EventBus::new(), &options, &mut out, &mut err);
    assert_eq!(outcome.exit_code, 2);
    let err = String::from_utf8(err).expect("utf-8");
    assert!(
        err.starts_with("orchestrator: cannot open audit log ") && err.contains("is-a-dir"),
        "{err}"
    );
}

#[test]
fn arguments_are_parsed_strictly() {
    let args = |list: &[&str]| Options::from_args(list.iter().map(|s| s.to_string()));
    let options = args(&[
        "my.txt",
        "--output",
        "c.json",
        "--audit-log",
        "a.jsonl",
        "--prometheus",
    ])
    .expect("valid");
    assert_eq!(options.subscription, PathBuf::from("my.txt"));
    assert_eq!(
        (options.output, options.audit_log),
        (PathBuf::from("c.json"), PathBuf::from("a.jsonl"))
    );
    assert!(options.prometheus);
    assert_eq!(
        args(&[]).expect("defaults").subscription,
        Options::sample_subscription()
    );
    assert!(
        args(&["--outptu", "x"])
            .expect_err("typo")
            .starts_with("unknown option \"--outptu\"")
    );
    assert!(
        args(&["--output"])
            .expect_err("missing")
            .starts_with("--output needs a path")
    );
    assert!(
        args(&["a", "b"])
            .expect_err("two")
            .starts_with("unexpected argument \"b\"")
    );
}
