//! The whole program: [`run`].

use super::pipeline::FORMAT;
use super::{
    NATS_FLUSH, Options, Orchestrator, Processed, RunOutcome, SubscriptionOutcome, export, fetch,
    flow,
};
use sbox_events::audit::AuditLogger;
use sbox_events::escape::LogSafe;
use sbox_events::events::{ApplicationStarted, ApplicationStopped};
use sbox_events::metrics::{Family, MetricsCollector, MetricsSource};
use sbox_events::trace::TraceId;
use sbox_events::{EventBus, EventSelector};
use sbox_events_nats::{NatsBridge, Policy};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The whole program: attach audit and metrics, process each subscription
/// in its own trace and one config from those that succeeded, print a
/// summary to `out` and problems to `err`.
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
            traces: Vec::new(),
        }
    };
    if options.subscriptions.is_empty() {
        return setup_failed(err, "no subscription given".to_owned());
    }
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
    let client = match options.client() {
        Ok(client) => client,
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

    let processed = Orchestrator::new(bus, fetch)
        .strict(options.strict)
        .client(client)
        .process(&options.subscriptions, &options.output);
    let failed = processed
        .subscriptions
        .iter()
        .filter(|s| s.result.is_err())
        .count();
    let mut exit_code = match (&processed.config, failed) {
        (Err(_), _) => 1,
        (Ok(_), 0) => 0,
        (Ok(_), _) => 4,
    };
    for failure in processed
        .subscriptions
        .iter()
        .filter_map(|s| s.result.as_ref().err())
    {
        let _ = writeln!(err, "orchestrator: {failure}");
    }
    if let Err(e) = &processed.config
        && failed < processed.subscriptions.len()
    {
        let _ = writeln!(err, "orchestrator: {e}");
    }
    bus.emit(ApplicationStopped {
        exit_code: i32::from(exit_code),
        uptime_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
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
    let usage: Vec<(String, fetch::UserInfo)> = processed
        .subscriptions
        .iter()
        .filter_map(|s| s.result.as_ref().ok()?.fetched.as_ref())
        .filter_map(|report| Some((report.url.clone(), report.userinfo?)))
        .collect();
    if !usage.is_empty() {
        metrics.register(Arc::new(Usage(usage)));
    }
    let snapshot = metrics.snapshot();
    for subscription in &processed.subscriptions {
        summarize(subscription, out);
    }
    match &processed.config {
        Ok(config) => {
            let checked = match &config.client {
                Some(client) => format!(", loaded by {}", LogSafe(client)),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  config     {} ({} bytes, {FORMAT}{checked})",
                LogSafe(&config.path.display().to_string()),
                config.bytes,
            );
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "  config     not written, the previous one is kept: {e} ({})",
                e.error_type
            );
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
        if exit_code != 1 {
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
    let traces = traces(&processed);
    if !flow::show(bus, &traces, options, out, err) && exit_code == 0 {
        exit_code = 2;
    }
    RunOutcome {
        exit_code,
        trace_id: traces.first().copied(),
        traces,
    }
}

/// Each subscription's trace, then the config's when it has its own.
fn traces(processed: &Processed) -> Vec<TraceId> {
    let mut traces: Vec<TraceId> = processed.subscriptions.iter().map(|s| s.trace_id).collect();
    if let Ok(config) = &processed.config
        && !traces.contains(&config.trace_id)
    {
        traces.push(config.trace_id);
    }
    traces
}

/// A subscription's lines of the summary.
fn summarize(subscription: &SubscriptionOutcome, out: &mut dyn Write) {
    let _ = writeln!(out, "sboxmgr example: {}", LogSafe(&subscription.url));
    let _ = writeln!(out, "  trace      {}", subscription.trace_id);
    let converted = match &subscription.result {
        Ok(converted) => converted,
        Err(e) => {
            let _ = writeln!(out, "  failed     {e} ({})", e.error_type);
            return;
        }
    };
    if let Some(report) = &converted.fetched {
        let cache = match (&report.stale, report.cache_hit) {
            (Some((age, reason)), _) => format!(
                "provider failed ({}), used the cached copy from {} ago",
                LogSafe(reason),
                humantime::format_duration(Duration::from_secs(age.as_secs()))
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
        converted.servers, converted.invalid
    );
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

/// A gauge: its name, help, and value of a subscription's usage.
type Gauge = (&'static str, &'static str, fn(&fetch::UserInfo) -> u64);

/// The providers' usage of each subscription, as Prometheus gauges.
struct Usage(Vec<(String, fetch::UserInfo)>);

impl MetricsSource for Usage {
    fn families(&self) -> Vec<Family> {
        let gauges: [Gauge; 3] = [
            (
                "sbox_subscription_used_bytes",
                "Traffic used (upload + download), as the provider reports it.",
                fetch::UserInfo::used,
            ),
            (
                "sbox_subscription_quota_bytes",
                "The traffic quota (0: none reported).",
                |info| info.total,
            ),
            (
                "sbox_subscription_expire_timestamp_seconds",
                "When the subscription expires, in Unix seconds (0: not reported).",
                |info| info.expire,
            ),
        ];
        gauges
            .into_iter()
            .filter_map(|(name, help, value)| {
                let mut family = Family::gauge(name, help).ok()?;
                for (subscription, info) in &self.0 {
                    family.sample(&[("subscription", subscription)], value(info) as f64);
                }
                Some(family)
            })
            .collect()
    }
}
