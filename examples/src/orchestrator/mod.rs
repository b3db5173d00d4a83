//! The sboxmgr pipeline of the original design, on sbox-events: an
//! [`Orchestrator`] emits events at each stage; audit and metrics react
//! without the orchestrator knowing them.
//!
//! Stages of one subscription, all in one trace: fetch (read the file) →
//! parse (plain or base64 list of proxy URIs) → validate (drop and count
//! invalid entries) → build (sing-box JSON) → check the config → export
//! (written atomically: a failed run never leaves a half-written config).

pub mod proxy;
pub mod singbox;

use sbox_events::audit::AuditLogger;
use sbox_events::events::{
    ApplicationStarted, ApplicationStopped, ConfigBuilt, ConfigExported, ConfigValidated,
    ErrorOccurred, SubscriptionFailed, SubscriptionFetched, SubscriptionParsed,
    SubscriptionProcessed, SubscriptionValidated,
};
use sbox_events::metrics::MetricsCollector;
use sbox_events::trace::{self, TraceId};
use sbox_events::{EmitOptions, EventBus};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The subscription file.
    pub subscription: PathBuf,
    /// Where the sing-box configuration goes.
    pub output: PathBuf,
    /// The JSON Lines audit log.
    pub audit_log: PathBuf,
    /// Also print the metrics in Prometheus format.
    pub prometheus: bool,
    /// Log at INFO instead of WARN.
    pub verbose: bool,
}

/// How to call the example.
pub const USAGE: &str = "usage: orchestrator [SUBSCRIPTION_FILE] [--output CONFIG_JSON] \
                         [--audit-log AUDIT_JSONL] [--prometheus] [--verbose]";

impl Options {
    /// The bundled sample subscription.
    pub fn sample_subscription() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample-subscription.txt")
    }

    /// Defaults: the sample, and outputs under the system's temp directory.
    pub fn defaults() -> Options {
        let dir = std::env::temp_dir().join("sboxmgr-example");
        Options {
            subscription: Options::sample_subscription(),
            output: dir.join("config.json"),
            audit_log: dir.join("audit.jsonl"),
            prometheus: false,
            verbose: false,
        }
    }

    /// Parses the arguments after the program name.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options::defaults();
        let mut positional = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| {
                args.next()
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{flag} needs a path\n{USAGE}"))
            };
            match arg.as_str() {
                "--output" | "-o" => options.output = value("--output")?,
                "--audit-log" => options.audit_log = value("--audit-log")?,
                "--prometheus" => options.prometheus = true,
                "--verbose" | "-v" => options.verbose = true,
                "--help" | "-h" => return Err(USAGE.to_owned()),
                flag if flag.starts_with('-') => {
                    return Err(format!("unknown option {flag:?}\n{USAGE}"));
                }
                path if positional.is_none() => positional = Some(PathBuf::from(path)),
                extra => {
                    return Err(format!(
                        "unexpected argument {extra:?}: give one subscription file\n{USAGE}"
                    ));
                }
            }
        }
        if let Some(path) = positional {
            options.subscription = path;
        }
        Ok(options)
    }
}

/// A stage that failed: what went wrong, and a short kind for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineError {
    /// `io`, `encoding`, `empty`, `format`, `no_servers` or `config_invalid`.
    pub error_type: &'static str,
    /// For people.
    pub message: String,
}

impl PipelineError {
    fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        PipelineError {
            error_type,
            message: message.into(),
        }
    }
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What one successful run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processed {
    /// Servers in the configuration.
    pub servers: usize,
    /// Entries dropped by validation, with line numbers.
    pub invalid: Vec<proxy::Invalid>,
    /// Where the configuration went.
    pub config_path: PathBuf,
    /// Its size in bytes.
    pub config_bytes: u64,
}

/// Runs the pipeline, emitting the original design's events on a bus.
pub struct Orchestrator<'a> {
    bus: &'a EventBus,
}

const FORMAT: &str = "sing-box";

impl<'a> Orchestrator<'a> {
    /// An orchestrator emitting on `bus`.
    pub fn new(bus: &'a EventBus) -> Self {
        Orchestrator { bus }
    }

