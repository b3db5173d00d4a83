//! # sbox-events-nats
//!
//! A bridge between an [`EventBus`] and a [NATS JetStream] broker, for an
//! application that grows into several processes: the events one process
//! emits are handled in another, in the same trace, with nothing lost.
//!
//! ```no_run
//! use sbox_events::{EventBus, EventSelector};
//! use sbox_events_nats::{NatsBridge, Policy};
//! use std::time::Duration;
//!
//! let bus = EventBus::new();
//! // The orchestrator's side: forward every subscription event.
//! let bridge = NatsBridge::builder("nats://127.0.0.1:4222")
//!     .publish(EventSelector::pattern("subscription.*")?)
//!     .policy(Policy::spool("/var/spool/sboxmgr/events.jsonl"))
//!     .start(&bus)?;
//! // ... emit ...
//! bridge.shutdown(Duration::from_secs(10))?;
//!
//! // An audit service's side, in another process: receive them.
//! let bus = EventBus::new();
//! let bridge = NatsBridge::builder("nats://127.0.0.1:4222")
//!     .consume("audit", EventSelector::all())
//!     .start(&bus)?;
//! # drop(bridge);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is guaranteed
//!
//! * **At least once, de-duplicated.** Every event the bridge accepted is
//!   published until the broker acknowledges it (whatever the broker's
//!   outages), with its event id as `Nats-Msg-Id`: the stream stores each
//!   id once within its duplicate window (2 minutes by default), and the
//!   consumer does not handle an id again that it handled recently (its
//!   last 100,000, in memory). A consumer that dies mid-handler gets the
//!   message again after `ack_wait`. A resend later than the duplicate
//!   window (a spool forwarded after a longer outage, or again after a
//!   crash) is stored twice; a consumer that restarted meanwhile handles it
//!   twice.
//! * **One trace across processes.** The receiving side emits each event
//!   with its sender's trace id (W3C `traceparent`), event id, timestamp,
//!   source and metadata; handlers see
//!   [`EventContext::remote`](sbox_events::EventContext::remote). A process
//!   never receives back what it sent.
//! * **Order per subject** (one subject per event name), as published; a
//!   message lost on the wire when the connection breaks is sent again
//!   after the ones behind it in the window ([`BridgeBuilder::max_in_flight`]
//!   `= 1` keeps the broker's order exactly, at a cost). A received
//!   message whose handlers fail is redelivered after its backoff
//!   ([`BridgeBuilder::redelivery_backoff`]), so after the ones behind it.
//! * **Schemas are checked.** Each message carries its type's
//!   [fingerprint](sbox_events::Event::FINGERPRINT); a receiver whose type
//!   differs refuses it rather than misread it.
//! * **When the broker is down or slow**, the [`Policy`] decides: wait for
//!   room in a memory queue up to a timeout, drop and count, or spool to a
//!   local file that survives a crash and is forwarded first on restart.
//!   Whatever the policy, `accepted == acked + dropped + backlog`
//!   ([`BridgeStats`]).
//! * **Bad messages never loop or panic.** Malformed, foreign and
//!   wrong-schema messages are terminated (never redelivered), counted and
//!   reported as `error.occurred`; a message whose handlers fail is
//!   redelivered with a backoff up to `max_deliver` times, then the same.
//!
//! # Costs
//!
//! Per forwarded event, on the emitting thread: one JSON serialization of
//! the event and a copy of its envelope, then a push into a queue (or a
//! `write` to the spool). Publishing, acknowledgements and the consumer run
//! on the bridge's own thread (a single-threaded tokio runtime), so the
//! application needs no runtime. Received events' handlers run on that
//! thread too, one message at a time: a handler that blocks holds up that
//! bridge's publishing and acknowledgements meanwhile, and the messages
//! fetched ahead (up to 64) wait, their `ack_wait` running; keep `ack_wait`
//! above what 64 messages take to handle, or the broker delivers them
//! again (handled once, counted as duplicates, but using up deliveries).
//!
//! The stream is created (if missing) with file storage and no limits of
//! age or size: set those on the server to what your retention needs. A
//! stream of that name that exists already is used as it is, as long as it
//! takes the bridge's subjects.
//!
//! Observability: [`NatsBridge::stats`], the bridge's families in a
//! [`MetricsCollector`](sbox_events::metrics::MetricsCollector)
//! ([`NatsBridge::metrics`]), and its [state events](crate::events) on the
//! local bus.
//!
//! [NATS JetStream]: https://docs.nats.io/nats-concepts/jetstream

#![warn(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod config;
pub mod events;
mod inbound;
mod link;
mod outbound;
mod publish;
mod spool;
mod stats;
mod wire;

pub use config::{BridgeBuilder, BridgeError, FlushError, Policy};
pub use stats::{BridgeStats, RefusedReason};

