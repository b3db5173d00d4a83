//! Metrics from outside the collector ([`MetricsSource`], [`Family`]) and
//! the Prometheus text format every family is rendered in.

use super::{HandlerStats, HistogramSnapshot};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// Something that has metrics to render with the collector's own; see
/// [`MetricsCollector::register`](super::MetricsCollector::register).
pub trait MetricsSource: Send + Sync {
    /// The current values.
    fn families(&self) -> Vec<Family>;
}

/// One metric family: a name, its help text, its kind, and one sample per
/// set of label values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Family {
    name: String,
    help: String,
    kind: MetricKind,
    samples: Vec<Sample>,
}

/// What a [`Family`] measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MetricKind {
    /// Only goes up (restarts at 0 with the process).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One value of a [`Family`], with its labels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Label names and values, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Family {
    /// A counter family named `name` (`[a-zA-Z_:][a-zA-Z0-9_:]*`, by
    /// convention ending in `_total`).
    pub fn counter(name: &str, help: &str) -> Result<Family, MetricNameError> {
        Family::new(name, help, MetricKind::Counter)
    }

    /// A gauge family named `name`.
    pub fn gauge(name: &str, help: &str) -> Result<Family, MetricNameError> {
        Family::new(name, help, MetricKind::Gauge)
    }

    fn new(name: &str, help: &str, kind: MetricKind) -> Result<Family, MetricNameError> {
        if !valid_name(name, true) {
            return Err(MetricNameError {
                name: name.to_owned(),
            });
        }
        Ok(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples: Vec::new(),
        })
    }

    /// Adds a sample. Label values may hold any text (they are escaped);
    /// a label whose name is not `[a-zA-Z_][a-zA-Z0-9_]*` is left out.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Family {
        self.samples.push(Sample {
            labels: labels
                .iter()
                .filter(|(name, _)| valid_name(name, false))
                .map(|&(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            value,
        });
        self
    }

    /// The family's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its kind.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// Its samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

/// Prometheus metric (`colons`) and label names.
fn valid_name(name: &str, colons: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (colons && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// A metric name Prometheus would not accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricNameError {
    name: String,
}

impl fmt::Display for MetricNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid metric name {:?}: expected [a-zA-Z_:][a-zA-Z0-9_:]*",
            self.name
        )
    }
}

impl std::error::Error for MetricNameError {}

/// The text being written, and the names its families took (with the
/// `_bucket`, `_sum` and `_count` of histograms and summaries).
pub(super) struct Prometheus(pub(super) String, Vec<String>);

impl Prometheus {
    pub(super) fn new() -> Prometheus {
        Prometheus(String::new(), Vec::new())
    }

