//! The stages, on the bus: [`Orchestrator`].

use super::client::{CheckError, Client};
use super::fetch::{self, FetchOptions};
use super::{
    Converted, ExportedConfig, PipelineError, Processed, SubscriptionOutcome, WARNINGS_SHOWN,
    export, input, link, singbox,
};
use sbox_events::escape::LogSafe;
use sbox_events::events::{
    ConfigBuilt, ConfigExported, ConfigValidated, ErrorOccurred, SubscriptionFailed,
    SubscriptionFetched, SubscriptionParsed, SubscriptionProcessed, SubscriptionValidated,
};
use sbox_events::trace::{self, TraceId};
use sbox_events::{EmitOptions, EmitReport, Event, EventBus};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::Instant;

/// The format of the configuration written.
pub(super) const FORMAT: &str = "sing-box";

type Writer<'f> = singbox::ConfigWriter<BufWriter<&'f mut File>>;

/// Runs the pipeline, emitting the original design's events on a bus.
pub struct Orchestrator<'a> {
    bus: &'a EventBus,
    fetch: FetchOptions,
    strict: bool,
    client: Option<Client>,
}

/// One subscription after its own stages: its trace, and the report of
/// its last event (what comes next follows from).
struct Stage {
    outcome: SubscriptionOutcome,
    last: Option<EmitReport>,
    started: Instant,
}

impl<'a> Orchestrator<'a> {
    /// An orchestrator emitting on `bus`, fetching (or reading) at most
    /// `fetch.max_bytes` per subscription.
    pub fn new(bus: &'a EventBus, fetch: FetchOptions) -> Self {
        Orchestrator {
            bus,
            fetch,
            strict: false,
            client: None,
        }
    }

    /// Writes for `client`: only what it can load (see
    /// [`Client::capabilities`]), and the finished file is loaded by it
    /// (`sing-box check`) before it replaces the previous config; a file
    /// it refuses is not installed (`client_check`). Without one, the
    /// config is for an official build of sing-box 1.14 or newer.
    pub fn client(mut self, client: Option<Client>) -> Self {
        self.client = client;
        self
    }

    /// With `strict`, one failed subscription fails the run: no config is
    /// written.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Processes subscriptions (files, or http(s) URLs) into one
    /// configuration at `output`.
    ///
    /// Each subscription runs in its own trace: fetched → parsed →
    /// validated, then `subscription.processed` once the config is written
    /// or `subscription.failed` + `error.occurred`. A failed subscription
    /// adds nothing to the config and does not stop the others. The config
    /// (`config.built` → `config.validated` → `config.exported`) follows
    /// in the subscription's trace when there is one subscription, in a
    /// trace of its own otherwise. Without a config (every subscription
    /// failed, one did under [`strict`](Orchestrator::strict), or writing
    /// failed) `output` is left untouched. Events and errors show URLs
    /// [redacted](fetch::redact).
    pub fn process(&self, subscriptions: &[impl AsRef<Path>], output: &Path) -> Processed {
        let cannot_write = |e: std::io::Error| {
            PipelineError::new("io", format!("cannot write {}: {e}", output.display()))
        };
        let mut staged = export::Staged::new(output).map_err(cannot_write);
        let mut stages = Vec::new();
        let mut writer = match staged.as_mut() {
            Ok(config) => singbox::ConfigWriter::new(config.writer())
                .map(|writer| match &self.client {
                    Some(client) => writer.for_client(client.capabilities()),
                    None => writer,
                })
                .map_err(cannot_write),
            Err(e) => Err(e.clone()),
        };
        for subscription in subscriptions {
            let subscription = subscription.as_ref();
            let (trace_id, stage) = trace::with_new_trace(|| {
                let started = Instant::now();
                let url = shown(subscription);
                let mut last = None;
                let result = match writer.as_mut() {
                    Ok(writer) => self.convert(&url, subscription, writer, &mut last),
                    Err(e) => Err(e.clone()),
                };
                (url, result, last, started)
            });
            let (url, result, last, started) = stage;
            stages.push(Stage {
                outcome: SubscriptionOutcome {
                    url,
                    trace_id,
                    result,
                },
                last,
                started,
            });
        }
        let failed = stages.iter().filter(|s| s.outcome.result.is_err()).count();
        let blocked = match (failed, stages.len() - failed) {
            (_, 0) => Some(PipelineError::new(
                "no_config",
                "no subscription could be converted",
            )),
            (1.., _) if self.strict => Some(PipelineError::new(
                "strict",
                format!("not written: {failed} subscription(s) failed (--strict)"),
            )),
            _ => None,
        };
        let config = match blocked {
            Some(reason) => Err(reason),
            None => {
                let build_started = Instant::now();
                // Finishing ends the writer's borrow of the staged file.
                let written = writer.and_then(|w| w.finish().map(|(_, n)| n).map_err(cannot_write));
                match (written, staged) {
                    (Ok(written), Ok(config)) => {
                        self.export(written, build_started, config, &mut stages, output)
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
        };
        // Each subscription's trace ends: processed, or failed.
        for stage in &mut stages {
            let outcome = &stage.outcome;
            let ended = match (&outcome.result, &config) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), Err(e)) => Err(e.clone()),
                (Ok(converted), Ok(_)) => Ok(converted.servers),
            };
            let options = EmitOptions::new().trace_id(outcome.trace_id);
            let options = match &stage.last {
                Some(report) => options.caused_by(report),
                None => options,
            };
            match ended {
                Ok(servers) => {
                    self.bus.emit_with(
                        SubscriptionProcessed {
                            url: outcome.url.clone(),
                            servers_count: servers as u64,
                            success: true,
                            duration_ms: millis(stage.started),
                        },
                        options,
                    );
                }
                Err(err) => self.fail(&outcome.url, &err, options),
            }
        }
        Processed {
            subscriptions: stages.into_iter().map(|s| s.outcome).collect(),
            config,
        }
    }

