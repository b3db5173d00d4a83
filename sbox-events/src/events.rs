//! The events of the sboxmgr pipeline (ADR-0011), ready to emit.
//!
//! | type | name | default source |
//! |---|---|---|
//! | [`SubscriptionFetched`] | `subscription.fetched` | `subscription_manager` |
//! | [`SubscriptionParsed`] | `subscription.parsed` | `subscription_manager` |
//! | [`SubscriptionValidated`] | `subscription.validated` | `subscription_manager` |
//! | [`SubscriptionProcessed`] | `subscription.processed` | `subscription_manager` |
//! | [`SubscriptionFailed`] | `subscription.failed` | `subscription_manager` |
//! | [`ConfigBuilt`] | `config.built` | `config_builder` |
//! | [`ConfigExported`] | `config.exported` | `config_builder` |
//! | [`ConfigValidated`] | `config.validated` | `config_builder` |
//! | [`ApplicationStarted`] | `application.started` | `application` |
//! | [`ApplicationStopped`] | `application.stopped` | `application` |
//! | [`ErrorOccurred`] | `error.occurred` | `event_bus` |
//!
//! Each event has run-time rules ([`Event::validate`](crate::Event::validate),
//! applied on import and, if the bus asks, on emit): names and URLs are not
//! empty, counts agree with outcomes, export formats are known
//! ([`EXPORT_FORMATS`]), sizes are not zero.
//!
//! The fields are the original design's, plus `duration_ms` on the events
//! that end a timed step (fetch, whole pipeline, build), which
//! [`MetricsCollector`](crate::metrics::MetricsCollector) turns into
//! histograms. Counts and sizes are `u64` so that serialized records are the
//! same on every platform.
//!
//! ```
//! use sbox_events::events::SubscriptionProcessed;
//! use sbox_events::{Event, EventBus, EventContext};
//!
//! let bus = EventBus::builder().static_handlers(false).build()?;
//! let _audit = bus.subscribe(|e: &SubscriptionProcessed, ctx: &EventContext| {
//!     println!("[{}] {} servers from {}", ctx.trace_id().short(), e.servers_count, e.url);
//! });
//! bus.emit(SubscriptionProcessed {
//!     url: "https://example.com/sub".into(),
//!     servers_count: 42,
//!     success: true,
//!     duration_ms: 180,
//! });
//! assert_eq!(SubscriptionProcessed::NAME, "subscription.processed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use sbox_events_derive::Event;
use serde::{Deserialize, Serialize};

/// A subscription's content was retrieved.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "subscription.fetched", source = "subscription_manager", validate = check_fetched)]
pub struct SubscriptionFetched {
    /// Where it came from (URL or file path).
    pub url: String,
    /// Size of the content in bytes.
    pub content_length: u64,
    /// Media type of the content, e.g. `text/plain`.
    pub content_type: String,
    /// Whether it was served from a cache.
    pub cache_hit: bool,
    /// How long fetching took, in milliseconds.
    pub duration_ms: u64,
}

/// A subscription's content was parsed into server entries.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "subscription.parsed", source = "subscription_manager", validate = check_parsed)]
pub struct SubscriptionParsed {
    /// Where it came from.
    pub url: String,
    /// The detected format, e.g. `base64` or `plain`.
    pub format: String,
    /// Entries found.
    pub servers_count: u64,
}

/// Parsed server entries were checked; invalid ones were dropped.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "subscription.validated", source = "subscription_manager", validate = check_validated)]
pub struct SubscriptionValidated {
    /// Where it came from.
    pub url: String,
    /// Entries kept.
    pub valid_count: u64,
    /// Entries dropped.
    pub invalid_count: u64,
}

/// A subscription went through the whole pipeline.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "subscription.processed", source = "subscription_manager", validate = check_processed)]
pub struct SubscriptionProcessed {
    /// Where it came from.
    pub url: String,
    /// Servers it contributed.
    pub servers_count: u64,
    /// Whether processing succeeded.
    pub success: bool,
    /// How long the whole pipeline took for it, in milliseconds.
    pub duration_ms: u64,
}

/// A subscription could not be processed.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "subscription.failed", source = "subscription_manager", validate = check_failed)]
pub struct SubscriptionFailed {
    /// Where it came from.
    pub url: String,
    /// What went wrong, for people.
    pub error: String,
    /// The kind of error, for grouping (e.g. `io`, `parse`, `no_servers`).
    pub error_type: String,
}

