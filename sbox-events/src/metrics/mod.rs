//! Key indicators of the subscription pipeline, counted from events.
//!
//! ```
//! use sbox_events::EventBus;
//! use sbox_events::events::SubscriptionProcessed;
//! use sbox_events::metrics::MetricsCollector;
//!
//! let bus = EventBus::new();
//! let metrics = MetricsCollector::attach(&bus);
//! bus.emit(SubscriptionProcessed {
//!     url: "https://example.com/sub".into(),
//!     servers_count: 12,
//!     success: true,
//!     duration_ms: 40,
//! });
//! let snapshot = metrics.snapshot();
//! assert_eq!((snapshot.subscriptions_processed, snapshot.servers_total), (1, 12));
//! assert!(metrics.render_prometheus().contains("sbox_servers_total 12\n"));
//! ```
//!
//! | metric | from |
//! |---|---|
//! | `sbox_subscriptions_processed_total`, `sbox_servers_total` | `subscription.processed` (`servers_count`) |
//! | `sbox_subscriptions_failed_total{error_type}` | `subscription.failed` |
//! | `sbox_configs_built_total` | `config.built` |
//! | `sbox_configs_exported_total`, `sbox_config_exported_bytes_total` | `config.exported` (`file_size`) |
//! | `sbox_errors_total{error_type}` | `error.occurred` |
//! | `sbox_events_total{event}` | every event |
//! | `sbox_subscription_fetch_duration_seconds` (histogram) | `subscription.fetched` (`duration_ms`) |
//! | `sbox_subscription_processing_duration_seconds` (histogram) | `subscription.processed` (`duration_ms`) |
//! | `sbox_config_build_duration_seconds` (histogram) | `config.built` (`duration_ms`) |
//! | `sbox_handler_*` | [handler statistics](crate::HandlerStats), when the bus collects them |
//!
//! # Order and cost
//!
//! The collector subscribes at [`PRIORITY`], after the audit logger and
//! before ordinary handlers. Counting is relaxed atomic adds; there is no lock
//! on the emit path except for the per-error-type maps, touched only by
//! failure events. The per-event-name counter of each event type is created
//! when the collector attaches, so counting an event looks nothing up.
//! Threads emitting the same event type at once contend on its counters.

use crate::any::{EventSelector, EventType};
use crate::bus::{EachOptions, EventBus, SubscribeOptions, Subscription};
use crate::context::EventContext;
use crate::events::{
    ConfigBuilt, ConfigExported, ErrorOccurred, SubscriptionFailed, SubscriptionFetched,
    SubscriptionProcessed,
};
use crate::stats::HandlerStats;
mod family;

use family::Prometheus;
pub use family::{Family, MetricKind, MetricNameError, MetricsSource, Sample};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The priority the collector's subscriptions run at.
pub const PRIORITY: i32 = 900_000;

/// Histogram bucket bounds, in seconds.
pub const BUCKETS_SECONDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counts the pipeline's key indicators; counting stops when it is dropped.
#[must_use = "counting stops when the MetricsCollector is dropped: keep it alive"]
pub struct MetricsCollector {
    state: Arc<State>,
    bus: EventBus,
    sources: Mutex<Vec<Arc<dyn MetricsSource>>>,
    _subscriptions: Vec<Subscription>,
}

#[derive(Default)]
struct State {
    subscriptions_processed: AtomicU64,
    servers_total: AtomicU64,
    configs_built: AtomicU64,
    configs_exported: AtomicU64,
    config_bytes_exported: AtomicU64,
    failures_by_type: Mutex<BTreeMap<String, u64>>,
    errors_by_type: Mutex<BTreeMap<String, u64>>,
    events: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
    fetch: Histogram,
    processing: Histogram,
    build: Histogram,
}

