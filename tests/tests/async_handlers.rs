//! `emit_async`, `#[handler] async fn` and `subscribe_async`: one order with
//! the sync handlers, trace and depth across `.await`s (also when the task
//! changes threads), failures and panics in polls, cancellation, and what a
//! plain `emit` does with async handlers.

use sbox_events::{
    Event, EventBus, EventContext, FailureKind, SubscribeOptions, events::ErrorOccurred, handler,
    trace,
};
use sbox_events_tests::exec::{block_on, poll_once, yield_now};
use sbox_events_tests::{CapturedLogs, within};
use serde::{Deserialize, Serialize};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "mixed.ordered")]
struct Ordered;

static ORDER: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn log(step: &'static str) {
    ORDER.lock().unwrap().push(step);
}

#[handler(priority = 10)]
fn sync_first(_: &Ordered) {
    log("sync 10");
}

#[handler(priority = 5)]
async fn async_middle(_: &Ordered, ctx: &EventContext<'_>) -> Result<(), String> {
    log("async 5 started");
    yield_now().await;
    // The context is borrowed across the `.await`.
    assert_eq!(ctx.name(), "mixed.ordered");
    log("async 5 done");
    Ok(())
}

#[handler]
fn sync_last(_: &Ordered) {
    log("sync 0");
}

#[test]
fn sync_and_async_handlers_run_in_one_order() {
    let bus = EventBus::new();
    let _sub = bus.subscribe_async_with(
        SubscribeOptions::new().name("async sub 7").priority(7),
        |_: &Ordered, _: &EventContext| {
            log("async sub 7 called");
            async {
                yield_now().await;
                log("async sub 7 done");
            }
        },
    );
    let handlers = bus.handlers::<Ordered>();
    let asynchronous: Vec<bool> = handlers.iter().map(|h| h.is_async()).collect();
    assert_eq!(asynchronous, [false, true, true, false]);

    ORDER.lock().unwrap().clear();
    let report = block_on(bus.emit_async(Ordered));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.delivered(), 4);
    assert_eq!(
        *ORDER.lock().unwrap(),
        [
            "sync 10",
            "async sub 7 called",
            "async sub 7 done",
            "async 5 started",
            "async 5 done",
            "sync 0",
        ]
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "mixed.skipped")]
struct Skipped;

#[handler(name = "async skipped")]
async fn async_skipped(_: &Skipped) {}

#[handler(name = "sync runs")]
fn sync_runs(_: &Skipped) {}

#[test]
fn plain_emit_runs_sync_handlers_and_reports_async_ones_as_skipped_warning_once() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let bus = EventBus::new();
    let _sub = bus.subscribe_async_with(SubscribeOptions::new().name("async sub"), {
        |_: &Skipped, _: &EventContext| async {}
    });
    let reports =
        tracing::subscriber::with_default(subscriber, || [bus.emit(Skipped), bus.emit(Skipped)]);
    for report in &reports {
        assert_eq!(report.delivered(), 1, "the sync handler ran");
        assert!(!report.is_ok(), "skipping is not silent");
        assert_eq!(
            report.skipped().collect::<Vec<_>>(),
            ["async skipped", "async sub"]
        );
        assert!(report.failures().is_empty());
        assert!(
            report.to_string().contains("2 async handler(s) skipped"),
            "{report}"
        );
    }
    let text = logs.text();
    assert_eq!(text.matches("async handler skipped").count(), 2, "{text}");
    assert!(text.contains("handler=async skipped"), "{text}");
    assert!(text.contains("handler=async sub"), "{text}");

    // `emit_async` runs them all.
    let report = block_on(bus.emit_async(Skipped));
    assert_eq!((report.delivered(), report.skipped().len()), (3, 0));
    assert!(report.is_ok());
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "mixed.nested")]
struct Nested {
    level: u32,
}

/// What a handler saw at one point: the trace, its event's depth, the depth
/// a nested emit runs at, and the thread.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    trace: Option<trace::TraceId>,
    depth: u32,
    nested_depth: Option<u32>,
    thread: std::thread::ThreadId,
}

