//! A [`TraceTree`] shown three ways: indented text for a terminal (its
//! `Display`), a Mermaid flowchart, and Chrome Trace Event JSON.

use super::tree::{EventNode, HandlerNode, TraceTree};
use crate::escape::{LogSafe, mermaid_label};
use crate::flight::HandlerRun;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime};

/// One line of the text: the tree drawing and label, then (for a handler
/// that was recorded) its outcome, duration and message.
struct Line {
    left: String,
    run: Option<(&'static str, String, String)>,
}

impl fmt::Display for TraceTree {
    /// Indented text, like `tree`: each event (`name #sequence`), under it
    /// its handlers with outcome and duration in aligned columns, under each
    /// handler what it emitted. Text from the records is escaped.
    ///
    /// ```text
    /// trace 4bf92f3577b34da6a3ce929d0e0e4736 (3 events)
    /// subscription.fetched #1
    /// └─ parse                    ok          1.20ms
    ///    └─ subscription.parsed #2
    ///       └─ validate           error     310.0µs  no servers
    ///          └─ error.occurred #3
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        for root in &self.roots {
            event_lines(root, "", "", &mut lines);
        }
        let width = lines
            .iter()
            .filter(|l| l.run.is_some())
            .map(|l| l.left.chars().count())
            .max()
            .unwrap_or(0);
        writeln!(f, "trace {} ({} events)", self.trace_id, self.events)?;
        for line in lines {
            match line.run {
                None => writeln!(f, "{}", line.left)?,
                Some((outcome, duration, message)) => {
                    let text = format!(
                        "{:<width$}  {outcome:<8} {duration:>9}  {message}",
                        line.left
                    );
                    writeln!(f, "{}", text.trim_end())?;
                }
            }
        }
        Ok(())
    }
}

fn event_lines(node: &EventNode, head: &str, rest: &str, out: &mut Vec<Line>) {
    let record = node.record();
    let envelope = record.envelope();
    let mut label = format!("{head}{} #{}", record.name(), envelope.sequence());
    if let Some(remote) = envelope.remote() {
        let _ = write!(label, "  [from {}]", LogSafe(remote));
    }
    if envelope.is_replay() {
        label.push_str("  [replay]");
    }
    out.push(Line {
        left: label,
        run: None,
    });
    let count = node.handlers().len() + node.unattributed().len();
    let mut index = 0;
    for handler in node.handlers() {
        index += 1;
        let (head, next) = branch(rest, index == count);
        handler_lines(handler, &head, &next, out);
    }
    for child in node.unattributed() {
        index += 1;
        let (head, next) = branch(rest, index == count);
        event_lines(child, &format!("{head}then "), &next, out);
    }
}

fn handler_lines(handler: &HandlerNode, head: &str, rest: &str, out: &mut Vec<Line>) {
    out.push(Line {
        left: format!("{head}{}", LogSafe(handler.name())),
        run: handler.run().map(|run| {
            let message = run
                .outcome()
                .message()
                .map(|m| LogSafe(m).to_string())
                .unwrap_or_default();
            (run.outcome().as_str(), duration(run.duration()), message)
        }),
    });
    let count = handler.emitted().len();
    for (index, child) in handler.emitted().iter().enumerate() {
        let (head, next) = branch(rest, index + 1 == count);
        event_lines(child, &head, &next, out);
    }
}

/// This line's connector and the prefix of the lines under it.
fn branch(rest: &str, last: bool) -> (String, String) {
    if last {
        (format!("{rest}└─ "), format!("{rest}   "))
    } else {
        (format!("{rest}├─ "), format!("{rest}│  "))
    }
}

/// `850ns`, `12.5µs`, `1.20ms`, `2.35s`.
fn duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos < 1_000 {
        format!("{nanos}ns")
    } else if nanos < 1_000_000 {
        format!("{:.1}µs", nanos as f64 / 1e3)
    } else if nanos < 1_000_000_000 {
        format!("{:.2}ms", nanos as f64 / 1e6)
    } else {
        format!("{:.2}s", duration.as_secs_f64())
    }
}