impl MetricsCollector {
    /// Starts counting the events of `bus`.
    pub fn attach(bus: &EventBus) -> MetricsCollector {
        let state = Arc::new(State::default());
        let options = || {
            SubscribeOptions::new()
                .name("metrics::totals")
                .priority(PRIORITY)
        };
        let s = Arc::clone(&state);
        let mut subscriptions = vec![bus.subscribe_with(
            options(),
            move |e: &SubscriptionProcessed, _: &EventContext| {
                s.subscriptions_processed.fetch_add(1, Ordering::Relaxed);
                add(&s.servers_total, e.servers_count);
                s.processing.record_ms(e.duration_ms);
            },
        )];
        let s = Arc::clone(&state);
        subscriptions.push(bus.subscribe_with(
            options(),
            move |e: &SubscriptionFetched, _: &EventContext| s.fetch.record_ms(e.duration_ms),
        ));
        let s = Arc::clone(&state);
        subscriptions.push(bus.subscribe_with(
            options(),
            move |e: &SubscriptionFailed, _: &EventContext| {
                increment(&s.failures_by_type, &e.error_type)
            },
        ));
        let s = Arc::clone(&state);
        subscriptions.push(bus.subscribe_with(
            options(),
            move |e: &ConfigBuilt, _: &EventContext| {
                s.configs_built.fetch_add(1, Ordering::Relaxed);
                s.build.record_ms(e.duration_ms);
            },
        ));
        let s = Arc::clone(&state);
        subscriptions.push(bus.subscribe_with(
            options(),
            move |e: &ConfigExported, _: &EventContext| {
                s.configs_exported.fetch_add(1, Ordering::Relaxed);
                add(&s.config_bytes_exported, e.file_size);
            },
        ));
        let s = Arc::clone(&state);
        subscriptions.push(
            bus.subscribe_with(options(), move |e: &ErrorOccurred, _: &EventContext| {
                increment(&s.errors_by_type, &e.error_type)
            }),
        );
        // One counter per event type, made once here: counting looks nothing up.
        let s = Arc::clone(&state);
        let each = EachOptions {
            name: "metrics::count".into(),
            priority: PRIORITY,
            recorder: false,
            keeps_envelope: false,
            keep: None,
        };
        subscriptions.push(bus.subscribe_each(
            each,
            EventSelector::all(),
            None,
            move |event_type: EventType| {
                let counter = Arc::new(AtomicU64::new(0));
                s.events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((event_type.name(), Arc::clone(&counter)));
                Some(Arc::new(
                    move |_: &crate::any::AnyEvent<'_>, _: &EventContext<'_>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    },
                ))
            },
        ));
        MetricsCollector {
            state,
            bus: bus.clone(),
            sources: Mutex::new(Vec::new()),
            _subscriptions: subscriptions,
        }
    }

    /// Renders `source`'s metric families with the collector's own, from
    /// now on ([`snapshot`](MetricsCollector::snapshot) and
    /// [`render_prometheus`](MetricsCollector::render_prometheus) ask it for
    /// its current values each time): a bridge's counters, an application's
    /// gauges.
    ///
    /// ```
    /// use sbox_events::EventBus;
    /// use sbox_events::metrics::{Family, MetricsCollector, MetricsSource};
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// struct Uploads(AtomicU64);
    ///
    /// impl MetricsSource for Uploads {
    ///     fn families(&self) -> Vec<Family> {
    ///         let mut uploads = Family::counter("app_uploads_total", "Configs uploaded.")
    ///             .expect("a valid name");
    ///         uploads.sample(&[("store", "eu")], self.0.load(Ordering::Relaxed) as f64);
    ///         vec![uploads]
    ///     }
    /// }
    ///
    /// let bus = EventBus::new();
    /// let metrics = MetricsCollector::attach(&bus);
    /// let uploads = Arc::new(Uploads(AtomicU64::new(3)));
    /// metrics.register(uploads.clone());
    /// assert!(metrics.render_prometheus().contains("app_uploads_total{store=\"eu\"} 3\n"));
    /// ```
    ///
    /// `families` runs on the thread that asks for the metrics, with no
    /// lock of the collector held.
    pub fn register(&self, source: Arc<dyn MetricsSource>) {
        self.sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(source);
    }

    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let s = &self.state;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut events_by_name = BTreeMap::new();
        for (name, counter) in s
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            *events_by_name.entry((*name).to_owned()).or_insert(0) += load(counter);
        }
        let failures_by_type = s
            .failures_by_type
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        MetricsSnapshot {
            subscriptions_processed: load(&s.subscriptions_processed),
            subscriptions_failed: failures_by_type.values().sum(),
            servers_total: load(&s.servers_total),
            failures_by_type,
            configs_built: load(&s.configs_built),
            configs_exported: load(&s.configs_exported),
            config_bytes_exported: load(&s.config_bytes_exported),
            errors_by_type: s
                .errors_by_type
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            events_by_name,
            subscription_fetch_seconds: s.fetch.snapshot(),
            subscription_processing_seconds: s.processing.snapshot(),
            config_build_seconds: s.build.snapshot(),
            handlers: self.bus.handler_stats(),
            families: self.families(),
        }
    }

    /// The registered sources' families (asked outside the lock).
    fn families(&self) -> Vec<Family> {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        sources
            .iter()
            .flat_map(|source| source.families())
            .collect()
    }

    /// The current values in the Prometheus text exposition format (0.0.4).
    pub fn render_prometheus(&self) -> String {
        self.snapshot().render_prometheus()
    }
}

impl fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsCollector").finish_non_exhaustive()
    }
}

/// Adds a value from an event to a counter, stopping at `u64::MAX` (a
/// counter never goes down: wrapping would read as a reset).
fn add(counter: &AtomicU64, value: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
        Some(now.saturating_add(value))
    });
}

