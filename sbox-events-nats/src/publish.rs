//! Publishing what the emitting side stored ([`publisher`], a task on the
//! bridge's thread).
//!
//! It keeps up to `max_in_flight` publishes awaiting their acknowledgement,
//! in order. When one fails or times out (the server is down, restarting,
//! or a message was lost on the wire), every publish of the window is sent
//! again, oldest first, with its original `Nats-Msg-Id`, once the client is
//! connected again (go-back-N), after a delay that doubles with each failure
//! in a row (up to 5 s): the broker stores each id once within its
//! duplicate window, so nothing is lost and nothing is stored twice.
//!
//! An event the broker can never take (larger than the server's
//! `max_payload` or the stream's maximum message size) is dropped, counted,
//! logged and reported as `error.occurred`; so is a damaged spool line.
//! Everything else is retried for as long as it takes (a full stream, a
//! stream that does not take the subjects, the broker down), with a warning
//! when it lasts.

use crate::events::{BridgeDrained, BridgeSpooling};
use crate::link::Link;
use crate::outbound::{Outbound, Store, lock};
use crate::spool::{COMPACT_AT, Reader};
use crate::stats::Counters;
use crate::wire::Outgoing;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use bytes::Bytes;
use sbox_events::EventBus;
use sbox_events::escape::LogSafe;
use sbox_events::events::ErrorOccurred;
use sbox_events::trace::{self, TraceId};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Failures in a row after which a warning is logged.
const WARN_AFTER: u32 = 3;

/// Where the publisher takes messages from.
enum Source {
    Memory,
    Spool { reader: Reader, acked: u64 },
}

/// One message of the window: sent (with its acknowledgement pending) or
/// not yet; `end` is its spool offset. One without a message was dropped
/// (damaged in the spool, or never publishable).
struct Flight {
    message: Option<Outgoing>,
    end: u64,
    ack: Option<PublishAckFuture>,
    sent: bool,
}

/// A publish that failed, to try again.
struct Failure {
    kind: PublishErrorKind,
    error: String,
}

