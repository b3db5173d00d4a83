//! A stream shows every gap as `StreamItem::Lagged`, also one left by an
//! event it could not copy: its `Clone` panicked (a typed stream) or its
//! `Serialize` failed or panicked (a JSON stream). The failure still goes
//! to the emit's report, and a consumer waiting for the next item is woken
//! to see the gap.

use sbox_events::stream::{EventStream, Overflow, StreamItem};
use sbox_events::{Event, EventBus, EventSelector};
use sbox_events_tests::exec::poll_once;
use serde::{Deserialize, Serialize, Serializer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// Its `Clone` panics for 2.
#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(name = "gaps.fragile")]
struct Fragile(u32);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        if self.0 == 2 {
            panic!("Fragile(2) cannot be cloned");
        }
        Fragile(self.0)
    }
}

/// Its `Serialize` fails for 2 and panics for 4.
#[derive(Event, Deserialize, Debug)]
#[event(name = "gaps.picky")]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            2 => Err(serde::ser::Error::custom("Picky(2) cannot be written")),
            4 => panic!("Picky(4) exploded"),
            n => serializer.serialize_newtype_struct("Picky", &n),
        }
    }
}

/// The stream's items as plain values: `Ok(json or n)` for an event,
/// `Err(k)` for `Lagged(k)`.
fn drain<E>(stream: &mut EventStream<E>, show: impl Fn(&E) -> String) -> Vec<Result<String, u64>> {
    let mut items = Vec::new();
    while let Poll::Ready(Some(item)) = poll_once(std::pin::pin!(stream.recv())) {
        items.push(match item {
            StreamItem::Event(delivery) => Ok(show(delivery.event())),
            StreamItem::Lagged(n) => Err(n),
        });
    }
    items
}

#[test]
fn an_event_whose_clone_panics_is_a_lag_in_a_typed_stream() {
    let bus = EventBus::new();
    let mut stream = bus.subscribe_stream::<Fragile>(16, Overflow::DropNewest);
    for n in 1..=3 {
        let report = bus.emit(Fragile(n));
        assert_eq!(report.is_ok(), n != 2, "{report}");
        if n == 2 {
            let [failure] = report.failures() else {
                panic!("one failure: {report}")
            };
            assert_eq!(failure.message(), "Fragile(2) cannot be cloned");
        }
    }
    let items = drain(&mut stream, |event| event.0.to_string());
    assert_eq!(items, [Ok("1".into()), Err(1), Ok("3".into())]);
}

#[test]
fn an_event_whose_serialize_fails_or_panics_is_a_lag_in_a_json_stream() {
    let bus = EventBus::new();
    let mut stream = bus.subscribe_json_stream(
        EventSelector::pattern("gaps.picky").unwrap(),
        16,
        Overflow::DropOldest,
    );
    for n in 1..=5 {
        let report = bus.emit(Picky(n));
        assert_eq!(report.is_ok(), n % 2 == 1, "{report}");
    }
    let items = drain(&mut stream, |event| event.json().to_owned());
    assert_eq!(
        items,
        [
            Ok("1".into()),
            Err(1),
            Ok("3".into()),
            Err(1),
            Ok("5".into())
        ]
    );
}

#[test]
fn a_gap_at_the_end_is_reported_and_counted_with_overflow() {
    let bus = EventBus::new();
    let mut stream = bus.subscribe_stream::<Fragile>(1, Overflow::DropNewest);
    bus.emit(Fragile(1));
    bus.emit(Fragile(3)); // the queue is full: dropped
    bus.emit(Fragile(2)); // its clone panics
    let items = drain(&mut stream, |event| event.0.to_string());
    assert_eq!(items, [Ok("1".into()), Err(2)]);
}

/// Counts its wakes.
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_waiting_consumer_is_woken_by_a_gap() {
    let bus = EventBus::new();
    let mut stream = bus.subscribe_stream::<Fragile>(4, Overflow::DropOldest);
    let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    {
        let mut next = std::pin::pin!(stream.recv());
        assert!(next.as_mut().poll(&mut cx).is_pending(), "nothing queued");
        bus.emit(Fragile(2));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "woken by the gap");
        assert!(matches!(
            next.as_mut().poll(&mut cx),
            Poll::Ready(Some(StreamItem::Lagged(1)))
        ));
    }
}

#[test]
fn a_json_stream_that_selects_no_event_type_ends_with_its_bus() {
    let bus = EventBus::new();
    let mut stream = bus.subscribe_json_stream(
        EventSelector::pattern("gaps.nothing.*").unwrap(),
        4,
        Overflow::DropOldest,
    );
    assert!(
        poll_once(std::pin::pin!(stream.recv())).is_pending(),
        "the bus is alive: the stream has not ended"
    );
    drop(bus);
    assert!(matches!(
        poll_once(std::pin::pin!(stream.recv())),
        Poll::Ready(None)
    ));
}
