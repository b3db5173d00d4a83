//! The sboxmgr pipeline on sbox-events: `cargo run --example orchestrator
//! [-- SUBSCRIPTION_FILE] [--output CONFIG_JSON] [--audit-log AUDIT_JSONL]
//! [--prometheus] [--verbose]`.
//!
//! The program is `sbox_events_examples::orchestrator::run`; this file only
//! parses arguments, sets up logging (stderr) and maps the exit code.

use sbox_events::EventBus;
use sbox_events_examples::orchestrator::{self, Options};
use std::process::ExitCode;

fn main() -> ExitCode {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message == orchestrator::USAGE => {
            println!("{message}"); // asked for with --help
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let level = if options.verbose {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .without_time()
        .init();
    let bus = EventBus::new();
    let outcome = orchestrator::run(
        &bus,
        &options,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(outcome.exit_code)
}
