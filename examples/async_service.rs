//! An async service with sbox-events and tokio: `cargo run --example async_service`.
//!
//! The program is `sbox_events_examples::async_service::run`; this file sets
//! up logging (to stderr, with each line's trace id) and prints the transcript.

use sbox_events::trace::TraceIdFormat;
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .event_format(TraceIdFormat::new(
            tracing_subscriber::fmt::format()
                .with_target(false)
                .without_time(),
        ))
        .init();
    match sbox_events_examples::async_service::run() {
        Ok(transcript) => {
            for line in &transcript.lines {
                println!("{line}");
            }
            if transcript.ok() {
                return ExitCode::SUCCESS;
            }
            for problem in &transcript.problems {
                eprintln!("async_service: {problem}");
            }
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("async_service: {err}");
            ExitCode::FAILURE
        }
    }
}