    /// `subscription.failed` and `error.occurred`, logged.
    fn fail(&self, url: &str, err: &PipelineError, options: EmitOptions) {
        tracing::error!(
            url,
            error_type = err.error_type,
            "subscription failed: {err}"
        );
        let failed = self.bus.emit_with(
            SubscriptionFailed {
                url: url.to_owned(),
                error: err.message.clone(),
                error_type: err.error_type.to_owned(),
            },
            options,
        );
        self.bus.emit_with(
            ErrorOccurred {
                error: err.message.clone(),
                error_type: err.error_type.to_owned(),
                event: "subscription.failed".to_owned(),
                handler: "orchestrator".to_owned(),
            },
            EmitOptions::new()
                .source("orchestrator")
                .trace_id(failed.trace_id())
                .caused_by(&failed),
        );
    }

    /// Emits `event` as following from the event `after` reports on.
    fn then<E: Event>(&self, after: &EmitReport, event: E) -> EmitReport {
        self.bus.emit_with(
            event,
            EmitOptions::new()
                .trace_id(after.trace_id())
                .caused_by(after),
        )
    }

    /// Fetch, parse and validate one subscription in one pass, its servers
    /// written to `writer` (and taken back if it fails); `last` is the
    /// report of its last event.
    fn convert(
        &self,
        url: &str,
        subscription: &Path,
        writer: &mut Writer<'_>,
        last: &mut Option<EmitReport>,
    ) -> Result<Converted, PipelineError> {
        let mark = writer.mark();
        let result = self.stages(url, subscription, writer, last);
        if result.is_err() {
            writer
                .rollback(mark)
                .map_err(|e| PipelineError::new("io", format!("cannot write the config: {e}")))?;
        }
        result
    }

    fn stages(
        &self,
        url: &str,
        subscription: &Path,
        writer: &mut Writer<'_>,
        last: &mut Option<EmitReport>,
    ) -> Result<Converted, PipelineError> {
        let started = Instant::now();
        // A URL is downloaded first (to the cache, or a temporary file),
        // under the size cap; the file is then read like a local one.
        let download =
            match subscription.to_str().filter(|s| fetch::is_url(s)) {
                Some(address) => Some(fetch::fetch(address, &self.fetch).map_err(|e| {
                    PipelineError::new(e.kind, format!("fetch {url}: {}", e.message))
                })?),
                None => None,
            };
        let report = download.as_ref().map(|d| super::fetch_report(url, d));
        let source = download.as_ref().map_or(subscription, |d| d.path.as_path());
        let before = writer.servers();
        let unfingerprinted = writer.unfingerprinted();
        let mut entries = 0usize;
        let mut invalid = 0usize;
        let mut first_invalid = Vec::new();
        let mut write_error = None;
        let mut drop_line = |at: input::Entry, reason: String| {
            invalid += 1;
            if invalid <= WARNINGS_SHOWN {
                match at {
                    input::Entry::Line(line) => {
                        tracing::warn!(url, line, "dropping entry: {}", LogSafe(&reason))
                    }
                    input::Entry::Server(server) => {
                        tracing::warn!(url, server, "dropping entry: {}", LogSafe(&reason))
                    }
                }
                first_invalid.push(link::Invalid { at, reason });
            }
        };
        let fetched = input::read_lines(source, self.fetch.max_bytes, |line, text| {
            // Not an entry: neither a server nor one dropped.
            if let input::Entry::Line(n) = line
                && let Some(note) = text.as_deref().ok().and_then(input::provider_note)
            {
                tracing::info!(url, line = n, "provider note: {}", LogSafe(note));
                return;
            }
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
                format!("cannot write the config: {e}"),
            ));
        }
        if invalid > WARNINGS_SHOWN {
            tracing::warn!(
                url,
                "{} more entries dropped (the first {WARNINGS_SHOWN} are shown above)",
                invalid - WARNINGS_SHOWN
            );
        }
        let servers = writer.servers() - before;
        let unfingerprinted = writer.unfingerprinted() - unfingerprinted;
        if unfingerprinted > 0
            && let Some(client) = &self.client
        {
            tracing::warn!(
                url,
                "{unfingerprinted} servers written without the uTLS fingerprint (`fp`) of their \
                 link: {} was built without uTLS (no `with_utls` tag)",
                LogSafe(&client.to_string())
            );
        }
        let content_type = match download.as_ref().and_then(|d| d.content_type.as_deref()) {
            Some(sent) => LogSafe(sent).to_string(),
            None => match fetched.format {
                input::Format::Plain => "text/uri-list",
                input::Format::Base64 => "text/plain",
                input::Format::Sip008 => "application/json",
            }
            .to_owned(),
        };
        // Each stage's event follows from the one before: trace trees show
        // the run as a chain.
        let fetched_report = self.bus.emit_with(
            SubscriptionFetched {
                url: url.to_owned(),
                content_length: fetched.bytes,
                content_type,
                cache_hit: report.as_ref().is_some_and(|r| r.cache_hit),
                duration_ms: millis(started),
            },
            super::fetch_metadata(report.as_ref()),
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
        *last = Some(validated);
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
        Ok(Converted {
            servers,
            invalid,
            first_invalid,
            fetched: report,
        })
    }

