//! Several subscriptions in one run: each in its own trace, one config
//! from those that succeeded, `--strict`, and a subscription that fails
//! half-way leaving nothing of itself in the config.

use base64::Engine;
use sbox_events::trace::TraceId;
use sbox_events::{AnyEvent, EventBus, EventContext, EventSelector};
use sbox_events_examples::orchestrator::{self, Options};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("orchestrator-many")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

struct Run {
    exit_code: u8,
    stdout: String,
    stderr: String,
    /// Event names by trace, in the order emitted.
    traces: BTreeMap<TraceId, Vec<(String, serde_json::Value)>>,
}

fn run(dir: &Path, subscriptions: &[PathBuf], strict: bool) -> Run {
    let options = Options {
        subscriptions: subscriptions.to_vec(),
        strict,
        output: dir.join("config.json"),
        audit_log: dir.join("audit.jsonl"),
        no_cache: true,
        // What is written must not depend on a sing-box on PATH.
        no_sing_box: true,
        ..Options::defaults()
    };
    let bus = EventBus::builder()
        .static_handlers(false)
        .build()
        .expect("bus");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let events = Arc::clone(&seen);
    let _recorder = bus.subscribe_any(
        EventSelector::all(),
        move |event: &AnyEvent, ctx: &EventContext| {
            let data = event.to_json().map_err(|e| e.to_string())?;
            events
                .lock()
                .expect("events")
                .push((ctx.trace_id(), event.name().to_owned(), data));
            Ok::<(), String>(())
        },
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = orchestrator::run(&bus, &options, &mut out, &mut err);
    let mut traces: BTreeMap<TraceId, Vec<(String, serde_json::Value)>> = BTreeMap::new();
    for (trace, name, data) in seen.lock().expect("events").drain(..) {
        if !name.starts_with("application.") {
            traces.entry(trace).or_default().push((name, data));
        }
    }
    Run {
        exit_code: outcome.exit_code,
        stdout: String::from_utf8(out).expect("utf-8"),
        stderr: String::from_utf8(err).expect("utf-8"),
        traces,
    }
}

impl Run {
    /// The names of each trace's events, sorted by the first event's URL
    /// (the config's own trace, which has none, last).
    fn chains(&self) -> Vec<(String, Vec<&str>)> {
        let mut chains: Vec<(String, Vec<&str>)> = self
            .traces
            .values()
            .map(|events| {
                let url = events[0].1["url"].as_str().unwrap_or("~config").to_owned();
                (url, events.iter().map(|(n, _)| n.as_str()).collect())
            })
            .collect();
        chains.sort();
        chains
    }
}

/// The config's outbound tags, checked unique.
fn tags(config: &Path) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config).expect("config")).expect("JSON");
    let tags: Vec<String> = json["outbounds"]
        .as_array()
        .expect("outbounds")
        .iter()
        .map(|o| o["tag"].as_str().expect("tag").to_owned())
        .collect();
    assert_eq!(
        tags.iter().collect::<HashSet<_>>().len(),
        tags.len(),
        "unique tags: {tags:?}"
    );
    tags
}

#[test]
fn each_subscription_has_its_trace_and_the_config_takes_those_that_succeeded() {
    let dir = scratch("partial");
    let sample = Options::sample_subscription();
    let missing = dir.join("missing.txt");
    let run = run(
        &dir,
        &[sample.clone(), missing.clone(), sample.clone()],
        false,
    );
    assert_eq!(run.exit_code, 4, "{}{}", run.stdout, run.stderr);
    let sample_url = sample.display().to_string();
    let missing_url = missing.display().to_string();
    let ok = vec![
        "subscription.fetched",
        "subscription.parsed",
        "subscription.validated",
        "subscription.processed",
    ];
    assert_eq!(
        run.chains(),
        [
            (sample_url.clone(), ok.clone()),
            (sample_url.clone(), ok),
            (
                missing_url.clone(),
                vec!["subscription.failed", "error.occurred"]
            ),
            (
                "~config".to_owned(),
                vec!["config.built", "config.validated", "config.exported"]
            ),
        ]
    );
    // Both copies of the sample are in, under unique tags: 8 + 8 servers,
    // the selector and `direct`.
    assert_eq!(tags(&dir.join("config.json")).len(), 16 + 2);
    assert!(run.stderr.contains("missing.txt"), "{}", run.stderr);
    assert!(run.stdout.contains("  failed     "), "{}", run.stdout);
    assert!(
        run.stdout.contains("processed=2 servers=16 failed=1"),
        "{}",
        run.stdout
    );
}

#[test]
fn strict_writes_nothing_when_one_fails() {
    let dir = scratch("strict");
    std::fs::write(dir.join("config.json"), "{\"previous\": true}\n").expect("write");
    let sample = Options::sample_subscription();
    let run = run(&dir, &[sample, dir.join("missing.txt")], true);
    assert_eq!(run.exit_code, 1);
    assert_eq!(
        std::fs::read_to_string(dir.join("config.json")).expect("kept"),
        "{\"previous\": true}\n"
    );
    let failures: Vec<&str> = run
        .traces
        .values()
        .flatten()
        .filter(|(name, _)| name == "subscription.failed")
        .map(|(_, data)| data["error_type"].as_str().expect("type"))
        .collect();
    assert_eq!(failures.len(), 2, "the good one ends failed too");
    assert!(failures.contains(&"strict"), "{failures:?}");
    assert!(
        run.stdout.contains("config     not written"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_subscription_failing_half_way_leaves_nothing_of_itself() {
    let dir = scratch("half-way");
    // Well over one read buffer of good links, then a character that is
    // not base64: its servers are written before the error is seen.
    let mut list = String::new();
    for i in 0..2_000 {
        list.push_str(&format!(
            "trojan://secret{i}@h{i}.example.com:443?sni=h{i}.example.com#half-{i}\n"
        ));
    }
    let mut body = base64::engine::general_purpose::STANDARD.encode(list);
    body.push_str("%%%");
    let broken = dir.join("broken.txt");
    std::fs::write(&broken, body).expect("write");
    let sample = Options::sample_subscription();
    let run = run(&dir, &[broken, sample], false);
    assert_eq!(run.exit_code, 4, "{}{}", run.stdout, run.stderr);
    let tags = tags(&dir.join("config.json"));
    assert!(
        tags.iter().all(|t| !t.starts_with("half-")),
        "the broken subscription's servers were taken back"
    );
    assert_eq!(tags.len(), 8 + 2);
}

#[test]
fn when_every_subscription_fails_no_config_is_written() {
    let dir = scratch("all-fail");
    let run = run(&dir, &[dir.join("a.txt"), dir.join("b.txt")], false);
    assert_eq!(run.exit_code, 1);
    assert!(!dir.join("config.json").exists());
    assert!(
        run.stdout.contains("no subscription could be converted"),
        "{}",
        run.stdout
    );
}