/// A configuration was generated.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "config.built", source = "config_builder", validate = check_built)]
pub struct ConfigBuilt {
    /// Servers (outbounds) in it.
    pub servers_count: u64,
    /// Routing rules in it.
    pub rules_count: u64,
    /// Output format, e.g. `sing-box`.
    pub export_format: String,
    /// Size of the rendered configuration in bytes.
    pub file_size: u64,
    /// How long building took, in milliseconds.
    pub duration_ms: u64,
}

/// A configuration was written out.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "config.exported", source = "config_builder", validate = check_exported)]
pub struct ConfigExported {
    /// Where it was written.
    pub path: String,
    /// Output format, e.g. `sing-box`.
    pub export_format: String,
    /// Bytes written.
    pub file_size: u64,
}

/// A configuration was checked.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "config.validated", source = "config_builder", validate = check_config_validated)]
pub struct ConfigValidated {
    /// Output format checked against.
    pub export_format: String,
    /// Whether it passed.
    pub valid: bool,
    /// What was wrong (empty when valid).
    pub errors: Vec<String>,
}

/// The application started.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "application.started", source = "application", validate = check_started)]
pub struct ApplicationStarted {
    /// Application name.
    pub app: String,
    /// Application version.
    pub version: String,
}

/// The application is stopping.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "application.stopped", source = "application")]
pub struct ApplicationStopped {
    /// The exit code it will return.
    pub exit_code: i32,
    /// How long it ran, in milliseconds.
    pub uptime_ms: u64,
}

/// Something failed. The bus emits this for every failing handler (see the
/// bus's failure rules in the crate docs); applications emit it for their
/// own errors too. A failure while it is being handled never emits another.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[event(name = "error.occurred", source = "event_bus", validate = check_error)]
pub struct ErrorOccurred {
    /// What went wrong, for people.
    pub error: String,
    /// The kind of error: a Rust type name, `panic`, or an application's own.
    pub error_type: String,
    /// The event being handled when it happened (empty if none).
    pub event: String,
    /// The failing handler or component.
    pub handler: String,
}

fn check_error(e: &ErrorOccurred) -> Result<(), String> {
    for (field, value) in [("error", &e.error), ("error_type", &e.error_type)] {
        if value.trim().is_empty() {
            return Err(format!("`{field}` is empty"));
        }
    }
    Ok(())
}

/// Export formats the config events accept.
pub const EXPORT_FORMATS: [&str; 4] = ["sing-box", "clash", "xray", "json"];

fn non_empty(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    Ok(())
}

fn known_format(value: &str) -> Result<(), String> {
    if !EXPORT_FORMATS.contains(&value) {
        return Err(format!(
            "`export_format` {value:?} is not one of {}",
            EXPORT_FORMATS.join(", ")
        ));
    }
    Ok(())
}

fn positive_size(value: u64) -> Result<(), String> {
    if value == 0 {
        return Err("`file_size` is 0".to_owned());
    }
    Ok(())
}

fn check_fetched(e: &SubscriptionFetched) -> Result<(), String> {
    non_empty("url", &e.url)?;
    non_empty("content_type", &e.content_type)
}

fn check_parsed(e: &SubscriptionParsed) -> Result<(), String> {
    non_empty("url", &e.url)?;
    non_empty("format", &e.format)
}

fn check_validated(e: &SubscriptionValidated) -> Result<(), String> {
    non_empty("url", &e.url)
}

fn check_processed(e: &SubscriptionProcessed) -> Result<(), String> {
    non_empty("url", &e.url)?;
    match (e.success, e.servers_count) {
        (true, 0) => Err("`success` is true but `servers_count` is 0".to_owned()),
        (false, n) if n > 0 => Err(format!("`success` is false but `servers_count` is {n}")),
        _ => Ok(()),
    }
}

fn check_failed(e: &SubscriptionFailed) -> Result<(), String> {
    non_empty("url", &e.url)?;
    non_empty("error", &e.error)?;
    non_empty("error_type", &e.error_type)
}

fn check_built(e: &ConfigBuilt) -> Result<(), String> {
    known_format(&e.export_format)?;
    positive_size(e.file_size)
}

fn check_exported(e: &ConfigExported) -> Result<(), String> {
    non_empty("path", &e.path)?;
    known_format(&e.export_format)?;
    positive_size(e.file_size)
}

fn check_config_validated(e: &ConfigValidated) -> Result<(), String> {
    known_format(&e.export_format)?;
    if e.valid != e.errors.is_empty() {
        return Err(format!(
            "`valid` is {} but there are {} errors",
            e.valid,
            e.errors.len()
        ));
    }
    Ok(())
}

fn check_started(e: &ApplicationStarted) -> Result<(), String> {
    non_empty("app", &e.app)
}
