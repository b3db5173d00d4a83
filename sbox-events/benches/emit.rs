//! What an emit costs, against baselines measured in the same run.
//!
//! `cargo bench -p sbox-events --bench emit` runs every scenario with
//! criterion, then prints a table: ns per event and the ratio to the floor
//! (direct calls of the same handlers), plus whether each target holds.
//!
//! Every handler is the same trivial `#[inline(never)]` function. The event
//! is built once and emitted by reference (`emit_ref`), so the numbers are
//! dispatch, not allocation.

use criterion::{BenchmarkId, Criterion};
use sbox_events::stream::{Overflow, StreamItem};
use sbox_events::trace::{self, TraceId};
use sbox_events::{AnyEvent, Event, EventBus, EventContext, EventSelector, handler};
use serde::{Deserialize, Serialize};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::sync::{Barrier, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

/// A typical event: a few fields including a string.
#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "bench.tick")]
struct Tick {
    server: String,
    latency_ms: u64,
    healthy: bool,
}

fn tick() -> Tick {
    Tick {
        server: "de-fra-1.example.net".into(),
        latency_ms: 42,
        healthy: true,
    }
}

#[inline(never)]
fn work(event: &Tick) {
    black_box(event.latency_ms);
}

// One event type per handler count, so the static handler lists differ.
macro_rules! event_with_handlers {
    ($ty:ident, $name:literal, [$($handler:ident),*]) => {
        #[derive(Event, Serialize, Deserialize, Clone)]
        #[event(name = $name)]
        struct $ty(Tick);
        $(
            #[handler]
            fn $handler(event: &$ty) {
                work(&event.0);
            }
        )*
    };
}

event_with_handlers!(Static0, "bench.static0", []);
event_with_handlers!(Static1, "bench.static1", [s1_a]);
event_with_handlers!(
    Static10,
    "bench.static10",
    [
        s10_a, s10_b, s10_c, s10_d, s10_e, s10_f, s10_g, s10_h, s10_i, s10_j
    ]
);
event_with_handlers!(Nested, "bench.nested", [nested_a]);

/// Emitted by `nested_outer`'s handler.
#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "bench.nested_outer")]
struct NestedOuter(Tick);

#[handler]
fn nested_outer(event: &NestedOuter, ctx: &EventContext) {
    ctx.bus().emit_ref(&Nested(event.0.clone()));
}

// Async handlers: the same work behind an `async fn` that completes at once,
// so the numbers are the machinery (boxing, polling, the per-poll state).
macro_rules! event_with_async_handlers {
    ($ty:ident, $name:literal, [$($handler:ident),*]) => {
        #[derive(Event, Serialize, Deserialize, Clone)]
        #[event(name = $name)]
        struct $ty(Tick);
        $(
            #[handler]
            async fn $handler(event: &$ty) {
                work(&event.0);
            }
        )*
    };
}

event_with_async_handlers!(Async1, "bench.async1", [a1_a]);
event_with_async_handlers!(
    Async10,
    "bench.async10",
    [
        a10_a, a10_b, a10_c, a10_d, a10_e, a10_f, a10_g, a10_h, a10_i, a10_j
    ]
);

type BoxedHandlerFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), sbox_events::HandlerError>> + Send + 'a>>;

/// The floor of an async emit: boxed futures of the same handlers, awaited
/// one after another by a hand-written loop.
async fn await_each(handlers: &[fn(&Tick) -> BoxedHandlerFuture<'_>], event: &Tick) {
    for handler in handlers {
        let _ = handler(event).await;
    }
}

fn boxed_work(event: &Tick) -> BoxedHandlerFuture<'_> {
    Box::pin(async move {
        work(event);
        Ok(())
    })
}

/// Polls a future that completes without waiting (all of these do).
fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
}

type AnyHandler = Box<dyn Fn(&dyn Any) + Send + Sync>;

/// The bus a user might write first: a map of boxed closures behind a lock.
#[derive(Default)]
struct NaiveBus {
    handlers: RwLock<HashMap<TypeId, Vec<AnyHandler>>>,
}

