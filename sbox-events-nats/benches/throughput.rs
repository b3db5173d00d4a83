//! Bridged events per second against a raw `async-nats` publish loop, in
//! one run on one machine, with a real `nats-server` (`$NATS_SERVER` or on
//! the `PATH`): `cargo bench -p sbox-events-nats --bench throughput`.
//!
//! Rows (best of 3 rounds of 20,000 events, each on a fresh stream):
//! * raw: `async-nats` JetStream publishes with 256 acknowledgements in
//!   flight (the floor: no serialization of an event, no envelope);
//! * bridge, publish + ack: `emit` on the bus until `flush` returns, with
//!   `Policy::Block` (memory) and `Policy::Spool` (a write per event);
//! * end to end: from the first `emit` until a second bus, through a
//!   durable consumer, has handled the last event.
//!
//! Also the emitting thread's cost per event alone (the bridge's handler):
//! memory queue against spool.

use sbox_events::{Event, EventBus, EventContext, EventSelector};
use sbox_events_nats::{NatsBridge, Policy};
use sbox_events_tests::nats::{Server, eventually};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "bench.config_exported", source = "bench")]
struct ConfigExported {
    path: String,
    file_size: u64,
}

const N: u64 = 20_000;
const ROUNDS: usize = 3;
const LONG: Duration = Duration::from_secs(120);

fn event(i: u64) -> ConfigExported {
    ConfigExported {
        path: format!("/var/lib/sboxmgr/config-{i}.json"),
        file_size: 1800 + i % 100,
    }
}

fn bus() -> EventBus {
    EventBus::builder().static_handlers(false).build().unwrap()
}

/// The floor: raw JetStream publishes of the same JSON, 256 in flight.
fn raw(server: &Server, round: usize) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let stream = format!("RAW{round}");
        jetstream
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("raw{round}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
        let payloads: Vec<bytes::Bytes> = (0..N)
            .map(|i| serde_json::to_vec(&event(i)).unwrap().into())
            .collect();
        let started = Instant::now();
        let mut acks = std::collections::VecDeque::new();
        for (i, payload) in payloads.into_iter().enumerate() {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("raw-{round}-{i}").as_str());
            let subject = format!("raw{round}.bench.config_exported");
            acks.push_back(
                jetstream
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .unwrap(),
            );
            if acks.len() >= 256 {
                acks.pop_front().unwrap().await.unwrap();
            }
        }
        for ack in acks {
            ack.await.unwrap();
        }
        started.elapsed()
    })
}

/// `emit` of N events through a bridge until `flush` returns; and the
/// emitting loop's own time.
fn bridged(server: &Server, policy: Policy, round: usize) -> (Duration, Duration) {
    let bus = bus();
    let bridge = NatsBridge::builder(server.url())
        .prefix(format!("b{round}"))
        .stream(format!("B{round}"))
        .publish(EventSelector::all())
        .policy(policy)
        .start(&bus)
        .unwrap();
    eventually(LONG, "connected", || bridge.stats().connected);
    let events: Vec<ConfigExported> = (0..N).map(event).collect();
    let started = Instant::now();
    for e in events {
        bus.emit(e);
    }
    let emitted = started.elapsed();
    bridge.flush(LONG).unwrap();
    let total = started.elapsed();
    assert_eq!(bridge.stats().acked, N);
    (total, emitted)
}

/// From the first `emit` to the last event handled by a second bus.
fn end_to_end(server: &Server, round: usize) -> Duration {
    let receiver = bus();
    let handled = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&handled);
    receiver
        .subscribe(move |_: &ConfigExported, _: &EventContext| {
            h.fetch_add(1, Ordering::Relaxed);
        })
        .detach();
    let (prefix, stream) = (format!("e{round}"), format!("E{round}"));
    let consumer = NatsBridge::builder(server.url())
        .prefix(&prefix)
        .stream(&stream)
        .consume("bench", EventSelector::all())
        .start(&receiver)
        .unwrap();
    let bus = bus();
    let bridge = NatsBridge::builder(server.url())
        .prefix(&prefix)
        .stream(&stream)
        .publish(EventSelector::all())
        .start(&bus)
        .unwrap();
    eventually(LONG, "connected", || {
        bridge.stats().connected && consumer.stats().connected
    });
    let events: Vec<ConfigExported> = (0..N).map(event).collect();
    let started = Instant::now();
    for e in events {
        bus.emit(e);
    }
    while handled.load(Ordering::Relaxed) < N {
        std::thread::sleep(Duration::from_micros(200));
        assert!(started.elapsed() < LONG, "end to end stalled");
    }
    started.elapsed()
}

fn best(mut f: impl FnMut(usize) -> Duration) -> Duration {
    (0..ROUNDS).map(&mut f).min().unwrap()
}

fn rate(d: Duration) -> f64 {
    N as f64 / d.as_secs_f64()
}

fn main() {
    if sbox_events_tests::nats::binary().is_none() {
        eprintln!("throughput: needs nats-server (set NATS_SERVER or put it on the PATH)");
        return;
    }
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let raw = best(|r| raw(&server, r));
    let mut memory_emit = Duration::MAX;
    let memory = best(|r| {
        let policy = Policy::Block {
            queue: 1 << 20,
            timeout: Duration::from_secs(30),
        };
        let (total, emit) = bridged(&server, policy, r);
        memory_emit = memory_emit.min(emit);
        total
    });
    let mut spool_emit = Duration::MAX;
    let spool = best(|r| {
        let path = dir.path().join(format!("spool-{r}.jsonl"));
        let (total, emit) = bridged(&server, Policy::spool(path), 10 + r);
        spool_emit = spool_emit.min(emit);
        total
    });
    let e2e = best(|r| end_to_end(&server, r));
    println!("| scenario ({N} events, best of {ROUNDS}) | events/s | x raw |");
    println!("|---|---:|---:|");
    for (name, d) in [
        (
            "raw async-nats JetStream publish, 256 acks in flight (floor)",
            raw,
        ),
        ("bridge, publish + ack, Policy::Block (memory)", memory),
        (
            "bridge, publish + ack, Policy::Spool (a write per event)",
            spool,
        ),
        (
            "bridge, end to end: emit here, handled by a second bus",
            e2e,
        ),
    ] {
        println!("| {name} | {:.0} | {:.2} |", rate(d), rate(d) / rate(raw));
    }
    println!();
    println!("| on the emitting thread, per event | ns |");
    println!("|---|---:|");
    for (name, d) in [
        ("emit to the bridge, memory queue", memory_emit),
        ("emit to the bridge, spool (one write)", spool_emit),
    ] {
        println!("| {name} | {:.0} |", d.as_nanos() as f64 / N as f64);
    }
}
