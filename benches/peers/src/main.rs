//! One binary, one run: the same event, the same trivial `#[inline(never)]`
//! handler and the same counts through the hand-written floor, a naive bus,
//! evenio, Bevy observers and sbox-events. Each row is the best of 15 rounds
//! of `EVENTS` events, in ns per event: 3 rounds in each of 5 passes over
//! all rows, so that a slow spell of a shared machine cannot take a whole
//! row. Ratios are against the floor and against evenio in the same run.
//! Not a test: numbers from a shared 2-vCPU machine are noisy, which is why
//! every comparison is a ratio within one run.

use sbox_events::{Event, EventBus, EventContext, handler};
use serde::{Deserialize, Serialize};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Barrier, RwLock};
use std::time::Instant;

mod count;

const EVENTS: u64 = 5_000_000;
/// Rounds of a row in one pass.
const ROUNDS: usize = 3;
/// Passes over all rows; each row keeps its best round of all passes.
const PASSES: usize = 5;

#[inline(never)]
fn sink(value: u64) {
    black_box(value);
}

/// Best of `ROUNDS` (one pass), in ns per event.
fn best(mut round: impl FnMut(u64)) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            round(EVENTS);
            started.elapsed().as_nanos() as f64 / EVENTS as f64
        })
        .fold(f64::INFINITY, f64::min)
}

// ---- sbox-events: one event type per static handler count.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "peer.none")]
struct None0(u64);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "peer.one")]
struct One(u64);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "peer.ten")]
struct Ten(u64);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "peer.closure")]
struct Closure(u64);

#[handler]
fn one(e: &One) {
    sink(e.0);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "peer.resource")]
struct WithResource(u64);

/// Application state a `#[handler]` takes (`EventBusBuilder::resource`).
struct Offset(u64);

/// A builder with the resources this binary's `#[handler]`s take: a built
/// bus must have them (`EventBus::new()` reports `with_resource` as skipped
/// instead).
fn builder() -> sbox_events::EventBusBuilder {
    EventBus::builder().resource(Offset(1))
}

#[handler]
fn with_resource(e: &WithResource, offset: &Offset) {
    sink(e.0 + offset.0);
}

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "peer.streamed")]
struct Streamed(u64);

/// One subscriber: emit (or send) one event, then receive it, per round
/// trip; sbox-events' item carries the event's envelope, tokio's only the
/// value.
fn stream_round_trip() -> (f64, f64) {
    use futures_core::Stream;
    use sbox_events::stream::Overflow;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let mut stream = bus.subscribe_stream::<Streamed>(1024, Overflow::DropOldest);
    let mut cx = Context::from_waker(Waker::noop());
    let event = Streamed(7);
    let sbox = best(|n| {
        for _ in 0..n {
            black_box(bus.emit_ref(black_box(&event)));
            match Pin::new(&mut stream).poll_next(&mut cx) {
                Poll::Ready(Some(item)) => {
                    black_box(item);
                }
                _ => unreachable!("the event just emitted is there"),
            }
        }
    });
    let (sender, mut receiver) = tokio::sync::broadcast::channel::<Streamed>(1024);
    let tokio = best(|n| {
        for _ in 0..n {
            let _ = black_box(sender.send(black_box(event.clone())));
            black_box(receiver.try_recv().ok());
        }
    });
    (sbox, tokio)
}

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "peer.async")]
struct Async1(u64);

#[handler]
async fn async_one(e: &Async1) {
    sink(e.0);
}

type BoxedFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<(), sbox_events::HandlerError>> + Send + 'a>>;

/// The floor of `emit_async` with 1 async handler: the same handler's work
/// as a boxed future, awaited by a hand-written loop.
fn boxed_one(e: &Async1) -> BoxedFuture<'_> {
    Box::pin(async move {
        sink(e.0);
        Ok(())
    })
}

/// Polls a future that completes without waiting.
fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
}

