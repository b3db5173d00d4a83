//! Shows one trace of a history exported as JSON Lines: `cargo run
//! --example flow -- HISTORY_JSONL [--trace ID] [--format text|mermaid|chrome]
//! [--output FILE]` (`--help` for details). Make one with `cargo run
//! --example orchestrator -- --history-out run.jsonl`.
//!
//! The program is `sbox_events_examples::flow::run`; this file only parses
//! arguments and maps the exit code.

use clap::Parser;
use sbox_events_examples::flow::{self, Options};
use std::process::ExitCode;

fn main() -> ExitCode {
    let options = Options::parse();
    let status = flow::run(&options, &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(status)
}
