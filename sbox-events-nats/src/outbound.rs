//! Events on their way to the broker.
//!
//! The emitting side ([`Outbound::accept`], a subscription's handler) turns
//! an event into an [`Outgoing`] message and stores it by the
//! [`Policy`](crate::Policy): an in-memory queue, or the spool. It never
//! waits for the broker (except under `Policy::Block`, for room in the
//! queue, up to its timeout).
//!
//! The publishing side is in [`crate::publish`].
//!
//! Events emitted on the bridge's own thread (by handlers of received
//! events) never wait for room under `Policy::Block`: the room would be
//! made by that same thread. They go into the queue over its capacity
//! instead (bounded by what the received events emit).

use crate::config::Policy;
use crate::spool::{Spool, SpoolError};
use crate::stats::Counters;
use crate::wire::Outgoing;
use sbox_events::escape::LogSafe;
use sbox_events::{AnyEvent, EventContext, HandlerError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Where accepted events wait for the publisher.
pub(crate) enum Store {
    Memory {
        queue: Mutex<VecDeque<Outgoing>>,
        capacity: usize,
        /// `Policy::Block`'s timeout; `None` for `Policy::Drop`.
        block: Option<Duration>,
        /// Signalled when the publisher takes from the queue.
        room: Condvar,
    },
    Spool {
        spool: Arc<Spool>,
        /// Where a reader starts: what was acknowledged when it opened.
        start: u64,
    },
}

/// The outbound half of a bridge, shared by the emitting threads and the
/// publisher.
pub(crate) struct Outbound {
    pub(crate) counters: Arc<Counters>,
    instance: String,
    pub(crate) store: Store,
    /// Wakes the publisher when something was stored.
    pub(crate) wake: Notify,
    /// Signalled when the backlog shrinks (for `flush`).
    progress: (Mutex<()>, Condvar),
    /// Whether a "full" warning was logged since the last success.
    warned_full: AtomicBool,
    /// The bridge's own thread, where nothing may wait for the publisher.
    pub(crate) bridge_thread: OnceLock<ThreadId>,
}

impl Outbound {
    /// The outbound half for `policy`; a spool's leftovers from an earlier
    /// run count as accepted and waiting.
    pub(crate) fn new(
        counters: Arc<Counters>,
        instance: String,
        policy: &Policy,
        spool: Option<(Arc<Spool>, u64)>,
    ) -> Outbound {
        let store = match (policy, spool) {
            (_, Some((spool, start))) => {
                let leftover = spool.len().saturating_sub(start);
                if leftover > 0 {
                    // Lines, not bytes: count them once, here.
                    let lines = count_lines(&spool, start);
                    Counters::add(&counters.accepted, lines);
                    Counters::add(&counters.stored, lines);
                }
                Store::Spool { spool, start }
            }
            (Policy::Block { queue, timeout }, None) => Store::Memory {
                queue: Mutex::new(VecDeque::with_capacity((*queue).min(4096))),
                capacity: (*queue).max(1),
                block: Some(*timeout),
                room: Condvar::new(),
            },
            (Policy::Drop { queue }, None) => Store::Memory {
                queue: Mutex::new(VecDeque::with_capacity((*queue).min(4096))),
                capacity: (*queue).max(1),
                block: None,
                room: Condvar::new(),
            },
            // `start` opens the spool of a spool policy: not reached.
            (Policy::Spool { .. }, None) => Store::Memory {
                queue: Mutex::new(VecDeque::new()),
                capacity: 8192,
                block: None,
                room: Condvar::new(),
            },
        };
        Outbound {
            counters,
            instance,
            store,
            wake: Notify::new(),
            progress: (Mutex::new(()), Condvar::new()),
            warned_full: AtomicBool::new(false),
            bridge_thread: OnceLock::new(),
        }
    }

    /// The spool, if the policy has one.
    pub(crate) fn spool(&self) -> Option<&Arc<Spool>> {
        match &self.store {
            Store::Spool { spool, .. } => Some(spool),
            Store::Memory { .. } => None,
        }
    }

    /// Takes an event to forward (on the emitting thread). Events that
    /// came from the broker, replays and the bridge's own state events and
    /// error reports are not forwarded.
    pub(crate) fn accept(
        &self,
        event: &AnyEvent<'_>,
        ctx: &EventContext<'_>,
    ) -> Result<(), HandlerError> {
        if ctx.is_remote() || ctx.is_replay() || crate::events::is_bridge_event(event) {
            return Ok(());
        }
        let data = event
            .to_json_string()
            .map_err(|e| HandlerError::new(e.to_string(), "serde_json::Error"))?;
        let message = Outgoing::new(
            &ctx.envelope(),
            event.event_type().fingerprint(),
            &self.instance,
            data,
        );
        Counters::add(&self.counters.accepted, 1);
        match &self.store {
            Store::Memory {
                queue,
                capacity,
                block,
                room,
            } => {
                let mut queue = lock(queue);
                let here = self.on_bridge_thread();
                if queue.len() >= *capacity
                    && let Some(timeout) = block
                    && !here
                {
                    let deadline = Instant::now() + *timeout;
                    while queue.len() >= *capacity {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        queue = room
                            .wait_timeout(queue, left)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
                if queue.len() >= *capacity && !(here && block.is_some()) {
                    drop(queue);
                    self.dropped(event.name(), "the queue is full");
                    return Ok(());
                }
                queue.push_back(message);
                // Under the lock: counted in the queue's order.
                Counters::add(&self.counters.stored, 1);
                drop(queue);
            }
            Store::Spool { spool, .. } => {
                let stored = || Counters::add(&self.counters.stored, 1);
                match spool.append(&message, stored) {
                    Ok(()) => Counters::add(&self.counters.spooled, 1),
                    Err(SpoolError::Full) => {
                        self.dropped(event.name(), "the spool is full");
                        return Ok(());
                    }
                    Err(SpoolError::Io(err)) => {
                        Counters::add(&self.counters.dropped, 1);
                        self.progressed();
                        return Err(HandlerError::new(
                            format!("cannot write the spool {}: {err}", spool.path().display()),
                            "std::io::Error",
                        ));
                    }
                }
            }
        }
        self.warned_full.store(false, Ordering::Relaxed);
        self.wake.notify_one();
        Ok(())
    }

    /// Whether the caller runs on the bridge's own thread.
    pub(crate) fn on_bridge_thread(&self) -> bool {
        self.bridge_thread.get() == Some(&std::thread::current().id())
    }

    /// Counts a dropped event, and warns once per episode.
    #[cold]
    fn dropped(&self, event: &str, why: &str) {
        Counters::add(&self.counters.dropped, 1);
        if !self.warned_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "sbox_events_nats",
                event = %LogSafe(event),
                "{why}: dropping events until the broker catches up (counted in sbox_nats_dropped_total)"
            );
        }
        self.progressed();
    }

    pub(crate) fn progressed(&self) {
        let _guard = lock(&self.progress.0);
        self.progress.1.notify_all();
    }

    /// Waits until every event stored before the call is acknowledged or
    /// dropped, or `timeout`; `Err` has how many are still waiting. (Events
    /// stored meanwhile are not waited for.)
    pub(crate) fn wait_flushed(&self, timeout: Duration) -> Result<(), u64> {
        let target = self.counters.stored.load(Ordering::Acquire);
        let left_of = || target.saturating_sub(self.counters.popped.load(Ordering::Acquire));
        if self.on_bridge_thread() {
            // The publisher runs on this thread: waiting would wait for
            // itself.
            return match left_of() {
                0 => Ok(()),
                n => Err(n),
            };
        }
        let deadline = Instant::now() + timeout;
        let mut guard = lock(&self.progress.0);
        loop {
            let left = left_of();
            if left == 0 {
                return Ok(());
            }
            let time = deadline.saturating_duration_since(Instant::now());
            if time.is_zero() {
                return Err(left);
            }
            // Woken by progress; the short cap covers a notification sent
            // between the load above and this wait.
            guard = self
                .progress
                .1
                .wait_timeout(guard, time.min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only this crate's code runs under these locks.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Lines in the spool after `start` (leftovers of an earlier run).
fn count_lines(spool: &Spool, start: u64) -> u64 {
    let mut reader = spool.reader(start);
    let limit = spool.len();
    let mut lines = 0;
    while reader.next(spool, limit).is_some() {
        lines += 1;
    }
    lines
}
