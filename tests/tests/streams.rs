//! `subscribe_stream`: deliveries with their envelope, lag under both
//! overflow policies, emits that never block, the end of a stream, and a
//! consumer task on a multi-thread runtime.

use futures_core::Stream;
use sbox_events::stream::{Overflow, StreamItem};
use sbox_events::{EmitOptions, Event, EventBus, EventContext, trace};
use sbox_events_tests::exec::{block_on, poll_once};
use sbox_events_tests::within;
use serde::{Deserialize, Serialize};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "stream.tick", source = "clock")]
struct Tick(u32);

/// What the stream yields, as plain values: `Ok(n)` for `Tick(n)`,
/// `Err(k)` for `Lagged(k)`.
fn drain(stream: &mut sbox_events::stream::EventStream<Tick>) -> Vec<Result<u32, u64>> {
    let mut items = Vec::new();
    while let Poll::Ready(Some(item)) = poll_once(std::pin::pin!(stream.recv())) {
        items.push(match item {
            StreamItem::Event(delivery) => Ok(delivery.event().0),
            StreamItem::Lagged(n) => Err(n),
        });
    }
    items
}

#[test]
fn a_delivery_carries_the_envelope_its_handlers_saw() {
    let bus = EventBus::new();
    let mut ticks = bus.subscribe_stream::<Tick>(8, Overflow::DropOldest);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let s = std::sync::Arc::clone(&seen);
    let _handler = bus.subscribe_with(
        sbox_events::SubscribeOptions::new().priority(1),
        move |_: &Tick, ctx: &EventContext| {
            *s.lock().unwrap() = Some((ctx.trace_id(), ctx.sequence(), ctx.timestamp()));
        },
    );
    let id = trace::TraceId::random();
    trace::with_trace_id(id, || {
        bus.emit_with(
            Tick(1),
            EmitOptions::new()
                .source("admin_api")
                .metadata("user", "alice"),
        )
    });
    let Some(StreamItem::Event(first)) = block_on(ticks.recv()) else {
        panic!("expected an event")
    };
    let handler_saw = seen.lock().unwrap().take();
    assert_eq!(
        Some((
            first.envelope().trace_id(),
            first.envelope().sequence(),
            first.envelope().timestamp()
        )),
        handler_saw,
        "the same envelope as the handler's context"
    );
    assert_eq!(first.event(), &Tick(1));
    assert_eq!(first.envelope().trace_id(), id);
    assert_eq!(first.envelope().source(), "admin_api");
    assert_eq!(first.envelope().metadata().get("user"), Some("alice"));
    assert_eq!(first.envelope().depth(), 0);
    assert!(!first.envelope().is_replay());

    bus.emit(Tick(2));
    let Some(StreamItem::Event(second)) = block_on(ticks.recv()) else {
        panic!("expected an event")
    };
    assert_eq!(
        second.envelope().source(),
        "clock",
        "the event's default source"
    );
    assert!(second.envelope().metadata().is_empty());
    assert_ne!(second.envelope().trace_id(), id);
    assert!(second.envelope().sequence() > first.envelope().sequence());
    assert_eq!(second.into_event(), Tick(2));
}

#[test]
fn drop_oldest_reports_the_lag_before_the_events_it_kept() {
    let bus = EventBus::new();
    let mut ticks = bus.subscribe_stream::<Tick>(3, Overflow::DropOldest);
    for n in 1..=7 {
        let report = bus.emit(Tick(n));
        assert_eq!(report.delivered(), 1, "a full stream still takes the event");
    }
    assert_eq!(ticks.len(), 3);
    assert_eq!(drain(&mut ticks), [Err(4), Ok(5), Ok(6), Ok(7)]);
    // Reading part of the queue, then overflowing again.
    for n in 8..=10 {
        bus.emit(Tick(n));
    }
    let first = poll_once(std::pin::pin!(ticks.recv()));
    assert!(matches!(first, Poll::Ready(Some(StreamItem::Event(ref d))) if d.event() == &Tick(8)));
    for n in 11..=15 {
        bus.emit(Tick(n));
    }
    assert_eq!(drain(&mut ticks), [Err(4), Ok(13), Ok(14), Ok(15)]);
}

