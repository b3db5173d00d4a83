//! An audit service fed by NATS: `cargo run --example audit_service --
//! --nats URL --audit-log AUDIT_JSONL [--count N] [--idle-exit SECONDS]`
//! (`--help` for details).
//!
//! The program is `sbox_events_examples::audit_service::run`; this file only
//! parses arguments, sets up logging (stderr) and maps the exit code.

use clap::Parser;
use sbox_events::trace::TraceIdFormat;
use sbox_events_examples::audit_service::{self, Options};
use std::process::ExitCode;

fn main() -> ExitCode {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .event_format(TraceIdFormat::new(
            tracing_subscriber::fmt::format().without_time(),
        ))
        .init();
    let outcome = audit_service::run(&options, &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(outcome.exit_code)
}
