//! Two processes, one trace: the orchestrator forwards its events to a real
//! NATS server (`--nats`), and the audit service, a process of its own,
//! receives them and writes its audit log; the run's trace id is the same
//! in both outputs and in the service's audit records.

use sbox_events_tests::nats::Server;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// An example binary next to this test's (`cargo test` builds them).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is not built: run this test with `cargo test -p sbox-events-examples` \
         (without `--test`), which builds the examples first",
        path.display()
    );
    path
}

#[test]
#[ignore = "needs nats-server"]
fn the_orchestrator_and_the_audit_service_share_one_trace_over_nats() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let service_log = dir.path().join("service-audit.jsonl");
    let mut service = Command::new(example("audit_service"))
        .args(["--nats", &server.url(), "--count", "9", "--idle-exit", "60"])
        .arg("--audit-log")
        .arg(&service_log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the audit service");
    let mut service_out = BufReader::new(service.stdout.take().unwrap()).lines();
    let first = service_out.next().expect("a line").expect("text");
    assert!(
        first.starts_with("audit_service: receiving from"),
        "{first}"
    );

    let run = Command::new(example("orchestrator"))
        .args(["--nats", &server.url(), "--no-sing-box"])
        .arg("--output")
        .arg(dir.path().join("config.json"))
        .arg("--audit-log")
        .arg(dir.path().join("audit.jsonl"))
        .arg("--nats-spool")
        .arg(dir.path().join("spool.jsonl"))
        .output()
        .expect("run the orchestrator");
    let out = String::from_utf8(run.stdout).unwrap();
    assert!(
        run.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains(": 9 events forwarded"), "{out}");
    let trace = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("trace"))
        .map(str::trim)
        .expect("the orchestrator prints its trace")
        .to_owned();

    let received: Vec<String> = service_out.by_ref().take(9).map(|l| l.unwrap()).collect();
    let status = service.wait().expect("the service ends after nine events");
    assert!(status.success(), "{received:#?}");
    for name in [
        "subscription.fetched",
        "subscription.parsed",
        "subscription.validated",
        "config.built",
        "config.validated",
        "config.exported",
        "subscription.processed",
    ] {
        let line = received
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not received: {received:#?}"));
        assert!(
            line.contains(&format!("trace {trace} from orchestrator-")),
            "{line}"
        );
    }
    let audit = std::fs::read_to_string(&service_log).unwrap();
    let in_trace = audit
        .lines()
        .filter(|l| l.contains(&format!(r#""trace_id":"{trace}""#)))
        .filter(|l| l.contains(r#""remote":"orchestrator-"#))
        .count();
    assert_eq!(in_trace, 7, "{audit}");
}

#[test]
fn the_audit_service_says_why_its_log_cannot_be_opened() {
    use sbox_events_examples::audit_service::{self, Options};
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        nats: "nats://127.0.0.1:1".into(),
        audit_log: dir.path().join("no such dir").join("audit.jsonl"),
        durable: "audit-service".into(),
        count: None,
        idle_exit: None,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = audit_service::run(&options, &mut out, &mut err);
    assert_eq!(outcome.exit_code, 2);
    let err = String::from_utf8(err).expect("UTF-8");
    assert!(
        err.starts_with("audit_service: cannot open audit log "),
        "{err}"
    );
    assert!(
        err.contains(&std::io::Error::from(std::io::ErrorKind::NotFound).to_string())
            || err.contains("No such file or directory"),
        "the OS's reason: {err}"
    );
}
