//! `--explain`, `--trace-out` and `--history-out`: the run's trace as a
//! tree on stdout, as Chrome Trace Event JSON in a file, and the run's
//! records (with their handler runs) as JSON Lines.

use super::Options;
use sbox_events::EventBus;
use sbox_events::escape::LogSafe;
use sbox_events::history::HistoryQuery;
use sbox_events::trace::TraceId;
use std::io::Write;
use std::path::Path;

/// Shows the run's trace as `options` ask; `false` if that failed (said on
/// `err`).
pub(super) fn show(
    bus: &EventBus,
    trace_id: TraceId,
    options: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> bool {
    if !options.records_flow() {
        return true;
    }
    let Some(history) = bus.history() else {
        let _ = writeln!(
            err,
            "orchestrator: --explain and --trace-out need a bus with a history and the \
             flight recorder (Options::bus makes one)"
        );
        return false;
    };
    let tree = history.tree(trace_id);
    if options.explain {
        let _ = write!(out, "\n{tree}");
    }
    let mut ok = true;
    if let Some(path) = &options.trace_out {
        ok &= write(path, "trace", out, err, |file| {
            file.write_all(tree.to_chrome_trace().as_bytes())
        });
    }
    if let Some(path) = &options.history_out {
        let query = HistoryQuery::new().trace_id(trace_id);
        ok &= write(path, "history", out, err, |file| {
            history.export_jsonl(&query, file).map(drop)
        });
    }
    ok
}

/// Writes a file with `fill`, and says where it went (or why not).
fn write(
    path: &Path,
    what: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> bool {
    let shown = LogSafe(&path.display().to_string()).to_string();
    let written = std::fs::File::create(path).and_then(|file| {
        let mut file = std::io::BufWriter::new(file);
        fill(&mut file)?;
        file.flush()
    });
    match written {
        Ok(()) => {
            let _ = writeln!(out, "  {what:<10} {shown}");
            true
        }
        Err(e) => {
            let _ = writeln!(err, "orchestrator: cannot write the {what} {shown}: {e}");
            false
        }
    }
}