    /// Build, check, export: in the one subscription's trace (following
    /// its last event, which becomes `config.exported`), or in a trace of
    /// its own.
    fn export(
        &self,
        written: singbox::Written,
        build_started: Instant,
        config: export::Staged,
        stages: &mut [Stage],
        output: &Path,
    ) -> Result<ExportedConfig, PipelineError> {
        let cannot_write = |e: std::io::Error| {
            PipelineError::new("io", format!("cannot write {}: {e}", output.display()))
        };
        let (trace_id, first) = match stages {
            [only] => (only.outcome.trace_id, only.last.clone()),
            _ => (TraceId::random(), None),
        };
        let options = EmitOptions::new().trace_id(trace_id);
        let built = self.bus.emit_with(
            ConfigBuilt {
                servers_count: written.servers,
                rules_count: singbox::rules_count(),
                export_format: FORMAT.to_owned(),
                file_size: written.bytes,
                duration_ms: millis(build_started),
            },
            match &first {
                Some(report) => options.caused_by(report),
                None => options,
            },
        );
        // Every outbound was checked as it was written; the client, when
        // there is one, loads the whole file.
        let checked_by_client = self.client.as_ref().map(|client| {
            client.check(config.path()).map_err(|e| {
                // The client names the temporary file, gone by now.
                let temporary = config.path().display().to_string();
                let shown = output.display().to_string();
                match e {
                    CheckError::Refused(m) => CheckError::Refused(m.replace(&temporary, &shown)),
                    CheckError::NotRun(m) => CheckError::NotRun(m.replace(&temporary, &shown)),
                }
            })
        });
        let refused = match &checked_by_client {
            Some(Err(CheckError::Refused(reason))) => Some(reason.clone()),
            _ => None,
        };
        let checked = self.then(
            &built,
            ConfigValidated {
                export_format: FORMAT.to_owned(),
                valid: refused.is_none(),
                errors: refused.into_iter().collect(),
            },
        );
        if let [only] = stages {
            only.last = Some(checked.clone());
        }
        match checked_by_client {
            Some(Err(CheckError::Refused(reason))) => {
                return Err(PipelineError::new(
                    "client_check",
                    format!("not written: {reason}"),
                ));
            }
            Some(Err(CheckError::NotRun(reason))) => {
                return Err(PipelineError::new(
                    "client_run",
                    format!("not written, the sing-box client did not check it: {reason}"),
                ));
            }
            _ => {}
        }
        config.commit().map_err(cannot_write)?;
        let exported = self.then(
            &checked,
            ConfigExported {
                path: output.display().to_string(),
                export_format: FORMAT.to_owned(),
                file_size: written.bytes,
            },
        );
        if let [only] = stages {
            only.last = Some(exported);
        }
        Ok(ExportedConfig {
            client: self.client.as_ref().map(Client::to_string),
            path: output.to_owned(),
            bytes: written.bytes,
            servers: written.servers,
            trace_id,
        })
    }
}

/// How a subscription is named in events and errors: a URL redacted, a
/// path as it is.
pub(super) fn shown(subscription: &Path) -> String {
    match subscription.to_str().filter(|s| fetch::is_url(s)) {
        Some(url) => fetch::redact(url),
        None => subscription.display().to_string(),
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