/// `emit_async` of a clone of the event to 1 async handler, and its floor
/// (the same clone, the handler's work boxed and awaited by hand).
fn async_round_trip() -> (f64, f64) {
    let bus = EventBus::new();
    let event = Async1(7);
    let sbox = best(|n| {
        for _ in 0..n {
            black_box(run_now(bus.emit_async(black_box(&event).clone())));
        }
    });
    // Opaque to the optimizer, like the bus's handler table: without it the
    // box is inlined away and the floor is not a call through a pointer.
    let handlers: [fn(&Async1) -> BoxedFuture<'_>; 1] = black_box([boxed_one]);
    let floor = best(|n| {
        for _ in 0..n {
            let event = black_box(&event).clone();
            run_now(async {
                for handler in black_box(&handlers) {
                    let _ = black_box(handler(&event).await);
                }
            });
        }
    });
    (sbox, floor)
}

macro_rules! ten_handlers {
    ($($name:ident),*) => {$(
        #[handler]
        fn $name(e: &Ten) {
            sink(e.0);
        }
    )*};
}
ten_handlers!(t0, t1, t2, t3, t4, t5, t6, t7, t8, t9);

fn sbox_static<E: sbox_events::Event>(make: fn(u64) -> E) -> f64 {
    sbox_static_on(EventBus::new(), make)
}

fn sbox_static_on<E: sbox_events::Event>(bus: EventBus, make: fn(u64) -> E) -> f64 {
    let event = make(7);
    best(|n| {
        for _ in 0..n {
            black_box(bus.emit_ref(black_box(&event)));
        }
    })
}

fn sbox_closures(count: usize) -> f64 {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let subs: Vec<_> = (0..count)
        .map(|_| bus.subscribe(|e: &Closure, _: &EventContext| sink(e.0)))
        .collect();
    let event = Closure(7);
    let ns = best(|n| {
        for _ in 0..n {
            black_box(bus.emit_ref(black_box(&event)));
        }
    });
    drop(subs);
    ns
}

// ---- scale: generated by build.rs.
mod generated {
    use super::{EvenioEvent, sink};
    use sbox_events::{Event, handler};
    use serde::{Deserialize, Serialize};
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}
use generated::{Hundred, Thousand, Type0, Type999, add_many_evenio_handlers};

fn sbox_with(bus: EventBus) -> f64 {
    let event = One(7);
    best(|n| {
        for _ in 0..n {
            black_box(bus.emit_ref(black_box(&event)));
        }
    })
}

fn evenio_many(count: usize) -> f64 {
    use evenio::prelude::*;
    let mut world = World::new();
    add_many_evenio_handlers(&mut world, count);
    best(|n| {
        for i in 0..n / 100 {
            world.send(EvenioEvent(black_box(i)));
        }
    }) * 100.0
}

fn bevy_many(count: usize) -> f64 {
    use bevy_ecs::prelude::*;
    let mut world = World::new();
    for _ in 0..count {
        world.add_observer(|e: On<BevyEvent>| sink(e.0));
    }
    world.flush();
    best(|n| {
        for i in 0..n / 100 {
            world.trigger(BevyEvent(black_box(i)));
        }
    }) * 100.0
}

fn sbox_many<E: sbox_events::Event>(make: fn(u64) -> E) -> f64 {
    let bus = EventBus::new();
    let event = make(7);
    best(|n| {
        for _ in 0..n / 100 {
            black_box(bus.emit_ref(black_box(&event)));
        }
    }) * 100.0
}

// ---- the floor and a naive bus.

fn floor(count: usize) -> f64 {
    best(|n| {
        for i in 0..n {
            for _ in 0..count {
                sink(black_box(i));
            }
        }
    })
}

type Handlers = HashMap<TypeId, Vec<Box<dyn Fn(&dyn Any) + Send + Sync>>>;

fn naive(count: usize) -> f64 {
    let mut handlers: Handlers = HashMap::new();
    for _ in 0..count {
        handlers
            .entry(TypeId::of::<u64>())
            .or_default()
            .push(Box::new(|e: &dyn Any| {
                if let Some(v) = e.downcast_ref::<u64>() {
                    sink(*v);
                }
            }));
    }
    let bus = RwLock::new(handlers);
    best(|n| {
        for i in 0..n {
            let map = bus
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(list) = map.get(&TypeId::of::<u64>()) {
                let event: u64 = black_box(i);
                for handler in list {
                    handler(&event);
                }
            }
        }
    })
}

// ---- evenio.

#[derive(evenio::event::GlobalEvent)]
struct EvenioEvent(u64);

// evenio keeps one handler per Rust type (`add_handler` of the same type
// twice adds it once): ten handlers need ten functions.
macro_rules! evenio_handlers {
    ($($name:ident),*) => {
        $(fn $name(r: evenio::prelude::Receiver<EvenioEvent>) {
            sink(r.event.0);
        })*
        fn add_evenio_handlers(world: &mut evenio::prelude::World, count: usize) {
            let all: [fn(&mut evenio::prelude::World); 10] =
                [$(|w| { w.add_handler($name); }),*];
            for add in &all[..count] {
                add(world);
            }
        }
    };
}
evenio_handlers!(e0, e1, e2, e3, e4, e5, e6, e7, e8, e9);

fn evenio(count: usize) -> f64 {
    use evenio::prelude::*;
    let mut world = World::new();
    add_evenio_handlers(&mut world, count);
    best(|n| {
        for i in 0..n {
            world.send(EvenioEvent(black_box(i)));
        }
    })
}

// ---- Bevy observers.

#[derive(bevy_ecs::event::Event)]
struct BevyEvent(u64);

fn bevy(count: usize) -> f64 {
    use bevy_ecs::prelude::*;
    let mut world = World::new();
    for _ in 0..count {
        world.add_observer(|e: On<BevyEvent>| sink(e.0));
    }
    world.flush();
    best(|n| {
        for i in 0..n {
            world.trigger(BevyEvent(black_box(i)));
        }
    })
}

// ---- two threads, each timing itself after a shared start.

fn per_thread(threads: usize, work: impl Fn(u64) + Send + Sync + 'static) -> f64 {
    let work = Arc::new(work);
    (0..ROUNDS)
        .map(|_| {
            let barrier = Arc::new(Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (barrier, work) = (Arc::clone(&barrier), Arc::clone(&work));
                    std::thread::spawn(move || {
                        barrier.wait();
                        let started = Instant::now();
                        work(EVENTS);
                        started.elapsed().as_nanos() as f64 / EVENTS as f64
                    })
                })
                .collect();
            // Each thread's own ns/event; the slowest one bounds throughput.
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(f64::INFINITY))
                .fold(0.0, f64::max)
        })
        .fold(f64::INFINITY, f64::min)
}

