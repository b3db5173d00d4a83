//! The sboxmgr pipeline of the original design, on sbox-events: an
//! [`Orchestrator`] emits events at each stage; audit and metrics react
//! without the orchestrator knowing them.
//!
//! Stages of one subscription, all in one trace, in one pass over the input
//! with bounded memory: fetch (download an http(s) URL, [`fetch`], or read
//! a file; [`input`]) → parse (share
//! links, [`link`]) → validate (drop and count unusable links, each with the
//! parameter at fault) → build (sing-box JSON, streamed to a temporary file,
//! [`singbox`]) → check (every outbound against sing-box's own rules) →
//! export (fsync, atomic rename: a failed run never leaves a partial config
//! and never replaces the previous one).

pub mod input;
pub mod link;
pub mod singbox;

pub mod fetch;

mod export;
mod flow;
mod options;

pub use options::{DEFAULT_USER_AGENT, MAX_REDIRECTS, Options};

use fetch::FetchOptions;
use sbox_events::audit::AuditLogger;
use sbox_events::escape::LogSafe;
use sbox_events::events::{
    ApplicationStarted, ApplicationStopped, ConfigBuilt, ConfigExported, ConfigValidated,
    ErrorOccurred, SubscriptionFailed, SubscriptionFetched, SubscriptionParsed,
    SubscriptionProcessed, SubscriptionValidated,
};
use sbox_events::metrics::{Family, MetricsCollector, MetricsSource};
use sbox_events::trace::{self, TraceId};
use sbox_events::{EmitOptions, EmitReport, Event, EventBus, EventSelector};
use sbox_events_nats::{NatsBridge, Policy};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How long the end of a run waits for the NATS server to acknowledge
/// what is waiting (the rest stays in the spool).
const NATS_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest subscription read by default (256 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// How many dropped lines are logged one by one; the rest are summarized.
pub const WARNINGS_SHOWN: usize = 20;

/// A stage that failed: what went wrong, and a short kind for metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineError {
    /// `io`, `too_large`, `empty`, `format` or `no_servers`; for a URL
    /// also `url`, `dns`, `connect`, `tls`, `timeout`, `http_status` or
    /// `redirects`.
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
        write!(f, "{}", LogSafe(&self.message))
    }
}

/// What one successful run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processed {
    /// Servers in the configuration.
    pub servers: usize,
    /// Lines dropped.
    pub invalid: usize,
    /// The first [`WARNINGS_SHOWN`] dropped lines, with their reasons.
    pub first_invalid: Vec<link::Invalid>,
    /// Where the configuration went.
    pub config_path: PathBuf,
    /// Its size in bytes.
    pub config_bytes: u64,
    /// What fetching a URL reported (`None` for a file).
    pub fetched: Option<FetchReport>,
}

/// What fetching a subscription URL reported, for the summary and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchReport {
    /// The URL, redacted.
    pub url: String,
    /// Served from the cache.
    pub cache_hit: bool,
    /// The age of the cached copy used because the provider failed, and
    /// how it failed.
    pub stale: Option<(std::time::Duration, String)>,
    /// The provider's `subscription-userinfo`.
    pub userinfo: Option<fetch::UserInfo>,
    /// Its `profile-update-interval`, in hours.
    pub update_interval_hours: Option<u64>,
}

/// Runs the pipeline, emitting the original design's events on a bus.
pub struct Orchestrator<'a> {
    bus: &'a EventBus,
    fetch: FetchOptions,
}

const FORMAT: &str = "sing-box";

impl<'a> Orchestrator<'a> {
    /// An orchestrator emitting on `bus`, fetching (or reading) at most
    /// `fetch.max_bytes`.
    pub fn new(bus: &'a EventBus, fetch: FetchOptions) -> Self {
        Orchestrator { bus, fetch }
    }