use async_nats::ConnectOptions;
use link::Link;
use outbound::Outbound;
use sbox_events::metrics::MetricsSource;
use sbox_events::{EventBus, SubscribeOptions, Subscription};
use spool::Spool;
use stats::{BridgeMetrics, Counters};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The priority of the bridge's outbound subscription: after ordinary
/// handlers (a local failure is reported before the event leaves).
pub const PRIORITY: i32 = -900_000;

/// A running bridge; see the [crate docs](crate). Dropping it stops it
/// without waiting for the broker: call [`shutdown`](NatsBridge::shutdown)
/// (or [`flush`](NatsBridge::flush)) first to forward what is waiting.
pub struct NatsBridge {
    counters: Arc<Counters>,
    outbound: Option<Arc<Outbound>>,
    subscription: Option<Subscription>,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
    instance: String,
    server: String,
}

/// Tells the bridge's tasks to end.
pub(crate) struct Stop {
    set: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Resolves once the stop is set.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }

    fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

impl NatsBridge {
    /// Options for a bridge to the NATS server at `url`
    /// (`nats://host:4222`, `tls://...`, credentials in the URL allowed;
    /// they never appear in logs or events).
    pub fn builder(url: impl Into<String>) -> BridgeBuilder {
        BridgeBuilder::new(url.into())
    }

    /// This process's instance id (sent with every event).
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// The counters so far.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }

    /// The bridge's metrics, for
    /// [`MetricsCollector::register`](sbox_events::metrics::MetricsCollector::register):
    /// `sbox_nats_*_total` counters (refused ones by reason), the backlog
    /// and whether it is connected.
    pub fn metrics(&self) -> Arc<dyn MetricsSource> {
        Arc::new(BridgeMetrics(Arc::clone(&self.counters)))
    }

    /// Waits until every event accepted so far is acknowledged by the
    /// broker (or dropped), up to `timeout`. Events accepted meanwhile (by
    /// other threads) are not waited for.
    ///
    /// Called on the bridge's own thread (from a handler of a received
    /// event), it returns at once: the publisher runs on that thread, so
    /// waiting there would only wait for itself.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let Some(outbound) = &self.outbound else {
            return Ok(());
        };
        let started = Instant::now();
        outbound
            .wait_flushed(timeout)
            .map_err(|backlog| FlushError {
                backlog,
                waited: started.elapsed(),
            })
    }

    /// Stops taking events, waits up to `timeout` for the broker to
    /// acknowledge what is waiting, then stops the bridge. With
    /// [`Policy::Spool`] what is still waiting stays in the spool for the
    /// next start; otherwise it is lost, and the error says how much.
    pub fn shutdown(mut self, timeout: Duration) -> Result<BridgeStats, FlushError> {
        drop(self.subscription.take());
        let flushed = self.flush(timeout);
        self.stop_thread();
        flushed.map(|()| self.stats())
    }

    fn stop_thread(&mut self) {
        self.stop.set();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            // (On its own thread, in a handler of a received event, the
            // bridge stops once that handler returns.)
            let _ = thread.join();
        }
    }
}

impl Drop for NatsBridge {
    fn drop(&mut self) {
        drop(self.subscription.take());
        self.stop_thread();
    }
}

