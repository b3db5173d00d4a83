//! Per-handler statistics cells: counters and a duration histogram per
//! handler, updated with relaxed atomics. The user-facing rules (what is
//! measured, what it costs) are documented on [`HandlerStats`].

use crate::handler::HandlerInfo;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Statistics of one handler on one bus; see
/// [`EventBus::handler_stats`](crate::EventBus::handler_stats).
///
/// Per-handler performance statistics, opt-in per bus
/// ([`EventBusBuilder::handler_stats`](crate::EventBusBuilder::handler_stats)).
///
/// For every handler (static or subscription) the bus counts calls, errors
/// and panics, and records each call's duration: total, maximum and a
/// log-linear histogram (four buckets per power of two, so a percentile is
/// reported within 25 % of the true value, never below it). An async
/// handler's duration runs from its call to its completion under
/// [`emit_async`](crate::EventBus::emit_async), `.await`s included, or to
/// the drop of the emit's future if it is dropped while the call is
/// pending (a cancelled call counts in `calls`, and is timed like any).
///
/// Cost: off by default, and then nothing is measured: the dispatch loop does
/// not even look. When on, every call costs one relaxed atomic add (the call
/// count; errors and panics add one more), and one call in 8 per handler
/// is timed: two `Instant::now()` reads (about
/// 16 ns each here), two adds, an atomic max and a histogram add, so about
/// 8 ns per call on average. Durations (`total`, `max`, `p50`, `p99`) are
/// therefore estimates from the timed calls; counts are exact. The peer
/// benchmark (`scripts/peers.sh`) measures an emit to one handler with and
/// without statistics. Threads that run the same handler at the same time
/// contend on its counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HandlerStats {
    /// The handler's name.
    pub handler: String,
    /// The event it handles.
    pub event: &'static str,
    /// Calls, including failed ones.
    pub calls: u64,
    /// Calls that returned `Err`.
    pub errors: u64,
    /// Calls that panicked.
    pub panics: u64,
    /// Calls whose duration was measured: one in 8, the
    /// first included.
    pub timed: u64,
    /// Time spent in all calls, estimated as the mean of the timed calls
    /// times `calls`.
    pub total: Duration,
    /// The slowest timed call.
    pub max: Duration,
    /// Median duration of the timed calls (upper bound of its histogram
    /// bucket).
    pub p50: Duration,
    /// 99th percentile duration of the timed calls (upper bound of its
    /// histogram bucket).
    pub p99: Duration,
}

/// How a failed call failed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Error,
    Panic,
}

/// One call in this many has its duration measured (the first call of each
/// handler included); calls, errors and panics are always counted.
pub(crate) const SAMPLE_EVERY: u64 = 8;

const BUCKETS: usize = 252;

pub(crate) struct StatsCell {
    info: HandlerInfo,
    calls: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    /// Calls whose duration was measured.
    timed: AtomicU64,
    /// Their summed duration.
    total_ns: AtomicU64,
    max_ns: AtomicU64,
    histogram: [AtomicU64; BUCKETS],
}

impl StatsCell {
    pub(crate) fn new(info: HandlerInfo) -> Self {
        StatsCell {
            info,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            timed: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
            histogram: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }

    /// Counts a call about to be made; returns whether to time it.
    #[inline]
    pub(crate) fn start(&self) -> bool {
        self.calls
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SAMPLE_EVERY)
    }

    /// Not a call after all: its subscription's filter turned the event
    /// away, or a synchronous emit skipped the (async) handler.
    #[cold]
    pub(crate) fn not_called(&self) {
        self.calls.fetch_sub(1, Ordering::Relaxed);
    }