    /// Processes one subscription (a file, or an http(s) URL) into a
    /// configuration at `output`, in the current trace. On failure emits
    /// `subscription.failed` and `error.occurred` (same trace) and leaves
    /// `output` untouched. Events and errors show a URL
    /// [redacted](fetch::redact).
    pub fn process(&self, subscription: &Path, output: &Path) -> Result<Processed, PipelineError> {
        let url = match subscription.to_str().filter(|s| fetch::is_url(s)) {
            Some(url) => fetch::redact(url),
            None => subscription.display().to_string(),
        };
        let mut last = None;
        let result = self.stages(&url, subscription, output, &mut last);
        if let Err(err) = &result {
            tracing::error!(
                url,
                error_type = err.error_type,
                "subscription failed: {err}"
            );
            // Where it happened: after the last stage that got through.
            let after = |options: EmitOptions| match &last {
                Some(report) => options.caused_by(report),
                None => options,
            };
            let failed = self.bus.emit_with(
                SubscriptionFailed {
                    url: url.clone(),
                    error: err.message.clone(),
                    error_type: err.error_type.to_owned(),
                },
                after(EmitOptions::new()),
            );
            self.bus.emit_with(
                ErrorOccurred {
                    error: err.message.clone(),
                    error_type: err.error_type.to_owned(),
                    event: "subscription.failed".to_owned(),
                    handler: "orchestrator".to_owned(),
                },
                EmitOptions::new().source("orchestrator").caused_by(&failed),
            );
        }
        result
    }

    /// Emits `event` as following from the event `after` reports on.
    fn then<E: Event>(&self, after: &EmitReport, event: E) -> EmitReport {
        self.bus
            .emit_with(event, EmitOptions::new().caused_by(after))
    }

