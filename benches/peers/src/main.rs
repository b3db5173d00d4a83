//! One binary, one run: the same event, the same trivial `#[inline(never)]`
//! handler and the same counts through the hand-written floor, a naive bus,
//! evenio, Bevy observers and sbox-events. Each row is the best of 7 rounds
//! of `EVENTS` events, in ns per event; ratios are against the floor and
//! against evenio in the same run. Not a test: numbers from a shared 2-vCPU
//! machine are noisy, which is why every comparison is a ratio within one
//! run.

use sbox_events::{Event, EventBus, EventContext, handler};
use serde::{Deserialize, Serialize};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Barrier, RwLock};
use std::time::Instant;

const EVENTS: u64 = 5_000_000;
const ROUNDS: usize = 7;

#[inline(never)]
fn sink(value: u64) {
    black_box(value);
}

/// Best of `ROUNDS`, in ns per event.
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
    let bus = EventBus::new();
    let event = make(7);
    best(|n| {
        for _ in 0..n {
            black_box(bus.emit_ref(black_box(&event)));
        }
    })
}

fn sbox_closures(count: usize) -> f64 {
    let bus = EventBus::builder().static_handlers(false).build();
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

/// `PEERS_COUNT=<scenario> PEERS_EVENTS=<n>`: run one scenario once, for
/// instruction counting under callgrind (`scripts/instructions.sh`).
fn count_instructions(scenario: &str, events: u64) {
    let event_one = One(7);
    let event_ten = Ten(7);
    let closure = Closure(7);
    let bus = EventBus::new();
    let closures1 = EventBus::builder().static_handlers(false).build();
    let _c1 = closures1.subscribe(|e: &Closure, _: &EventContext| sink(e.0));
    let closures10 = EventBus::builder().static_handlers(false).build();
    let _c10: Vec<_> = (0..10)
        .map(|_| closures10.subscribe(|e: &Closure, _: &EventContext| sink(e.0)))
        .collect();
    let mut world = evenio::prelude::World::new();
    add_evenio_handlers(&mut world, if scenario == "evenio10" { 10 } else { 1 });
    match scenario {
        "floor1" => (0..events).for_each(|i| sink(black_box(i))),
        "sbox1" => (0..events).for_each(|_| {
            black_box(bus.emit_ref(black_box(&event_one)));
        }),
        "sbox10" => (0..events).for_each(|_| {
            black_box(bus.emit_ref(black_box(&event_ten)));
        }),
        "closure1" => (0..events).for_each(|_| {
            black_box(closures1.emit_ref(black_box(&closure)));
        }),
        "closure10" => (0..events).for_each(|_| {
            black_box(closures10.emit_ref(black_box(&closure)));
        }),
        "evenio1" | "evenio10" => (0..events).for_each(|i| world.send(EvenioEvent(black_box(i)))),
        other => panic!("unknown scenario {other:?}"),
    }
}

fn main() {
    if let Ok(scenario) = std::env::var("PEERS_COUNT") {
        let events = std::env::var("PEERS_EVENTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        return count_instructions(&scenario, events);
    }
    let f1 = floor(1);
    let f10 = floor(10);
    let e0 = evenio(0);
    let e1 = evenio(1);
    let e10 = evenio(10);
    let rows: Vec<(&str, f64, f64, Option<f64>)> = vec![
        ("floor: direct calls, 1 handler", f1, f1, None),
        ("floor: direct calls, 10 handlers", f10, f10, None),
        (
            "naive HashMap<TypeId, Vec<Box<dyn Fn>>> + RwLock, 1",
            naive(1),
            f1,
            Some(e1),
        ),
        ("naive bus, 10 handlers", naive(10), f10, Some(e10)),
        ("evenio 0.6, 0 handlers", e0, f1, Some(e0)),
        ("evenio 0.6, 1 handler", e1, f1, Some(e1)),
        ("evenio 0.6, 10 handlers", e10, f10, Some(e10)),
        ("Bevy 0.20 observers, 0", bevy(0), f1, Some(e0)),
        ("Bevy 0.20 observers, 1", bevy(1), f1, Some(e1)),
        ("Bevy 0.20 observers, 10", bevy(10), f10, Some(e10)),
        (
            "sbox-events, 0 static handlers",
            sbox_static(None0),
            f1,
            Some(e0),
        ),
        (
            "sbox-events, 1 static handler",
            sbox_static(One),
            f1,
            Some(e1),
        ),
        (
            "sbox-events, 10 static handlers",
            sbox_static(Ten),
            f10,
            Some(e10),
        ),
        (
            "sbox-events, 1 closure subscription",
            sbox_closures(1),
            f1,
            Some(e1),
        ),
        (
            "sbox-events, 10 closure subscriptions",
            sbox_closures(10),
            f10,
            Some(e10),
        ),
    ];
    let floor2 = per_thread(2, |n| {
        for i in 0..n {
            sink(black_box(i));
        }
    });
    let floor1 = per_thread(1, |n| {
        for i in 0..n {
            sink(black_box(i));
        }
    });
    let bus = EventBus::new();
    let bus2 = bus.clone();
    let sbox1 = per_thread(1, move |n| {
        let event = One(7);
        for _ in 0..n {
            black_box(bus.emit_ref(black_box(&event)));
        }
    });
    let sbox2 = per_thread(2, move |n| {
        let event = One(7);
        for _ in 0..n {
            black_box(bus2.emit_ref(black_box(&event)));
        }
    });

    // Last: a global `tracing` subscriber cannot be removed again.
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    )
    .unwrap_or_else(|e| panic!("install the subscriber: {e}"));
    let traced1 = sbox_static(One);
    let traced10 = sbox_static(Ten);

    println!("| scenario | ns/event | × floor | × evenio |");
    println!("|---|---:|---:|---:|");
    for (name, ns, floor, evenio) in &rows {
        let vs = evenio.map_or("".to_owned(), |e| format!("{:.2}", ns / e));
        println!("| {name} | {ns:.1} | {:.2} | {vs} |", ns / floor);
    }
    let static1 = rows[11].1;
    let static10 = rows[12].1;
    println!(
        "| sbox-events, 1 static handler, `tracing_subscriber::fmt` at INFO | {traced1:.1} | {:.2} | {:.2} |",
        traced1 / f1,
        traced1 / e1
    );
    println!(
        "| sbox-events, 10 static handlers, `tracing_subscriber::fmt` at INFO | {traced10:.1} | {:.2} | {:.2} |",
        traced10 / f10,
        traced10 / e10
    );
    println!();
    println!(
        "closures vs static: {:.2} (1), {:.2} (10); with a tracing subscriber vs without: {:.2} (1), {:.2} (10)",
        rows[13].1 / static1,
        rows[14].1 / static10,
        traced1 / static1,
        traced10 / static10
    );
    println!(
        "2 threads (each timed after a shared start; throughput vs 1 thread): floor {:.2}x, sbox-events {:.2}x",
        2.0 * floor1 / floor2,
        2.0 * sbox1 / sbox2
    );
}
