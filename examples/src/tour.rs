//! The tour: define an event, register a handler, subscribe, emit inside a
//! trace scope, nest an emit, and watch a failing handler get isolated.

use sbox_events::events::{ErrorOccurred, SubscriptionFetched, SubscriptionProcessed};
use sbox_events::trace::{self, TraceId};
use sbox_events::{EmitOptions, Event, EventBus, EventContext, SubscribeOptions, handler};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// Our own event, next to the built-in ones of `sbox_events::events`.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "server.probed", source = "prober")]
pub struct ServerProbed {
    /// Which server.
    pub server: String,
    /// Round-trip time in milliseconds.
    pub rtt_ms: u64,
}

/// A link-time handler: runs on every bus, no registration call needed. It
/// handles the tour's own event only, so it stays out of other programs'
/// way (every example links this library).
#[handler(priority = 10, emits = [])]
fn flag_slow_servers(probe: &ServerProbed, ctx: &EventContext) {
    if probe.rtt_ms > 1_000 {
        tracing::warn!(server = %probe.server, rtt_ms = probe.rtt_ms, depth = ctx.depth(), "slow server");
    }
}

/// What the tour printed, and whether every step behaved as documented.
pub struct Transcript {
    /// The lines to show.
    pub lines: Vec<String>,
    /// Checks that failed (empty when all is well).
    pub problems: Vec<String>,
}

impl Transcript {
    /// True when every step behaved as documented.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs the tour on a fresh bus.
pub fn run() -> Transcript {
    let bus = EventBus::new();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut problems = Vec::new();
    let say = {
        let lines = Arc::clone(&lines);
        move |line: String| lines.lock().unwrap_or_else(|e| e.into_inner()).push(line)
    };

    // Run-time subscriptions: closures, dropped with their guard. This one
    // reacts to a fetch by probing the servers: nested emits, same trace.
    let prober = bus.subscribe(|fetched: &SubscriptionFetched, ctx: &EventContext| {
        tracing::info!(url = %fetched.url, bytes = fetched.content_length, "fetched; probing");
        for (server, rtt_ms) in [("de-1", 42), ("nl-2", 1_250)] {
            ctx.bus().emit(ServerProbed {
                server: server.into(),
                rtt_ms,
            });
        }
    });
    let slow_guard = bus.subscribe_with(
        SubscribeOptions::new().name("latency_guard"),
        |probe: &ServerProbed, _: &EventContext| {
            if probe.rtt_ms > 1_000 {
                return Err(format!("{} answered in {} ms", probe.server, probe.rtt_ms));
            }
            Ok(())
        },
    );
    let probes = {
        let say = say.clone();
        bus.subscribe(move |probe: &ServerProbed, ctx: &EventContext| {
            say(format!(
                "  [{}] depth {} {}: {} ms",
                ctx.trace_id().short(),
                ctx.depth(),
                probe.server,
                probe.rtt_ms
            ));
        })
    };
    let errors = {
        let say = say.clone();
        bus.subscribe(move |err: &ErrorOccurred, ctx: &EventContext| {
            say(format!(
                "  [{}] error.occurred: {} failed on {}: {}",
                ctx.trace_id().short(),
                err.handler,
                err.event,
                err.error
            ));
        })
    };

    // One trace for the whole subscription run.
    let id = TraceId::random();
    say(format!("trace {id} (short {})", id.short()));
    let fetched = trace::with_trace_id(id, || {
        let fetched = bus.emit_with(
            SubscriptionFetched {
                url: "https://example.com/sub.txt".into(),
                content_length: 2_048,
                content_type: "text/plain".into(),
                cache_hit: false,
                duration_ms: 35,
            },
            EmitOptions::new().metadata("request", "tour-1"),
        );
        bus.emit(SubscriptionProcessed {
            url: "https://example.com/sub.txt".into(),
            servers_count: 2,
            success: true,
            duration_ms: 120,
        });
        fetched
    });
    say(format!(
        "{}: {} handler(s), trace {}",
        fetched.event(),
        fetched.delivered(),
        fetched.trace_id().short()
    ));
    if fetched.trace_id() != id {
        problems.push("the emit did not carry the scope's trace id".to_owned());
    }

    // The failure was isolated: the probe handler still saw both servers.
    let probed = lines
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains(" ms") && l.contains("depth 1"))
        .count();
    if probed != 2 {
        problems.push(format!("expected 2 nested probes at depth 1, saw {probed}"));
    }

    // Outside any scope each emit gets its own trace.
    let a = bus.emit(ServerProbed {
        server: "de-1".into(),
        rtt_ms: 40,
    });
    let b = bus.emit(ServerProbed {
        server: "de-1".into(),
        rtt_ms: 41,
    });
    say(format!(
        "unscoped emits: traces {} and {} (distinct: {})",
        a.trace_id().short(),
        b.trace_id().short(),
        a.trace_id() != b.trace_id()
    ));
    if a.trace_id() == b.trace_id() {
        problems.push("unscoped emits shared a trace".to_owned());
    }

    // Unsubscribing is dropping the guard; the #[handler] stays.
    drop((prober, slow_guard, probes, errors));
    let after = bus.emit(ServerProbed {
        server: "nl-2".into(),
        rtt_ms: 9_999,
    });
    let left: Vec<String> = bus
        .handlers::<ServerProbed>()
        .iter()
        .map(|h| h.name().to_owned())
        .collect();
    say(format!(
        "after unsubscribing: {} handler(s): {}",
        after.delivered(),
        left.join(", ")
    ));
    if !after.is_ok() || after.delivered() != 1 {
        problems.push(format!(
            "expected only the #[handler] after unsubscribing: {after}"
        ));
    }

    let mut lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));
    lines.extend(problems.iter().map(|p| format!("problem: {p}")));
    Transcript { lines, problems }
}
