//! Streams of events with explicit lag: [`EventBus::subscribe_stream`].
//!
//! A stream is a subscription that copies each event, with its envelope
//! (trace id, sequence, source, metadata, timestamp), into a bounded queue
//! that a task consumes at its own pace, through [`EventStream::recv`] or
//! the [`Stream`](futures_core::Stream) trait (so any stream combinator
//! library works). An emit never waits for the consumer: when the queue is
//! full, the [`Overflow`] policy drops the oldest or the newest event, and
//! the stream yields [`StreamItem::Lagged`] with the count at the place of
//! the gap, so a consumer cannot miss that it missed something. An event
//! the stream cannot copy (its `Clone` panics; for a JSON stream, its
//! `Serialize` fails) is such a gap too, besides a failure in its emit's
//! report.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sbox_events::{Event, EventBus};
//! use sbox_events::stream::{Overflow, StreamItem};
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let mut f = std::pin::pin!(f);
//! #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//! #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
//! # }
//!
//! #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! #[event(name = "server.probed")]
//! struct ServerProbed { latency_ms: u32 }
//!
//! let bus = EventBus::new();
//! let mut probes = bus.subscribe_stream::<ServerProbed>(2, Overflow::DropOldest);
//! for latency_ms in [10, 20, 30] {
//!     bus.emit(ServerProbed { latency_ms }); // never blocks
//! }
//! block_on(async {
//!     assert!(matches!(probes.recv().await, Some(StreamItem::Lagged(1))));
//!     let Some(StreamItem::Event(first)) = probes.recv().await else { panic!() };
//!     assert_eq!(first.event(), &ServerProbed { latency_ms: 20 });
//! });
//! ```

use crate::any::{AnyEvent, EventSelector, EventType};
use crate::bus::{EachOptions, ErasedHandler, EventBus, SubscribeOptions, Subscription};
use crate::context::EventContext;
use crate::envelope::Envelope;
use crate::event::Event;
use crate::handler::HandlerError;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// What a full stream drops to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// Drop the oldest queued event, keep the new one (a consumer that falls
    /// behind sees the latest events; the lag is reported before them).
    DropOldest,
    /// Drop the new event, keep the queue (a consumer sees an unbroken
    /// prefix; the lag is reported after it).
    DropNewest,
}

/// One item of an [`EventStream`].
#[derive(Debug)]
pub enum StreamItem<E> {
    /// An event, with its envelope.
    Event(Delivery<E>),
    /// This many events were dropped here: the stream was full (see
    /// [`Overflow`]), or an event could not be copied into it (its `Clone`
    /// panicked, or for a JSON stream its `Serialize` failed or panicked;
    /// that failure is also in the emit's report).
    Lagged(u64),
}

/// An event delivered through a stream, with its [`Envelope`]: a copy of
/// what its handlers saw in the [`EventContext`].
#[derive(Clone, Debug)]
pub struct Delivery<E> {
    event: E,
    envelope: Envelope,
}

impl<E> Delivery<E> {
    /// The event.
    pub fn event(&self) -> &E {
        &self.event
    }

    /// The event, by value.
    pub fn into_event(self) -> E {
        self.event
    }

    /// Its envelope: ids, trace, sequence, source, metadata, timestamp
    /// (read when the stream received the event, unless a handler before it
    /// asked first), depth, replay and remote marks.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The event and its envelope.
    pub fn into_parts(self) -> (E, Envelope) {
        (self.event, self.envelope)
    }
}

/// The queue between the bus (which pushes) and the stream (which pops).
struct Shared<E> {
    capacity: usize,
    overflow: Overflow,
    state: Mutex<State<E>>,
}

struct State<E> {
    /// Events with the number of events dropped just before each.
    queue: VecDeque<(u64, Delivery<E>)>,
    /// Events dropped after the last queued one.
    tail_lag: u64,
    waker: Option<Waker>,
    /// The bus side is gone: no more events will come.
    closed: bool,
}

