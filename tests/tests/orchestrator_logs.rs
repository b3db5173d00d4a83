//! What the orchestrator writes to the log for a subscription full of bad
//! lines: the first few, then one summary line, each escaped.
//!
//! A binary of its own with a single test: it installs a `tracing`
//! subscriber, whose per-callsite interest is cached process-wide.

use sbox_events::EventBus;
use sbox_events_examples::orchestrator::{self, Options, WARNINGS_SHOWN};
use sbox_events_tests::CapturedLogs;
use std::path::Path;

#[test]
fn dropped_lines_are_summarized_after_the_first_few_and_escaped() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("orchestrator-logs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("garbage.txt");
    let mut list = String::from("trojan://pw@192.0.2.1:443#ok\n");
    list.push_str("vless://\u{1b}[2Jfake@192.0.2.1:443?type=x\u{1b}[31m\n");
    for i in 0..10_000 {
        list.push_str(&format!("garbage line {i}\n"));
    }
    std::fs::write(&path, list).expect("write");
    let options = Options {
        subscriptions: vec![path],
        output: dir.join("config.json"),
        audit_log: dir.join("audit.jsonl"),
        // What is written must not depend on a sing-box on PATH.
        no_sing_box: true,
        ..Options::defaults()
    };

    let captured = CapturedLogs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = tracing::subscriber::with_default(subscriber, || {
        orchestrator::run(&EventBus::new(), &options, &mut out, &mut err)
    });
    assert_eq!(outcome.exit_code, 0);
    let logs = captured.text();
    let dropped: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("dropping entry"))
        .collect();
    assert_eq!(dropped.len(), WARNINGS_SHOWN, "{logs}");
    assert!(
        logs.contains(&format!(
            "{} more entries dropped (the first {WARNINGS_SHOWN} are shown above)",
            10_001 - WARNINGS_SHOWN
        )),
        "{logs}"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "escape sequences reach the log: {logs:?}"
    );
    assert!(dropped[0].contains(r"\u{1b}[2Jfake"), "{}", dropped[0]);
    let stdout = String::from_utf8(out).expect("utf-8");
    assert!(stdout.contains("1 kept, 10001 invalid dropped"), "{stdout}");
}