/// One pass over every row measured without a `tracing` subscriber: (row,
/// ns/event).
fn pass() -> Vec<(&'static str, f64)> {
    let (stream_sbox, stream_tokio) = stream_round_trip();
    let (async_sbox, async_floor) = async_round_trip();
    let bus = EventBus::new();
    let bus2 = bus.clone();
    vec![
        ("f1", floor(1)),
        ("f10", floor(10)),
        ("naive1", naive(1)),
        ("naive10", naive(10)),
        ("e0", evenio(0)),
        ("e1", evenio(1)),
        ("e10", evenio(10)),
        ("bevy0", bevy(0)),
        ("bevy1", bevy(1)),
        ("bevy10", bevy(10)),
        ("sbox0", sbox_static(None0)),
        ("sbox1", sbox_static(One)),
        ("sbox10", sbox_static(Ten)),
        ("closure1", sbox_closures(1)),
        ("closure10", sbox_closures(10)),
        ("async_floor", async_floor),
        ("async", async_sbox),
        (
            "resource",
            sbox_static_on(builder().build().unwrap(), WithResource),
        ),
        ("stream", stream_sbox),
        ("tokio", stream_tokio),
        (
            "stats",
            sbox_with(builder().handler_stats(true).build().unwrap()),
        ),
        (
            "history",
            sbox_with(builder().history(8 << 20).build().unwrap()),
        ),
        ("evenio100", evenio_many(100)),
        ("evenio1000", evenio_many(1000)),
        ("bevy100", bevy_many(100)),
        ("bevy1000", bevy_many(1000)),
        ("sbox100", sbox_many(Hundred)),
        ("sbox1000", sbox_many(Thousand)),
        ("type0", sbox_static(Type0)),
        ("type999", sbox_static(Type999)),
        (
            "floor2t",
            per_thread(2, |n| {
                for i in 0..n {
                    sink(black_box(i));
                }
            }),
        ),
        (
            "floor1t",
            per_thread(1, |n| {
                for i in 0..n {
                    sink(black_box(i));
                }
            }),
        ),
        (
            "sbox1t",
            per_thread(1, move |n| {
                let event = One(7);
                for _ in 0..n {
                    black_box(bus.emit_ref(black_box(&event)));
                }
            }),
        ),
        (
            "sbox2t",
            per_thread(2, move |n| {
                let event = One(7);
                for _ in 0..n {
                    black_box(bus2.emit_ref(black_box(&event)));
                }
            }),
        ),
    ]
}