    /// A call that failed.
    #[cold]
    pub(crate) fn failed(&self, outcome: Outcome) {
        match outcome {
            Outcome::Error => self.errors.fetch_add(1, Ordering::Relaxed),
            Outcome::Panic => self.panics.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// The duration of a timed call.
    pub(crate) fn timed(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.timed.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
        self.histogram[bucket(ns)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HandlerStats {
        let counts: Vec<u64> = self
            .histogram
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let max = self.max_ns.load(Ordering::Relaxed);
        let calls = self.calls.load(Ordering::Relaxed);
        let timed = self.timed.load(Ordering::Relaxed);
        let timed_ns = u128::from(self.total_ns.load(Ordering::Relaxed));
        // The mean of the timed calls, times every call.
        let total_ns = match timed {
            0 => 0,
            _ => timed_ns * u128::from(calls.max(timed)) / u128::from(timed),
        };
        HandlerStats {
            handler: self.info.name().to_owned(),
            event: self.info.event(),
            calls,
            errors: self.errors.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            timed,
            total: Duration::from_nanos(u64::try_from(total_ns).unwrap_or(u64::MAX)),
            max: Duration::from_nanos(max),
            p50: Duration::from_nanos(quantile(&counts, 0.50).min(max)),
            p99: Duration::from_nanos(quantile(&counts, 0.99).min(max)),
        }
    }
}

/// Log-linear bucket: values below 4 have their own bucket; above, each
/// power of two is split in four.
fn bucket(ns: u64) -> usize {
    if ns < 4 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros() as usize; // >= 2
    let sub = ((ns >> (exp - 2)) & 3) as usize;
    4 * (exp - 1) + sub
}

/// The largest value that falls in bucket `index`.
fn upper_bound(index: usize) -> u64 {
    if index < 4 {
        return index as u64;
    }
    let exp = index / 4 + 1;
    let sub = (index % 4) as u64;
    let next = (4 + sub + 1) as u128 * (1u128 << (exp - 2));
    u64::try_from(next - 1).unwrap_or(u64::MAX)
}

fn quantile(counts: &[u64], q: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (index, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return upper_bound(index);
        }
    }
    u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lies_within_its_bucket() {
        let mut values = vec![
            0,
            1,
            2,
            3,
            4,
            5,
            7,
            8,
            15,
            16,
            100,
            1_000,
            123_456,
            u64::MAX,
        ];
        values.extend((0..64).map(|s| 1u64 << s));
        for v in values {
            let b = bucket(v);
            assert!(b < BUCKETS, "{v}");
            assert!(upper_bound(b) >= v, "{v} above its bucket {b}");
            if b > 0 {
                assert!(upper_bound(b - 1) < v, "{v} belongs in an earlier bucket");
            }
            assert!(
                upper_bound(b) <= v.saturating_add(v / 4 + 1),
                "{v}: bucket too wide"
            );
        }
    }

    #[test]
    fn quantiles_are_upper_bounds_within_a_quarter() {
        let cell = StatsCell::new(crate::handler::HandlerInfo {
            name: "h".into(),
            event: "a.b",
            priority: 0,
            origin: crate::handler::HandlerOrigin::Subscription { id: 1 },
            is_async: false,
            resources: &[],
            missing: Vec::new(),
            emits: None,
        });
        // Every call timed here (`timed` directly), to check the quantiles.
        for us in 1..=100u64 {
            cell.start();
            cell.timed(Duration::from_micros(us));
        }
        for outcome in [Outcome::Error, Outcome::Panic] {
            cell.start();
            cell.timed(Duration::from_micros(5));
            cell.failed(outcome);
        }
        let s = cell.snapshot();
        assert_eq!((s.calls, s.errors, s.panics, s.timed), (102, 1, 1, 102));
        assert_eq!(s.max, Duration::from_micros(100));
        // 102 samples: the 51st smallest is 49 µs, the 101st is 99 µs.
        let within = |d: Duration, truth: u64| {
            d >= Duration::from_micros(truth) && d <= Duration::from_micros(truth) * 5 / 4
        };
        assert!(within(s.p50, 49), "{:?}", s.p50);
        assert!(within(s.p99, 99) && s.p99 <= s.max, "{:?}", s.p99);
        assert_eq!(s.total, Duration::from_micros(5050 + 10));
    }

    #[test]
    fn one_call_in_eight_is_timed_and_the_total_is_extrapolated() {
        let cell = StatsCell::new(crate::handler::HandlerInfo {
            name: "h".into(),
            event: "a.b",
            priority: 0,
            origin: crate::handler::HandlerOrigin::Subscription { id: 1 },
            is_async: false,
            resources: &[],
            missing: Vec::new(),
            emits: None,
        });
        let mut timed = 0;
        for _ in 0..20 {
            if cell.start() {
                timed += 1;
                cell.timed(Duration::from_micros(10));
            }
        }
        assert_eq!(timed, 3, "calls 1, 9 and 17");
        let s = cell.snapshot();
        assert_eq!((s.calls, s.timed), (20, 3));
        assert_eq!(s.total, Duration::from_micros(200), "mean 10 µs × 20 calls");
        cell.start();
        cell.not_called();
        assert_eq!(cell.snapshot().calls, 20, "a filtered call is no call");
    }
}
