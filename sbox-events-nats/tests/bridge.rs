//! The bridge against a real `nats-server` (see `support`): events cross
//! processes in their trace, and nothing is lost or doubled when the
//! broker is down at start, killed mid-stream, paused, or when the emitting
//! or the consuming process is killed.

use sbox_events::events::ErrorOccurred;
use sbox_events::metrics::MetricsCollector;
use sbox_events::trace::{self, TraceId};
use sbox_events::{
    Cause, EmitOptions, Envelope, Event, EventBus, EventContext, EventId, EventSelector,
    SubscribeOptions,
};
use sbox_events_nats::{NatsBridge, Policy, RefusedReason};
use sbox_events_tests::nats::{self as support, Server, eventually};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shop.order_placed", source = "shop")]
struct OrderPlaced {
    order: u64,
}

/// Emitted by a handler of `OrderPlaced` on the sending side.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shop.invoice_sent")]
struct InvoiceSent {
    order: u64,
}

const LONG: Duration = Duration::from_secs(60);

fn plain_bus() -> EventBus {
    EventBus::builder().static_handlers(false).build().unwrap()
}

/// A bus that records every `OrderPlaced` it handles: how many times each
/// order was handled, and the envelopes.
struct Received {
    bus: EventBus,
    counts: Arc<Mutex<HashMap<u64, u32>>>,
    envelopes: Arc<Mutex<Vec<Envelope>>>,
}

impl Received {
    fn new() -> Received {
        let bus = plain_bus();
        let counts: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
        let envelopes: Arc<Mutex<Vec<Envelope>>> = Arc::default();
        let (c, e) = (Arc::clone(&counts), Arc::clone(&envelopes));
        bus.subscribe(move |order: &OrderPlaced, ctx: &EventContext| {
            *c.lock().unwrap().entry(order.order).or_default() += 1;
            e.lock().unwrap().push(ctx.envelope());
        })
        .detach();
        Received {
            bus,
            counts,
            envelopes,
        }
    }

    fn distinct(&self) -> usize {
        self.counts.lock().unwrap().len()
    }

    fn assert_each_once(&self, n: u64) {
        let counts = self.counts.lock().unwrap();
        let missing: Vec<u64> = (0..n).filter(|o| !counts.contains_key(o)).collect();
        let doubled: Vec<(&u64, &u32)> = counts.iter().filter(|(_, c)| **c != 1).collect();
        assert!(missing.is_empty(), "never handled: {missing:?}");
        assert!(doubled.is_empty(), "handled more than once: {doubled:?}");
    }
}

fn consumer(server: &Server, durable: &str, bus: &EventBus) -> NatsBridge {
    NatsBridge::builder(server.url())
        .consume(durable, EventSelector::all())
        .ack_wait(Duration::from_secs(2))
        .reconnect_delay_max(Duration::from_millis(100))
        .start(bus)
        .expect("consumer starts")
}

fn publisher(url: &str, policy: Policy, bus: &EventBus) -> NatsBridge {
    NatsBridge::builder(url)
        .publish(EventSelector::all())
        .policy(policy)
        .ack_timeout(Duration::from_millis(500))
        .reconnect_delay_max(Duration::from_millis(100))
        .start(bus)
        .expect("publisher starts")
}

