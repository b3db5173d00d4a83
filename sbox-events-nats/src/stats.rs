//! The bridge's counters: a snapshot for code ([`BridgeStats`]) and
//! Prometheus families for a
//! [`MetricsCollector`](sbox_events::metrics::MetricsCollector).

use sbox_events::metrics::{Family, MetricsSource};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Why an incoming message was refused (terminated, never redelivered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusedReason {
    /// Headers missing or unreadable, or a payload that is not the event.
    Malformed,
    /// An event name no event type of this binary has.
    Foreign,
    /// The sender's schema fingerprint differs from this binary's.
    Fingerprint,
    /// The bus here refused to emit it (a [`Refusal`](sbox_events::Refusal):
    /// it failed validation, or it would exceed the bus's depth limit).
    Invalid,
    /// Its handlers kept failing until `max_deliver` deliveries.
    HandlersFailed,
}

impl RefusedReason {
    const ALL: [RefusedReason; 5] = [
        RefusedReason::Malformed,
        RefusedReason::Foreign,
        RefusedReason::Fingerprint,
        RefusedReason::Invalid,
        RefusedReason::HandlersFailed,
    ];

    /// The label value in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedReason::Malformed => "malformed",
            RefusedReason::Foreign => "foreign",
            RefusedReason::Fingerprint => "fingerprint",
            RefusedReason::Invalid => "invalid",
            RefusedReason::HandlersFailed => "handlers_failed",
        }
    }
}

/// The live counters, shared by the emitting threads and the bridge's own.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) spooled: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) refused: [AtomicU64; 5],
    pub(crate) connected: AtomicBool,
    /// Events put in the queue or the spool (in their order there).
    pub(crate) stored: AtomicU64,
    /// Stored events taken off the front of the publisher's window
    /// (acknowledged or dropped): `stored - popped` are ahead of a flush.
    pub(crate) popped: AtomicU64,
    /// Stored events dropped by the publisher (damaged in the spool,
    /// unsendable, refused by the stream), perhaps before they are popped.
    pub(crate) dropped_late: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, reason: RefusedReason) {
        let at = RefusedReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.refused[at].fetch_add(1, Ordering::Relaxed);
    }

    /// Stored events waiting for the broker.
    pub(crate) fn backlog(&self) -> u64 {
        // Fates first: stored only grows, so the difference never wraps.
        let settled =
            self.acked.load(Ordering::Acquire) + self.dropped_late.load(Ordering::Acquire);
        self.stored.load(Ordering::Acquire).saturating_sub(settled)
    }

    pub(crate) fn snapshot(&self) -> BridgeStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BridgeStats {
            accepted: load(&self.accepted),
            published: load(&self.published),
            acked: load(&self.acked),
            retried: load(&self.retried),
            spooled: load(&self.spooled),
            dropped: load(&self.dropped),
            backlog: self.backlog(),
            received: load(&self.received),
            redelivered: load(&self.redelivered),
            duplicates: load(&self.duplicates),
            skipped: load(&self.skipped),
            refused: RefusedReason::ALL
                .iter()
                .zip(&self.refused)
                .map(|(reason, count)| (*reason, load(count)))
                .collect(),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

/// What a bridge has done so far; see [`NatsBridge::stats`](crate::NatsBridge::stats).
///
/// Outbound, every event the bridge took (`accepted`) is acked by the
/// broker, dropped by the policy, or still waiting (`backlog`):
/// `accepted == acked + dropped + backlog` whenever nothing is moving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Events the bridge took to forward.
    pub accepted: u64,
    /// Publishes sent, retries included.
    pub published: u64,
    /// Events the broker acknowledged (stored, or a duplicate of one stored).
    pub acked: u64,
    /// Publishes sent again after a failure (same message id).
    pub retried: u64,
    /// Events written to the spool.
    pub spooled: u64,
    /// Events dropped: by the policy (queue or spool full), or because the
    /// broker can never take them (larger than the server or the stream
    /// allows) or their spool line was damaged on disk. Each is logged and
    /// reported as `error.occurred` (policy drops: a warning per episode).
    pub dropped: u64,
    /// Events accepted and not yet acked or dropped.
    pub backlog: u64,
    /// Messages received and handled on the local bus.
    pub received: u64,
    /// Messages handed back for redelivery (their handlers failed).
    pub redelivered: u64,
    /// Messages received again after being handled (acked, not handled).
    pub duplicates: u64,
    /// Messages acked without handling: sent by this process, or of a type
    /// the consumer's selector leaves out.
    pub skipped: u64,
    /// Messages refused (terminated), by reason.
    pub refused: Vec<(RefusedReason, u64)>,
    /// Whether the client is connected now.
    pub connected: bool,
}

impl BridgeStats {
    /// Refused messages of one reason.
    pub fn refused(&self, reason: RefusedReason) -> u64 {
        self.refused
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

/// The bridge's metrics for a [`MetricsCollector`](sbox_events::metrics::MetricsCollector);
/// see [`NatsBridge::metrics`](crate::NatsBridge::metrics).
pub(crate) struct BridgeMetrics(pub(crate) std::sync::Arc<Counters>);

impl MetricsSource for BridgeMetrics {
    fn families(&self) -> Vec<Family> {
        let stats = self.0.snapshot();
        let mut families = Vec::new();
        let counters: [(&str, &str, u64); 10] = [
            (
                "sbox_nats_accepted_total",
                "Events taken to forward.",
                stats.accepted,
            ),
            (
                "sbox_nats_published_total",
                "Publishes sent, retries included.",
                stats.published,
            ),
            (
                "sbox_nats_acked_total",
                "Events acknowledged by the broker.",
                stats.acked,
            ),
            (
                "sbox_nats_retried_total",
                "Publishes sent again after a failure.",
                stats.retried,
            ),
            (
                "sbox_nats_spooled_total",
                "Events written to the local spool.",
                stats.spooled,
            ),
            (
                "sbox_nats_dropped_total",
                "Events dropped: queue or spool full, or never publishable.",
                stats.dropped,
            ),
            (
                "sbox_nats_received_total",
                "Messages handled on the local bus.",
                stats.received,
            ),
            (
                "sbox_nats_redelivered_total",
                "Messages handed back for redelivery.",
                stats.redelivered,
            ),
            (
                "sbox_nats_duplicates_total",
                "Messages received again after being handled.",
                stats.duplicates,
            ),
            (
                "sbox_nats_skipped_total",
                "Messages acked without handling.",
                stats.skipped,
            ),
        ];
        for (name, help, value) in counters {
            if let Ok(mut family) = Family::counter(name, help) {
                family.sample(&[], value as f64);
                families.push(family);
            }
        }
        if let Ok(mut refused) = Family::counter(
            "sbox_nats_refused_total",
            "Messages refused (terminated), by reason.",
        ) {
            for (reason, count) in &stats.refused {
                refused.sample(&[("reason", reason.as_str())], *count as f64);
            }
            families.push(refused);
        }
        let gauges = [
            (
                "sbox_nats_backlog",
                "Events waiting to be acknowledged.",
                stats.backlog as f64,
            ),
            (
                "sbox_nats_connected",
                "1 while connected to the broker.",
                f64::from(u8::from(stats.connected)),
            ),
        ];
        for (name, help, value) in gauges {
            if let Ok(mut family) = Family::gauge(name, help) {
                family.sample(&[], value);
                families.push(family);
            }
        }
        families
    }
}
