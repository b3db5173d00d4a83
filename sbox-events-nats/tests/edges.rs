//! The bridge at its edges, against a real `nats-server`: a spool with
//! damaged lines, an event the stream refuses for good, events emitted on
//! the bridge's own thread under `Policy::Block`, a handler that never
//! finishes when the bridge is dropped; names the broker would refuse; a
//! message the receiving bus refuses.

use sbox_events::{Event, EventBus, EventContext, EventSelector};
use sbox_events_nats::{BridgeError, NatsBridge, Policy, RefusedReason};
use sbox_events_tests::nats::{Server, eventually};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "edge.note")]
struct Note {
    n: u64,
    text: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "edge.reply")]
struct Reply {
    n: u64,
}

const LONG: Duration = Duration::from_secs(60);

fn plain_bus() -> EventBus {
    EventBus::builder().static_handlers(false).build().unwrap()
}

fn note(n: u64) -> Note {
    Note {
        n,
        text: String::new(),
    }
}

/// A bridge that consumes every event into `bus`, as durable `audit`.
fn audit(server: &Server, bus: &EventBus) -> NatsBridge {
    NatsBridge::builder(server.url())
        .consume("audit", EventSelector::all())
        .start(bus)
        .expect("starts")
}

/// The notes a bus handles, by number.
fn collect(bus: &EventBus) -> Arc<Mutex<Vec<u64>>> {
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let s = Arc::clone(&seen);
    bus.subscribe(move |note: &Note, _: &EventContext| s.lock().unwrap().push(note.n))
        .detach();
    seen
}

#[test]
#[ignore = "needs nats-server"]
fn damaged_spool_lines_are_dropped_and_counted() {
    let mut server = Server::not_started();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.jsonl");
    // With the broker down, three events wait in the spool.
    let bus = plain_bus();
    let sender = NatsBridge::builder(server.url())
        .publish(EventSelector::all())
        .policy(Policy::spool(&spool))
        .start(&bus)
        .expect("starts");
    for n in 0..3 {
        bus.emit(note(n));
    }
    assert!(sender.shutdown(Duration::from_millis(10)).is_err());
    // A line damaged on disk, between them.
    let text = std::fs::read_to_string(&spool).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    lines.insert(1, r#"{"name":"edge.note","data":"#);
    let mut file = std::fs::File::create(&spool).unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    drop(file);

    server.restart();
    let received = plain_bus();
    let seen = collect(&received);
    let _audit = audit(&server, &received);
    let sender = NatsBridge::builder(server.url())
        .publish(EventSelector::all())
        .policy(Policy::spool(&spool))
        .start(&plain_bus())
        .expect("starts");
    sender.flush(LONG).expect("the spool drains");
    let stats = sender.stats();
    assert_eq!(
        (stats.accepted, stats.acked, stats.dropped, stats.backlog),
        (4, 3, 1, 0),
        "{stats:?}"
    );
    eventually(LONG, "the three received", || {
        seen.lock().unwrap().len() == 3
    });
}

#[test]
#[ignore = "needs nats-server"]
fn an_event_the_stream_refuses_for_good_is_dropped_and_the_rest_goes_on() {
    let server = Server::start();
    // The stream exists already, made by an operator, with a message size
    // limit the server enforces (not the client).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: "SBOX_EVENTS".into(),
                subjects: vec!["sbox.>".into()],
                max_message_size: 1024,
                ..Default::default()
            })
            .await
            .unwrap();
    });
    let received = plain_bus();
    let seen = collect(&received);
    let _audit = audit(&server, &received);
    let bus = plain_bus();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&errors);
    bus.subscribe(
        move |error: &sbox_events::events::ErrorOccurred, _: &EventContext| {
            e.lock().unwrap().push(error.error.clone());
        },
    )
    .detach();
    let sender = NatsBridge::builder(server.url())
        .publish(EventSelector::names(["edge.note"]).unwrap())
        .start(&bus)
        .expect("starts");
    bus.emit(note(0));
    bus.emit(Note {
        n: 1,
        text: "x".repeat(4096),
    });
    bus.emit(note(2));
    sender
        .flush(LONG)
        .expect("the refused event does not hold up the rest");
    let stats = sender.stats();
    assert_eq!(
        (stats.accepted, stats.acked, stats.dropped, stats.backlog),
        (3, 2, 1, 0),
        "{stats:?}"
    );
    eventually(LONG, "the two others received", || {
        *seen.lock().unwrap() == [0, 2]
    });
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("edge.note"), "{errors:?}");
}

