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
        subscriptions: vec![subscription.to_owned()],
        output: dir.join("out/config.json"),
        audit_log: dir.join("out/audit.jsonl"),
        max_bytes: orchestrator::DEFAULT_MAX_BYTES,
        prometheus: true,
        // What is written must not depend on a sing-box on PATH.
        no_sing_box: true,
        ..Options::defaults()
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
    assert_eq!(run.event("subscription.parsed")["servers_count"], 11);
    assert_eq!(run.event("subscription.validated")["valid_count"], 8);
    assert_eq!(run.event("subscription.validated")["invalid_count"], 3);
    assert_eq!(run.event("subscription.processed")["servers_count"], 8);

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
            "shadowsocks",
            "shadowsocks",
            "vless",
            "vless",
            "trojan",
            "vmess",
            "hysteria2",
            "tuic",
            "selector",
            "direct"
        ]
    );
    assert_eq!(
        outbounds[8]["outbounds"].as_array().expect("members").len(),
        8
    );
    assert_eq!(
        outbounds[6]["server_ports"],
        serde_json::json!(["443:443", "20000:30000"])
    );
    assert_eq!(outbounds[6]["obfs"]["type"], "salamander");
    assert_eq!(outbounds[7]["congestion_control"], "bbr");
    assert_eq!(outbounds[2]["tag"], "Frankfurt VLESS");
    assert_eq!(outbounds[2]["transport"]["path"], "/edge");
    assert_eq!(outbounds[3]["tls"]["reality"]["short_id"], "6ba85179");
    assert_eq!(config["route"]["final"], "proxy");
    assert_eq!(
        orchestrator::singbox::check_config(&config),
        Vec::<String>::new()
    );
    let size = std::fs::metadata(&run.options.output)
        .expect("config")
        .len();
    assert_eq!(run.event("config.exported")["file_size"], size);

    let audit = run.audit_lines();
    let audited: Vec<&str> = audit
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        audited,
        [
            "subscription.fetched",
            "config.exported",
            "subscription.processed"
        ]
    );
    assert!(audit.iter().all(|r| r["trace_id"] == trace_id.to_string()));

    assert!(
        run.stdout.contains("servers    8 kept, 3 invalid dropped"),
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
            .contains("metrics    processed=1 servers=8 failed=0 exported=1"),
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
    // The fetch is audited when it got that far.
    let fetched = usize::from(run.names().contains(&"subscription.fetched"));
    assert_eq!(audited[..fetched], ["subscription.fetched"][..fetched]);
    assert_eq!(
        audited[fetched..],
        ["subscription.failed", "error.occurred"]
    );
    assert!(audit.iter().all(|r| r["trace_id"] == trace_id.to_string()));
    assert!(run.stdout.contains("failed=1"), "{}", run.stdout);
}

#[test]
fn a_missing_file_fails_cleanly() {
    let dir = scratch("missing");
    let run = run(&dir, &dir.join("nope.txt"));
    assert_fails(
        &run,
        "io",
        "nope.txt: cannot read: No such file or directory",
    );
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
fn a_list_of_provider_notes_alone_has_no_servers() {
    let dir = scratch("notes-only");
    let path = dir.join("expired.txt");
    std::fs::write(&path, "STATUS=expired on 2026-11-30\nREMARKS=Example\n").expect("write");
    assert_fails(
        &run(&dir, &path),
        "no_servers",
        "no valid servers among 0 entries",
    );
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
    std::fs::write(
        &path,
        "vless://6b1e3a0c-8e2b-4c59-9f2d-1a2b3c4d5e6f@h.example.com:1?type=kcp\n\
         trojan://pw@host.example.com:0\n",
    )
    .expect("write");
    let previous = dir.join("out/config.json");
    std::fs::create_dir_all(previous.parent().expect("dir")).expect("dir");
    std::fs::write(&previous, "{\"previous\": true}\n").expect("write");

    let run = run(&dir, &path);
    assert_fails(
        &run,
        "no_servers",
        "no valid servers among 2 entries (first problem: line 1: `type=kcp`",
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
    options.no_sing_box = true;
    options.audit_log = dir.join("is-a-dir");
    std::fs::create_dir_all(&options.audit_log).expect("dir");
    options.output = dir.join("config.json");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = orchestrator::run(&EventBus::new(), &options, &mut out, &mut err);
    assert_eq!(outcome.exit_code, 2);
    let err = String::from_utf8(err).expect("utf-8");
    assert!(
        err.starts_with("orchestrator: cannot open audit log ")
            && err.contains("is-a-dir for appending: Is a directory"),
        "{err}"
    );
}

fn run_with(options: &Options) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = orchestrator::run(&EventBus::new(), options, &mut out, &mut err);
    (
        outcome.exit_code,
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8"),
    )
}

fn options_in(dir: &Path, subscription: &Path) -> Options {
    Options {
        subscriptions: vec![subscription.to_owned()],
        output: dir.join("out/config.json"),
        audit_log: dir.join("out/audit.jsonl"),
        // What is written must not depend on a sing-box on PATH.
        no_sing_box: true,
        ..Options::defaults()
    }
}

#[test]
fn the_output_may_not_be_the_audit_log() {
    let dir = scratch("same-file");
    let mut options = options_in(&dir, &Options::sample_subscription());
    options.audit_log = dir.join("out/../out/config.json");
    std::fs::create_dir_all(dir.join("out")).expect("dir");
    let (code, _, err) = run_with(&options);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--output and --audit-log are the same file"),
        "{err}"
    );
}