fn increment(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    match map.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// Fixed-bucket histogram of millisecond durations.
#[derive(Default)]
struct Histogram {
    /// Per bucket of [`BUCKETS_SECONDS`], plus one for "above the last".
    counts: [AtomicU64; BUCKETS_SECONDS.len() + 1],
    sum_ms: AtomicU64,
}

impl Histogram {
    fn record_ms(&self, ms: u64) {
        let seconds = ms as f64 / 1000.0;
        let bucket = BUCKETS_SECONDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS_SECONDS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        add(&self.sum_ms, ms);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BUCKETS_SECONDS.len());
        for (bound, count) in BUCKETS_SECONDS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.counts[BUCKETS_SECONDS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// A histogram's values: cumulative counts per upper bound (seconds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations <= bound)`, ascending.
    pub buckets: Vec<(f64, u64)>,
    /// All observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of all observations, in seconds.
    pub sum: f64,
}

/// What [`MetricsCollector::snapshot`] returns; serializable.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// `subscription.processed` events.
    pub subscriptions_processed: u64,
    /// `subscription.failed` events.
    pub subscriptions_failed: u64,
    /// Sum of `servers_count` over `subscription.processed`.
    pub servers_total: u64,
    /// `subscription.failed` by `error_type`.
    pub failures_by_type: BTreeMap<String, u64>,
    /// `config.built` events.
    pub configs_built: u64,
    /// `config.exported` events.
    pub configs_exported: u64,
    /// Sum of `file_size` over `config.exported`.
    pub config_bytes_exported: u64,
    /// `error.occurred` by `error_type`.
    pub errors_by_type: BTreeMap<String, u64>,
    /// Every event, by name (zero counts included).
    pub events_by_name: BTreeMap<String, u64>,
    /// `subscription.fetched` durations.
    pub subscription_fetch_seconds: HistogramSnapshot,
    /// `subscription.processed` durations.
    pub subscription_processing_seconds: HistogramSnapshot,
    /// `config.built` durations.
    pub config_build_seconds: HistogramSnapshot,
    /// Per-handler statistics, when the bus collects them.
    pub handlers: Vec<HandlerStats>,
    /// The families of the registered sources
    /// ([`MetricsCollector::register`]).
    pub families: Vec<Family>,
}

impl MetricsSnapshot {
    /// These values in the Prometheus text exposition format (0.0.4), each
    /// series once: handlers that share an event and a name are one series
    /// (their counts added; their quantiles and slowest call the larger),
    /// and registered families are merged by name (samples with the same
    /// labels added); a family whose name one of the collector's own (or an
    /// earlier one of another kind) has is left out, with a comment line
    /// saying so.
    pub fn render_prometheus(&self) -> String {
        let mut out = Prometheus::new();
        out.scalar(
            "sbox_subscriptions_processed_total",
            "counter",
            "Subscriptions processed.",
            self.subscriptions_processed,
        );
        out.scalar(
            "sbox_servers_total",
            "counter",
            "Servers found in processed subscriptions.",
            self.servers_total,
        );
        out.labelled(
            "sbox_subscriptions_failed_total",
            "counter",
            "Subscriptions that failed, by error type.",
            "error_type",
            &self.failures_by_type,
        );
        out.scalar(
            "sbox_configs_built_total",
            "counter",
            "Configurations built.",
            self.configs_built,
        );
        out.scalar(
            "sbox_configs_exported_total",
            "counter",
            "Configurations exported.",
            self.configs_exported,
        );
        out.scalar(
            "sbox_config_exported_bytes_total",
            "counter",
            "Bytes of configuration exported.",
            self.config_bytes_exported,
        );
        out.labelled(
            "sbox_errors_total",
            "counter",
            "error.occurred events, by error type.",
            "error_type",
            &self.errors_by_type,
        );
        out.labelled(
            "sbox_events_total",
            "counter",
            "Events emitted, by name.",
            "event",
            &self.events_by_name,
        );
        out.histogram(
            "sbox_subscription_fetch_duration_seconds",
            "Time to fetch a subscription.",
            &self.subscription_fetch_seconds,
        );
        out.histogram(
            "sbox_subscription_processing_duration_seconds",
            "Time to process a subscription end to end.",
            &self.subscription_processing_seconds,
        );
        out.histogram(
            "sbox_config_build_duration_seconds",
            "Time to build a configuration.",
            &self.config_build_seconds,
        );
        if !self.handlers.is_empty() {
            out.handlers(&self.handlers);
        }
        out.families(&self.families);
        out.0
    }
}

#[cfg(test)]
mod tests {
    use super::family::{escape_help, escape_label};
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("x\\y\nz"), "x\\\\y\\nz");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        for ms in [0, 1, 2, 7, 30, 20_000] {
            h.record_ms(ms);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets[0], (0.001, 2)); // 0 ms and 1 ms
        assert_eq!(s.buckets[1], (0.005, 3));
        assert_eq!(s.buckets[2], (0.01, 4));
        assert_eq!(s.buckets[4], (0.05, 5));
        assert_eq!(s.buckets.last(), Some(&(10.0, 5)));
        assert_eq!(s.count, 6);
        assert!((s.sum - 20.040).abs() < 1e-9);
    }
}
