//! Unit-testing code that emits events: a [`Recorder`] attached to a real
//! bus, in place of a mocked one.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sbox_events::{Event, EventBus};
//! use sbox_events::testing::Recorder;
//!
//! #[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
//! #[event(name = "subscription.fetched")]
//! struct SubscriptionFetched { servers: u32 }
//!
//! #[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
//! #[event(name = "config.generated")]
//! struct ConfigGenerated { outbounds: u32 }
//!
//! // The code under test: emits what it did.
//! fn refresh(bus: &EventBus) {
//!     bus.emit(SubscriptionFetched { servers: 3 });
//!     bus.emit(ConfigGenerated { outbounds: 3 });
//! }
//!
//! let bus = EventBus::builder().static_handlers(false).build()?;
//! let recorder = Recorder::all(&bus);
//! sbox_events::trace::with_new_trace(|| refresh(&bus));
//!
//! assert_eq!(recorder.assert_emitted::<ConfigGenerated>(), ConfigGenerated { outbounds: 3 });
//! recorder.assert_order(&["subscription.fetched", "config.generated"]);
//! recorder.assert_one_trace();
//! assert_eq!(recorder.events::<SubscriptionFetched>(), [SubscriptionFetched { servers: 3 }]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::any::{AnyEvent, EventSelector};
use crate::bus::{EachOptions, ErasedHandler, EventBus, Subscription};
use crate::context::EventContext;
use crate::envelope::Envelope;
use crate::event::Event;
use crate::handler::HandlerError;
use crate::trace::TraceId;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Records the events of a bus, with their envelopes, for assertions.
///
/// It records where the bus's history does, before any handler of the
/// event runs (and so before any event they emit in turn): records are in
/// emit order, whatever the handlers' priorities. It is not a handler: the
/// report does not count it, and [`EventBus::handlers`] does not list it.
/// An event whose `Serialize` fails or panics is not recorded, and the
/// emit's report says so ([`EmitReport::not_recorded`](crate::EmitReport::not_recorded)).
/// Each event is kept
/// serialized (JSON) and deserialized again by [`events`](Recorder::events)
/// and [`assert_emitted`](Recorder::assert_emitted): the same round trip as
/// the history, so events need no `Clone`. Dropping the recorder
/// unsubscribes it.
#[must_use = "dropping a Recorder unsubscribes it"]
pub struct Recorder {
    records: Arc<Mutex<Vec<Recorded>>>,
    subscription: Subscription,
}

/// One recorded event: its serialized fields and its [`Envelope`].
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    data: serde_json::Value,
    envelope: Envelope,
}

impl Recorded {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        self.envelope.name()
    }

    /// The event's fields, serialized.
    pub fn data(&self) -> &serde_json::Value {
        &self.data
    }

    /// Its envelope: ids, trace, sequence, source, metadata, timestamp,
    /// depth, replay and remote marks.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

impl Recorder {
    /// Records every event on `bus` that `selector` matches, from now on.
    pub fn attach(bus: &EventBus, selector: EventSelector) -> Recorder {
        let records: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let sink = Arc::clone(&records);
        let record: ErasedHandler =
            Arc::new(move |event: &AnyEvent<'_>, ctx: &EventContext<'_>| {
                // The event's `Serialize` runs here, outside the lock.
                let data = event.to_json().map_err(|err| {
                    HandlerError::new(err.to_string(), std::any::type_name::<serde_json::Error>())
                })?;
                let record = Recorded {
                    data,
                    envelope: ctx.envelope(),
                };
                lock(&sink).push(record);
                Ok(())
            });
        let options = EachOptions {
            name: "sbox_events::testing::Recorder".into(),
            priority: 0,
            recorder: true,
            keeps_envelope: true,
            keep: None,
        };
        let subscription =
            bus.subscribe_each(options, selector, None, |_| Some(Arc::clone(&record)));
        Recorder {
            records,
            subscription,
        }
    }

    /// Records every event on `bus`.
    pub fn all(bus: &EventBus) -> Recorder {
        Recorder::attach(bus, EventSelector::all())
    }

    /// Records the `E`s on `bus`.
    pub fn of<E: Event>(bus: &EventBus) -> Recorder {
        match EventSelector::names([E::NAME]) {
            Ok(selector) => Recorder::attach(bus, selector),
            // Event names are checked at compile time by the derive.
            Err(err) => unreachable!("an event's own name is a valid selector: {err}"),
        }
    }

    /// Everything recorded so far, in emit order.
    pub fn records(&self) -> Vec<Recorded> {
        lock(&self.records).clone()
    }