#[test]
#[ignore = "needs nats-server"]
fn under_block_events_emitted_by_received_events_never_wait_for_their_own_thread() {
    let server = Server::start();
    // A service that answers each note with a reply, forwarded by the same
    // bridge that received the note, with a queue of one.
    let service = plain_bus();
    let s = service.clone();
    service
        .subscribe(move |note: &Note, _: &EventContext| {
            for _ in 0..3 {
                s.emit(Reply { n: note.n });
            }
        })
        .detach();
    let bridge = NatsBridge::builder(server.url())
        .publish(EventSelector::names(["edge.reply"]).unwrap())
        .consume("service", EventSelector::names(["edge.note"]).unwrap())
        .policy(Policy::Block {
            queue: 1,
            timeout: Duration::from_secs(2),
        })
        .start(&service)
        .expect("starts");
    let client = plain_bus();
    let sender = NatsBridge::builder(server.url())
        .publish(EventSelector::names(["edge.note"]).unwrap())
        .start(&client)
        .expect("starts");
    for n in 0..3 {
        client.emit(note(n));
    }
    sender.flush(LONG).unwrap();
    eventually(LONG, "nine replies forwarded", || {
        let stats = bridge.stats();
        stats.accepted == 9 && stats.backlog == 0
    });
    let stats = bridge.stats();
    assert_eq!((stats.acked, stats.dropped), (9, 0), "{stats:?}");
}

#[test]
#[ignore = "needs nats-server"]
fn dropping_a_bridge_whose_handler_never_finishes_returns() {
    let server = Server::start();
    let bus = plain_bus();
    let (started, handling) = mpsc::channel();
    let started = Mutex::new(started);
    bus.subscribe_async(move |_: &Note, _: &EventContext| {
        let _ = started.lock().unwrap().send(());
        std::future::pending::<()>()
    })
    .detach();
    let consumer = NatsBridge::builder(server.url())
        .consume("stuck", EventSelector::all())
        .start(&bus)
        .expect("starts");
    let client = plain_bus();
    let sender = NatsBridge::builder(server.url())
        .publish(EventSelector::all())
        .start(&client)
        .expect("starts");
    client.emit(note(0));
    sender.flush(LONG).unwrap();
    handling.recv_timeout(LONG).expect("the handler started");
    let (dropped, done) = mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = dropped.send(());
    });
    done.recv_timeout(LONG)
        .expect("the bridge stops without waiting for the handler");
}

#[test]
fn a_durable_name_the_broker_would_refuse_fails_at_start() {
    // Refused before connecting: no server is needed, and nothing retries
    // a consumer that could never be created.
    let bus = plain_bus();
    for durable in ["audit.eu", "audit eu", "audit*", "audit>", "", "a/b"] {
        let started = NatsBridge::builder("nats://127.0.0.1:1")
            .consume(durable, EventSelector::all())
            .start(&bus);
        match started {
            Err(BridgeError::Name { message }) => assert_eq!(
                message,
                format!("durable consumer name {durable:?} must be letters, digits, `_` or `-`")
            ),
            other => panic!("{durable:?} accepted: {other:?}"),
        }
    }
    let fine = NatsBridge::builder("nats://127.0.0.1:1")
        .consume("audit_eu-1", EventSelector::all())
        .start(&bus)
        .expect("a valid durable starts (the broker is retried in the background)");
    drop(fine);
}

#[test]
#[ignore = "needs nats-server"]
fn a_message_the_local_bus_refuses_is_refused_not_received() {
    let server = Server::start();
    // A bus whose depth limit refuses every emit: no handler can run.
    let received = EventBus::builder()
        .static_handlers(false)
        .max_depth(0)
        .build()
        .unwrap();
    let seen = collect(&received);
    let audit = audit(&server, &received);
    let bus = plain_bus();
    let sender = NatsBridge::builder(server.url())
        .publish(EventSelector::all())
        .start(&bus)
        .expect("starts");
    bus.emit(note(1));
    sender.flush(LONG).expect("published");
    eventually(LONG, "refused", || {
        audit.stats().refused(RefusedReason::Invalid) == 1
    });
    let stats = audit.stats();
    assert_eq!((stats.received, stats.redelivered), (0, 0), "{stats:?}");
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
#[ignore = "needs nats-server"]
fn with_one_publish_in_flight_events_arrive_in_the_order_emitted() {
    // The README's "Order per subject": `max_in_flight(1)` keeps the
    // broker's order exactly, and the consumer handles in that order.
    let server = Server::start();
    let received = plain_bus();
    let seen = collect(&received);
    let _audit = audit(&server, &received);
    let bus = plain_bus();
    let sender = NatsBridge::builder(server.url())
        .publish(EventSelector::all())
        .max_in_flight(1)
        .start(&bus)
        .expect("starts");
    for n in 0..50 {
        bus.emit(note(n));
    }
    sender.flush(LONG).expect("acknowledged");
    eventually(LONG, "all received", || seen.lock().unwrap().len() == 50);
    assert_eq!(*seen.lock().unwrap(), (0..50).collect::<Vec<u64>>());
}