impl fmt::Debug for NatsBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBridge")
            .field("server", &self.server)
            .field("instance", &self.instance)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl BridgeBuilder {
    /// Connects (in the background: a broker that is down now is retried
    /// until it is up, and events wait by the policy meanwhile) and starts
    /// forwarding and receiving on `bus`. Fails at once on a malformed URL
    /// or names, or a spool that cannot be opened.
    pub fn start(self, bus: &EventBus) -> Result<NatsBridge, BridgeError> {
        let durable = self.consume.as_ref().map(|(durable, _)| durable.as_str());
        config::check_names(&self.prefix, &self.stream, durable)?;
        self.check_settings()?;
        let server = config::redact(&self.url);
        let instance = self.instance.clone().unwrap_or_else(|| {
            let suffix = sbox_events::trace::TraceId::random().short();
            format!("{}-{suffix}", std::process::id())
        });
        let counters = Arc::new(Counters::default());
        let spool = match &self.policy {
            Policy::Spool {
                path, max_bytes, ..
            } => {
                let (spool, acked) =
                    Spool::open(path, *max_bytes).map_err(|error| BridgeError::Spool {
                        path: path.clone(),
                        error,
                    })?;
                Some((Arc::new(spool), acked))
            }
            _ => None,
        };
        let outbound = self.publish.as_ref().map(|_| {
            Arc::new(Outbound::new(
                Arc::clone(&counters),
                instance.clone(),
                &self.policy,
                spool.clone(),
            ))
        });
        let stop = Arc::new(Stop {
            set: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let (started, result) = std::sync::mpsc::channel();
        let task = Task {
            builder: self.clone(),
            bus: bus.clone(),
            counters: Arc::clone(&counters),
            outbound: outbound.clone(),
            stop: Arc::clone(&stop),
            instance: instance.clone(),
            server: server.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("sbox-events-nats".into())
            .spawn(move || task.run(started))
            .map_err(|e| BridgeError::Start {
                message: e.to_string(),
            })?;
        match result.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(err);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(BridgeError::Start {
                    message: "the bridge's thread ended while starting".into(),
                });
            }
        }
        let subscription = match (&self.publish, &outbound) {
            (Some(selector), Some(out)) => {
                let out = Arc::clone(out);
                let options = SubscribeOptions::new()
                    .name("sbox_events_nats::outbound")
                    .priority(PRIORITY);
                Some(
                    bus.subscribe_any_with(options, selector.clone(), move |event, ctx| {
                        out.accept(event, ctx)
                    }),
                )
            }
            _ => None,
        };
        Ok(NatsBridge {
            counters,
            outbound,
            subscription,
            stop,
            thread: Some(thread),
            instance,
            server,
        })
    }
}

/// Everything the bridge's thread runs.
struct Task {
    builder: BridgeBuilder,
    bus: EventBus,
    counters: Arc<Counters>,
    outbound: Option<Arc<Outbound>>,
    stop: Arc<Stop>,
    instance: String,
    server: String,
}

impl Task {
    fn run(self, started: std::sync::mpsc::Sender<Result<(), BridgeError>>) {
        if let Some(out) = &self.outbound {
            let _ = out.bridge_thread.set(std::thread::current().id());
        }
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                let _ = started.send(Err(BridgeError::Start {
                    message: err.to_string(),
                }));
                return;
            }
        };
        runtime.block_on(self.main(started));
    }

    async fn main(self, started: std::sync::mpsc::Sender<Result<(), BridgeError>>) {
        let (events, mut connection) = tokio::sync::mpsc::unbounded_channel();
        let cap = self.builder.reconnect_delay_max;
        let options = ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(move |attempts| {
                // 0, 20, 40... ms, up to the cap.
                (Duration::from_millis(20) * attempts.min(1000) as u32).min(cap)
            })
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    let _ = events.send(event);
                }
            });
        let client = match options.connect(self.builder.url.as_str()).await {
            Ok(client) => client,
            Err(err) => {
                let _ = started.send(Err(BridgeError::Url {
                    url: self.server.clone(),
                    message: err.to_string(),
                }));
                return;
            }
        };
        let _ = started.send(Ok(()));
        let link = Arc::new(Link::new(
            client,
            self.builder.prefix.clone(),
            self.builder.stream.clone(),
            self.builder.duplicate_window,
            self.builder.ack_timeout,
        ));
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(out) = &self.outbound {
            tasks.spawn(publish::publisher(
                Arc::clone(out),
                Arc::clone(&link),
                self.bus.clone(),
                self.builder.max_in_flight,
                Arc::clone(&self.stop),
            ));
            if let (Some(spool), Policy::Spool { fsync_every, .. }) =
                (out.spool().cloned(), &self.builder.policy)
            {
                let (stop, every) = (Arc::clone(&self.stop), *fsync_every);
                tasks.spawn(async move {
                    while !stop.is_set() {
                        tokio::select! {
                            () = tokio::time::sleep(every) => {}
                            () = stop.wait() => {}
                        }
                        if let Err(err) = spool.sync() {
                            tracing::error!(target: "sbox_events_nats", error = %err, "spool fsync failed");
                        }
                    }
                });
            }
        }
        if let Some((durable, selector)) = &self.builder.consume {
            tasks.spawn(inbound::consume(
                inbound::Consumer {
                    bus: self.bus.clone(),
                    link: Arc::clone(&link),
                    counters: Arc::clone(&self.counters),
                    durable: durable.clone(),
                    selector: selector.clone(),
                    instance: self.instance.clone(),
                    max_deliver: self.builder.max_deliver,
                    ack_wait: self.builder.ack_wait,
                    backoff: self.builder.backoff.clone(),
                },
                Arc::clone(&self.stop),
            ));
        }
        // Connection state changes, as events on the local bus.
        loop {
            tokio::select! {
                event = connection.recv() => match event {
                    Some(async_nats::Event::Connected) => {
                        self.counters.connected.store(true, Ordering::Relaxed);
                        self.bus.emit(events::BridgeConnected { server: self.server.clone() });
                    }
                    Some(async_nats::Event::Disconnected) => {
                        self.counters.connected.store(false, Ordering::Relaxed);
                        self.bus.emit(events::BridgeDisconnected { server: self.server.clone() });
                    }
                    Some(_) => {}
                    None => break,
                },
                () = self.stop.wait() => break,
            }
        }
        while tasks.join_next().await.is_some() {}
        if let Some(spool) = self.outbound.as_ref().and_then(|out| out.spool().cloned()) {
            let _ = spool.sync();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), link.client.flush()).await;
    }
}
