//! A short tour of sbox-events: `cargo run --example tour`.
//!
//! The program is `sbox_events_examples::tour::run`; this file only sets up
//! logging (to stderr) and prints the transcript.

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let transcript = sbox_events_examples::tour::run();
    for line in &transcript.lines {
        println!("{line}");
    }
    if transcript.ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!("tour: some step did not behave as documented (see above)");
        ExitCode::FAILURE
    }
}