#[test]
#[ignore = "needs nats-server"]
fn events_cross_processes_in_their_trace_with_their_envelope() {
    let server = Server::start();
    let received = Received::new();
    let _audit = consumer(&server, "audit", &received.bus);
    let bus = plain_bus();
    let sent: Arc<Mutex<Vec<Envelope>>> = Arc::default();
    let s = Arc::clone(&sent);
    bus.subscribe(move |_: &OrderPlaced, ctx: &EventContext| {
        s.lock().unwrap().push(ctx.envelope());
    })
    .detach();
    // The sender consumes too: it never gets its own events back.
    let sender = NatsBridge::builder(server.url())
        .publish(EventSelector::all())
        .consume("orchestrator", EventSelector::all())
        .start(&bus)
        .expect("starts");
    let trace_id = TraceId::random();
    trace::with_trace_id(trace_id, || {
        for order in 0..3 {
            let options = EmitOptions::new()
                .source("checkout")
                .metadata("tenant", "acme\r\nX-Injected: yes");
            bus.emit_with(OrderPlaced { order }, options);
        }
    });
    sender.flush(LONG).expect("acknowledged");
    eventually(LONG, "three received", || received.distinct() == 3);
    received.assert_each_once(3);
    // Matched by event id, not by position: order is kept except after a
    // publish or an ack that timed out (the README's "Order per subject"),
    // which a loaded machine can cause.
    let (all_sent, all_got) = (
        sent.lock().unwrap().clone(),
        received.envelopes.lock().unwrap().clone(),
    );
    assert_eq!(all_got.len(), all_sent.len());
    for got in &all_got {
        let sent = all_sent
            .iter()
            .find(|sent| sent.event_id() == got.event_id())
            .unwrap_or_else(|| panic!("{:?} was never sent", got.event_id()));
        assert_eq!(got.trace_id(), trace_id);
        assert_eq!(got.timestamp(), sent.timestamp());
        assert_eq!(got.source(), "checkout");
        assert_eq!(
            got.metadata().get("tenant"),
            Some("acme\r\nX-Injected: yes")
        );
        assert_eq!(got.remote(), Some(sender.instance_id()));
    }
    eventually(LONG, "the sender skips its own", || {
        sender.stats().skipped == 3
    });
    assert_eq!(sender.stats().received, 0);
    let stats = sender.stats();
    assert_eq!(
        (stats.accepted, stats.acked, stats.dropped, stats.backlog),
        (3, 3, 0, 0)
    );

    // An event emitted by a handler keeps its cause across the broker.
    let causes: Arc<Mutex<Vec<Option<Cause>>>> = Arc::default();
    let c = Arc::clone(&causes);
    received
        .bus
        .subscribe(move |_: &InvoiceSent, ctx: &EventContext| {
            c.lock().unwrap().push(ctx.envelope().cause().cloned());
        })
        .detach();
    let b = bus.clone();
    let invoicing = SubscribeOptions::new().name("invoicing");
    bus.subscribe_with(invoicing, move |order: &OrderPlaced, _: &EventContext| {
        if order.order == 99 {
            b.emit(InvoiceSent { order: 99 });
        }
    })
    .detach();
    bus.emit(OrderPlaced { order: 99 });
    sender.flush(LONG).expect("acknowledged");
    eventually(LONG, "the invoice received", || {
        !causes.lock().unwrap().is_empty()
    });
    let cause = causes.lock().unwrap()[0].clone().expect("a cause");
    let placed = sent.lock().unwrap().last().expect("sent").clone();
    assert_eq!(cause.event(), "shop.order_placed");
    assert_eq!(cause.handler(), Some("invoicing"));
    assert_eq!(cause.event_id(), Some(placed.event_id()));
    assert_eq!(cause.sequence(), placed.sequence());

    // The counters, in the metrics.
    let metrics = MetricsCollector::attach(&bus);
    metrics.register(sender.metrics());
    let text = metrics.render_prometheus();
    assert!(text.contains("sbox_nats_acked_total 5\n"), "{text}");
    assert!(
        text.contains("sbox_nats_refused_total{reason=\"foreign\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("sbox_nats_connected 1\n"), "{text}");
}

#[test]
#[ignore = "needs nats-server"]
fn a_broker_down_at_start_up_gets_everything_once_it_is_up() {
    let mut server = Server::not_started();
    let dir = tempfile::tempdir().unwrap();
    let bus = plain_bus();
    let sender = publisher(
        &server.url(),
        Policy::spool(dir.path().join("spool.jsonl")),
        &bus,
    );
    for order in 0..100 {
        bus.emit(OrderPlaced { order });
    }
    let stats = sender.stats();
    assert_eq!(
        (stats.accepted, stats.spooled, stats.backlog),
        (100, 100, 100)
    );
    assert!(!stats.connected);
    server.restart();
    let received = Received::new();
    let _audit = consumer(&server, "audit", &received.bus);
    sender.flush(LONG).expect("drained once the broker is up");
    eventually(LONG, "a hundred received", || received.distinct() == 100);
    received.assert_each_once(100);
}

#[test]
#[ignore = "needs nats-server"]
fn a_server_killed_and_restarted_mid_stream_loses_and_doubles_nothing() {
    const N: u64 = 3000;
    let mut server = Server::start();
    let received = Received::new();
    let audit = consumer(&server, "audit", &received.bus);
    let bus = plain_bus();
    let policy = Policy::Block {
        queue: 100_000,
        timeout: Duration::from_secs(30),
    };
    let sender = publisher(&server.url(), policy, &bus);
    // Half before the kill (some still in flight when it comes), half
    // while the server is down, then it comes back on the same store.
    for order in 0..N / 2 {
        bus.emit(OrderPlaced { order });
    }
    eventually(LONG, "some acknowledged", || sender.stats().acked >= 500);
    server.kill();
    for order in N / 2..N {
        bus.emit(OrderPlaced { order });
    }
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    sender.flush(LONG).expect("everything acknowledged");
    eventually(LONG, "every order received", || {
        received.distinct() == N as usize
    });
    received.assert_each_once(N);
    let stats = sender.stats();
    assert_eq!(
        (stats.accepted, stats.acked, stats.dropped),
        (N, N, 0),
        "{stats:?}"
    );
    assert!(stats.retried > 0, "the kill caused resends: {stats:?}");
    drop(audit);
}

#[test]
#[ignore = "needs nats-server"]
fn a_paused_broker_under_each_policy_keeps_the_counts_adding_up() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let policies = [
        (Policy::Drop { queue: 50 }, true),
        (
            Policy::Block {
                queue: 20,
                timeout: Duration::from_millis(5),
            },
            true,
        ),
        (Policy::spool(dir.path().join("spool.jsonl")), false),
    ];
    for (round, (policy, may_drop)) in policies.into_iter().enumerate() {
        let received = Received::new();
        // Each round has its own stream.
        let (prefix, stream) = (format!("round{round}"), format!("ROUND{round}"));
        let _audit = NatsBridge::builder(server.url())
            .prefix(&prefix)
            .stream(&stream)
            .consume("audit", EventSelector::all())
            .start(&received.bus)
            .expect("starts");
        let bus = plain_bus();
        let states = Arc::new(Mutex::new(Vec::new()));
        for name in ["nats.spooling", "nats.drained"] {
            let s = Arc::clone(&states);
            bus.subscribe_any(EventSelector::names([name]).unwrap(), move |e, _| {
                s.lock().unwrap().push(e.name());
            })
            .detach();
        }
        let sender = NatsBridge::builder(server.url())
            .prefix(&prefix)
            .stream(&stream)
            .publish(EventSelector::all())
            .policy(policy.clone())
            .max_in_flight(8)
            .ack_timeout(Duration::from_millis(300))
            .start(&bus)
            .expect("starts");
        eventually(LONG, "connected", || sender.stats().connected);
        server.pause(true);
        let base = 10_000 * round as u64;
        for order in base..base + 400 {
            bus.emit(OrderPlaced { order });
        }
        let paused = sender.stats();
        assert_eq!(paused.accepted, 400, "{policy:?}: {paused:?}");
        assert_eq!(
            paused.accepted,
            paused.acked + paused.dropped + paused.backlog,
            "{policy:?} while paused: {paused:?}"
        );
        if may_drop {
            assert!(paused.dropped > 0, "{policy:?}: {paused:?}");
        } else {
            assert_eq!(paused.dropped, 0, "{policy:?}: {paused:?}");
        }
        server.pause(false);
        sender.flush(LONG).expect("caught up");
        let done = sender.stats();
        assert_eq!(
            done.accepted,
            done.acked + done.dropped,
            "{policy:?}: {done:?}"
        );
        eventually(
            LONG,
            &format!("{policy:?}: the acked ones received"),
            || received.distinct() as u64 == done.acked,
        );
        if !may_drop {
            eventually(LONG, "spooling, then drained", || {
                *states.lock().unwrap() == ["nats.spooling", "nats.drained"]
            });
        }
    }
}

const SPOOL_CHILD: &str = "the_emitting_process_killed_while_spooling_loses_nothing";

#[test]
#[ignore = "needs nats-server"]
fn the_emitting_process_killed_while_spooling_loses_nothing() {
    if support::is_child(SPOOL_CHILD) {
        return spooling_child();
    }
    let mut server = Server::not_started();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.jsonl");
    let env = [
        ("SBOX_URL", server.url()),
        ("SBOX_SPOOL", spool.display().to_string()),
    ];
    // 1. The broker is down: the child spools 200 events and is killed.
    let env_spool: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain([("SBOX_MODE", "emit")])
        .collect();
    let mut child = support::child(SPOOL_CHILD, &env_spool);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("spooled 200"))),
        "the child did not spool"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // 2. The broker is up; the child starts again and drains its spool.
    server.restart();
    let received = Received::new();
    let _audit = consumer(&server, "audit", &received.bus);
    let env_drain: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain([("SBOX_MODE", "drain")])
        .collect();
    let status = support::child(SPOOL_CHILD, &env_drain).wait().unwrap();
    assert!(status.success(), "the draining child failed: {status}");
    eventually(LONG, "two hundred received", || received.distinct() == 200);
    received.assert_each_once(200);
    assert_eq!(
        std::fs::metadata(&spool).unwrap().len(),
        0,
        "the spool is empty"
    );
}