    /// The stages; `last` is the report of the last stage event emitted
    /// (what a failure follows from).
    fn stages(
        &self,
        url: &str,
        subscription: &Path,
        output: &Path,
        last: &mut Option<EmitReport>,
    ) -> Result<Processed, PipelineError> {
        let started = Instant::now();
        let mut config = export::Staged::new(output).map_err(|e| {
            PipelineError::new("io", format!("cannot write {}: {e}", output.display()))
        })?;
        let mut writer = singbox::ConfigWriter::new(config.writer()).map_err(|e| {
            PipelineError::new("io", format!("cannot write {}: {e}", output.display()))
        })?;

        // Fetch, parse, validate and build in one pass.
        let mut entries = 0usize;
        let mut invalid = 0usize;
        let mut first_invalid = Vec::new();
        let mut write_error = None;
        let mut drop_line = |line: usize, reason: String| {
            invalid += 1;
            if invalid <= WARNINGS_SHOWN {
                tracing::warn!(url, line, "dropping entry: {}", LogSafe(&reason));
                first_invalid.push(link::Invalid { line, reason });
            }
        };
        // A URL is downloaded first (to the cache, or a temporary file),
        // under the size cap; the file is then read like a local one.
        let download =
            match subscription.to_str().filter(|s| fetch::is_url(s)) {
                Some(address) => Some(fetch::fetch(address, &self.fetch).map_err(|e| {
                    PipelineError::new(e.kind, format!("fetch {url}: {}", e.message))
                })?),
                None => None,
            };
        let report = download.as_ref().map(|d| fetch_report(url, d));
        let source = download.as_ref().map_or(subscription, |d| d.path.as_path());
        let fetched = input::read_lines(source, self.fetch.max_bytes, |line, text| {
            entries += 1;
            let server = text.and_then(link::parse_uri);
            match server {
                Err(reason) => drop_line(line, reason),
                Ok(_) if write_error.is_some() => {}
                Ok(server) => match writer.add(&server) {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => {
                        drop_line(line, format!("sing-box would refuse it: {reason}"))
                    }
                    Err(e) => write_error = Some(e),
                },
            }
        })
        .map_err(|e| PipelineError::new(e.kind, format!("{url}: {}", e.message)))?;
        if let Some(e) = write_error {
            return Err(PipelineError::new(
                "io",
                format!("cannot write {}: {e}", output.display()),
            ));
        }
        if invalid > WARNINGS_SHOWN {
            tracing::warn!(
                url,
                "{} more entries dropped (the first {WARNINGS_SHOWN} are shown above)",
                invalid - WARNINGS_SHOWN
            );
        }
        let servers = writer.servers();
        // Each stage's event follows from the one before: trace trees show
        // the run as a chain.
        let content_type = match download.as_ref().and_then(|d| d.content_type.as_deref()) {
            Some(sent) => LogSafe(sent).to_string(),
            None => match fetched.format {
                input::Format::Plain => "text/uri-list",
                input::Format::Base64 => "text/plain",
            }
            .to_owned(),
        };
        let fetched_report = self.bus.emit_with(
            SubscriptionFetched {
                url: url.to_owned(),
                content_length: fetched.bytes,
                content_type,
                cache_hit: report.as_ref().is_some_and(|r| r.cache_hit),
                duration_ms: millis(started),
            },
            fetch_metadata(report.as_ref()),
        );
        let parsed = self.then(
            &fetched_report,
            SubscriptionParsed {
                url: url.to_owned(),
                format: fetched.format.as_str().to_owned(),
                servers_count: entries as u64,
            },
        );
        let validated = self.then(
            &parsed,
            SubscriptionValidated {
                url: url.to_owned(),
                valid_count: servers as u64,
                invalid_count: invalid as u64,
            },
        );
        *last = Some(validated.clone());
        if servers == 0 {
            let detail = match first_invalid.first() {
                Some(first) => format!(" (first problem: {first})"),
                None => String::new(),
            };
            return Err(PipelineError::new(
                "no_servers",
                format!("{url}: no valid servers among {entries} entries{detail}"),
            ));
        }

        // Build and check: every outbound was checked as it was written.
        let build_started = Instant::now();
        let (_, written) = writer.finish().map_err(|e| {
            PipelineError::new("io", format!("cannot write {}: {e}", output.display()))
        })?;
        let built = self.then(
            &validated,
            ConfigBuilt {
                servers_count: written.servers,
                rules_count: singbox::rules_count(),
                export_format: FORMAT.to_owned(),
                file_size: written.bytes,
                duration_ms: millis(build_started),
            },
        );
        let checked = self.then(
            &built,
            ConfigValidated {
                export_format: FORMAT.to_owned(),
                valid: true,
                errors: Vec::new(),
            },
        );
        *last = Some(checked.clone());

        // Export.
        config.commit().map_err(|e| {
            PipelineError::new("io", format!("cannot write {}: {e}", output.display()))
        })?;
        let exported = self.then(
            &checked,
            ConfigExported {
                path: output.display().to_string(),
                export_format: FORMAT.to_owned(),
                file_size: written.bytes,
            },
        );
        self.then(
            &exported,
            SubscriptionProcessed {
                url: url.to_owned(),
                servers_count: servers as u64,
                success: true,
                duration_ms: millis(started),
            },
        );
        Ok(Processed {
            servers,
            invalid,
            first_invalid,
            config_path: output.to_owned(),
            config_bytes: written.bytes,
            fetched: report,
        })
    }
}

/// What a download reported, logged (a stale copy, a cache problem) and
/// kept for the summary.
fn fetch_report(url: &str, download: &fetch::Download) -> FetchReport {
    if let Some((age, error)) = &download.stale {
        tracing::warn!(
            url,
            "the provider failed ({}); using the cached copy from {} ago",
            LogSafe(&error.message),
            humantime::format_duration(std::time::Duration::from_secs(age.as_secs()))
        );
    }
    if let Some(warning) = &download.cache_warning {
        tracing::warn!(url, "{}", LogSafe(warning));
    }
    FetchReport {
        url: url.to_owned(),
        cache_hit: download.cache_hit,
        stale: download
            .stale
            .as_ref()
            .map(|(age, e)| (*age, format!("{}: {}", e.kind, e.message))),
        userinfo: download.userinfo,
        update_interval_hours: download.update_interval_hours,
    }
}

