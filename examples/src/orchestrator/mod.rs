//! The sboxmgr pipeline of the original design, on sbox-events: an
//! [`Orchestrator`] emits events at each stage; audit and metrics react
//! without the orchestrator knowing them.
//!
//! Stages of one subscription, all in one trace, in one pass over the input
//! with bounded memory: fetch (download an http(s) URL, [`fetch`], or read
//! a file; [`input`]) → parse (share
//! links, [`link`], or a SIP008 document's servers, [`sip008`]) → validate (drop and count unusable links, each with the
//! parameter at fault) → build (sing-box JSON, streamed to a temporary file,
//! [`singbox`]) → check (every outbound against sing-box's own rules, and
//! the whole file loaded by the sing-box client it is for, [`client`]) →
//! export (fsync, atomic rename: a failed run never leaves a partial config
//! and never replaces the previous one).

pub mod client;
pub mod input;
pub mod link;
pub mod singbox;
pub mod sip008;

pub mod fetch;

mod export;
mod flow;
mod options;
mod pipeline;
mod run;

pub use options::{DEFAULT_USER_AGENT, MAX_REDIRECTS, Options};
pub use pipeline::Orchestrator;
pub use run::run;

use sbox_events::EmitOptions;
use sbox_events::escape::LogSafe;
use sbox_events::trace::TraceId;
use std::fmt;
use std::path::PathBuf;

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
    /// `redirects`; for a config not written `no_config`, `strict`,
    /// `client_check` (the sing-box client refused the file) or
    /// `client_run` (it could not be run, or did not answer in time).
    pub error_type: &'static str,
    /// For people.
    pub message: String,
}

impl PipelineError {
    pub(crate) fn new(error_type: &'static str, message: impl Into<String>) -> Self {
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

/// What a run produced: each subscription's outcome, and the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processed {
    /// In the order given.
    pub subscriptions: Vec<SubscriptionOutcome>,
    /// The configuration written from the subscriptions that succeeded, or
    /// why none was.
    pub config: Result<ExportedConfig, PipelineError>,
}

/// One subscription's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionOutcome {
    /// How it is shown: a path, or a URL [redacted](fetch::redact).
    pub url: String,
    /// Its trace.
    pub trace_id: TraceId,
    /// What it gave, or why it failed.
    pub result: Result<Converted, PipelineError>,
}

/// What a subscription gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// Servers it added to the configuration.
    pub servers: usize,
    /// Lines dropped.
    pub invalid: usize,
    /// The first [`WARNINGS_SHOWN`] dropped lines, with their reasons.
    pub first_invalid: Vec<link::Invalid>,
    /// What fetching its URL reported (`None` for a file).
    pub fetched: Option<FetchReport>,
}

/// The configuration written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedConfig {
    /// Where it went.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its server outbounds.
    pub servers: u64,
    /// The trace of its `config.*` events.
    pub trace_id: TraceId,
    /// The sing-box client that loaded it (`sing-box check`), if any.
    pub client: Option<String>,
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

/// What a download reported, logged (a stale copy, a cache problem) and
/// kept for the summary.
pub(crate) fn fetch_report(url: &str, download: &fetch::Download) -> FetchReport {
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
            .map(|(age, e)| (*age, e.message.clone())),
        userinfo: download.userinfo,
        update_interval_hours: download.update_interval_hours,
    }
}

/// The fetched event's metadata: the provider's usage and update interval,
/// and whether a stale cached copy stood in.
pub(crate) fn fetch_metadata(report: Option<&FetchReport>) -> EmitOptions {
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

/// How a run ended, for `main` and for tests.
#[derive(Debug)]
pub struct RunOutcome {
    /// 0 every subscription converted; 1 no config was written; 2 bad
    /// arguments or setup (or the `--trace-out` / `--history-out` file
    /// could not be written); 3 the config was written but audit records
    /// were lost; 4 the config was written from the subscriptions that
    /// succeeded, and at least one failed.
    pub exit_code: u8,
    /// The first subscription's trace, once processing started.
    pub trace_id: Option<TraceId>,
    /// Each subscription's trace, then the config's when it has its own.
    pub traces: Vec<TraceId>,
}