#[test]
fn drop_newest_reports_the_lag_after_the_events_it_kept() {
    let bus = EventBus::new();
    let mut ticks = bus.subscribe_stream::<Tick>(2, Overflow::DropNewest);
    for n in 1..=5 {
        bus.emit(Tick(n));
    }
    assert_eq!(drain(&mut ticks), [Ok(1), Ok(2), Err(3)]);
    bus.emit(Tick(6));
    bus.emit(Tick(7));
    bus.emit(Tick(8));
    let first = poll_once(std::pin::pin!(ticks.recv()));
    assert!(matches!(first, Poll::Ready(Some(StreamItem::Event(ref d))) if d.event() == &Tick(6)));
    bus.emit(Tick(9)); // room for one again: kept, after the lag
    assert_eq!(drain(&mut ticks), [Ok(7), Err(1), Ok(9)]);
}

#[test]
fn capacity_one_keeps_exactly_one_event() {
    let bus = EventBus::new();
    let mut oldest = bus.subscribe_stream::<Tick>(1, Overflow::DropOldest);
    let mut newest = bus.subscribe_stream::<Tick>(1, Overflow::DropNewest);
    for n in 1..=3 {
        bus.emit(Tick(n));
    }
    assert_eq!(drain(&mut oldest), [Err(2), Ok(3)]);
    assert_eq!(drain(&mut newest), [Ok(1), Err(2)]);
}

#[test]
fn the_stream_ends_after_its_queue_when_the_bus_is_dropped() {
    let bus = EventBus::new();
    let mut ticks = bus.subscribe_stream::<Tick>(4, Overflow::DropOldest);
    bus.emit(Tick(1));
    let waiting = std::thread::spawn(move || {
        let first = block_on(ticks.recv());
        let end = block_on(ticks.recv()); // waits for the bus to go
        (first.is_some(), end.is_none(), ticks.size_hint())
    });
    std::thread::sleep(Duration::from_millis(20));
    drop(bus);
    let (first, ended, hint) = waiting.join().unwrap();
    assert!(first && ended);
    assert_eq!(hint, (0, None));
}

#[test]
fn dropping_the_stream_unsubscribes() {
    let bus = EventBus::new();
    let ticks = bus.subscribe_stream::<Tick>(4, Overflow::DropOldest);
    let id = ticks.subscription_id();
    assert_eq!(bus.handlers::<Tick>().len(), 1);
    assert!(
        bus.handlers::<Tick>()[0].name().contains("EventStream"),
        "{:?}",
        bus.handlers::<Tick>()
    );
    assert_eq!(
        bus.handlers::<Tick>()[0].origin(),
        sbox_events::HandlerOrigin::Subscription { id }
    );
    drop(ticks);
    assert_eq!(bus.emit(Tick(1)).delivered(), 0);
}

#[test]
fn a_consumer_task_sees_every_event_or_its_lag() {
    within(Duration::from_secs(120), "stream consumer", || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let bus = EventBus::new();
        let mut ticks = bus.subscribe_stream::<Tick>(64, Overflow::DropOldest);
        let consumer = runtime.spawn(async move {
            let (mut received, mut lagged, mut last) = (0u64, 0u64, 0u32);
            while let Some(item) =
                std::future::poll_fn(|cx| Pin::new(&mut ticks).poll_next(cx)).await
            {
                match item {
                    StreamItem::Event(delivery) => {
                        let n = delivery.event().0;
                        assert!(n > last, "in order: {n} after {last}");
                        last = n;
                        received += 1;
                    }
                    StreamItem::Lagged(n) => lagged += n,
                }
            }
            (received, lagged, last)
        });
        const EVENTS: u32 = 200_000;
        for n in 1..=EVENTS {
            bus.emit(Tick(n));
        }
        drop(bus); // ends the stream
        let (received, lagged, last) = runtime.block_on(consumer).unwrap();
        assert_eq!(
            received + lagged,
            u64::from(EVENTS),
            "every event or its lag"
        );
        assert_eq!(last, EVENTS, "the newest event is kept");
        assert!(received >= 64);
    });
}