#[test]
fn an_output_directory_that_cannot_be_made_is_a_pipeline_failure() {
    let dir = scratch("no-output-dir");
    std::fs::write(dir.join("a-file"), "").expect("write");
    let mut options = options_in(&dir, &Options::sample_subscription());
    options.output = dir.join("a-file/sub/config.json");
    let (code, out, err) = run_with(&options);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot write"), "{err}");
    assert!(out.contains("failed=1"), "{out}");
    let audit = std::fs::read_to_string(&options.audit_log).expect("audit");
    assert!(audit.contains("\"subscription.failed\"") && audit.contains("\"error.occurred\""));
}

#[cfg(unix)]
#[test]
fn a_planted_symlink_next_to_the_output_is_never_followed() {
    let dir = scratch("symlink");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious\n").expect("write");
    std::fs::create_dir_all(dir.join("out")).expect("dir");
    for name in ["config.json.tmp", ".config.json.tmp"] {
        std::os::unix::fs::symlink(&victim, dir.join("out").join(name)).expect("symlink");
    }
    let (code, _, err) = run_with(&options_in(&dir, &Options::sample_subscription()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    let config = std::fs::read_to_string(dir.join("out/config.json")).expect("config");
    let config: serde_json::Value = serde_json::from_str(&config).expect("JSON");
    assert_eq!(
        orchestrator::singbox::check_config(&config),
        Vec::<String>::new()
    );
}

#[test]
fn concurrent_runs_leave_a_whole_config() {
    let dir = scratch("concurrent");
    let options = options_in(&dir, &Options::sample_subscription());
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let mut options = options.clone();
            options.audit_log = dir.join(format!("out/audit-{i}.jsonl"));
            std::thread::spawn(move || run_with(&options))
        })
        .collect();
    for run in runs {
        let (code, _, err) = run.join().expect("run");
        assert_eq!(code, 0, "{err}");
    }
    let config = std::fs::read_to_string(&options.output).expect("config");
    let config: serde_json::Value = serde_json::from_str(&config).expect("one whole config");
    assert_eq!(
        orchestrator::singbox::check_config(&config),
        Vec::<String>::new()
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("out"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn lost_audit_records_are_reported_and_fail_the_run() {
    let dir = scratch("audit-full");
    let mut options = options_in(&dir, &Options::sample_subscription());
    options.audit_log = PathBuf::from("/dev/full");
    let (code, out, err) = run_with(&options);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("(0 records this run, 3 LOST)"), "{out}");
    assert!(
        err.contains("3 audit record(s) could not be written"),
        "{err}"
    );
    assert!(
        dir.join("out/config.json").exists(),
        "the config itself was written"
    );
}

#[test]
fn oversized_input_is_refused_with_a_clear_error() {
    let dir = scratch("too-large");
    let mut options = options_in(&dir, &Options::sample_subscription());
    options.max_bytes = 100;
    let (code, _, err) = run_with(&options);
    assert_eq!(code, 1);
    assert!(
        err.contains("larger than the limit of 100 bytes (raise it with --max-bytes)"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn an_endless_device_is_refused_not_read_forever() {
    let dir = scratch("dev-zero");
    let mut options = options_in(&dir, Path::new("/dev/zero"));
    options.max_bytes = 1 << 20;
    let (code, out, err) = run_with(&options);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("/dev/zero"), "{err}");
    // A plain list that never ends hits the size cap instead.
    let endless = dir.join("endless.txt");
    let line = "trojan://pw@192.0.2.1:443#x\n";
    std::fs::write(&endless, line.repeat((2 << 20) / line.len())).expect("write");
    let (code, _, err) = run_with(&options_in(&dir, &endless).with_max_bytes(1 << 20));
    assert_eq!(code, 1);
    assert!(err.contains("larger than the limit"), "{err}");
}

trait WithMaxBytes {
    fn with_max_bytes(self, bytes: u64) -> Self;
}

impl WithMaxBytes for Options {
    fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }
}

#[test]
fn a_bom_and_lenient_base64_are_accepted() {
    let dir = scratch("bom");
    let list = "trojan://pw@192.0.2.1:443#a\nvless://6b1e3a0c-8e2b-4c59-9f2d-1a2b3c4d5e6f@192.0.2.2:443#b\n";
    use base64::Engine;
    let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(list);
    for (name, body) in [
        ("plain.txt", format!("\u{feff}{list}")),
        ("base64.txt", format!("\u{feff}{unpadded}\n")),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write");
        let run = run(&dir, &path);
        assert_eq!(run.exit_code, 0, "{name}: {}", run.stderr);
        assert_eq!(
            run.event("subscription.validated")["valid_count"],
            2,
            "{name}"
        );
    }
}

#[test]
fn many_servers_with_one_name_get_unique_tags() {
    let dir = scratch("same-names");
    let path = dir.join("same.txt");
    let mut list = String::new();
    for i in 0..5000 {
        list.push_str(&format!(
            "trojan://pw@192.0.2.{}:{}#Same\n",
            i % 250,
            1000 + i
        ));
    }
    list.push_str("trojan://pw@192.0.2.1:443#Same%20%232\n"); // collides with a suffix
    list.push_str("trojan://pw@192.0.2.1:443#proxy\n"); // the selector's own tag
    std::fs::write(&path, list).expect("write");
    let run = run(&dir, &path);
    assert_eq!(run.exit_code, 0, "{}", run.stderr);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run.options.output).expect("config"))
            .expect("JSON");
    assert_eq!(
        orchestrator::singbox::check_config(&config),
        Vec::<String>::new()
    );
    let tags: Vec<&str> = config["outbounds"]
        .as_array()
        .expect("outbounds")
        .iter()
        .map(|o| o["tag"].as_str().expect("tag"))
        .collect();
    assert_eq!(&tags[..3], ["Same", "Same #2", "Same #3"]);
    assert_eq!(tags[5000], "Same #2 #2");
    assert_eq!(tags[5001], "proxy #2");
}

#[test]
fn provider_notes_are_neither_servers_nor_invalid_entries() {
    // Shadowrocket's notes (`STATUS=`: traffic, expiry; `REMARKS=`: name),
    // in a plain list (not read as base64 for them) or inside a base64 one,
    // are not entries; lines that only look like them are invalid entries.
    let dir = scratch("status-line");
    let notes = "STATUS=1.2 GB of 100 GB; expires 2027-01-01\nREMARKS = Example Provider\n";
    let links = "trojan://pw@192.0.2.1:443#a\ntrojan://pw@192.0.2.2:443#b\n";
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{notes}{links}"));
    for (name, body, format, entries, invalid) in [
        ("plain.txt", format!("{notes}{links}"), "plain", 2, 0),
        ("base64.txt", encoded, "base64", 2, 0),
        (
            "lookalike.txt",
            format!("STATUS\n{links}NOTE=x\n"),
            "plain",
            4,
            2,
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write");
        let run = run(&dir, &path);
        assert_eq!(run.exit_code, 0, "{name}: {}", run.stderr);
        let parsed = run.event("subscription.parsed");
        let validated = run.event("subscription.validated");
        assert_eq!(parsed["format"], format, "{name}");
        assert_eq!(parsed["servers_count"], entries, "{name}");
        assert_eq!(validated["valid_count"], 2, "{name}");
        assert_eq!(validated["invalid_count"], invalid, "{name}");
    }
}