/// The fetched event's metadata: the provider's usage and update interval,
/// and whether a stale cached copy stood in.
fn fetch_metadata(report: Option<&FetchReport>) -> EmitOptions {
    let mut options = EmitOptions::new();
    let Some(report) = report else {
        return options;
    };
    if let Some(info) = report.userinfo {
        options = options
            .metadata("userinfo.upload", info.upload.to_string())
            .metadata("userinfo.download", info.download.to_string())
            .metadata("userinfo.total", info.total.to_string())
            .metadata("userinfo.expire", info.expire.to_string());
    }
    if let Some(hours) = report.update_interval_hours {
        options = options.metadata("update_interval_hours", hours.to_string());
    }
    if let Some((age, reason)) = &report.stale {
        options = options
            .metadata("stale", "true")
            .metadata("stale_age_s", age.as_secs().to_string())
            .metadata("stale_reason", LogSafe(reason).to_string());
    }
    options
}

/// An error and its sources, `: `-separated, as one line for people.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// How a run ended, for `main` and for tests.
#[derive(Debug)]
pub struct RunOutcome {
    /// 0 success; 1 the subscription failed; 2 bad arguments or setup (or
    /// the `--trace-out` file could not be written); 3 the config was
    /// written but audit records were lost.
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
        let _ = writeln!(err, "orchestrator: {}", LogSafe(&message));
        RunOutcome {
            exit_code: 2,
            trace_id: None,
        }
    };
    if export::same_file(&options.output, &options.audit_log) {
        return setup_failed(
            err,
            format!(
                "--output and --audit-log are the same file ({}): the config would overwrite the audit log",
                options.output.display()
            ),
        );
    }
    if let Some(dir) = options
        .audit_log
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        return setup_failed(err, format!("cannot create {}: {e}", dir.display()));
    }
    let fetch = match options.fetch_options() {
        Ok(fetch) => fetch,
        Err(e) => return setup_failed(err, e),
    };
    // The original design's audited events, and each fetch (with the
    // provider's usage in its metadata).
    let audited = EventSelector::names(
        sbox_events::audit::DEFAULT_EVENTS
            .iter()
            .copied()
            .chain(["subscription.fetched"]),
    );
    let audit = match audited.map(|events| AuditLogger::builder().events(events)) {
        Ok(builder) => builder,
        Err(e) => return setup_failed(err, e.to_string()),
    };
    let audit = match audit.jsonl(&options.audit_log).attach(bus) {
        Ok(audit) => audit,
        Err(e) => return setup_failed(err, error_chain(&e)),
    };
    let metrics = MetricsCollector::attach(bus);
    // Before the first event, so every event of the run is forwarded.
    let bridge = match &options.nats {
        Some(url) => match NatsBridge::builder(url.as_str())
            .publish(EventSelector::all())
            .policy(Policy::spool(&options.nats_spool))
            .instance(format!("orchestrator-{}", std::process::id()))
            .start(bus)
        {
            Ok(bridge) => {
                metrics.register(bridge.metrics());
                Some(bridge)
            }
            Err(e) => return setup_failed(err, error_chain(&e)),
        },
        None => None,
    };
    let started = Instant::now();
    bus.emit(ApplicationStarted {
        app: "sboxmgr-example".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    });

    let (trace_id, result) = trace::with_new_trace(|| {
        Orchestrator::new(bus, fetch).process(&options.subscription, &options.output)
    });
    let mut exit_code = match &result {
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

    // What the broker did not acknowledge in time stays in the spool, for
    // the next run: nothing is lost, so the exit status does not change.
    let forwarded = bridge.map(|bridge| {
        let url = options.nats.as_deref().unwrap_or_default();
        match bridge.shutdown(NATS_FLUSH) {
            Ok(stats) => format!("{}: {} events forwarded", LogSafe(url), stats.acked),
            Err(waiting) => format!(
                "{}: {} events waiting in {} (forwarded on the next run)",
                LogSafe(url),
                waiting.backlog,
                LogSafe(&options.nats_spool.display().to_string())
            ),
        }
    });
    let fetched = result.as_ref().ok().and_then(|done| done.fetched.clone());
    if let Some(report) = &fetched
        && let Some(info) = report.userinfo
    {
        metrics.register(std::sync::Arc::new(Usage {
            subscription: report.url.clone(),
            info,
        }));
    }
    let snapshot = metrics.snapshot();
    let shown = match options.subscription.to_str().filter(|s| fetch::is_url(s)) {
        Some(url) => fetch::redact(url),
        None => options.subscription.display().to_string(),
    };
    let _ = writeln!(out, "sboxmgr example: {}", LogSafe(&shown));
    let _ = writeln!(out, "  trace      {trace_id}");
    match &result {
        Ok(done) => {
            if let Some(report) = &done.fetched {
                let cache = match (&report.stale, report.cache_hit) {
                    (Some((age, reason)), _) => format!(
                        "provider failed ({}), used the cached copy from {} ago",
                        LogSafe(reason),
                        humantime::format_duration(std::time::Duration::from_secs(age.as_secs()))
                    ),
                    (None, true) => "not modified, used the cached copy".to_owned(),
                    (None, false) => "downloaded".to_owned(),
                };
                let _ = writeln!(out, "  fetch      {cache}");
                if let Some(info) = report.userinfo {
                    let _ = writeln!(out, "  usage      {}", info.summary());
                }
                if let Some(hours) = report.update_interval_hours {
                    let _ = writeln!(out, "  update     every {hours} h (provider's advice)");
                }
            }
            let _ = writeln!(
                out,
                "  servers    {} kept, {} invalid dropped",
                done.servers, done.invalid
            );
            let _ = writeln!(
                out,
                "  config     {} ({} bytes, {FORMAT})",
                LogSafe(&done.config_path.display().to_string()),
                done.config_bytes
            );
        }
        Err(e) => {
            let _ = writeln!(out, "  failed     {e} ({})", e.error_type);
        }
    }
    let lost = audit.write_errors();
    let _ = write!(
        out,
        "  audit log  {} ({} records this run",
        LogSafe(&options.audit_log.display().to_string()),
        audit.records()
    );
    if lost > 0 {
        let _ = writeln!(out, ", {lost} LOST)");
        let _ = writeln!(
            err,
            "orchestrator: {lost} audit record(s) could not be written to {}",
            LogSafe(&options.audit_log.display().to_string())
        );
        if exit_code == 0 {
            exit_code = 3;
        }
    } else {
        let _ = writeln!(out, ")");
    }
    if let Some(forwarded) = forwarded {
        let _ = writeln!(out, "  nats       {forwarded}");
    }
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
    if !flow::show(bus, trace_id, options, out, err) && exit_code == 0 {
        exit_code = 2;
    }
    RunOutcome {
        exit_code,
        trace_id: Some(trace_id),
    }
}

/// The provider's usage of one subscription, as Prometheus gauges.
struct Usage {
    subscription: String,
    info: fetch::UserInfo,
}

impl MetricsSource for Usage {
    fn families(&self) -> Vec<Family> {
        let label = [("subscription", self.subscription.as_str())];
        let gauges = [
            (
                "sbox_subscription_used_bytes",
                "Traffic used (upload + download), as the provider reports it.",
                self.info.used(),
            ),
            (
                "sbox_subscription_quota_bytes",
                "The traffic quota (0: none reported).",
                self.info.total,
            ),
            (
                "sbox_subscription_expire_timestamp_seconds",
                "When the subscription expires, in Unix seconds (0: not reported).",
                self.info.expire,
            ),
        ];
        gauges
            .into_iter()
            .filter_map(|(name, help, value)| {
                let mut family = Family::gauge(name, help).ok()?;
                family.sample(&label, value as f64);
                Some(family)
            })
            .collect()
    }
}
