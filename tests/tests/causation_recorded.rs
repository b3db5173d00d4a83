//! The cause of an event emitted while its parent is handed to the history:
//! from inside the parent's `Serialize`, and from the handlers of a parent
//! the history refuses (too large, or not serializable). The history makes
//! the parent's id before serializing it, so both children name it.

use sbox_events::history::HistoryQuery;
use sbox_events::{Cause, Event, EventBus, EventContext, EventId, Subscription};
use serde::{Deserialize, Serialize, Serializer};
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "recorded.child")]
struct Child {
    n: u32,
}

/// The bus `Chatty`'s `Serialize` emits on.
static SERIALIZING_BUS: OnceLock<EventBus> = OnceLock::new();

/// An event whose serialization emits a `Child` on `SERIALIZING_BUS`.
#[derive(Event, Deserialize)]
#[event(name = "recorded.chatty")]
struct Chatty;

impl Serialize for Chatty {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(bus) = SERIALIZING_BUS.get() {
            bus.emit(Child { n: 1 });
        }
        serializer.serialize_unit_struct("Chatty")
    }
}

#[test]
fn an_event_emitted_by_a_recorded_events_serialize_names_it_as_cause() {
    let bus = SERIALIZING_BUS.get_or_init(|| {
        EventBus::builder()
            .static_handlers(false)
            .history(1 << 20)
            .build()
            .unwrap()
    });
    let report = bus.emit(Chatty);
    assert!(report.is_ok(), "{report}");

    let history = bus.history().expect("enabled");
    let records = history.query(&HistoryQuery::new());
    let chatty = records
        .iter()
        .find(|record| record.name() == "recorded.chatty")
        .expect("the parent is recorded");
    let child = records
        .iter()
        .find(|record| record.name() == "recorded.child")
        .expect("the child is recorded");
    let cause = child.envelope().cause().expect("the child has a cause");
    assert_eq!(cause.event(), "recorded.chatty");
    assert_eq!(cause.sequence(), chatty.envelope().sequence());
    assert_eq!(
        cause.event_id(),
        Some(chatty.envelope().event_id()),
        "the parent's id was made before its Serialize ran"
    );
    assert_eq!(cause.handler(), None, "no handler of the parent emitted it");
}

/// An event the history refuses to keep: its `Serialize` fails.
#[derive(Event, Deserialize)]
#[event(name = "recorded.refused")]
struct Refused;

impl Serialize for Refused {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this event cannot be written"))
    }
}

/// An event far larger than the history below.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "recorded.huge")]
struct Huge {
    text: String,
}

/// What a handler of a refused parent saw: the cause of the child it
/// emitted, then (asked only after emitting) its parent's own id.
type Seen = Arc<Mutex<Vec<(Option<Cause>, EventId)>>>;

/// Subscribes: every `E` emits a `Child`, whose cause is kept with the id
/// of `E` read afterwards.
fn emits_a_child<E: Event>(bus: &EventBus, seen: &Seen) -> [Subscription; 2] {
    let children: Arc<Mutex<Option<Cause>>> = Arc::default();
    let sink = Arc::clone(&children);
    let watch = bus.subscribe(move |_: &Child, ctx: &EventContext| {
        *sink.lock().unwrap() = ctx.cause();
    });
    let seen = Arc::clone(seen);
    let parent = bus.subscribe(move |_: &E, ctx: &EventContext| {
        ctx.bus().emit(Child { n: 2 });
        let cause = children.lock().unwrap().take();
        seen.lock().unwrap().push((cause, ctx.event_id()));
    });
    [watch, parent]
}

#[test]
fn the_child_of_an_event_the_history_refuses_names_its_parents_id() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(64 << 10)
        .build()
        .unwrap();
    let seen: Seen = Arc::default();
    let _refused = emits_a_child::<Refused>(&bus, &seen);
    let report = bus.emit(Refused);
    assert_eq!(report.not_recorded().len(), 1, "{report}");
    let huge = Huge {
        text: "x".repeat(1 << 20),
    };
    let _huge = emits_a_child::<Huge>(&bus, &seen);
    let report = bus.emit(huge);
    assert!(report.is_ok(), "{report}");

    let history = bus.history().expect("enabled");
    let stats = history.stats();
    assert_eq!((stats.unserializable, stats.oversized), (1, 1), "{stats:?}");
    let seen = seen.lock().unwrap();
    let names: Vec<&str> = seen
        .iter()
        .map(|(cause, _)| cause.as_ref().map_or("none", |cause| cause.event()))
        .collect();
    assert_eq!(names, ["recorded.refused", "recorded.huge"]);
    for (cause, parent_id) in seen.iter() {
        let cause = cause.as_ref().expect("a child has a cause");
        assert_eq!(
            cause.event_id(),
            Some(*parent_id),
            "{cause}: the id was made when the history was handed the parent, \
             before any handler asked for it"
        );
    }
    // The children were kept, and name an id that no kept record has.
    let records = history.query(&HistoryQuery::new());
    let kept: Vec<&str> = records.iter().map(|record| record.name()).collect();
    assert!(
        !kept.contains(&"recorded.refused") && !kept.contains(&"recorded.huge"),
        "{kept:?}"
    );
    assert_eq!(
        kept.iter()
            .filter(|name| **name == "recorded.child")
            .count(),
        2,
        "{kept:?}"
    );
}
