//! An audit service in a process of its own: `cargo run --example
//! audit_service -- --nats nats://127.0.0.1:4222 --audit-log audit.jsonl`.
//!
//! It receives the events other processes forward to NATS (the
//! orchestrator with `--nats`), emits them on its own bus with their
//! original trace id, event id and timestamp (marked remote), and an
//! [`AuditLogger`] on that bus writes every one to a JSON Lines file. Each
//! event is also printed with its trace id, so the trace of a run can be
//! followed from the orchestrator's output to this one's.

use clap::Parser;
use sbox_events::audit::AuditLogger;
use sbox_events::escape::LogSafe;
use sbox_events::{AnyEvent, EventBus, EventContext, EventSelector};
use sbox_events_nats::NatsBridge;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// Receives events from NATS and writes them to an audit log.
#[derive(Clone, Debug, PartialEq, Eq, Parser)]
#[command(
    name = "audit_service",
    version,
    about = "Receives sbox-events from NATS JetStream and writes them to a JSON Lines audit log"
)]
#[command(after_help = "Exit status: 0 done; 1 audit records were lost; 2 bad arguments or setup.")]
pub struct Options {
    /// The NATS server
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The JSON Lines audit log (appended to)
    #[arg(long, value_name = "AUDIT_JSONL")]
    pub audit_log: PathBuf,
    /// The durable consumer's name (services sharing it share the work)
    #[arg(long, value_name = "NAME", default_value = "audit-service")]
    pub durable: String,
    /// Stop after this many events [default: run until stopped]
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds without an event [default: never]
    #[arg(long, value_name = "SECONDS")]
    pub idle_exit: Option<u64>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// 0 done; 1 audit records were lost; 2 bad arguments or setup.
    pub exit_code: u8,
    /// Events received.
    pub received: u64,
}

/// Runs the service: prints one line per received event to `out`,
/// problems to `err`.
pub fn run(options: &Options, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    let setup_failed = |err: &mut dyn Write, message: String| {
        let _ = writeln!(err, "audit_service: {}", LogSafe(&message));
        Outcome {
            exit_code: 2,
            received: 0,
        }
    };
    let bus = match EventBus::builder().static_handlers(false).build() {
        Ok(bus) => bus,
        Err(e) => return setup_failed(err, e.to_string()),
    };
    let audit = match AuditLogger::builder()
        .events(EventSelector::all())
        .jsonl(&options.audit_log)
        .attach(&bus)
    {
        Ok(audit) => audit,
        Err(e) => return setup_failed(err, format!("{e}: {}", e.io_error())),
    };
    // Each received event, as a line for the terminal (after the audit
    // logger, which runs at a higher priority).
    let (seen, lines) = mpsc::channel::<String>();
    let seen = std::sync::Mutex::new(seen);
    let _print = bus.subscribe_any(
        EventSelector::all(),
        move |event: &AnyEvent<'_>, ctx: &EventContext<'_>| {
            let line = format!(
                "{} trace {} from {}",
                event.name(),
                ctx.trace_id(),
                LogSafe(ctx.remote().unwrap_or("here"))
            );
            let _ = seen.lock().map(|seen| seen.send(line));
        },
    );
    let bridge = match NatsBridge::builder(options.nats.as_str())
        .consume(options.durable.as_str(), EventSelector::all())
        .start(&bus)
    {
        Ok(bridge) => bridge,
        Err(e) => return setup_failed(err, e.to_string()),
    };
    let _ = writeln!(
        out,
        "audit_service: receiving from {} into {}",
        LogSafe(&options.nats),
        LogSafe(&options.audit_log.display().to_string())
    );
    let _ = out.flush();
    let idle = options.idle_exit.map(Duration::from_secs);
    let mut received = 0;
    while options.count.is_none_or(|count| received < count) {
        let line = match idle {
            Some(idle) => match lines.recv_timeout(idle) {
                Ok(line) => line,
                Err(_) => break,
            },
            None => match lines.recv() {
                Ok(line) => line,
                Err(_) => break,
            },
        };
        received += 1;
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    drop(bridge);
    let lost = audit.write_errors();
    let _ = writeln!(
        out,
        "audit_service: {received} events, {} audit records, {lost} lost",
        audit.records()
    );
    Outcome {
        exit_code: u8::from(lost > 0),
        received,
    }
}
