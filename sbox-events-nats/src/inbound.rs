//! Events from the broker: a durable pull consumer with explicit
//! acknowledgements, each message emitted on the local bus (with
//! `emit_json_async`, so async handlers run too) in its sender's trace,
//! with its id, timestamp, source and metadata, marked remote.
//!
//! What happens to each message:
//!
//! | message | outcome |
//! |---|---|
//! | handled, every handler ok | acknowledged |
//! | a handler failed or panicked | handed back with a delay (the configured backoff); after `max_deliver` deliveries terminated, counted and reported as `error.occurred` |
//! | sent by this process | acknowledged, skipped |
//! | of a type the consumer's selector leaves out | acknowledged, skipped |
//! | its id was handled already (a redelivery whose acknowledgement was lost) | acknowledged, not handled again |
//! | headers missing or unreadable, or a payload that is not the event | terminated (never redelivered), counted, `error.occurred` |
//! | an event name this binary has no type for | terminated, counted, `error.occurred` |
//! | a schema fingerprint that differs from this binary's | terminated, counted, `error.occurred` |
//! | no `Sbox-Fingerprint` header (published by another tool) | decoded by name, without the schema check |
//! | refused by validation here | terminated, counted |
//!
//! Acknowledgements are buffered by the client and flushed every 64
//! messages and whenever no message is waiting: a process that dies in
//! between gets those messages redelivered (at-least-once).

use crate::link::Link;
use crate::stats::{Counters, RefusedReason};
use crate::wire::Incoming;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures_util::StreamExt;
use sbox_events::escape::LogSafe;
use sbox_events::events::ErrorOccurred;
use sbox_events::trace::{self, TraceId};
use sbox_events::{ByNameError, EmitOptions, EventBus, EventSelector, EventType, Refusal};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Messages fetched ahead of the one being handled.
const BATCH: usize = 64;

/// What the consumer needs to know.
pub(crate) struct Consumer {
    pub(crate) bus: EventBus,
    pub(crate) link: Arc<Link>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) durable: String,
    pub(crate) selector: EventSelector,
    pub(crate) instance: String,
    pub(crate) max_deliver: i64,
    pub(crate) ack_wait: Duration,
    pub(crate) backoff: Vec<Duration>,
}

/// Event ids handled recently (a redelivery whose acknowledgement was lost
/// is acknowledged, not handled again): the last 100,000.
struct Recent {
    ids: HashSet<u128>,
    order: VecDeque<u128>,
}

impl Recent {
    const CAP: usize = 100_000;

    fn insert(&mut self, id: u128) {
        if self.ids.insert(id) {
            self.order.push_back(id);
            if self.order.len() > Recent::CAP
                && let Some(old) = self.order.pop_front()
            {
                self.ids.remove(&old);
            }
        }
    }
}

/// The consumer's loop, until `stop`: (re)creates the stream and the
/// consumer, then handles messages one at a time, in order.
pub(crate) async fn consume(consumer: Consumer, stop: Arc<crate::Stop>) {
    let mut recent = Recent {
        ids: HashSet::new(),
        order: VecDeque::new(),
    };
    while !stop.is_set() {
        let messages = match open(&consumer).await {
            Ok(messages) => messages,
            Err(err) => {
                tracing::debug!(target: "sbox_events_nats", error = %err, "consumer not ready yet");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    () = stop.wait() => return,
                }
                continue;
            }
        };
        drain(&consumer, messages, &mut recent, &stop).await;
    }
}

async fn open(consumer: &Consumer) -> Result<pull::Stream, String> {
    let stream = consumer.link.stream().await?;
    let config = pull::Config {
        durable_name: Some(consumer.durable.clone()),
        filter_subject: format!("{}.>", consumer.link.prefix),
        ack_policy: AckPolicy::Explicit,
        max_deliver: consumer.max_deliver,
        ack_wait: consumer.ack_wait,
        ..Default::default()
    };
    let pull = stream
        .create_consumer(config)
        .await
        .map_err(|e| e.to_string())?;
    // A small batch: messages wait in it while earlier ones are handled,
    // and their `ack_wait` runs meanwhile.
    pull.stream()
        .max_messages_per_batch(BATCH)
        .messages()
        .await
        .map_err(|e| e.to_string())
}

/// Handles messages until the stream ends (consumer deleted) or `stop`.
async fn drain(
    consumer: &Consumer,
    mut messages: pull::Stream,
    recent: &mut Recent,
    stop: &Arc<crate::Stop>,
) {
    let mut unflushed = 0u32;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(Duration::from_millis(20), messages.next()) => next,
            () = stop.wait() => {
                flush(consumer).await;
                return;
            }
        };
        let message = match next {
            // Nothing waiting: make the buffered acknowledgements certain.
            Err(_idle) => {
                if unflushed > 0 {
                    flush(consumer).await;
                    unflushed = 0;
                }
                continue;
            }
            Ok(None) => return,
            Ok(Some(Err(err))) => {
                tracing::debug!(target: "sbox_events_nats", error = %err, "consumer stream");
                if matches!(
                    err.kind(),
                    MessagesErrorKind::ConsumerDeleted | MessagesErrorKind::NoResponders
                ) {
                    // The stream or the consumer is gone: made again.
                    return;
                }
                continue;
            }
            Ok(Some(Ok(message))) => message,
        };
        // Stopping does not wait for a handler: its message, unacknowledged,
        // is delivered again after `ack_wait`.
        tokio::select! {
            () = handle(consumer, &message, recent) => {}
            () = stop.wait() => {
                flush(consumer).await;
                return;
            }
        }
        unflushed += 1;
        if unflushed >= 64 {
            flush(consumer).await;
            unflushed = 0;
        }
    }
}