fn main() {
    if let Ok(scenario) = std::env::var("PEERS_COUNT") {
        let events = std::env::var("PEERS_EVENTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        return count::count_instructions(&scenario, events);
    }
    let mut best: HashMap<&'static str, f64> = HashMap::new();
    for _ in 0..PASSES {
        for (row, ns) in pass() {
            let kept = best.entry(row).or_insert(f64::INFINITY);
            *kept = kept.min(ns);
        }
    }

    // Last: a global `tracing` subscriber cannot be removed again. These
    // two rows take their passes here, one after the other.
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    )
    .unwrap_or_else(|e| panic!("install the subscriber: {e}"));
    for _ in 0..PASSES {
        for (row, ns) in [
            ("traced1", sbox_static(One)),
            ("traced10", sbox_static(Ten)),
        ] {
            let kept = best.entry(row).or_insert(f64::INFINITY);
            *kept = kept.min(ns);
        }
    }
    let ns = |row: &str| best[row];
    let (f1, f10, e0, e1, e10) = (ns("f1"), ns("f10"), ns("e0"), ns("e1"), ns("e10"));

    // (row, ns/event, its floor, its evenio row)
    let rows: [(&str, &str, f64, Option<f64>); 24] = [
        ("floor: direct calls, 1 handler", "f1", f1, None),
        ("floor: direct calls, 10 handlers", "f10", f10, None),
        (
            "naive HashMap<TypeId, Vec<Box<dyn Fn>>> + RwLock, 1",
            "naive1",
            f1,
            Some(e1),
        ),
        ("naive bus, 10 handlers", "naive10", f10, Some(e10)),
        ("evenio 0.6, 0 handlers", "e0", f1, Some(e0)),
        ("evenio 0.6, 1 handler", "e1", f1, Some(e1)),
        ("evenio 0.6, 10 handlers", "e10", f10, Some(e10)),
        ("Bevy 0.20 observers, 0", "bevy0", f1, Some(e0)),
        ("Bevy 0.20 observers, 1", "bevy1", f1, Some(e1)),
        ("Bevy 0.20 observers, 10", "bevy10", f10, Some(e10)),
        ("sbox-events, 0 static handlers", "sbox0", f1, Some(e0)),
        ("sbox-events, 1 static handler", "sbox1", f1, Some(e1)),
        ("sbox-events, 10 static handlers", "sbox10", f10, Some(e10)),
        (
            "sbox-events, 1 closure subscription",
            "closure1",
            f1,
            Some(e1),
        ),
        (
            "sbox-events, 10 closure subscriptions",
            "closure10",
            f10,
            Some(e10),
        ),
        (
            "sbox-events, 1 static handler, `tracing_subscriber::fmt` at INFO",
            "traced1",
            f1,
            Some(e1),
        ),
        (
            "sbox-events, 10 static handlers, `tracing_subscriber::fmt` at INFO",
            "traced10",
            f10,
            Some(e10),
        ),
        (
            "floor: a hand-written loop awaiting 1 boxed future",
            "async_floor",
            f1,
            Some(e1),
        ),
        (
            "sbox-events emit_async, 1 async handler",
            "async",
            f1,
            Some(e1),
        ),
        (
            "sbox-events, 1 static handler taking one resource",
            "resource",
            f1,
            Some(e1),
        ),
        (
            "sbox-events stream: emit + receive, 1 subscriber",
            "stream",
            f1,
            Some(e1),
        ),
        (
            "tokio::sync::broadcast: send + try_recv, 1 receiver",
            "tokio",
            f1,
            Some(e1),
        ),
        (
            "sbox-events, 1 static handler, handler statistics on",
            "stats",
            f1,
            Some(e1),
        ),
        (
            "sbox-events, 1 static handler, history on (8 MiB)",
            "history",
            f1,
            Some(e1),
        ),
    ];
    // (row, ns/event, handlers per event)
    let scale = [
        ("evenio 0.6, 100 handlers", "evenio100", 100.0),
        ("evenio 0.6, 1,000 handlers", "evenio1000", 1000.0),
        ("Bevy 0.20 observers, 100", "bevy100", 100.0),
        ("Bevy 0.20 observers, 1,000", "bevy1000", 1000.0),
        ("sbox-events, 100 static handlers", "sbox100", 100.0),
        ("sbox-events, 1,000 static handlers", "sbox1000", 1000.0),
        (
            "sbox-events, 1 handler on the 1st of 1,000 more event types",
            "type0",
            1.0,
        ),
        (
            "sbox-events, 1 handler on the 1,000th of 1,000 more event types",
            "type999",
            1.0,
        ),
    ];

    println!("| scenario | ns/event | × floor | × evenio |");
    println!("|---|---:|---:|---:|");
    for (name, row, floor, evenio) in rows {
        let ns = ns(row);
        let vs = evenio.map_or("".to_owned(), |e| format!("{:.2}", ns / e));
        println!("| {name} | {ns:.1} | {:.2} | {vs} |", ns / floor);
    }
    println!();
    println!("| scale | ns/event | ns per handler |");
    println!("|---|---:|---:|");
    for (name, row, handlers) in scale {
        let ns = ns(row);
        println!("| {name} | {ns:.1} | {:.2} |", ns / handlers);
    }
    println!();
    let (static1, static10) = (ns("sbox1"), ns("sbox10"));
    println!(
        "closures vs static: {:.2} (1), {:.2} (10); with a tracing subscriber vs without: {:.2} (1), {:.2} (10)",
        ns("closure1") / static1,
        ns("closure10") / static10,
        ns("traced1") / static1,
        ns("traced10") / static10
    );
    println!(
        "resource vs plain, 1 static handler: {:+.1} ns; stream vs tokio broadcast: {:.2}x; emit_async vs its floor: {:.2}x",
        ns("resource") - static1,
        ns("stream") / ns("tokio"),
        ns("async") / ns("async_floor")
    );
    println!(
        "2 threads (each timed after a shared start; throughput vs 1 thread): floor {:.2}x, sbox-events {:.2}x",
        2.0 * ns("floor1t") / ns("floor2t"),
        2.0 * ns("sbox1t") / ns("sbox2t")
    );
}