#[test]
#[should_panic(expected = "capacity must be at least 1")]
fn capacity_zero_is_refused() {
    let _ = EventBus::new().subscribe_stream::<Tick>(0, Overflow::DropNewest);
}

/// A handler that runs before the streams (a higher priority) and takes a
/// while, and notes when it started (without asking for the timestamp);
/// then it emits a `Tock`, whose cause it notes.
fn slow_first(bus: &EventBus) -> (sbox_events::Subscription, Arc<Mutex<Vec<Noted>>>) {
    let noted = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::clone(&noted);
    let sub = bus.subscribe_with(
        sbox_events::SubscribeOptions::new().priority(1),
        move |_: &Tick, ctx: &EventContext| {
            let started = SystemTime::now();
            std::thread::sleep(Duration::from_millis(20));
            let (cause, _sub) = {
                let cause = Arc::new(Mutex::new(None));
                let c = Arc::clone(&cause);
                let sub = ctx.bus().subscribe(move |_: &Tock, ctx: &EventContext| {
                    *c.lock().unwrap() = ctx.cause().and_then(|cause| cause.event_id());
                });
                ctx.bus().emit(Tock);
                let cause = cause.lock().unwrap().take();
                (cause, sub)
            };
            n.lock().unwrap().push(Noted { started, cause });
        },
    );
    (sub, noted)
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "stream.tock")]
struct Tock;

struct Noted {
    started: SystemTime,
    /// The id the `Tock` emitted by `slow_first` gives as its cause's.
    cause: Option<sbox_events::EventId>,
}

/// Emits two `Tick`s (by `emit`, then `emit_async`) with `slow_first`
/// subscribed, and checks that each envelope `stream` delivers was stamped
/// before that first handler started, and that its children know its id.
fn assert_stamped_at_the_emit<T: std::fmt::Debug>(
    bus: &EventBus,
    stream: &mut sbox_events::stream::EventStream<T>,
) {
    let (_slow, noted) = slow_first(bus);
    bus.emit(Tick(1));
    block_on(bus.emit_async(Tick(2)));
    let noted = std::mem::take(&mut *noted.lock().unwrap());
    assert_eq!(noted.len(), 2);
    for (n, noted) in noted.into_iter().enumerate() {
        let envelope = match block_on(stream.recv()) {
            Some(StreamItem::Event(delivery)) => delivery.envelope().clone(),
            other => panic!("expected an event, got {other:?}"),
        };
        assert!(
            envelope.timestamp() <= noted.started,
            "event {n}: stamped {:?}, after its first handler started at {:?}",
            envelope.timestamp(),
            noted.started
        );
        assert_eq!(noted.cause, Some(envelope.event_id()), "event {n}'s child");
    }
}

#[test]
fn a_streams_envelope_is_stamped_at_the_emit_not_at_the_streams_turn() {
    let bus = EventBus::new();
    let mut ticks = bus.subscribe_stream::<Tick>(8, Overflow::DropOldest);
    assert_stamped_at_the_emit(&bus, &mut ticks);
}

#[test]
fn a_json_streams_envelope_is_stamped_at_the_emit_too() {
    let bus = EventBus::new();
    let selector = sbox_events::EventSelector::names(["stream.tick"]).unwrap();
    let mut ticks = bus.subscribe_json_stream(selector, 8, Overflow::DropOldest);
    assert_stamped_at_the_emit(&bus, &mut ticks);
}