async fn flush(consumer: &Consumer) {
    let _ = tokio::time::timeout(Duration::from_secs(5), consumer.link.client.flush()).await;
}

/// One message, acknowledged, handed back or terminated.
async fn handle(
    consumer: &Consumer,
    message: &async_nats::jetstream::Message,
    recent: &mut Recent,
) {
    let counters = &consumer.counters;
    let delivered = message.info().map_or(1, |info| info.delivered);
    let incoming = match Incoming::read(message.headers.as_ref()) {
        Ok(incoming) => incoming,
        Err(problem) => {
            return refuse(
                consumer,
                message,
                RefusedReason::Malformed,
                None,
                "?",
                &problem,
            )
            .await;
        }
    };
    let name = incoming.name.as_str();
    if incoming.instance == consumer.instance || !consumer.selector.matches(name) {
        Counters::add(&counters.skipped, 1);
        reply(message, AckKind::Ack).await;
        return;
    }
    let trace = Some(incoming.trace_id);
    let Some(event_type) = EventType::by_name(name) else {
        let problem = "no event type of this name is linked into this binary";
        return refuse(
            consumer,
            message,
            RefusedReason::Foreign,
            trace,
            name,
            problem,
        )
        .await;
    };
    if let Some(found) = &incoming.fingerprint
        && found != event_type.fingerprint()
    {
        let problem = format!(
            "sent with schema {found:?}, but this binary's type has schema {:?}",
            event_type.fingerprint()
        );
        return refuse(
            consumer,
            message,
            RefusedReason::Fingerprint,
            trace,
            name,
            &problem,
        )
        .await;
    }
    if recent.ids.contains(&incoming.event_id.as_u128()) {
        Counters::add(&counters.duplicates, 1);
        reply(message, AckKind::Ack).await;
        return;
    }
    let Ok(payload) = std::str::from_utf8(&message.payload) else {
        let problem = "the payload is not UTF-8";
        return refuse(
            consumer,
            message,
            RefusedReason::Malformed,
            trace,
            name,
            problem,
        )
        .await;
    };
    let mut options = EmitOptions::new()
        .trace_id(incoming.trace_id)
        .event_id(incoming.event_id)
        .source(incoming.envelope.source)
        .with_metadata(incoming.envelope.metadata)
        .remote(incoming.instance);
    if let Some(timestamp) = incoming.timestamp {
        options = options.timestamp(timestamp);
    }
    if let Some(cause) = incoming.envelope.cause {
        options = options.cause(cause);
    }
    let emit = match consumer.bus.emit_json_async(name, payload, options) {
        Ok(emit) => emit,
        Err(err @ ByNameError::Decode { .. }) => {
            let problem = err.to_string();
            return refuse(
                consumer,
                message,
                RefusedReason::Malformed,
                trace,
                name,
                &problem,
            )
            .await;
        }
        Err(err) => {
            let problem = err.to_string();
            return refuse(
                consumer,
                message,
                RefusedReason::Foreign,
                trace,
                name,
                &problem,
            )
            .await;
        }
    };
    let report = emit.await;
    // Refused here (validation, or the bus's depth limit): no handler ran,
    // and a redelivery would be refused the same way.
    if let Some(refusal) = report.refused() {
        let reason = match refusal {
            Refusal::Invalid { reason } => reason.clone(),
            other => other.to_string(),
        };
        return refuse(
            consumer,
            message,
            RefusedReason::Invalid,
            trace,
            name,
            &reason,
        )
        .await;
    }
    if report.failures().is_empty() {
        recent.insert(incoming.event_id.as_u128());
        Counters::add(&counters.received, 1);
        reply(message, AckKind::Ack).await;
        return;
    }
    if delivered < consumer.max_deliver {
        let at = usize::try_from(delivered - 1).unwrap_or(0);
        let delay = consumer.backoff[at.min(consumer.backoff.len() - 1)];
        Counters::add(&counters.redelivered, 1);
        reply(message, AckKind::Nak(Some(delay))).await;
        return;
    }
    let problem = format!("its handlers failed on each of {delivered} deliveries: {report}");
    refuse(
        consumer,
        message,
        RefusedReason::HandlersFailed,
        trace,
        name,
        &problem,
    )
    .await;
}

/// Acknowledges (or hands back, or terminates) a message; a connection
/// that is down does not hold the consumer up (the message comes again).
async fn reply(message: &async_nats::jetstream::Message, kind: AckKind) {
    let _ = tokio::time::timeout(Duration::from_secs(5), message.ack_with(kind)).await;
}

/// Terminates a message (never redelivered), counts it, logs it, and
/// reports it as `error.occurred` on the local bus (in the message's trace
/// when it has one).
async fn refuse(
    consumer: &Consumer,
    message: &async_nats::jetstream::Message,
    reason: RefusedReason,
    trace_id: Option<TraceId>,
    event: &str,
    problem: &str,
) {
    consumer.counters.refused(reason);
    reply(message, AckKind::Term).await;
    tracing::warn!(
        target: "sbox_events_nats",
        subject = %LogSafe(message.subject.as_str()),
        reason = reason.as_str(),
        problem = %LogSafe(problem),
        "message refused"
    );
    let error = ErrorOccurred {
        error: format!("message on {} refused: {problem}", message.subject),
        error_type: format!("sbox_events_nats::{}", reason.as_str()),
        event: event.to_owned(),
        handler: "sbox_events_nats::inbound".to_owned(),
    };
    match trace_id {
        Some(id) => drop(trace::with_trace_id(id, || consumer.bus.emit(error))),
        None => drop(consumer.bus.emit(error)),
    }
}