/// A bus whose async subscription records what it sees before and after an
/// `.await`; the nested `Nested { level: 1 }` reports its depth through
/// `nested`.
fn recording_bus(seen: Arc<Mutex<Vec<Seen>>>) -> (EventBus, Vec<sbox_events::Subscription>) {
    let bus = EventBus::new();
    let nested_depth = Arc::new(Mutex::new(None));
    let inner = Arc::clone(&nested_depth);
    let nested = bus.subscribe(move |e: &Nested, ctx: &EventContext| {
        if e.level == 1 {
            *inner.lock().unwrap() = Some(ctx.depth());
        }
    });
    let outer = bus.subscribe_async(move |e: &Nested, ctx: &EventContext| {
        let (seen, nested_depth) = (Arc::clone(&seen), Arc::clone(&nested_depth));
        let (level, depth, bus) = (e.level, ctx.depth(), ctx.bus().clone());
        async move {
            if level != 0 {
                return;
            }
            for _ in 0..2 {
                *nested_depth.lock().unwrap() = None;
                bus.emit(Nested { level: 1 });
                seen.lock().unwrap().push(Seen {
                    trace: trace::current(),
                    depth,
                    nested_depth: *nested_depth.lock().unwrap(),
                    thread: std::thread::current().id(),
                });
                yield_now().await;
            }
        }
    });
    (bus, vec![nested, outer])
}

/// Nothing of an emit is left on a thread between polls.
fn assert_thread_is_clean(bus: &EventBus) {
    assert_eq!(trace::current(), None, "no trace left installed");
    let depth = Arc::new(Mutex::new(None));
    let inner = Arc::clone(&depth);
    let _probe = bus.subscribe(move |e: &Nested, ctx: &EventContext| {
        if e.level == 9 {
            *inner.lock().unwrap() = Some(ctx.depth());
        }
    });
    bus.emit(Nested { level: 9 });
    assert_eq!(*depth.lock().unwrap(), Some(0), "no depth left installed");
}

#[test]
fn trace_and_depth_follow_the_task_across_threads() {
    within(
        Duration::from_secs(60),
        "thread-switching emit_async",
        || {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (bus, _subs) = recording_bus(Arc::clone(&seen));
            let id = trace::TraceId::random();
            // Created inside a trace scope, with depth 0.
            let mut future =
                trace::with_trace_id(id, || Box::pin(bus.emit_async(Nested { level: 0 })));
            assert_thread_is_clean(&bus);

            let bus = &bus;
            let (report, a, b) = std::thread::scope(|scope| {
                // First poll on thread A, up to the handler's first `.await`.
                let (mut future, a) = scope
                    .spawn(move || {
                        assert!(poll_once(future.as_mut()).is_pending());
                        assert_thread_is_clean(bus);
                        (future, std::thread::current().id())
                    })
                    .join()
                    .unwrap();
                // Then on thread B, to the end.
                let (report, b) = scope
                    .spawn(move || {
                        let report = block_on(future.as_mut());
                        assert_thread_is_clean(bus);
                        (report, std::thread::current().id())
                    })
                    .join()
                    .unwrap();
                (report, a, b)
            });
            assert!(report.is_ok(), "{report}");
            assert_eq!(report.trace_id(), id);
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen.len(), 2);
            for (step, thread) in seen.iter().zip([a, b]) {
                assert_eq!(step.thread, thread, "{seen:?}");
                assert_eq!(step.trace, Some(id), "{seen:?}");
                assert_eq!(step.depth, 0, "{seen:?}");
                assert_eq!(step.nested_depth, Some(1), "{seen:?}");
            }
            assert_thread_is_clean(bus);
        },
    );
}