/// What the publisher shares with its helpers.
struct Publisher {
    out: Arc<Outbound>,
    link: Arc<Link>,
    bus: EventBus,
    max_in_flight: usize,
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
        Store::Spool { spool, start } => Source::Spool {
            reader: spool.reader(*start),
            acked: *start,
        },
    };
    let p = Publisher {
        out,
        link,
        bus,
        max_in_flight,
    };
    let mut window: VecDeque<Flight> = VecDeque::new();
    let mut behind: Option<u64> = None;
    let mut failures = 0u32;
    let mut compact_after = Instant::now();
    while !stop.is_set() {
        p.fill(&mut source, &mut window);
        p.watch_backlog(&mut behind);
        if Instant::now() >= compact_after && !p.compact(&mut source, &mut window) {
            compact_after = Instant::now() + Duration::from_secs(10);
        }
        if window.is_empty() {
            tokio::select! {
                () = p.out.wake.notified() => {}
                () = stop.wait() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        let step = tokio::select! {
            step = p.send_and_await(&mut window, &mut source) => step,
            () = stop.wait() => break,
        };
        let Err(failure) = step else {
            failures = 0;
            continue;
        };
        // Go-back-N: every publish of the window goes out again, in order,
        // with its id, once the client is connected.
        let resent = window
            .iter()
            .filter(|f| f.sent && f.message.is_some())
            .count() as u64;
        for flight in &mut window {
            flight.ack = None;
            flight.sent = false;
        }
        Counters::add(&p.out.counters.retried, resent);
        failures = failures.saturating_add(1);
        if failures == WARN_AFTER && p.link.connected() {
            tracing::warn!(
                target: "sbox_events_nats",
                error = %LogSafe(&failure.error),
                backlog = p.out.counters.backlog(),
                "the broker does not acknowledge: events wait and are sent again"
            );
        }
        let tick = || p.watch_backlog(&mut behind);
        p.link.recover(failure.kind, failures, &stop, tick).await;
    }
    // What was acknowledged last leaves the spool now, not at the next
    // start.
    p.compact(&mut source, &mut window);
}

impl Publisher {
    /// Moves accepted messages into the window, up to `max_in_flight`.
    fn fill(&self, source: &mut Source, window: &mut VecDeque<Flight>) {
        while window.len() < self.max_in_flight {
            let next = match (&mut *source, &self.out.store) {
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
                    reader.next(spool, spool.len()).map(|(end, line)| {
                        let message = line
                            .map_err(|problem| {
                                let problem = format!("a damaged spool line is skipped: {problem}");
                                self.dropped("?", None, &problem);
                            })
                            .ok();
                        Flight {
                            message,
                            end,
                            ack: None,
                            sent: false,
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

    /// Drops from the spool what the broker acknowledged, when worth it
    /// (see `Spool::compact`); `false` if that failed.
    fn compact(&self, source: &mut Source, window: &mut VecDeque<Flight>) -> bool {
        let (Source::Spool { reader, acked }, Some(spool)) = (source, self.out.spool()) else {
            return true;
        };
        if *acked == 0 || !(window.is_empty() || *acked >= COMPACT_AT) {
            return true;
        }
        match spool.compact() {
            Ok(0) => true,
            Ok(shift) => {
                reader.shifted(shift);
                *acked -= shift;
                for flight in window {
                    flight.end -= shift;
                }
                true
            }
            Err(err) => {
                tracing::warn!(
                    target: "sbox_events_nats",
                    path = %spool.path().display(),
                    error = %err,
                    "cannot compact the spool: it keeps what was acknowledged for now"
                );
                false
            }
        }
    }

    /// Sends what is unsent, then awaits the oldest acknowledgement.
    async fn send_and_await(
        &self,
        window: &mut VecDeque<Flight>,
        source: &mut Source,
    ) -> Result<(), Failure> {
        let counters = &self.out.counters;
        for flight in window.iter_mut().filter(|f| !f.sent) {
            let Some(message) = &flight.message else {
                flight.sent = true;
                continue;
            };
            match self.link.send(message).await {
                Ok(ack) => {
                    flight.ack = Some(ack);
                    flight.sent = true;
                    Counters::add(&counters.published, 1);
                }
                Err(Send::Never(problem)) => {
                    self.dropped(&message.name, Some(message.trace_id), &problem);
                    flight.message = None;
                    flight.sent = true;
                }
                Err(Send::Again(failure)) => return Err(failure),
            }
        }
        let Some(front) = window.front_mut() else {
            return Ok(());
        };
        let acked = match front.ack.take() {
            Some(ack) => match ack.await {
                Ok(_) => true,
                Err(err) if refused_for_good(&err) => {
                    if let Some(message) = front.message.take() {
                        let problem = format!("the stream refuses it: {err}");
                        self.dropped(&message.name, Some(message.trace_id), &problem);
                    }
                    false
                }
                Err(err) => {
                    tracing::debug!(target: "sbox_events_nats", error = %err, "publish not acknowledged");
                    return Err(Failure {
                        kind: err.kind(),
                        error: err.to_string(),
                    });
                }
            },
            None => false,
        };
        if let Some(flight) = window.pop_front() {
            if acked {
                Counters::add(&counters.acked, 1);
            }
            Counters::add(&counters.popped, 1);
            if let (Source::Spool { acked, .. }, Some(spool)) = (source, self.out.spool()) {
                *acked = flight.end;
                spool.set_acked(flight.end);
            }
            self.out.progressed();
        }
        Ok(())
    }

    /// Counts, logs and reports (as `error.occurred`, in the event's trace)
    /// an event that will never be published.
    #[cold]
    fn dropped(&self, event: &str, trace_id: Option<TraceId>, problem: &str) {
        let counters = &self.out.counters;
        Counters::add(&counters.dropped, 1);
        Counters::add(&counters.dropped_late, 1);
        tracing::error!(
            target: "sbox_events_nats",
            event = %LogSafe(event),
            problem = %LogSafe(problem),
            "event cannot be published: dropped"
        );
        let error = ErrorOccurred {
            error: format!("event {event} cannot be published: {problem}"),
            error_type: "sbox_events_nats::unpublishable".to_owned(),
            event: event.to_owned(),
            handler: "sbox_events_nats::outbound".to_owned(),
        };
        match trace_id {
            Some(id) => drop(trace::with_trace_id(id, || self.bus.emit(error))),
            None => drop(self.bus.emit(error)),
        }
    }

    /// Emits `nats.spooling` when the spool's backlog grows past the window
    /// (or the broker is gone with events waiting) and `nats.drained` when
    /// it is empty again.
    fn watch_backlog(&self, behind: &mut Option<u64>) {
        if self.out.spool().is_none() {
            return;
        }
        let backlog = self.out.counters.backlog();
        let acked = self.out.counters.acked.load(Ordering::Relaxed);
        match behind {
            None if backlog > self.max_in_flight as u64
                || (backlog > 0 && !self.link.connected()) =>
            {
                *behind = Some(acked);
                self.bus.emit(BridgeSpooling { backlog });
            }
            Some(since) if backlog == 0 => {
                let forwarded = acked - *since;
                *behind = None;
                self.bus.emit(BridgeDrained { forwarded });
            }
            _ => {}
        }
    }
}

/// Whether the broker refused a publish in a way no retry changes (the
/// message is larger than the stream allows).
fn refused_for_good(err: &PublishError) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|error| error.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)
}

/// Why a message was not sent.
enum Send {
    /// Worth trying again once connected.
    Again(Failure),
    /// Never publishable.
    Never(String),
}

impl Link {
    /// Publishes one message; the acknowledgement is awaited later.
    async fn send(&self, message: &Outgoing) -> Result<PublishAckFuture, Send> {
        let headers = message.headers().map_err(Send::Never)?;
        let payload = Bytes::from(message.data.clone().into_bytes());
        match self
            .jetstream
            .publish_with_headers(message.subject(&self.prefix), headers, payload)
            .await
        {
            Ok(ack) => Ok(ack),
            // The server's limit is known once connected (before, the
            // client assumes one).
            Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded && self.connected() => {
                Err(Send::Never(err.to_string()))
            }
            Err(err) => Err(Send::Again(Failure {
                kind: err.kind(),
                error: err.to_string(),
            })),
        }
    }
}
