//! The orchestrator's command line: parsed strictly, with clear errors.

use clap::Parser;
use sbox_events_examples::orchestrator::Options;
use std::path::PathBuf;

#[test]
fn arguments_are_parsed_strictly() {
    let args = |list: &[&str]| {
        Options::try_parse_from(std::iter::once("orchestrator").chain(list.iter().copied()))
    };
    let options = args(&[
        "my.txt",
        "--output",
        "c.json",
        "--audit-log",
        "a.jsonl",
        "--max-bytes",
        "2M",
        "--prometheus",
    ])
    .expect("valid");
    assert_eq!(options.subscriptions, [PathBuf::from("my.txt")]);
    assert_eq!(
        (options.output, options.audit_log),
        (PathBuf::from("c.json"), PathBuf::from("a.jsonl"))
    );
    assert_eq!(options.max_bytes, 2 << 20);
    assert!(options.prometheus);
    let defaults = args(&[]).expect("defaults");
    assert_eq!(defaults, Options::defaults());
    let typo = args(&["--outptu", "x"]).expect_err("typo").to_string();
    assert!(typo.contains("unexpected argument '--outptu'"), "{typo}");
    assert!(typo.contains("--output"), "suggests the right flag: {typo}");
    let missing = args(&["--output"]).expect_err("missing").to_string();
    assert!(
        missing.contains("a value is required for '--output"),
        "{missing}"
    );
    let two = args(&["a", "https://example.com/sub", "--strict"]).expect("several");
    assert_eq!(
        two.subscriptions,
        [PathBuf::from("a"), PathBuf::from("https://example.com/sub")]
    );
    assert!(two.strict);
    let zero = args(&["--timeout", "0s"]).expect_err("zero").to_string();
    assert!(zero.contains("give a positive duration"), "{zero}");
    let stale = args(&["--max-stale", "3d", "--connect-timeout", "5"]).expect("durations");
    assert_eq!(stale.max_stale, std::time::Duration::from_secs(3 * 86_400));
    assert_eq!(stale.connect_timeout, std::time::Duration::from_secs(5));
    let size = args(&["--max-bytes", "lots"])
        .expect_err("size")
        .to_string();
    assert!(size.contains("\"lots\" is not a size"), "{size}");
    let help = args(&["--help"]).expect_err("help");
    assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    assert!(
        help.to_string()
            .contains("Exit status: 0 every subscription converted"),
        "{help}"
    );
}
