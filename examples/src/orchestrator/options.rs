//! The orchestrator's command line: [`Options`].

use super::DEFAULT_MAX_BYTES;
use super::client::{self, Client};
use super::fetch::FetchOptions;
use clap::Parser;
use sbox_events::EventBus;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `User-Agent` sent by default: the tool, and the client it writes for.
pub const DEFAULT_USER_AGENT: &str = concat!(
    "sboxmgr-example/",
    env!("CARGO_PKG_VERSION"),
    " (sbox-events; sing-box)"
);

/// Redirects followed before a fetch gives up.
pub const MAX_REDIRECTS: u32 = 5;

/// `30s`, `2m`, `7d` (humantime durations; a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{text:?} is zero; give a positive duration")),
        Err(e) => Err(format!(
            "{text:?} is not a duration (e.g. 30s, 2m, 7d): {e}"
        )),
    }
}

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
    after_help = "Each subscription is processed in its own trace; one config is built \
                  from those that succeeded. Exit status: 0 every subscription converted; \
                  1 no config was written (every subscription failed, one did under \
                  --strict, the config could not be written, or the sing-box client \
                  refused it or could not check it; the previous config is kept); 2 bad \
                  arguments or setup (also a sing-box client that does not say its \
                  version, or is older than 1.11), or the --trace-out or --history-out \
                  file could not be written; 3 the config was written but audit records \
                  were lost; 4 the config was written from the subscriptions that \
                  succeeded, and at least one failed."
)]
pub struct Options {
    /// The subscriptions: files or http:// or https:// URLs; share links
    /// one per line, base64 of them, or a SIP008 JSON document [default:
    /// the bundled sample]
    #[arg(value_name = "SUBSCRIPTION", default_values_os_t = [Options::sample_subscription()], hide_default_value = true)]
    pub subscriptions: Vec<PathBuf>,
    /// Write no config if any subscription fails (by default the config is
    /// built from those that succeeded, and the exit status is 4)
    #[arg(long)]
    pub strict: bool,
    /// Sent as User-Agent when fetching (providers choose the format by it)
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_USER_AGENT)]
    pub user_agent: String,
    /// Give up fetching after this long (body included), e.g. 30s, 2m
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Give up connecting (TCP and TLS) after this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Where fetched subscriptions are cached [default: $XDG_CACHE_HOME or
    /// ~/.cache, then sboxmgr-example]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not cache fetched subscriptions (nor use the cache)
    #[arg(long)]
    pub no_cache: bool,
    /// Use a cached copy up to this old when the provider cannot be reached
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub max_stale: Duration,
    /// Trust the certificates in this PEM file instead of the bundled
    /// Mozilla roots (repeatable)
    #[arg(long, value_name = "PEM_FILE")]
    pub ca_cert: Vec<PathBuf>,
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
    /// The sing-box client the config is for: its version and build decide
    /// what is written (REALITY and `fp` need a build with uTLS, `gecko`
    /// obfuscation 1.14), and it loads the config (`sing-box check`)
    /// before the config replaces the previous one [default: `sing-box` on
    /// PATH, if any]
    #[arg(long, value_name = "PATH", conflicts_with = "no_sing_box")]
    pub sing_box: Option<PathBuf>,
    /// Write for an official sing-box 1.14 or newer, without looking for
    /// one on PATH (nothing checks the config)
    #[arg(long)]
    pub no_sing_box: bool,
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
            subscriptions: vec![Options::sample_subscription()],
            strict: false,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            cache_dir: None,
            no_cache: false,
            max_stale: Duration::from_secs(7 * 24 * 3600),
            ca_cert: Vec::new(),
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
            sing_box: None,
            no_sing_box: false,
        }
    }

    /// The sing-box client to write for: `--sing-box`, else `sing-box` on
    /// PATH, else none (also with `--no-sing-box`). Fails when the client
    /// cannot say its version, or is older than the config needs.
    pub fn client(&self) -> Result<Option<Client>, String> {
        if self.no_sing_box {
            return Ok(None);
        }
        let (path, hint) = match &self.sing_box {
            Some(path) => (path.clone(), ""),
            None => match Client::find_on_path() {
                Some(path) => (path, " (found on PATH; --no-sing-box writes without it)"),
                None => return Ok(None),
            },
        };
        let client = Client::probe(&path).map_err(|e| format!("--sing-box: {e}{hint}"))?;
        if client
            .version()
            .is_some_and(|version| version < client::OLDEST)
        {
            return Err(format!(
                "--sing-box: {client} is too old: the config needs sing-box {} or newer{hint}",
                client::OLDEST
            ));
        }
        Ok(Some(client))
    }

    /// The cache directory: `--cache-dir`, else the user's cache
    /// directory (`$XDG_CACHE_HOME`, else `~/.cache`), else the temp
    /// directory; `None` with `--no-cache`.
    pub fn cache(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        let user = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|d| !d.is_empty())
                    .map(|home| PathBuf::from(home).join(".cache"))
            })
            .unwrap_or_else(std::env::temp_dir);
        Some(user.join("sboxmgr-example"))
    }

    /// How these options fetch a URL; fails when a `--ca-cert` file cannot
    /// be read or holds no certificate.
    pub fn fetch_options(&self) -> Result<FetchOptions, String> {
        let mut ca_certs = Vec::new();
        for path in &self.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --ca-cert {}: {e}", path.display()))?;
            let certificates = super::fetch::read_certificates(&pem)
                .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            ca_certs.extend(certificates);
        }
        Ok(FetchOptions {
            user_agent: self.user_agent.clone(),
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            max_redirects: MAX_REDIRECTS,
            max_bytes: self.max_bytes,
            cache_dir: self.cache(),
            max_stale: self.max_stale,
            ca_certs,
        })
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
