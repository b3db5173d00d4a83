//! Failures, refusals and audit records are logged through `tracing` with
//! the trace id.
//!
//! A binary of its own with a single test: `tracing` caches per-callsite
//! interest globally, and a scoped subscriber (`with_default`) can miss
//! events when other tests hit the same callsites concurrently.

use sbox_events::audit::{self, AuditLogger};
use sbox_events::events::SubscriptionFailed;
use sbox_events::trace::{self, TraceId};
use sbox_events::{Event, EventBus, EventContext, SubscribeOptions};
use sbox_events_tests::CapturedLogs;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.job_done")]
struct JobDone {
    id: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.echo")]
struct Echo;

fn logs_of(f: impl FnOnce()) -> String {
    let captured = CapturedLogs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    captured.text()
}

#[test]
fn failures_and_refusals_are_logged_with_the_trace_id() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .max_depth(2)
        .build()
        .unwrap();
    let _erring = bus.subscribe_with(
        SubscribeOptions::new().name("erring").priority(1),
        |job: &JobDone, _: &EventContext| Err(format!("job {} has no owner", job.id)),
    );
    let _panicking = bus.subscribe_with(
        SubscribeOptions::new().name("panicking"),
        |_: &JobDone, _: &EventContext| panic!("disk on fire"),
    );
    let _echo = bus.subscribe(|_: &Echo, ctx: &EventContext| {
        ctx.bus().emit(Echo);
    });

    let id = TraceId::random();
    let logs = logs_of(|| {
        trace::with_trace_id(id, || bus.emit(JobDone { id: 5 }));
    });
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("event handler failed"))
        .collect();
    assert_eq!(lines.len(), 2, "{logs}");
    for line in &lines {
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains(&format!("trace_id={id}")), "{line}");
        assert!(line.contains("event=\"test.job_done\""), "{line}");
    }
    assert!(
        lines[0].contains("handler=erring") && lines[0].contains("error=job 5 has no owner"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("handler=panicking") && lines[1].contains("kind=Panic"),
        "{}",
        lines[1]
    );

    let logs = logs_of(|| {
        bus.emit(Echo);
    });
    assert!(
        logs.contains("WARN")
            && logs.contains("emit refused: an emit at nesting depth 2 is over the limit: max_depth 2 allows depths 0 to 1"),
        "{logs}"
    );

    // The audit logger writes each record through `tracing` too.
    let _audit = AuditLogger::attach(&bus);
    let logs = logs_of(|| {
        bus.emit(SubscriptionFailed {
            url: "u".into(),
            error: "gone".into(),
            error_type: "io".into(),
        });
    });
    let line = logs
        .lines()
        .find(|l| l.contains(audit::TARGET))
        .unwrap_or_else(|| panic!("no audit line: {logs}"));
    assert!(
        line.contains(" INFO ") && line.contains("event=\"subscription.failed\""),
        "{line}"
    );
    assert!(
        line.contains(r#"data={"error":"gone","error_type":"io","url":"u"}"#),
        "{line}"
    );
    assert!(line.contains("trace_id="), "{line}");

    // Text from data is escaped before it reaches the log: an error message
    // (or a handler name) cannot move the cursor, color the terminal or
    // forge a log line of its own.
    let forged =
        "bad input\n2026-11-27T00:00:00Z  INFO sbox_events: all good\x1b[2J\r\u{9b}31m\u{202e}";
    let _forger = bus.subscribe_with(
        SubscribeOptions::new().name("name\nwith\x1b[31mescapes"),
        move |_: &Forge, _: &EventContext| Err::<(), _>(forged),
    );
    let logs = logs_of(|| {
        bus.emit(Forge);
    });
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("event handler failed"))
        .collect();
    assert_eq!(failed.len(), 1, "one line, not a forged second one: {logs}");
    assert!(!logs.contains("\n2026-11-27T00:00:00Z"), "{logs}");
    for control in ['\x1b', '\r', '\u{9b}', '\u{202e}'] {
        assert!(
            !logs.contains(control),
            "{control:?} reached the log: {logs:?}"
        );
    }
    let line = failed[0];
    assert!(
        line.contains(r"error=bad input\n2026-11-27T00:00:00Z  INFO sbox_events: all good\u{1b}[2J\r\u{9b}31m\u{202e}"),
        "{line}"
    );
    assert!(
        line.contains(r"handler=name\nwith\u{1b}[31mescapes"),
        "{line}"
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.forge")]
struct Forge;