impl NaiveBus {
    fn subscribe<E: Any>(&self, f: impl Fn(&E) + Send + Sync + 'static) {
        let boxed: AnyHandler = Box::new(move |e: &dyn Any| {
            if let Some(e) = e.downcast_ref::<E>() {
                f(e);
            }
        });
        let mut map = self.handlers.write().unwrap_or_else(|e| e.into_inner());
        map.entry(TypeId::of::<E>()).or_default().push(boxed);
    }

    fn emit<E: Any>(&self, event: &E) {
        let map = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        if let Some(handlers) = map.get(&TypeId::of::<E>()) {
            for handler in handlers {
                handler(event);
            }
        }
    }
}

fn bench_emit(c: &mut Criterion) {
    let mut group = c.benchmark_group("emit");
    let event = tick();

    for n in [1usize, 10] {
        let handlers: Vec<fn(&Tick)> = vec![work; n];
        group.bench_with_input(BenchmarkId::new("floor", n), &n, |b, _| {
            b.iter(|| {
                for h in &handlers {
                    h(black_box(&event));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("floor_clock", n), &n, |b, _| {
            b.iter(|| {
                black_box(SystemTime::now());
                for h in &handlers {
                    h(black_box(&event));
                }
            })
        });
        let naive = NaiveBus::default();
        for _ in 0..n {
            naive.subscribe(work);
        }
        group.bench_with_input(BenchmarkId::new("naive", n), &n, |b, _| {
            b.iter(|| naive.emit(black_box(&event)))
        });
    }

    let bus = EventBus::new();
    let static0 = Static0(tick());
    let static1 = Static1(tick());
    let static10 = Static10(tick());
    group.bench_function(BenchmarkId::new("static", 0), |b| {
        b.iter(|| bus.emit_ref(black_box(&static0)))
    });
    group.bench_function(BenchmarkId::new("static", 1), |b| {
        b.iter(|| bus.emit_ref(black_box(&static1)))
    });
    group.bench_function(BenchmarkId::new("static", 10), |b| {
        b.iter(|| bus.emit_ref(black_box(&static10)))
    });
    let id = TraceId::random();
    group.bench_function(BenchmarkId::new("static_in_scope", 1), |b| {
        trace::with_trace_id(id, || b.iter(|| bus.emit_ref(black_box(&static1))))
    });

    for n in [1usize, 10] {
        let dynamic = EventBus::builder().static_handlers(false).build().unwrap();
        let _subs: Vec<_> = (0..n)
            .map(|_| dynamic.subscribe(|e: &Tick, _: &EventContext| work(e)))
            .collect();
        group.bench_with_input(BenchmarkId::new("dynamic", n), &n, |b, _| {
            b.iter(|| dynamic.emit_ref(black_box(&event)))
        });
    }

    let pattern = EventBus::builder().static_handlers(false).build().unwrap();
    let _any = pattern.subscribe_any(
        EventSelector::pattern("bench.*").expect("valid pattern"),
        |e: &AnyEvent, _: &EventContext| {
            if let Some(tick) = e.downcast_ref::<Tick>() {
                work(tick);
            }
        },
    );
    group.bench_function(BenchmarkId::new("pattern", 1), |b| {
        b.iter(|| pattern.emit_ref(black_box(&event)))
    });

    let history = EventBus::builder().history(8 << 20).build().unwrap();
    group.bench_function(BenchmarkId::new("history", 1), |b| {
        b.iter(|| history.emit_ref(black_box(&static1)))
    });

    let timed = EventBus::builder().handler_stats(true).build().unwrap();
    group.bench_function(BenchmarkId::new("handler_stats", 1), |b| {
        b.iter(|| timed.emit_ref(black_box(&static1)))
    });

    let outer = NestedOuter(tick());
    group.bench_function(BenchmarkId::new("nested", 2), |b| {
        b.iter(|| bus.emit_ref(black_box(&outer)))
    });
    group.finish();

    let mut group = c.benchmark_group("async");
    let floors: Vec<fn(&Tick) -> BoxedHandlerFuture<'_>> = vec![boxed_work; 10];
    let (async1, async10) = (Async1(tick()), Async10(tick()));
    group.bench_function(BenchmarkId::new("floor", 1), |b| {
        b.iter(|| run_now(await_each(&floors[..1], black_box(&event))))
    });
    group.bench_function(BenchmarkId::new("floor", 10), |b| {
        b.iter(|| run_now(await_each(&floors, black_box(&event))))
    });
    // `emit_async` takes the event by value: the clone is in both rows of a
    // pair (`sync_clone` is the same clone with a plain emit).
    group.bench_function(BenchmarkId::new("emit_async", 1), |b| {
        b.iter(|| run_now(bus.emit_async(black_box(&async1).clone())))
    });
    group.bench_function(BenchmarkId::new("emit_async", 10), |b| {
        b.iter(|| run_now(bus.emit_async(black_box(&async10).clone())))
    });
    group.bench_function(BenchmarkId::new("emit_async_sync_handler", 1), |b| {
        b.iter(|| run_now(bus.emit_async(black_box(&static1).clone())))
    });
    group.bench_function(BenchmarkId::new("sync_clone", 1), |b| {
        b.iter(|| bus.emit(black_box(&static1).clone()))
    });
    // A stream consumer on the same thread: one emit and one receive per
    // event (the queue never fills).
    let streamed = EventBus::builder().static_handlers(false).build().unwrap();
    let mut stream = streamed.subscribe_stream::<Tick>(1024, Overflow::DropOldest);
    group.bench_function(BenchmarkId::new("stream", 1), |b| {
        b.iter(|| {
            streamed.emit_ref(black_box(&event));
            match run_now(stream.recv()) {
                Some(StreamItem::Event(delivery)) => black_box(delivery.event().latency_ms),
                _ => 0,
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("threads");
    for threads in [1usize, 2] {
        // The machine's own scaling: the same handler called directly.
        group.bench_with_input(
            BenchmarkId::new("floor", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    per_event_time(threads, iters, || work(black_box(&static1.0)))
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("emit", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    per_event_time(threads, iters, || {
                        bus.emit_ref(black_box(&static1));
                    })
                })
            },
        );
    }
    group.finish();
}

/// Time for `iters` emits spread over `threads` threads, as if one thread
/// had done them all: throughput, expressed as time per event. Each thread
/// times its own loop, started together by a barrier; the slowest thread's
/// time is the time all `iters` events took (a wall clock read outside the
/// threads would also count their start-up and joining).
fn per_event_time(threads: usize, iters: u64, emit: impl Fn() + Sync) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let start = Barrier::new(threads);
    let slowest = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let began = Instant::now();
                    for _ in 0..per_thread {
                        emit();
                    }
                    began.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_default())
            .max()
            .unwrap_or_default()
    });
    // Scaled to exactly `iters` events (`per_thread` was rounded up).
    slowest.mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
}

/// Reads criterion's estimate (mean, ns) of one benchmark.
fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })?;
    let path = target
        .join("criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn print_table() {
    let get = |group: &str, id: &str| mean_ns(group, id);
    let Some(floor1) = get("emit", "floor/1") else {
        println!("(no criterion estimates found; run without a filter to get the table)");
        return;
    };
    let floor10 = get("emit", "floor/10").unwrap_or(f64::NAN);
    let rows: [(&str, &str, &str, f64); 17] = [
        ("floor: direct calls, 1 handler", "emit", "floor/1", floor1),
        (
            "floor: direct calls, 10 handlers",
            "emit",
            "floor/10",
            floor10,
        ),
        (
            "floor + one clock read, 1 handler",
            "emit",
            "floor_clock/1",
            floor1,
        ),
        (
            "floor + one clock read, 10 handlers",
            "emit",
            "floor_clock/10",
            floor10,
        ),
        (
            "naive bus (HashMap<TypeId, Vec<Box<dyn Fn>>> + RwLock), 1",
            "emit",
            "naive/1",
            floor1,
        ),
        ("naive bus, 10 handlers", "emit", "naive/10", floor10),
        ("emit, 0 static handlers", "emit", "static/0", floor1),
        ("emit, 1 static handler", "emit", "static/1", floor1),
        (
            "emit, 1 static handler, inside a trace scope",
            "emit",
            "static_in_scope/1",
            floor1,
        ),
        ("emit, 10 static handlers", "emit", "static/10", floor10),
        (
            "emit, 1 subscription (closure)",
            "emit",
            "dynamic/1",
            floor1,
        ),
        ("emit, 10 subscriptions", "emit", "dynamic/10", floor10),
        (
            "emit, 1 pattern subscription (AnyEvent)",
            "emit",
            "pattern/1",
            floor1,
        ),
        (
            "emit, 1 static handler, history on",
            "emit",
            "history/1",
            floor1,
        ),
        (
            "emit, 1 static handler, handler stats on",
            "emit",
            "handler_stats/1",
            floor1,
        ),
        (
            "emit with a nested emit (2 handlers)",
            "emit",
            "nested/2",
            floor1 * 2.0,
        ),
        (
            "1 static handler, 1 thread (per event)",
            "threads",
            "emit/1",
            floor1,
        ),
    ];
    println!("\n| scenario | ns/event | × floor |");
    println!("|---|---:|---:|");
    for (label, group, id, floor) in rows {
        if let Some(ns) = get(group, id) {
            println!("| {label} | {ns:.1} | {:.2} |", ns / floor);
        }
    }
    if let Some(two) = get("threads", "emit/2") {
        println!(
            "| 1 static handler, 2 threads (per event, throughput) | {two:.1} | {:.2} |",
            two / floor1
        );
    }

    println!("\n| async scenario | ns/event | × its floor |");
    println!("|---|---:|---:|");
    let async_rows = [
        (
            "hand-written loop awaiting 1 boxed future (floor)",
            "floor/1",
            "floor/1",
        ),
        (
            "hand-written loop awaiting 10 boxed futures (floor)",
            "floor/10",
            "floor/10",
        ),
        ("emit_async, 1 async handler", "emit_async/1", "floor/1"),
        ("emit_async, 10 async handlers", "emit_async/10", "floor/10"),
        (
            "emit_async, 1 sync handler (vs emit of the same clone)",
            "emit_async_sync_handler/1",
            "sync_clone/1",
        ),
        (
            "stream: emit + receive, 1 subscriber (vs 1 static handler)",
            "stream/1",
            "../emit/static/1",
        ),
    ];
    for (label, id, floor) in async_rows {
        let floor = match floor.strip_prefix("../emit/") {
            Some(id) => get("emit", id),
            None => get("async", floor),
        };
        if let (Some(ns), Some(floor)) = (get("async", id), floor) {
            println!("| {label} | {ns:.1} | {:.2} |", ns / floor);
        }
    }

    println!("\ntargets:");
    let check = |what: &str, value: Option<f64>, limit: Option<f64>, factor: f64| {
        if let (Some(value), Some(limit)) = (value, limit) {
            let ratio = value / limit;
            let verdict = if ratio <= factor { "holds" } else { "MISSED" };
            println!("  {what}: {ratio:.2} (target ≤ {factor}) {verdict}");
        }
    };
    check(
        "1 static handler / (floor + clock)",
        get("emit", "static/1"),
        get("emit", "floor_clock/1"),
        2.0,
    );
    check(
        "10 static handlers / (floor + clock)",
        get("emit", "static/10"),
        get("emit", "floor_clock/10"),
        1.5,
    );
    check(
        "1 subscription / 1 static handler",
        get("emit", "dynamic/1"),
        get("emit", "static/1"),
        1.5,
    );
    check(
        "10 subscriptions / 10 static handlers",
        get("emit", "dynamic/10"),
        get("emit", "static/10"),
        1.5,
    );
    for (ours, naive) in [
        ("static/1", "naive/1"),
        ("static/10", "naive/10"),
        ("dynamic/1", "naive/1"),
        ("dynamic/10", "naive/10"),
    ] {
        check(
            &format!("{ours} / {naive}"),
            get("emit", ours),
            get("emit", naive),
            1.0,
        );
    }
    if let (Some(one), Some(two)) = (get("threads", "emit/1"), get("threads", "emit/2")) {
        let speedup = one / two;
        let verdict = if speedup >= 1.8 { "holds" } else { "MISSED" };
        println!(
            "  2-thread throughput / 1-thread throughput: {speedup:.2} (target ≥ 1.8) {verdict}"
        );
    }
    if let (Some(one), Some(two)) = (get("threads", "floor/1"), get("threads", "floor/2")) {
        println!(
            "  (this machine's own 2-thread scaling, direct calls: {:.2})",
            one / two
        );
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_emit(&mut criterion);
    criterion.final_summary();
    print_table();
}