impl<E> Shared<E> {
    fn new(capacity: usize, overflow: Overflow) -> Arc<Shared<E>> {
        assert!(
            capacity > 0,
            "an event stream's capacity must be at least 1"
        );
        Arc::new(Shared {
            capacity,
            overflow,
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity.min(1024)),
                tail_lag: 0,
                waker: None,
                closed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<E>> {
        // No user code runs under this lock (events are cloned before it is
        // taken and dropped after it is released), so poisoning can only
        // come from an allocation failure mid-push; the queue is still
        // consistent then.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one delivery (or drops one, by the policy), then wakes the
    /// consumer. Never blocks on the consumer.
    fn push(&self, delivery: Delivery<E>) {
        let mut state = self.lock();
        let mut dropped = None;
        if state.queue.len() >= self.capacity {
            match self.overflow {
                Overflow::DropNewest => {
                    state.tail_lag += 1;
                    drop(state);
                    drop(delivery);
                    return;
                }
                Overflow::DropOldest => {
                    if let Some((lag, oldest)) = state.queue.pop_front() {
                        let carried = lag + 1;
                        match state.queue.front_mut() {
                            Some((next_lag, _)) => *next_lag += carried,
                            None => state.tail_lag += carried,
                        }
                        dropped = Some(oldest);
                    }
                }
            }
        }
        let lag = std::mem::take(&mut state.tail_lag);
        state.queue.push_back((lag, delivery));
        let waker = state.waker.take();
        drop(state);
        drop(dropped);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Counts an event the stream could not copy (its `Clone` panicked, or
    /// its `Serialize` failed) as dropped at its place, then wakes the
    /// consumer: it sees the gap as [`StreamItem::Lagged`] like an overflow.
    fn lost(&self) {
        let mut state = self.lock();
        state.tail_lag += 1;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// `copy()` (user code: the event's `Clone` or `Serialize`), with the
    /// event counted as [`lost`](Shared::lost) if it panics; the panic then
    /// goes on to the emit, which reports it. Counted after the unwind is
    /// caught, not from a drop guard: waking the consumer runs its waker
    /// (user code too), which must not run while a panic unwinds.
    fn copy<T>(&self, copy: impl FnOnce() -> T) -> T {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(copy)) {
            Ok(value) => value,
            Err(payload) => {
                self.lost();
                std::panic::resume_unwind(payload)
            }
        }
    }

    fn poll_item(&self, cx: &mut Context<'_>) -> Poll<Option<StreamItem<E>>> {
        // A waker's `clone` and `drop` are user code (an executor's, or
        // anyone's): they run with the lock released. The clone is made
        // outside it, and the queue checked again once it is retaken (an
        // event pushed meanwhile woke the old waker, not this one).
        let mut fresh: Option<Waker> = None;
        loop {
            let mut state = self.lock();
            if let Some(ready) = Self::ready_item(&mut state) {
                drop(state);
                drop(fresh);
                return Poll::Ready(ready);
            }
            // `will_wake` compares, it runs no user code.
            if state
                .waker
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                drop(state);
                drop(fresh);
                return Poll::Pending;
            }
            if let Some(waker) = fresh.take() {
                let old = state.waker.replace(waker);
                drop(state);
                drop(old);
                return Poll::Pending;
            }
            drop(state);
            fresh = Some(cx.waker().clone());
        }
    }

    /// The next item, if one is ready (or the end).
    fn ready_item(state: &mut State<E>) -> Option<Option<StreamItem<E>>> {
        if let Some((lag, _)) = state.queue.front_mut()
            && *lag > 0
        {
            return Some(Some(StreamItem::Lagged(std::mem::take(lag))));
        }
        if let Some((_, delivery)) = state.queue.pop_front() {
            return Some(Some(StreamItem::Event(delivery)));
        }
        if state.tail_lag > 0 {
            return Some(Some(StreamItem::Lagged(std::mem::take(
                &mut state.tail_lag,
            ))));
        }
        state.closed.then_some(None)
    }
}

/// The bus's end of a stream, owned by its subscription: when the bus drops
/// it (the bus is gone, or the stream unsubscribed), the stream ends.
struct Sender<E>(Arc<Shared<E>>);

impl<E> Drop for Sender<E> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A bounded stream of one event type; see the [module docs](self).
/// Dropping it unsubscribes.
///
/// It ends (yields `None`) when the bus is dropped, after the events
/// already queued.
#[must_use = "a stream that is not read only fills up; dropping it unsubscribes"]
pub struct EventStream<E> {
    shared: Arc<Shared<E>>,
    subscription: Subscription,
}

impl<E> EventStream<E> {
    /// The next item, or `None` once the bus is gone and the queue is
    /// empty. Cancel-safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> Option<StreamItem<E>> {
        poll_fn(|cx| self.shared.poll_item(cx)).await
    }

    /// How many events are queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Whether no event is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of the underlying subscription (see [`EventBus::handlers`]).
    pub fn subscription_id(&self) -> u64 {
        self.subscription.id()
    }
}

impl<E> futures_core::Stream for EventStream<E> {
    type Item = StreamItem<E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamItem<E>>> {
        self.shared.poll_item(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), None)
    }
}

impl<E> fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("capacity", &self.shared.capacity)
            .field("overflow", &self.shared.overflow)
            .field("queued", &self.len())
            .finish_non_exhaustive()
    }
}

/// An event of any type, as its name and JSON: the item of a
/// [`subscribe_json_stream`](EventBus::subscribe_json_stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonEvent {
    event_type: EventType,
    json: Box<str>,
}

impl JsonEvent {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        self.event_type.name()
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The type's schema fingerprint ([`Event::FINGERPRINT`]).
    pub fn fingerprint(&self) -> &'static str {
        self.event_type.fingerprint()
    }

    /// The event's fields, as JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }
}