    /// Processes one subscription file into a configuration at `output`, in
    /// the current trace. On failure emits `subscription.failed` and
    /// `error.occurred` (same trace) and leaves `output` untouched.
    pub fn process(&self, subscription: &Path, output: &Path) -> Result<Processed, PipelineError> {
        let url = subscription.display().to_string();
        let result = self.stages(&url, subscription, output);
        if let Err(err) = &result {
            tracing::error!(
                url,
                error_type = err.error_type,
                "subscription failed: {err}"
            );
            self.bus.emit(SubscriptionFailed {
                url: url.clone(),
                error: err.message.clone(),
                error_type: err.error_type.to_owned(),
            });
            self.bus.emit_with(
                ErrorOccurred {
                    error: err.message.clone(),
                    error_type: err.error_type.to_owned(),
                    event: "subscription.failed".to_owned(),
                    handler: "orchestrator".to_owned(),
                },
                EmitOptions::new().source("orchestrator"),
            );
        }
        result
    }

    fn stages(
        &self,
        url: &str,
        subscription: &Path,
        output: &Path,
    ) -> Result<Processed, PipelineError> {
        let started = Instant::now();

        // Fetch.
        let bytes = std::fs::read(subscription)
            .map_err(|e| PipelineError::new("io", format!("cannot read {url}: {e}")))?;
        let content = String::from_utf8(bytes).map_err(|e| {
            PipelineError::new(
                "encoding",
                format!(
                    "{url} is not UTF-8 text (byte {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        self.bus.emit(SubscriptionFetched {
            url: url.to_owned(),
            content_length: content.len() as u64,
            content_type: if content.contains("://") {
                "text/uri-list"
            } else {
                "text/plain"
            }
            .to_owned(),
            cache_hit: false,
            duration_ms: millis(started),
        });

        // Parse.
        let (format, text) = proxy::decode(&content).map_err(|message| {
            let kind = if content.trim().is_empty() {
                "empty"
            } else {
                "format"
            };
            PipelineError::new(kind, format!("{url}: {message}"))
        })?;
        let entries = proxy::parse_list(&text);
        self.bus.emit(SubscriptionParsed {
            url: url.to_owned(),
            format: format.as_str().to_owned(),
            servers_count: entries.len() as u64,
        });

        // Validate.
        let (servers, invalid): (Vec<_>, Vec<_>) = entries.into_iter().partition(Result::is_ok);
        let servers: Vec<proxy::Server> = servers.into_iter().flatten().collect();
        let invalid: Vec<proxy::Invalid> = invalid.into_iter().filter_map(Result::err).collect();
        for entry in &invalid {
            tracing::warn!(
                url,
                line = entry.line,
                "dropping invalid entry: {}",
                entry.reason
            );
        }
        self.bus.emit(SubscriptionValidated {
            url: url.to_owned(),
            valid_count: servers.len() as u64,
            invalid_count: invalid.len() as u64,
        });
        if servers.is_empty() {
            let detail = match invalid.first() {
                Some(first) => format!(" (first problem: {first})"),
                None => String::new(),
            };
            return Err(PipelineError::new(
                "no_servers",
                format!(
                    "{url}: no valid servers among {} entries{detail}",
                    invalid.len()
                ),
            ));
        }

        // Build and check.
        let build_started = Instant::now();
        let config = singbox::build(&servers);
        let mut rendered = serde_json::to_string_pretty(&config).map_err(|e| {
            PipelineError::new("config_invalid", format!("cannot render the config: {e}"))
        })?;
        rendered.push('\n');
        self.bus.emit(ConfigBuilt {
            servers_count: servers.len() as u64,
            rules_count: singbox::rules_count(&config),
            export_format: FORMAT.to_owned(),
            file_size: rendered.len() as u64,
            duration_ms: millis(build_started),
        });
        let errors = singbox::validate(&config);
        self.bus.emit(ConfigValidated {
            export_format: FORMAT.to_owned(),
            valid: errors.is_empty(),
            errors: errors.clone(),
        });
        if !errors.is_empty() {
            return Err(PipelineError::new(
                "config_invalid",
                format!("the built config is invalid: {}", errors.join("; ")),
            ));
        }

        // Export.
        write_atomically(output, rendered.as_bytes()).map_err(|e| {
            PipelineError::new("io", format!("cannot write {}: {e}", output.display()))
        })?;
        self.bus.emit(ConfigExported {
            path: output.display().to_string(),
            export_format: FORMAT.to_owned(),
            file_size: rendered.len() as u64,
        });
        self.bus.emit(SubscriptionProcessed {
            url: url.to_owned(),
            servers_count: servers.len() as u64,
            success: true,
            duration_ms: millis(started),
        });
        Ok(Processed {
            servers: servers.len(),
            invalid,
            config_path: output.to_owned(),
            config_bytes: rendered.len() as u64,
        })
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Writes to a temporary file next to `path`, then renames it over `path`:
/// readers see the old file or the new one, never a partial one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match result.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(err) => {
            let _ = std::fs::remove_file(&tmp);
            Err(err)
        }
    }
}

/// How a run ended, for `main` and for tests.
#[derive(Debug)]
pub struct RunOutcome {
    /// 0 success, 1 the subscription failed, 2 bad arguments or setup.
    pub exit_code: u8,
    /// The subscription's trace, once processing started.
    pub trace_id: Option<TraceId>,
}

/// The whole program: attach audit and metrics, process the subscription
/// in one trace, print a summary to `out` and problems to `err`.
pub fn run(
    bus: &EventBus,
    options: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> RunOutcome {
    let setup_failed = |err: &mut dyn Write, message: String| {
        let _ = writeln!(err, "orchestrator: {message}");
        RunOutcome {
            exit_code: 2,
            trace_id: None,
        }
    };
    for path in [&options.output, &options.audit_log] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            return setup_failed(err, format!("cannot create {}: {e}", dir.display()));
        }
    }
    let audit = match AuditLogger::builder().jsonl(&options.audit_log).attach(bus) {
        Ok(audit) => audit,
        Err(e) => return setup_failed(err, e.to_string()),
    };
    let metrics = MetricsCollector::attach(bus);
    let started = Instant::now();
    bus.emit(ApplicationStarted {
        app: "sboxmgr-example".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    });