    /// The names of the recorded events, in emit order.
    pub fn names(&self) -> Vec<&'static str> {
        lock(&self.records).iter().map(Recorded::name).collect()
    }

    /// How many events were recorded.
    pub fn len(&self) -> usize {
        lock(&self.records).len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        lock(&self.records).clear();
    }

    /// How many `E`s were recorded.
    pub fn count<E: Event>(&self) -> usize {
        lock(&self.records)
            .iter()
            .filter(|r| r.name() == E::NAME)
            .count()
    }

    /// The recorded `E`s, in emit order.
    ///
    /// # Panics
    ///
    /// If a recorded `E` does not deserialize (its `Serialize` and
    /// `Deserialize` disagree), naming the record.
    #[track_caller]
    pub fn events<E: Event>(&self) -> Vec<E> {
        // Decoded after the lock is released: `Deserialize` is user code,
        // and may emit on the recorded bus.
        let data: Vec<serde_json::Value> = lock(&self.records)
            .iter()
            .filter(|record| record.name() == E::NAME)
            .map(|record| record.data.clone())
            .collect();
        data.into_iter()
            .enumerate()
            .map(|(n, data)| {
                E::deserialize(data).unwrap_or_else(|err| {
                    panic!("recorded `{}` #{n} does not deserialize: {err}", E::NAME)
                })
            })
            .collect()
    }

    /// The first recorded `E`.
    ///
    /// # Panics
    ///
    /// If no `E` was recorded (listing what was), or it does not
    /// deserialize.
    #[track_caller]
    pub fn assert_emitted<E: Event>(&self) -> E {
        let first = {
            let records = lock(&self.records);
            match records.iter().find(|record| record.name() == E::NAME) {
                Some(record) => record.data.clone(),
                None => panic!(
                    "expected `{}` to be emitted; recorded: {}",
                    E::NAME,
                    Names(&records)
                ),
            }
        };
        E::deserialize(first)
            .unwrap_or_else(|err| panic!("recorded `{}` does not deserialize: {err}", E::NAME))
    }

    /// # Panics
    ///
    /// If an `E` was recorded.
    #[track_caller]
    pub fn assert_not_emitted<E: Event>(&self) {
        let records = lock(&self.records);
        if let Some(position) = records.iter().position(|r| r.name() == E::NAME) {
            panic!(
                "expected no `{}`, but it was recorded at position {position}: {}",
                E::NAME,
                Names(&records)
            );
        }
    }

    /// Checks that events with these names were recorded in this order
    /// (other events may come between them).
    ///
    /// # Panics
    ///
    /// At the first name not found after the previous one, listing what
    /// was recorded.
    #[track_caller]
    pub fn assert_order(&self, names: &[&str]) {
        let records = lock(&self.records);
        let mut rest = records.iter();
        for (n, name) in names.iter().enumerate() {
            if !rest.any(|r| r.name() == *name) {
                panic!(
                    "expected `{name}` (#{n} of {names:?}) after the ones before it; recorded: {}",
                    Names(&records)
                );
            }
        }
    }

    /// Checks that an `E` was emitted by a handler of a `Parent` (its
    /// [`cause`](crate::EventContext::cause)), and returns the handler's
    /// name: the first `E` whose cause is a `Parent` recorded here (or, if
    /// the parent is not recorded, any `Parent`).
    ///
    /// # Panics
    ///
    /// If no `E` was caused by a `Parent`, listing each `E`'s cause.
    #[track_caller]
    pub fn assert_caused_by<E: Event, Parent: Event>(&self) -> String {
        let records = lock(&self.records);
        let parents: Vec<u64> = records
            .iter()
            .filter(|r| r.name() == Parent::NAME)
            .map(|r| r.envelope.sequence())
            .collect();
        let found = records
            .iter()
            .filter(|r| r.name() == E::NAME)
            .find_map(|r| {
                let cause = r.envelope.cause()?;
                let is_parent = cause.event() == Parent::NAME
                    && (parents.is_empty() || parents.contains(&cause.sequence()));
                is_parent.then(|| cause.handler().unwrap_or("").to_owned())
            });
        match found {
            Some(handler) => handler,
            None => {
                let causes: Vec<String> = records
                    .iter()
                    .filter(|r| r.name() == E::NAME)
                    .map(|r| match r.envelope.cause() {
                        Some(cause) => format!("caused by {cause}"),
                        None => "a root (no cause)".to_owned(),
                    })
                    .collect();
                panic!(
                    "expected a `{}` caused by a `{}`; the recorded `{}`s: {}",
                    E::NAME,
                    Parent::NAME,
                    E::NAME,
                    if causes.is_empty() {
                        "none".to_owned()
                    } else {
                        causes.join(", ")
                    }
                )
            }
        }
    }

    /// The one trace every recorded event belongs to.
    ///
    /// # Panics
    ///
    /// If nothing was recorded, or the events belong to more than one
    /// trace (listing them).
    #[track_caller]
    pub fn assert_one_trace(&self) -> TraceId {
        let records = lock(&self.records);
        let Some(first) = records.first() else {
            panic!("expected events in one trace, but nothing was recorded")
        };
        if records
            .iter()
            .any(|r| r.envelope.trace_id() != first.envelope.trace_id())
        {
            let traces: Vec<String> = records
                .iter()
                .map(|r| format!("{} in {}", r.name(), r.envelope.trace_id().short()))
                .collect();
            panic!("expected one trace, got more: {}", traces.join(", "));
        }
        first.envelope.trace_id()
    }

    /// The id of the underlying subscription.
    pub fn subscription_id(&self) -> u64 {
        self.subscription.id()
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("recorded", &self.len())
            .finish_non_exhaustive()
    }
}

fn lock(records: &Mutex<Vec<Recorded>>) -> MutexGuard<'_, Vec<Recorded>> {
    // A panic while the lock is held leaves whole records only.
    records.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The recorded names, for failure messages.
struct Names<'a>(&'a [Recorded]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("nothing");
        }
        f.write_str("[")?;
        for (n, record) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            f.write_str(record.name())?;
        }
        f.write_str("]")
    }
}