impl EventBus {
    /// A stream of every event whose type `selector` picks, as JSON with
    /// its [`Envelope`], in a queue of at most `capacity` events: what a
    /// bridge to another process forwards, without naming the types.
    ///
    /// Like [`subscribe_stream`](EventBus::subscribe_stream) (same queue,
    /// [`Overflow`] policies and [`StreamItem::Lagged`]; an emit never
    /// waits), except that each event is serialized instead of cloned. The
    /// subscription is named `sbox_events::stream::JsonStream`; an event
    /// whose `Serialize` fails (or panics) is that subscription's failure in
    /// the emit's report, and a [`StreamItem::Lagged`] in the stream.
    ///
    /// ```
    /// use sbox_events::events::ConfigExported;
    /// use sbox_events::stream::{Overflow, StreamItem};
    /// use sbox_events::{EventBus, EventSelector};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    /// let bus = EventBus::new();
    /// let mut outbox = bus.subscribe_json_stream(EventSelector::pattern("config.*")?, 1024, Overflow::DropNewest);
    /// let report = bus.emit(ConfigExported { path: "a.json".into(), export_format: "sing-box".into(), file_size: 9 });
    /// let Some(StreamItem::Event(delivery)) = block_on(outbox.recv()) else { panic!() };
    /// assert_eq!(delivery.event().name(), "config.exported");
    /// assert_eq!(delivery.event().json(), r#"{"path":"a.json","export_format":"sing-box","file_size":9}"#);
    /// assert_eq!(delivery.envelope().trace_id(), report.trace_id());
    /// # Ok::<(), sbox_events::SelectorError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    pub fn subscribe_json_stream(
        &self,
        selector: EventSelector,
        capacity: usize,
        overflow: Overflow,
    ) -> EventStream<JsonEvent> {
        let shared = Shared::new(capacity, overflow);
        let sender = Arc::new(Sender(Arc::clone(&shared)));
        let options = EachOptions {
            name: "sbox_events::stream::JsonStream".into(),
            priority: 0,
            recorder: false,
            keeps_envelope: true,
            keep: Some(Box::new(Arc::clone(&sender))),
        };
        let subscription = self.subscribe_each(options, selector, None, |event_type| {
            let sender = Arc::clone(&sender);
            let push: ErasedHandler =
                Arc::new(move |event: &AnyEvent<'_>, ctx: &EventContext<'_>| {
                    let json = sender.0.copy(|| event.to_json_string()).map_err(|err| {
                        sender.0.lost();
                        HandlerError::new(
                            err.to_string(),
                            std::any::type_name::<serde_json::Error>(),
                        )
                    })?;
                    sender.0.push(Delivery {
                        event: JsonEvent {
                            event_type,
                            json: json.into_boxed_str(),
                        },
                        envelope: ctx.envelope(),
                    });
                    Ok(())
                });
            Some(push)
        });
        EventStream {
            shared,
            subscription,
        }
    }

    /// A stream of every `E` emitted on this bus (by `emit` or `emit_async`)
    /// from now on, in a queue of at most `capacity` events; see
    /// [`crate::stream`].
    ///
    /// The stream is a subscription (priority 0, named
    /// `sbox_events::stream::EventStream<E>`) whose handler clones the event
    /// and its [`Envelope`] into the queue: per emit, one `E::clone`, a clock
    /// read (the envelope's timestamp) and an event id (both made before
    /// the event's handlers run, whatever their priorities), a copy of the source
    /// if it is not the event's default and of the metadata if any, and a
    /// short lock that the consumer also takes, never for long. An event
    /// emitted inside a handler also has its [`Cause`](crate::Cause)
    /// copied: one allocation (its box), and when that handler is a
    /// subscription, its name, looked up under a process-wide lock that
    /// subscribing and unsubscribing also take (one more allocation if the
    /// name was given as a `String`). It never blocks the emit: on a full
    /// queue, `overflow` decides what is dropped; an event whose `clone`
    /// panics is reported as the subscription's failure and yielded as a
    /// [`StreamItem::Lagged`].
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    pub fn subscribe_stream<E: Event + Clone>(
        &self,
        capacity: usize,
        overflow: Overflow,
    ) -> EventStream<E> {
        let shared = Shared::new(capacity, overflow);
        let sender = Sender(Arc::clone(&shared));
        // Its route makes each event's timestamp and id before the handlers
        // run, with plain writes (`Route::stamps`).
        let options = SubscribeOptions::new()
            .name(std::any::type_name::<EventStream<E>>())
            .keeping_envelopes();
        let subscription = self.add_typed(options, None, move |event: &E, ctx: &EventContext| {
            let event = sender.0.copy(|| event.clone());
            sender.0.push(Delivery {
                event,
                envelope: ctx.envelope(),
            });
        });
        EventStream {
            shared,
            subscription,
        }
    }
}
