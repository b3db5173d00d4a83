//! Reads a history exported as JSON Lines (or an audit log) and shows one
//! trace: what caused what, as indented text, a Mermaid flowchart or Chrome
//! Trace Event JSON.
//!
//! A history written with the flight recorder on
//! (`orchestrator --history-out`, [`History::export_jsonl`]) has each
//! handler's outcome and duration; an audit log has the events and their
//! causes only. Only event types linked into this program can be read:
//! lines of other types are skipped, and said so. An application with its
//! own events builds the same tool in a few lines from
//! [`import_jsonl`] and [`TraceTree`].
//!
//! [`History::export_jsonl`]: sbox_events::history::History::export_jsonl

use clap::{Parser, ValueEnum};
use sbox_events::escape::LogSafe;
use sbox_events::history::{ImportOptions, RecordedEvent, TraceTree, import_jsonl};
use sbox_events::trace::TraceId;
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::PathBuf;

/// What to show.
#[derive(Clone, Debug, PartialEq, Eq, Parser)]
#[command(
    name = "flow",
    version,
    about = "Shows one trace of an sbox-events history (JSON Lines): what caused what, \
             with each handler's outcome and duration"
)]
#[command(
    after_help = "Without --trace, lists the file's traces (or shows the only one). \
                        Exit status: 0 shown; 1 no such trace; 2 bad arguments, or the \
                        file (or none of its lines) cannot be read."
)]
pub struct Options {
    /// The history (or audit log), one event per line
    #[arg(value_name = "HISTORY_JSONL")]
    pub file: PathBuf,
    /// The trace to show: its id, or the start of it (8 hex digits or more)
    #[arg(long, value_name = "ID", value_parser = trace_arg)]
    pub trace: Option<String>,
    /// How to show it
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write it there instead of to stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The renderings of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Indented text, aligned, with durations
    Text,
    /// A Mermaid flowchart
    Mermaid,
    /// Chrome Trace Event JSON (chrome://tracing, ui.perfetto.dev)
    Chrome,
}

/// Runs the tool; returns the exit status.
pub fn run(options: &Options, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let shown = LogSafe(&options.file.display().to_string()).to_string();
    let file = match std::fs::File::open(&options.file) {
        Ok(file) => file,
        Err(e) => {
            let _ = writeln!(err, "flow: cannot read {shown}: {e}");
            return 2;
        }
    };
    let imported = match import_jsonl(BufReader::new(file), &ImportOptions::new().lenient(true)) {
        Ok(imported) => imported,
        Err(e) => {
            let _ = writeln!(err, "flow: {shown}: {e}");
            return 2;
        }
    };
    for skipped in imported.skipped.iter().take(5) {
        let _ = writeln!(err, "flow: {shown}: skipped {skipped}");
    }
    if imported.skipped.len() > 5 {
        let more = imported.skipped.len() - 5;
        let _ = writeln!(err, "flow: {shown}: {more} more lines skipped");
    }
    if imported.events.is_empty() && !imported.skipped.is_empty() {
        let _ = writeln!(err, "flow: {shown}: no event could be read");
        return 2;
    }
    let traces = traces(&imported.events);
    let chosen = match (&options.trace, traces.len()) {
        (Some(wanted), _) => match find(&traces, wanted) {
            Ok(id) => id,
            Err((status, problem)) => {
                let _ = writeln!(err, "flow: {problem}");
                return status;
            }
        },
        (None, 1) => traces[0].id,
        (None, _) => {
            let _ = writeln!(out, "{} traces in {shown}:", traces.len());
            for trace in &traces {
                let _ = writeln!(
                    out,
                    "  {}  {:>5} events  first {}",
                    trace.id, trace.events, trace.first
                );
            }
            let _ = writeln!(out, "show one with --trace ID");
            return 0;
        }
    };
    let tree = TraceTree::from_records(&imported.events, chosen);
    let text = match options.format {
        Format::Text => tree.to_string(),
        Format::Mermaid => tree.to_mermaid(),
        Format::Chrome => tree.to_chrome_trace() + "\n",
    };
    match &options.output {
        None => {
            let _ = out.write_all(text.as_bytes());
            0
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => 0,
            Err(e) => {
                let path = LogSafe(&path.display().to_string()).to_string();
                let _ = writeln!(err, "flow: cannot write {path}: {e}");
                2
            }
        },
    }
}

/// One trace of the file.
struct Trace {
    id: TraceId,
    events: usize,
    first: &'static str,
}

/// The file's traces, in the order they start.
fn traces(records: &[RecordedEvent]) -> Vec<Trace> {
    let mut by_id: BTreeMap<TraceId, (usize, Trace)> = BTreeMap::new();
    for (at, record) in records.iter().enumerate() {
        let entry = by_id.entry(record.envelope().trace_id()).or_insert((
            at,
            Trace {
                id: record.envelope().trace_id(),
                events: 0,
                first: record.name(),
            },
        ));
        entry.1.events += 1;
    }
    let mut traces: Vec<(usize, Trace)> = by_id.into_values().collect();
    traces.sort_by_key(|(at, _)| *at);
    traces.into_iter().map(|(_, trace)| trace).collect()
}

/// `--trace`: a trace id, or 8 or more of its first hex digits.
fn trace_arg(text: &str) -> Result<String, String> {
    let wanted = text.trim().to_ascii_lowercase();
    match wanted.len() >= 8 && wanted.len() <= 32 && wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => Ok(wanted),
        false => Err("give a trace id (32 hex digits) or its first 8 or more".to_owned()),
    }
}

/// The trace `wanted` names: a full id, or the unique trace starting so.
/// Fails with the exit status: 2 for a malformed id, 1 for no such trace.
fn find(traces: &[Trace], wanted: &str) -> Result<TraceId, (u8, String)> {
    let shown = LogSafe(wanted).to_string();
    let wanted = trace_arg(wanted).map_err(|problem| (2, format!("--trace {shown}: {problem}")))?;
    if let Ok(id) = TraceId::parse(&wanted) {
        return match traces.iter().any(|t| t.id == id) {
            true => Ok(id),
            false => Err((1, format!("no trace {id} in the file"))),
        };
    }
    let matching: Vec<TraceId> = traces
        .iter()
        .map(|t| t.id)
        .filter(|id| id.to_string().starts_with(&wanted))
        .collect();
    match matching.as_slice() {
        [id] => Ok(*id),
        [] => Err((1, format!("no trace starting with {shown} in the file"))),
        _ => Err((
            1,
            format!(
                "{} traces start with {shown}: give more digits",
                matching.len()
            ),
        )),
    }
}