fn spooling_child() {
    let url = std::env::var("SBOX_URL").unwrap();
    let spool = std::env::var("SBOX_SPOOL").unwrap();
    let bus = plain_bus();
    let sender = publisher(&url, Policy::spool(spool), &bus);
    if std::env::var("SBOX_MODE").unwrap() == "emit" {
        for order in 0..200 {
            bus.emit(OrderPlaced { order });
        }
        println!("spooled 200");
        std::thread::sleep(Duration::from_secs(600)); // until killed
    } else {
        sender.flush(LONG).expect("the spool drains");
        sender.shutdown(LONG).expect("clean shutdown");
    }
}

#[test]
#[ignore = "needs nats-server"]
fn malformed_foreign_and_other_schema_messages_are_refused_once() {
    let server = Server::start();
    let received = Received::new();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&errors);
    received
        .bus
        .subscribe(move |error: &ErrorOccurred, _: &EventContext| {
            e.lock().unwrap().push(error.clone());
        })
        .detach();
    let audit = consumer(&server, "audit", &received.bus);
    eventually(LONG, "connected", || audit.stats().connected);
    // Raw messages, as a foreign or broken producer would send them.
    let good = |name: &str, fingerprint: &str| {
        let mut headers = async_nats::HeaderMap::new();
        let id = EventId::new(std::time::SystemTime::now()).to_string();
        headers.insert("Nats-Msg-Id", id.as_str());
        let traceparent = format!("00-{}-00f067aa0ba902b7-01", TraceId::random());
        headers.insert("traceparent", traceparent.as_str());
        headers.insert("Sbox-Event", name);
        headers.insert("Sbox-Fingerprint", fingerprint);
        headers.insert("Sbox-Instance", "elsewhere");
        headers.insert("Sbox-Envelope", r#"{"source":"s","metadata":{}}"#);
        headers
    };
    let mut malformed = good("shop.order_placed", OrderPlaced::FINGERPRINT);
    malformed.insert("Nats-Msg-Id", "not-an-id");
    let messages = [
        ("sbox.shop.order_placed", malformed, r#"{"order":1}"#),
        (
            "sbox.shop.unknown_thing",
            good("shop.unknown_thing", "v1"),
            r#"{}"#,
        ),
        (
            "sbox.shop.order_placed",
            good("shop.order_placed", "0123456789abcdef"),
            r#"{"order":2}"#,
        ),
        (
            "sbox.shop.order_placed",
            good("shop.order_placed", OrderPlaced::FINGERPRINT),
            r#"{"order":"three"}"#,
        ),
        (
            "sbox.shop.order_placed",
            good("shop.order_placed", OrderPlaced::FINGERPRINT),
            r#"{"order":4}"#,
        ),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        for (subject, headers, payload) in messages {
            jetstream
                .publish_with_headers(subject, headers, payload.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    eventually(LONG, "the good one received", || received.distinct() == 1);
    eventually(LONG, "four refused", || {
        let s = audit.stats();
        s.refused.iter().map(|(_, n)| n).sum::<u64>() == 4
    });
    // Terminated, not redelivered: the counts stay after ack_wait.
    std::thread::sleep(Duration::from_secs(3));
    let stats = audit.stats();
    assert_eq!(stats.refused(RefusedReason::Malformed), 2, "{stats:?}");
    assert_eq!(stats.refused(RefusedReason::Foreign), 1, "{stats:?}");
    assert_eq!(stats.refused(RefusedReason::Fingerprint), 1, "{stats:?}");
    assert_eq!(stats.received, 1);
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.handler == "sbox_events_nats::inbound")
    );
    assert!(
        errors.iter().any(|e| e.error.contains("0123456789abcdef")),
        "{errors:?}"
    );
}

#[test]
#[ignore = "needs nats-server"]
fn failing_handlers_get_redeliveries_with_backoff_then_termination() {
    let server = Server::start();
    let bus = plain_bus();
    let calls = Arc::new(Mutex::new(0));
    let c = Arc::clone(&calls);
    bus.subscribe(move |_: &OrderPlaced, _: &EventContext| {
        *c.lock().unwrap() += 1;
        Err::<(), _>("the database is down")
    })
    .detach();
    let audit = NatsBridge::builder(server.url())
        .consume("audit", EventSelector::all())
        .max_deliver(3)
        .redelivery_backoff(vec![Duration::from_millis(100)])
        .start(&bus)
        .expect("starts");
    let sender_bus = plain_bus();
    let sender = publisher(&server.url(), Policy::default(), &sender_bus);
    sender_bus.emit(OrderPlaced { order: 1 });
    sender.flush(LONG).unwrap();
    eventually(LONG, "given up", || {
        audit.stats().refused(RefusedReason::HandlersFailed) == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(*calls.lock().unwrap(), 3, "three deliveries, then no more");
    assert_eq!(audit.stats().redelivered, 2);
}

const SLOW_CHILD: &str = "a_consumer_killed_before_its_ack_gets_the_message_handled_once";

#[test]
#[ignore = "needs nats-server"]
fn a_consumer_killed_before_its_ack_gets_the_message_handled_once() {
    if support::is_child(SLOW_CHILD) {
        let url = std::env::var("SBOX_URL").unwrap();
        let bus = plain_bus();
        bus.subscribe(|order: &OrderPlaced, _: &EventContext| {
            println!("handling {}", order.order);
            std::thread::sleep(Duration::from_secs(600)); // until killed
        })
        .detach();
        let _audit = NatsBridge::builder(url)
            .consume("audit", EventSelector::all())
            .ack_wait(Duration::from_secs(2))
            .start(&bus)
            .expect("starts");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let server = Server::start();
    let sender_bus = plain_bus();
    let sender = publisher(&server.url(), Policy::default(), &sender_bus);
    for order in 0..5 {
        sender_bus.emit(OrderPlaced { order });
    }
    sender.flush(LONG).unwrap();
    let url = server.url();
    let mut child = support::child(SLOW_CHILD, &[("SBOX_URL", url.as_str())]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("handling "))),
        "the child did not start handling"
    );
    child.kill().unwrap(); // mid-handler, before its acknowledgement
    child.wait().unwrap();
    let received = Received::new();
    let _audit = consumer(&server, "audit", &received.bus);
    eventually(LONG, "all five handled here", || received.distinct() == 5);
    std::thread::sleep(Duration::from_secs(3));
    received.assert_each_once(5);
}
