//! The orchestrator's command line: [`Options`].

use super::DEFAULT_MAX_BYTES;
use clap::Parser;
use sbox_events::EventBus;
use std::path::{Path, PathBuf};

/// Converts a subscription (a file of share links) into a sing-box
/// configuration, emitting the original design's events on the way.
#[derive(Clone, Debug, PartialEq, Eq, Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "Converts a subscription (proxy share links) into a sing-box configuration, \
             running the sboxmgr pipeline on sbox-events"
)]
#[command(
    after_help = "Exit status: 0 success; 1 the subscription failed (the previous \
                        config is kept); 2 bad arguments or setup, or the --trace-out or \
                        --history-out file could not be written; 3 the config was written but audit records were \
                        lost."
)]
pub struct Options {
    /// The subscription file: share links one per line, or base64 of them
    /// [default: the bundled sample]
    #[arg(value_name = "SUBSCRIPTION_FILE", default_value_os_t = Options::sample_subscription(), hide_default_value = true)]
    pub subscription: PathBuf,
    /// Where the sing-box configuration goes
    #[arg(short, long, value_name = "CONFIG_JSON", default_value_os_t = Options::defaults_dir().join("config.json"))]
    pub output: PathBuf,
    /// The JSON Lines audit log (appended to)
    #[arg(long, value_name = "AUDIT_JSONL", default_value_os_t = Options::defaults_dir().join("audit.jsonl"))]
    pub audit_log: PathBuf,
    /// Refuse subscriptions larger than this many bytes (suffixes K, M, G: KiB, MiB, GiB)
    #[arg(long, value_name = "BYTES", default_value = "256M", value_parser = parse_size)]
    pub max_bytes: u64,
    /// Also print the metrics in Prometheus format
    #[arg(long)]
    pub prometheus: bool,
    /// Log at INFO instead of WARN
    #[arg(short, long)]
    pub verbose: bool,
    /// Also forward every event to this NATS server (JetStream), for other
    /// processes (e.g. `--example audit_service`)
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// After the run, print what caused what: each event of the run's trace
    /// with its handlers' outcomes and durations
    #[arg(long)]
    pub explain: bool,
    /// Write the run's trace as Chrome Trace Event JSON (open it in
    /// chrome://tracing or ui.perfetto.dev)
    #[arg(long, value_name = "TRACE_JSON")]
    pub trace_out: Option<PathBuf>,
    /// Write the run's events, with each handler's outcome and duration,
    /// as JSON Lines (read them with `--example flow`)
    #[arg(long, value_name = "HISTORY_JSONL")]
    pub history_out: Option<PathBuf>,
    /// Where events wait while the NATS server is unreachable (forwarded on
    /// the next run)
    #[arg(long, value_name = "SPOOL_JSONL", default_value_os_t = Options::defaults_dir().join("nats-spool.jsonl"))]
    pub nats_spool: PathBuf,
}

impl Options {
    /// The bundled sample subscription.
    pub fn sample_subscription() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample-subscription.txt")
    }

    fn defaults_dir() -> PathBuf {
        std::env::temp_dir().join("sboxmgr-example")
    }

    /// Defaults: the sample, and outputs under the system's temp directory.
    pub fn defaults() -> Options {
        Options {
            subscription: Options::sample_subscription(),
            output: Options::defaults_dir().join("config.json"),
            audit_log: Options::defaults_dir().join("audit.jsonl"),
            max_bytes: DEFAULT_MAX_BYTES,
            prometheus: false,
            verbose: false,
            nats: None,
            nats_spool: Options::defaults_dir().join("nats-spool.jsonl"),
            explain: false,
            trace_out: None,
            history_out: None,
        }
    }

    /// Whether the run's bus needs a history with the flight recorder
    /// (`--explain`, `--trace-out`, `--history-out`).
    pub fn records_flow(&self) -> bool {
        self.explain || self.trace_out.is_some() || self.history_out.is_some()
    }

    /// The bus these options need: with a history and the flight recorder
    /// when the run is explained or traced.
    pub fn bus(&self) -> Result<EventBus, sbox_events::BuildError> {
        // The pipeline's reactions are subscriptions (audit, metrics, the
        // bridge); the `#[handler]`s linked from this examples library
        // belong to the other examples (one needs a storage client).
        let builder = EventBus::builder().static_handlers(false);
        let builder = match self.records_flow() {
            true => builder
                .history(sbox_events::history::DEFAULT_HISTORY_BYTES)
                .flight_recorder(true),
            false => builder,
        };
        builder.build()
    }
}

/// `1048576`, `512K`, `256M`, `1G` (binary multiples).
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_owned(), 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_owned(), 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_owned(), 30),
        t => (t, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?} is not a size (e.g. 1048576, 512K, 256M, 1G)"))
}
