//! The sboxmgr pipeline on sbox-events: `cargo run --example orchestrator
//! -- [SUBSCRIPTION_FILE] [--output CONFIG_JSON] [--audit-log AUDIT_JSONL]
//! [--max-bytes BYTES] [--prometheus] [--nats URL] [--explain] [--trace-out TRACE_JSON]
//! [--verbose]` (`--help` for details).
//!
//! The program is `sbox_events_examples::orchestrator::run`; this file only
//! parses arguments, sets up logging (stderr) and maps the exit code.

use clap::Parser;
use sbox_events::trace::TraceIdFormat;
use sbox_events_examples::orchestrator::{self, Options};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Bad arguments exit with status 2 and a message; --help and --version
    // print to stdout and exit 0.
    let options = Options::parse();
    let level = if options.verbose {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    // `TraceIdFormat`: lines logged while an event runs outside a trace
    // scope show its trace id too (scopes show theirs through their span).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .event_format(TraceIdFormat::new(
            tracing_subscriber::fmt::format().without_time(),
        ))
        .init();
    let bus = match options.bus() {
        Ok(bus) => bus,
        Err(err) => {
            eprintln!("orchestrator: {err}");
            return ExitCode::from(2);
        }
    };
    let outcome = orchestrator::run(
        &bus,
        &options,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(outcome.exit_code)
}