#[test]
fn concurrent_emits_on_a_multi_thread_runtime_keep_their_own_trace_and_depth() {
    within(Duration::from_secs(120), "tokio emit_async", || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_time()
            .build()
            .unwrap();
        let bus = EventBus::new();
        let problems = Arc::new(Mutex::new(Vec::<String>::new()));
        let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let (p, t) = (Arc::clone(&problems), Arc::clone(&threads));
        let _sub = bus.subscribe_async(move |e: &Nested, ctx: &EventContext| {
            let (problems, threads) = (Arc::clone(&p), Arc::clone(&t));
            let (trace_id, level, bus) = (ctx.trace_id(), e.level, ctx.bus().clone());
            async move {
                if level != 0 {
                    return;
                }
                for round in 0..20 {
                    threads.lock().unwrap().insert(std::thread::current().id());
                    if trace::current() != Some(trace_id) {
                        problems
                            .lock()
                            .unwrap()
                            .push(format!("round {round}: trace"));
                    }
                    // Depth: a nested async emit runs at depth 1.
                    let depth = Arc::new(Mutex::new(None));
                    let inner = Arc::clone(&depth);
                    let probe = bus.subscribe(move |e: &Nested, ctx: &EventContext| {
                        if e.level == 1 {
                            inner.lock().unwrap().get_or_insert(ctx.depth());
                        }
                    });
                    let report = bus.emit_async(Nested { level: 1 }).await;
                    drop(probe);
                    if report.trace_id() != trace_id || *depth.lock().unwrap() != Some(1) {
                        problems
                            .lock()
                            .unwrap()
                            .push(format!("round {round}: nested"));
                    }
                    tokio::time::sleep(Duration::from_micros(50)).await;
                }
            }
        });
        let bus = Arc::new(bus);
        let ids: Vec<trace::TraceId> = (0..32).map(|_| trace::TraceId::random()).collect();
        runtime.block_on(async {
            let tasks: Vec<_> = ids
                .iter()
                .map(|&id| {
                    let bus = Arc::clone(&bus);
                    let future = trace::with_trace_id(id, || {
                        let bus = Arc::clone(&bus);
                        async move { bus.emit_async(Nested { level: 0 }).await }
                    });
                    // The trace is taken when `emit_async` is called, inside
                    // the spawned task: give it the id there.
                    use sbox_events::trace::TraceFutureExt;
                    runtime.spawn(future.with_trace_id(id))
                })
                .collect();
            for (task, id) in tasks.into_iter().zip(&ids) {
                let report = task.await.unwrap();
                assert!(report.is_ok(), "{report}");
                assert_eq!(report.trace_id(), *id);
            }
        });
        assert_eq!(*problems.lock().unwrap(), Vec::<String>::new());
        assert!(
            threads.lock().unwrap().len() > 1,
            "the handlers ran on more than one worker thread"
        );
    });
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "mixed.failing")]
struct Failing;

#[test]
fn panics_in_polls_and_errors_are_isolated_and_reported() {
    let bus = EventBus::new();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&errors);
    let _errors = bus.subscribe(move |err: &ErrorOccurred, ctx: &EventContext| {
        e.lock().unwrap().push((err.handler.clone(), ctx.depth()));
    });
    let _panics = bus.subscribe_async_with(
        SubscribeOptions::new()
            .name("panics after await")
            .priority(3),
        |_: &Failing, _: &EventContext| async {
            yield_now().await;
            panic!("boom in poll");
        },
    );
    let _fails = bus.subscribe_async_with(
        SubscribeOptions::new().name("fails").priority(2),
        |_: &Failing, _: &EventContext| async {
            yield_now().await;
            Err::<(), _>(std::io::Error::other("disk on fire"))
        },
    );
    let _panics_early = bus.subscribe_async_with(
        SubscribeOptions::new()
            .name("panics before its future")
            .priority(1),
        |_: &Failing, _: &EventContext| -> std::future::Ready<()> { panic!("boom in closure") },
    );
    let r = Arc::clone(&ran);
    let _last = bus.subscribe(move |_: &Failing, _: &EventContext| r.lock().unwrap().push("last"));

    let report = block_on(bus.emit_async(Failing));
    assert_eq!(report.delivered(), 4);
    assert_eq!(report.succeeded(), 1);
    let failures: Vec<_> = report
        .failures()
        .iter()
        .map(|f| (f.handler(), f.kind(), f.message()))
        .collect();
    assert_eq!(
        failures,
        [
            ("panics after await", FailureKind::Panic, "boom in poll"),
            ("fails", FailureKind::Error, "disk on fire"),
            (
                "panics before its future",
                FailureKind::Panic,
                "boom in closure"
            ),
        ]
    );
    assert_eq!(*ran.lock().unwrap(), ["last"]);
    let errors = errors.lock().unwrap().clone();
    let handlers: Vec<&str> = errors.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        handlers,
        ["panics after await", "fails", "panics before its future"]
    );
    assert!(errors.iter().all(|&(_, depth)| depth == 1), "{errors:?}");
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "mixed.cancelled")]
struct Cancelled;

/// Records the trace current when it is dropped.
struct DropProbe(Arc<Mutex<Option<Option<trace::TraceId>>>>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(trace::current());
    }
}