impl TraceTree {
    /// A [Mermaid](https://mermaid.js.org) flowchart (renders on GitHub,
    /// in GitLab and in many documentation tools): events as rounded
    /// nodes `e0, e1, …` (depth first, with their sequence numbers), each
    /// handler as a box `h<event>_<n>`
    /// with its outcome and duration, an arrow from each event to its
    /// handlers and from each handler to the events it emitted (dotted:
    /// caused outside a handler). Failed handlers are drawn red, skipped
    /// ones dashed. Labels are escaped.
    ///
    /// ```text
    /// flowchart TD
    ///     e0(["subscription.fetched (1)"])
    ///     h0_0["parse<br/>ok 1.20ms"]
    ///     e0 --> h0_0
    ///     e1(["subscription.parsed (2)"])
    ///     h0_0 --> e1
    /// ```
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        let mut next = 0;
        let mut failed = Vec::new();
        let mut skipped = Vec::new();
        for root in &self.roots {
            mermaid_event(root, None, &mut next, &mut out, &mut failed, &mut skipped);
        }
        if !failed.is_empty() {
            out.push_str("    classDef failed fill:#fde2e2,stroke:#c0392b,color:#7b241c\n");
            let _ = writeln!(out, "    class {} failed", failed.join(","));
        }
        if !skipped.is_empty() {
            out.push_str("    classDef skipped stroke-dasharray:4 4,color:#777\n");
            let _ = writeln!(out, "    class {} skipped", skipped.join(","));
        }
        out
    }

    /// The trace in the [Trace Event Format] (open it in
    /// `chrome://tracing` or [Perfetto](https://ui.perfetto.dev)): a track
    /// per thread, a complete slice (`"ph":"X"`) per handler call, inside
    /// it the slices of the events it emitted (each spanning its handlers'
    /// calls), `args` with the trace id, sequence, event id and outcome.
    /// Events whose handlers were not recorded (no flight recorder) are
    /// instant events at their timestamp. Times are microseconds from the
    /// trace's first timestamp, which `otherData.start` gives.
    ///
    /// [Trace Event Format]: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
    pub fn to_chrome_trace(&self) -> String {
        chrome_trace(&[self])
    }

    /// Several traces in one [Trace Event Format] file, on one time line
    /// (from the earliest timestamp among them): each trace is a process of
    /// its own (`pid` 1, 2, ... in the order given, named after its trace
    /// id), with the tracks and slices of
    /// [`to_chrome_trace`](TraceTree::to_chrome_trace).
    ///
    /// [Trace Event Format]: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
    pub fn chrome_trace_of(trees: &[TraceTree]) -> String {
        chrome_trace(&trees.iter().collect::<Vec<_>>())
    }
}