    let (trace_id, result) = trace::with_new_trace(|| {
        Orchestrator::new(bus).process(&options.subscription, &options.output)
    });
    let exit_code = match &result {
        Ok(_) => 0,
        Err(e) => {
            let _ = writeln!(err, "orchestrator: {e}");
            1
        }
    };
    bus.emit(ApplicationStopped {
        exit_code: i32::from(exit_code),
        uptime_ms: millis(started),
    });

    let snapshot = metrics.snapshot();
    let _ = writeln!(out, "sboxmgr example: {}", options.subscription.display());
    let _ = writeln!(out, "  trace      {trace_id}");
    match &result {
        Ok(done) => {
            let _ = writeln!(
                out,
                "  servers    {} kept, {} invalid dropped",
                done.servers,
                done.invalid.len()
            );
            let _ = writeln!(
                out,
                "  config     {} ({} bytes, {FORMAT})",
                done.config_path.display(),
                done.config_bytes
            );
        }
        Err(e) => {
            let _ = writeln!(out, "  failed     {} ({})", e.message, e.error_type);
        }
    }
    let _ = writeln!(
        out,
        "  audit log  {} ({} records this run)",
        options.audit_log.display(),
        audit.records()
    );
    let events: u64 = snapshot.events_by_name.values().sum();
    let _ = writeln!(
        out,
        "  metrics    processed={} servers={} failed={} exported={} ({} bytes) events={events}",
        snapshot.subscriptions_processed,
        snapshot.servers_total,
        snapshot.subscriptions_failed,
        snapshot.configs_exported,
        snapshot.config_bytes_exported,
    );
    if options.prometheus {
        let _ = write!(out, "\n{}", snapshot.render_prometheus());
    }
    RunOutcome {
        exit_code,
        trace_id: Some(trace_id),
    }
}