    pub(super) fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        self.1.push(name.to_owned());
        if matches!(kind, "histogram" | "summary") {
            for suffix in ["_bucket", "_sum", "_count"] {
                self.1.push(format!("{name}{suffix}"));
            }
        }
    }

    /// The registered families after the collector's own: merged by name
    /// ([`merge_families`]), with a comment for each one left out.
    pub(super) fn families(&mut self, families: &[Family]) {
        let (families, left_out) = merge_families(families, &self.1);
        for family in &families {
            self.family(family);
        }
        for name in left_out {
            // Comments other than HELP and TYPE are ignored by readers.
            let _ = writeln!(
                self.0,
                "# sbox-events: a registered family named {name} was left out: the name is taken"
            );
        }
    }

    pub(super) fn scalar(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.header(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    pub(super) fn labelled(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: &BTreeMap<String, u64>,
    ) {
        self.header(name, kind, help);
        for (key, value) in values {
            let _ = writeln!(
                self.0,
                "{name}{{{label}=\"{}\"}} {value}",
                escape_label(key)
            );
        }
    }

    pub(super) fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.header(name, "histogram", help);
        for (bound, count) in &h.buckets {
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(self.0, "{name}_sum {}", h.sum);
        let _ = writeln!(self.0, "{name}_count {}", h.count);
    }

    fn family(&mut self, family: &Family) {
        let kind = match family.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        self.header(&family.name, kind, &family.help);
        for sample in &family.samples {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
                .collect();
            let value = PromValue(sample.value);
            if labels.is_empty() {
                let _ = writeln!(self.0, "{} {value}", family.name);
            } else {
                let _ = writeln!(self.0, "{}{{{}}} {value}", family.name, labels.join(","));
            }
        }
    }

    pub(super) fn handlers(&mut self, handlers: &[HandlerStats]) {
        let handlers = &merge_handlers(handlers);
        let labels = |h: &HandlerStats| {
            format!(
                "event=\"{}\",handler=\"{}\"",
                escape_label(h.event),
                escape_label(&h.handler)
            )
        };
        type Counter = fn(&HandlerStats) -> u64;
        let counters: [(&str, &str, Counter); 3] = [
            ("sbox_handler_calls_total", "Handler calls.", |h| h.calls),
            (
                "sbox_handler_errors_total",
                "Handler calls that returned an error.",
                |h| h.errors,
            ),
            (
                "sbox_handler_panics_total",
                "Handler calls that panicked.",
                |h| h.panics,
            ),
        ];
        for (name, help, value) in counters {
            self.header(name, "counter", help);
            for h in handlers {
                let _ = writeln!(self.0, "{name}{{{}}} {}", labels(h), value(h));
            }
        }
        let name = "sbox_handler_duration_seconds";
        self.header(
            name,
            "summary",
            "Handler call durations (quantiles are bucket upper bounds).",
        );
        for h in handlers {
            let l = labels(h);
            let _ = writeln!(
                self.0,
                "{name}{{{l},quantile=\"0.5\"}} {}",
                h.p50.as_secs_f64()
            );
            let _ = writeln!(
                self.0,
                "{name}{{{l},quantile=\"0.99\"}} {}",
                h.p99.as_secs_f64()
            );
            let _ = writeln!(self.0, "{name}_sum{{{l}}} {}", h.total.as_secs_f64());
            let _ = writeln!(self.0, "{name}_count{{{l}}} {}", h.calls);
        }
        let name = "sbox_handler_duration_max_seconds";
        self.header(name, "gauge", "Slowest handler call.");
        for h in handlers {
            let _ = writeln!(self.0, "{name}{{{}}} {}", labels(h), h.max.as_secs_f64());
        }
    }
}

/// Handlers with the same event and name (two subscriptions named alike)
/// as one series each: their counts and times added, their quantiles and
/// slowest call the larger (Prometheus refuses a series written twice).
fn merge_handlers(handlers: &[HandlerStats]) -> Vec<HandlerStats> {
    let mut merged: Vec<HandlerStats> = Vec::with_capacity(handlers.len());
    let mut at: std::collections::HashMap<(&str, &str), usize> = Default::default();
    for h in handlers {
        match at.get(&(h.event, h.handler.as_str())) {
            Some(&i) => {
                let m = &mut merged[i];
                m.calls = m.calls.saturating_add(h.calls);
                m.errors = m.errors.saturating_add(h.errors);
                m.panics = m.panics.saturating_add(h.panics);
                m.timed = m.timed.saturating_add(h.timed);
                m.total = m.total.saturating_add(h.total);
                m.max = m.max.max(h.max);
                m.p50 = m.p50.max(h.p50);
                m.p99 = m.p99.max(h.p99);
            }
            None => {
                at.insert((h.event, &h.handler), merged.len());
                merged.push(h.clone());
            }
        }
    }
    merged
}

/// The registered families as Prometheus can read them: one per name (the
/// samples of families with the same name and kind together, those with
/// the same labels added), none with the name of one of the collector's
/// own (`taken`) or of an earlier family of another kind. Returns them with
/// the names of those left out.
fn merge_families(families: &[Family], taken: &[String]) -> (Vec<Family>, Vec<String>) {
    use std::collections::HashMap;
    let mut merged: Vec<Family> = Vec::new();
    // Each merged family's position by name, and its samples' positions by
    // their labels, sorted (a series is its set of labels): linear in the
    // number of samples.
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut by_labels: Vec<HashMap<Vec<(&str, &str)>, usize>> = Vec::new();
    let mut left_out = Vec::new();
    for family in families {
        if taken.contains(&family.name) {
            left_out.push(family.name.clone());
            continue;
        }
        let at = match by_name.get(family.name.as_str()) {
            Some(&at) if merged[at].kind != family.kind => {
                left_out.push(family.name.clone());
                continue;
            }
            Some(&at) => at,
            None => {
                let mut first = family.clone();
                first.samples.clear();
                merged.push(first);
                by_labels.push(HashMap::new());
                by_name.insert(&family.name, merged.len() - 1);
                merged.len() - 1
            }
        };
        for sample in &family.samples {
            let mut labels: Vec<(&str, &str)> = sample
                .labels
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            labels.sort_unstable();
            match by_labels[at].get(&labels) {
                Some(&same) => merged[at].samples[same].value += sample.value,
                None => {
                    by_labels[at].insert(labels, merged[at].samples.len());
                    merged[at].samples.push(sample.clone());
                }
            }
        }
    }
    (merged, left_out)
}

/// A sample value as Prometheus writes it (`+Inf`, `-Inf`, `NaN`).
struct PromValue(f64);

impl fmt::Display for PromValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

/// Label values escape `\`, `"` and line feeds.
pub(super) fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Help text escapes `\` and line feeds.
pub(super) fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}