fn chrome_trace(trees: &[&TraceTree]) -> String {
    let per_tree: Vec<Vec<&EventNode>> = trees.iter().map(|tree| tree.events()).collect();
    let origin = per_tree
        .iter()
        .flatten()
        .map(|e| e.record().envelope().timestamp())
        .chain(
            per_tree
                .iter()
                .flatten()
                .flat_map(|e| e.record().handlers().iter().map(HandlerRun::started)),
        )
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let micros = |time: SystemTime| -> f64 {
        let since = time.duration_since(origin).unwrap_or_default();
        nanos_to_micros(since)
    };
    let mut threads: BTreeMap<(usize, u64), Option<&str>> = BTreeMap::new();
    let mut out: Vec<Value> = Vec::new();
    let events = trees
        .iter()
        .zip(&per_tree)
        .enumerate()
        .flat_map(|(i, (tree, events))| {
            events
                .iter()
                .map(move |event| (i + 1, tree.trace_id, *event))
        });
    for (pid, trace_id, event) in events {
        let record = event.record();
        let envelope = record.envelope();
        let args = json!({
            "trace_id": trace_id.to_string(),
            "sequence": envelope.sequence(),
            "event_id": envelope.event_id().to_string(),
            "source": envelope.source(),
        });
        let runs = record.handlers();
        if let (Some(first), Some(end)) = (
            runs.first(),
            runs.iter().map(|r| r.started() + r.duration()).max(),
        ) {
            let ts = micros(first.started());
            out.push(json!({
                "name": record.name(),
                "cat": "event",
                "ph": "X",
                "ts": ts,
                "dur": nanos_to_micros(end.duration_since(first.started()).unwrap_or_default()),
                "pid": pid,
                "tid": first.thread(),
                "args": args,
            }));
        } else {
            out.push(json!({
                "name": record.name(),
                "cat": "event",
                "ph": "i",
                "s": "t",
                "ts": micros(envelope.timestamp()),
                "pid": pid,
                "tid": 0,
                "args": args,
            }));
            threads.entry((pid, 0)).or_insert(None);
        }
        for run in runs {
            threads
                .entry((pid, run.thread()))
                .or_insert_with(|| run.thread_name());
            let mut args = json!({
                "trace_id": trace_id.to_string(),
                "event": record.name(),
                "sequence": envelope.sequence(),
                "outcome": run.outcome().as_str(),
            });
            if let Some(message) = run.outcome().message() {
                args["message"] = Value::from(message);
            }
            out.push(json!({
                "name": run.handler(),
                "cat": "handler",
                "ph": "X",
                "ts": micros(run.started()),
                "dur": nanos_to_micros(run.duration()),
                "pid": pid,
                "tid": run.thread(),
                "args": args,
            }));
        }
    }
    for ((pid, tid), name) in threads {
        let name = match (tid, name) {
            (0, _) => "events".to_owned(),
            (_, Some(name)) => name.to_owned(),
            (tid, None) => format!("thread {tid}"),
        };
        out.push(json!({
            "name": "thread_name",
            "ph": "M",
            "pid": pid,
            "tid": tid,
            "args": { "name": name },
        }));
    }
    if trees.len() > 1 {
        for (i, tree) in trees.iter().enumerate() {
            out.push(json!({
                "name": "process_name",
                "ph": "M",
                "pid": i + 1,
                "args": { "name": format!("trace {}", tree.trace_id) },
            }));
        }
    }
    let start = crate::jsonl::timestamp(origin).unwrap_or_default();
    let other = match trees {
        [one] => json!({ "trace_id": one.trace_id.to_string(), "start": start }),
        _ => json!({
            "trace_ids": trees.iter().map(|t| t.trace_id.to_string()).collect::<Vec<_>>(),
            "start": start,
        }),
    };
    json!({
        "traceEvents": out,
        "displayTimeUnit": "ms",
        "otherData": other,
    })
    .to_string()
}

/// Microseconds, to the nanosecond (no binary-fraction noise in the JSON).
fn nanos_to_micros(duration: Duration) -> f64 {
    // A correctly rounded division: the shortest decimal that reads back
    // as it is the exact one.
    duration.as_nanos() as f64 / 1000.0
}

fn mermaid_event(
    node: &EventNode,
    from: Option<(&str, bool)>,
    next: &mut usize,
    out: &mut String,
    failed: &mut Vec<String>,
    skipped: &mut Vec<String>,
) {
    let id = format!("e{next}");
    *next += 1;
    let record = node.record();
    let label = format!("{} ({})", record.name(), record.envelope().sequence());
    let _ = writeln!(out, "    {id}([\"{}\"])", mermaid_label(&label));
    match from {
        Some((parent, true)) => {
            let _ = writeln!(out, "    {parent} --> {id}");
        }
        Some((parent, false)) => {
            let _ = writeln!(out, "    {parent} -.-> {id}");
        }
        None => {}
    }
    for (n, handler) in node.handlers().iter().enumerate() {
        let hid = format!("h{}_{n}", &id[1..]);
        let mut label = mermaid_label(handler.name());
        if let Some(run) = handler.run() {
            let _ = write!(
                label,
                "<br/>{} {}",
                run.outcome().as_str(),
                duration(run.duration())
            );
            if run.outcome().is_failure() {
                failed.push(hid.clone());
            } else if matches!(run.outcome().as_str(), "skipped" | "filtered") {
                skipped.push(hid.clone());
            }
        }
        let _ = writeln!(out, "    {hid}[\"{label}\"]");
        let _ = writeln!(out, "    {id} --> {hid}");
        for child in handler.emitted() {
            mermaid_event(child, Some((&hid, true)), next, out, failed, skipped);
        }
    }
    for child in node.unattributed() {
        mermaid_event(child, Some((&id, false)), next, out, failed, skipped);
    }
}
