//! `--explain`, `--trace-out` and `--history-out`: the run's traces (one
//! per subscription, and the config's when it has its own) as trees on
//! stdout, as Chrome Trace Event JSON in one file, and their records (with
//! their handler runs) as JSON Lines.

use super::Options;
use sbox_events::EventBus;
use sbox_events::escape::LogSafe;
use sbox_events::history::{HistoryQuery, TraceTree};
use sbox_events::trace::TraceId;
use std::io::Write;
use std::path::Path;

/// Shows the run's traces as `options` ask; `false` if that failed (said
/// on `err`).
pub(super) fn show(
    bus: &EventBus,
    traces: &[TraceId],
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
    let trees: Vec<_> = traces.iter().map(|&id| history.tree(id)).collect();
    if options.explain {
        for tree in &trees {
            let _ = write!(out, "\n{tree}");
        }
    }
    let mut ok = true;
    if let Some(path) = &options.trace_out {
        let json = TraceTree::chrome_trace_of(&trees);
        ok &= write(path, "trace", out, err, |file| {
            file.write_all(json.as_bytes())
        });
    }
    if let Some(path) = &options.history_out {
        ok &= write(path, "history", out, err, |file| {
            for &trace_id in traces {
                let query = HistoryQuery::new().trace_id(trace_id);
                history.export_jsonl(&query, &mut *file)?;
            }
            Ok(())
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
