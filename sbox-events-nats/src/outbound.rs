//! Events on their way to the broker.
//!
//! The emitting side ([`Outbound::accept`], a subscription's handler) turns
//! an event into an [`Outgoing`] message and stores it by the
//! [`Policy`](crate::Policy): an in-memory queue, or the spool. It never
//! waits for the broker (except under `Policy::Block`, for room in the
//! queue, up to its timeout).
//!
//! The publishing side ([`publisher`], a task on the bridge's thread) keeps
//! up to `max_in_flight` publishes awaiting their acknowledgement, in
//! order. When one fails or times out (the server is down, restarting, or a
//! message was lost on the wire), every publish of the window is sent
//! again, oldest first, with its original `Nats-Msg-Id`, once the client
//! is connected again (go-back-N): the broker stores each id once within
//! its duplicate window, so nothing is lost and nothing is stored twice.

use crate::config::Policy;
use crate::events::{BridgeDrained, BridgeSpooling};
use crate::link::Link;
use crate::spool::{Reader, Spool, SpoolError};
use crate::stats::Counters;
use crate::wire::Outgoing;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use bytes::Bytes;
use sbox_events::escape::LogSafe;
use sbox_events::{AnyEvent, EventBus, EventContext, HandlerError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Where accepted events wait for the publisher.
enum Store {
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
    store: Store,
    /// Wakes the publisher when something was stored.
    pub(crate) wake: Notify,
    /// Signalled when the backlog shrinks (for `flush`).
    progress: (Mutex<()>, Condvar),
    /// The spool offset acknowledged so far (for the periodic sync).
    pub(crate) acked_offset: AtomicU64,
    /// Whether a "full" warning was logged since the last success.
    warned_full: AtomicBool,
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
                    Counters::add(&counters.backlog, lines);
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
            acked_offset: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
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
    /// came from the broker, replays and the bridge's own state events are
    /// not forwarded.
    pub(crate) fn accept(
        &self,
        event: &AnyEvent<'_>,
        ctx: &EventContext<'_>,
    ) -> Result<(), HandlerError> {
        if ctx.is_remote() || ctx.is_replay() || crate::events::is_bridge_event(event.name()) {
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
                if queue.len() >= *capacity
                    && let Some(timeout) = block
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
                if queue.len() >= *capacity {
                    drop(queue);
                    self.dropped(event.name(), "the queue is full");
                    return Ok(());
                }
                queue.push_back(message);
                drop(queue);
            }
            Store::Spool { spool, .. } => match spool.append(&message) {
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
            },
        }
        self.warned_full.store(false, Ordering::Relaxed);
        Counters::add(&self.counters.backlog, 1);
        self.wake.notify_one();
        Ok(())
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

    fn progressed(&self) {
        let _guard = lock(&self.progress.0);
        self.progress.1.notify_all();
    }

    /// Waits until nothing is waiting for the broker, or `timeout`.
    pub(crate) fn wait_drained(&self, timeout: Duration) -> Result<(), u64> {
        let deadline = Instant::now() + timeout;
        let mut guard = lock(&self.progress.0);
        loop {
            let backlog = self.counters.backlog.load(Ordering::Relaxed);
            if backlog == 0 {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(backlog);
            }
            // Woken by progress; the short cap covers a notification sent
            // between the load above and this wait.
            guard = self
                .progress
                .1
                .wait_timeout(guard, left.min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only this crate's code runs under these locks.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Lines in the spool after `start` (leftovers of an earlier run).
fn count_lines(spool: &Spool, start: u64) -> u64 {
    let Ok(mut reader) = spool.reader(start) else {
        return 0;
    };
    let limit = spool.len();
    let mut lines = 0;
    while reader.next(limit).is_some() {
        lines += 1;
    }
    lines
}

/// Where the publisher takes messages from.
enum Source {
    Memory,
    Spool { reader: Reader, acked: u64 },
}

/// One message of the window: sent (with its acknowledgement pending) or
/// not yet; `end` is its spool offset. A damaged spool line has no message.
struct Flight {
    message: Option<Outgoing>,
    end: u64,
    ack: Option<PublishAckFuture>,
    sent: bool,
}

/// Publishes what is accepted until `stop`, then returns.
pub(crate) async fn publisher(
    out: Arc<Outbound>,
    link: Arc<Link>,
    bus: EventBus,
    max_in_flight: usize,
    stop: Arc<crate::Stop>,
) {
    let mut source = match &out.store {
        Store::Memory { .. } => Source::Memory,
        Store::Spool { spool, start } => match spool.reader(*start) {
            Ok(reader) => {
                out.acked_offset.store(*start, Ordering::Relaxed);
                Source::Spool {
                    reader,
                    acked: *start,
                }
            }
            Err(err) => {
                tracing::error!(
                    target: "sbox_events_nats",
                    path = %spool.path().display(),
                    error = %err,
                    "cannot read the spool: nothing will be forwarded"
                );
                return;
            }
        },
    };
    let mut window: VecDeque<Flight> = VecDeque::new();
    let mut behind: Option<u64> = None;
    while !stop.is_set() {
        fill(&out, &mut source, &mut window, max_in_flight);
        watch_backlog(&out, &link, &bus, &mut behind, max_in_flight);
        if window.is_empty() {
            if let (Source::Spool { reader, acked }, Some(spool)) = (&mut source, out.spool())
                && spool.truncate_if_acked(*acked).unwrap_or(false)
                && reader.rewind().is_ok()
            {
                *acked = 0;
                out.acked_offset.store(0, Ordering::Relaxed);
            }
            tokio::select! {
                () = out.wake.notified() => {}
                () = stop.wait() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        match send_and_await(&out, &link, &mut window, &mut source).await {
            Ok(()) => {}
            Err(kind) => {
                // Go-back-N: every publish of the window goes out again, in
                // order, with its id, once the client is connected.
                let resent = window.iter().filter(|f| f.sent).count() as u64;
                for flight in &mut window {
                    flight.ack = None;
                    flight.sent = false;
                }
                Counters::add(&out.counters.retried, resent);
                link.recover(kind, &stop).await;
            }
        }
    }
}

/// Moves accepted messages into the window, up to `max`.
fn fill(out: &Outbound, source: &mut Source, window: &mut VecDeque<Flight>, max: usize) {
    while window.len() < max {
        let next = match (&mut *source, &out.store) {
            (Source::Memory, Store::Memory { queue, room, .. }) => {
                let message = lock(queue).pop_front();
                room.notify_one();
                message.map(|message| Flight {
                    message: Some(message),
                    end: 0,
                    ack: None,
                    sent: false,
                })
            }
            (Source::Spool { reader, .. }, Store::Spool { spool, .. }) => {
                reader.next(spool.len()).map(|(end, line)| match line {
                    Ok(message) => Flight {
                        message: Some(message),
                        end,
                        ack: None,
                        sent: false,
                    },
                    Err(problem) => {
                        tracing::error!(
                            target: "sbox_events_nats",
                            offset = end,
                            problem = %LogSafe(&problem),
                            "a damaged spool line is skipped"
                        );
                        Flight {
                            message: None,
                            end,
                            ack: None,
                            sent: false,
                        }
                    }
                })
            }
            _ => None,
        };
        match next {
            Some(flight) => window.push_back(flight),
            None => return,
        }
    }
}

/// Sends what is unsent, then awaits the oldest acknowledgement.
async fn send_and_await(
    out: &Outbound,
    link: &Link,
    window: &mut VecDeque<Flight>,
    source: &mut Source,
) -> Result<(), PublishErrorKind> {
    for flight in window.iter_mut().filter(|f| !f.sent) {
        let Some(message) = &flight.message else {
            flight.sent = true;
            continue;
        };
        match link.send(message).await {
            Ok(ack) => {
                flight.ack = Some(ack);
                flight.sent = true;
                Counters::add(&out.counters.published, 1);
            }
            Err(Unsendable(problem)) => {
                // Can never be published (too large, not a header value):
                // dropped, counted, logged.
                tracing::error!(
                    target: "sbox_events_nats",
                    event = %LogSafe(&message.name),
                    problem = %LogSafe(&problem),
                    "event cannot be published: dropped"
                );
                flight.message = None;
                flight.sent = true;
                Counters::add(&out.counters.dropped, 1);
                // Taken off the backlog where it is popped (as acked = not).
            }
            Err(Transient(kind)) => return Err(kind),
        }
    }
    let Some(front) = window.front_mut() else {
        return Ok(());
    };
    let acked = match front.ack.take() {
        Some(ack) => match ack.await {
            Ok(_) => true,
            Err(err) => {
                tracing::debug!(target: "sbox_events_nats", error = %err, "publish not acknowledged");
                return Err(err.kind());
            }
        },
        None => false,
    };
    if let Some(flight) = window.pop_front() {
        if acked {
            Counters::add(&out.counters.acked, 1);
        }
        out.counters.backlog.fetch_sub(1, Ordering::Relaxed);
        if let Source::Spool { acked, .. } = source {
            *acked = flight.end;
            out.acked_offset.store(flight.end, Ordering::Relaxed);
        }
        out.progressed();
    }
    Ok(())
}

/// A publish that failed.
pub(crate) enum SendError {
    /// Worth trying again once connected.
    Transient(PublishErrorKind),
    /// Never publishable.
    Unsendable(String),
}

use SendError::{Transient, Unsendable};

/// Emits `nats.spooling` when the spool's backlog grows past the window
/// (or the broker is gone with events waiting) and `nats.drained` when it
/// is empty again.
fn watch_backlog(
    out: &Outbound,
    link: &Link,
    bus: &EventBus,
    behind: &mut Option<u64>,
    max: usize,
) {
    if out.spool().is_none() {
        return;
    }
    let backlog = out.counters.backlog.load(Ordering::Relaxed);
    let acked = out.counters.acked.load(Ordering::Relaxed);
    match behind {
        None if backlog > max as u64 || (backlog > 0 && !link.connected()) => {
            *behind = Some(acked);
            bus.emit(BridgeSpooling { backlog });
        }
        Some(since) if backlog == 0 => {
            let forwarded = acked - *since;
            *behind = None;
            bus.emit(BridgeDrained { forwarded });
        }
        _ => {}
    }
}

impl Link {
    /// Publishes one message; the acknowledgement is awaited later.
    async fn send(&self, message: &Outgoing) -> Result<PublishAckFuture, SendError> {
        let headers = message.headers().map_err(Unsendable)?;
        let payload = Bytes::from(message.data.clone().into_bytes());
        match self
            .jetstream
            .publish_with_headers(message.subject(&self.prefix), headers, payload)
            .await
        {
            Ok(ack) => Ok(ack),
            Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                Err(Unsendable(err.to_string()))
            }
            Err(err) => Err(Transient(err.kind())),
        }
    }
}