#[test]
fn dropping_the_future_midway_stops_the_emit_and_leaves_nothing_behind() {
    let bus = EventBus::new();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(Mutex::new(None));
    let r = Arc::clone(&ran);
    let _first = bus.subscribe_with(
        SubscribeOptions::new().priority(2),
        move |_: &Cancelled, _: &EventContext| {
            r.lock().unwrap().push("first");
        },
    );
    let (r, d) = (Arc::clone(&ran), Arc::clone(&dropped));
    let _waits = bus.subscribe_async_with(
        SubscribeOptions::new().priority(1),
        move |_: &Cancelled, _: &EventContext| {
            let (ran, probe) = (Arc::clone(&r), DropProbe(Arc::clone(&d)));
            async move {
                ran.lock().unwrap().push("waiting started");
                std::future::pending::<()>().await;
                drop(probe);
                ran.lock().unwrap().push("waiting finished");
            }
        },
    );
    let r = Arc::clone(&ran);
    let _last =
        bus.subscribe(move |_: &Cancelled, _: &EventContext| r.lock().unwrap().push("last"));

    let id = trace::TraceId::random();
    {
        let mut future = pin!(trace::with_trace_id(id, || bus.emit_async(Cancelled)));
        assert!(matches!(poll_once(future.as_mut()), Poll::Pending));
        assert!(dropped.lock().unwrap().is_none(), "still waiting");
        assert_thread_is_clean_of_traces();
    } // dropped here, outside the trace scope
    assert_eq!(*ran.lock().unwrap(), ["first", "waiting started"]);
    assert_eq!(
        *dropped.lock().unwrap(),
        Some(Some(id)),
        "the handler's future was dropped inside the emit's trace"
    );
    assert_thread_is_clean_of_traces();

    // The next emit on this thread starts from scratch: depth 0, and a
    // failure still emits `error.occurred` (no error state left behind).
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let _fails = bus.subscribe(move |_: &Failing, ctx: &EventContext| {
        s.lock().unwrap().push(ctx.depth());
        Err("fails")
    });
    let s = Arc::clone(&seen);
    let _errors = bus.subscribe(move |_: &ErrorOccurred, ctx: &EventContext| {
        s.lock().unwrap().push(ctx.depth());
    });
    bus.emit(Failing);
    assert_eq!(*seen.lock().unwrap(), [0, 1]);
}

fn assert_thread_is_clean_of_traces() {
    assert_eq!(trace::current(), None);
    assert_eq!(trace::implicit(), None);
}

#[test]
fn nested_async_emits_stop_at_the_depth_limit() {
    let bus = EventBus::builder().max_depth(3).build().unwrap();
    let depths = Arc::new(Mutex::new(Vec::new()));
    let d = Arc::clone(&depths);
    let _sub = bus.subscribe_async(move |_: &Nested, ctx: &EventContext| {
        let (depths, depth, bus) = (Arc::clone(&d), ctx.depth(), ctx.bus().clone());
        async move {
            depths.lock().unwrap().push(depth);
            yield_now().await;
            let report = bus.emit_async(Nested { level: depth + 1 }).await;
            if let Some(refusal) = report.refused() {
                depths.lock().unwrap().push(1000 + depth);
                assert!(refusal.to_string().contains("max_depth 3"), "{refusal}");
            }
        }
    });
    let report = block_on(bus.emit_async(Nested { level: 0 }));
    assert!(report.is_ok(), "{report}");
    assert_eq!(*depths.lock().unwrap(), [0, 1, 2, 1002]);
}

#[test]
fn handler_statistics_count_async_calls_and_their_failures() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .handler_stats(true)
        .build()
        .unwrap();
    let _sub = bus.subscribe_async_with(
        SubscribeOptions::new().name("sometimes fails"),
        |e: &Nested, _: &EventContext| {
            let level = e.level;
            async move {
                yield_now().await;
                if level == 1 { Err("odd") } else { Ok(()) }
            }
        },
    );
    for level in [0, 1, 2] {
        block_on(bus.emit_async(Nested { level }));
    }
    let stats = bus.handler_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].handler, "sometimes fails");
    assert_eq!(
        (stats[0].calls, stats[0].errors, stats[0].panics),
        (3, 1, 0)
    );
    assert_eq!(stats[0].timed, 1, "the first call of eight");
}

#[test]
fn handler_statistics_time_a_call_cancelled_mid_way() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .handler_stats(true)
        .build()
        .unwrap();
    let _sub = bus.subscribe_async_with(
        SubscribeOptions::new().name("never finishes"),
        |_: &Nested, _: &EventContext| std::future::pending::<()>(),
    );
    {
        let mut emit = pin!(bus.emit_async(Nested { level: 0 }));
        assert!(poll_once(emit.as_mut()).is_pending());
        std::thread::sleep(Duration::from_millis(2));
        // The caller gives up: the future is dropped inside the handler.
    }
    let stats = bus.handler_stats();
    assert_eq!((stats[0].calls, stats[0].errors), (1, 0));
    // The first call is the one timed, cancelled or not: up to its drop.
    assert_eq!(stats[0].timed, 1, "the first call of eight");
    assert!(stats[0].max >= Duration::from_millis(2), "{:?}", stats[0]);
}
