//! `#[handler(emits = [...])]`: what a handler declares it emits is in the
//! catalog and its graph, and in debug builds an emit it did not declare is
//! logged once, naming the handler and the event.
//!
//! A binary of its own with a single test: `tracing` caches per-callsite
//! interest globally, and a scoped subscriber (`with_default`) can miss
//! events when other tests hit the same callsites concurrently.

use sbox_events::catalog;
use sbox_events::{Event, EventBus, EventContext, handler};
use sbox_events_tests::CapturedLogs;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "declared.fetched")]
struct Fetched {
    n: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "declared.parsed")]
struct Parsed {
    n: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "declared.alarm")]
struct Alarm {
    n: u32,
}

/// Declares `Parsed`; emits `Alarm` too when `n` is 13.
#[handler(name = "declared::parse", emits = [Parsed])]
fn parse(fetched: &Fetched, ctx: &EventContext) {
    ctx.bus().emit(Parsed { n: fetched.n });
    if fetched.n == 13 {
        ctx.bus().emit(Alarm { n: 13 });
    }
}

/// Declares it emits nothing, and does not.
#[handler(name = "declared::count", emits = [])]
fn count(_: &Parsed) {}

/// Declares it emits nothing, and fails: the bus's own `error.occurred`
/// is not the handler's emit.
#[handler(name = "declared::refuse", emits = [])]
fn refuse(alarm: &Alarm) -> Result<(), String> {
    Err(format!("alarm {}", alarm.n))
}

/// Declares nothing: never checked.
#[handler(name = "declared::loose")]
fn loose(parsed: &Parsed, ctx: &EventContext) {
    if parsed.n == 13 {
        ctx.bus().emit(Alarm { n: 13 });
    }
}

#[test]
fn declared_emits_are_cataloged_drawn_and_checked_in_debug_builds() {
    let catalog = catalog::catalog();
    let handler = |name: &str| {
        catalog
            .events
            .iter()
            .flat_map(|e| &e.handlers)
            .find(|h| h.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in the catalog"))
    };
    assert_eq!(
        handler("declared::parse").emits,
        Some(vec!["declared.parsed"])
    );
    assert_eq!(handler("declared::count").emits, Some(vec![]));
    assert_eq!(handler("declared::loose").emits, None);
    let text = catalog.render_text();
    assert!(
        text.contains("-> declared::parse (priority 0, in declared_emits) emits declared.parsed"),
        "{text}"
    );
    assert!(text.contains("emits nothing"), "{text}");

    // The graph: declared.fetched → parse → declared.parsed → count, loose.
    let index = |name: &str| catalog.events.iter().position(|e| e.name == name).unwrap();
    let (fetched, parsed) = (index("declared.fetched"), index("declared.parsed"));
    let mermaid = catalog.to_mermaid();
    assert!(mermaid.starts_with("flowchart LR\n"));
    assert!(
        mermaid.contains(&format!("    e{fetched} --> h{fetched}_0\n")),
        "{mermaid}"
    );
    assert!(
        mermaid.contains(&format!("    h{fetched}_0 --> e{parsed}\n")),
        "{mermaid}"
    );
    assert!(
        mermaid.contains(&format!(
            "    h{fetched}_0[\"declared::parse<br/>declared_emits · priority 0 · sync\"]\n"
        )),
        "{mermaid}"
    );
    let dot = catalog.to_dot();
    assert!(dot.starts_with("digraph catalog {"), "{dot}");
    assert!(
        dot.contains(&format!("    h{fetched}_0 -> e{parsed};\n")),
        "{dot}"
    );
    assert!(dot.trim_end().ends_with('}'));

    // The check: an undeclared emit is a warning, once per pair.
    let captured = CapturedLogs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let bus = EventBus::new();
        for n in [1, 13, 13, 2] {
            bus.emit(Fetched { n });
        }
    });
    let logs = captured.text();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("does not declare"))
        .collect();
    if cfg!(debug_assertions) {
        assert_eq!(warnings.len(), 1, "{logs}");
        assert!(warnings[0].contains("handler=declared::parse"), "{logs}");
        assert!(warnings[0].contains("event=\"declared.alarm\""), "{logs}");
    } else {
        assert!(warnings.is_empty(), "release builds do not check: {logs}");
    }
}
