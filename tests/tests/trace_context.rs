//! Trace propagation: nested emits, no leak between unrelated emits, guards
//! dropped out of order, threads with and without capture, futures polled by
//! a small hand-written executor.

use sbox_events::trace::{self, TraceFutureExt, TraceId};
use sbox_events::{Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.step")]
struct Step {
    nested: bool,
}

type Seen = Arc<Mutex<Vec<(bool, TraceId)>>>;

/// A bus whose `Step` handler records the trace and emits one nested step.
fn recording_bus() -> (EventBus, Seen, sbox_events::Subscription) {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let sub = bus.subscribe(move |step: &Step, ctx: &EventContext| {
        assert_eq!(
            trace::current(),
            Some(ctx.trace_id()),
            "handlers run inside the trace"
        );
        s.lock().expect("seen").push((step.nested, ctx.trace_id()));
        if !step.nested {
            ctx.bus().emit(Step { nested: true });
        }
    });
    (bus, seen, sub)
}

fn take(seen: &Seen) -> Vec<(bool, TraceId)> {
    std::mem::take(&mut *seen.lock().expect("seen"))
}

#[test]
fn an_emit_outside_any_scope_gets_a_fresh_trace_shared_by_nested_events() {
    let (bus, seen, _sub) = recording_bus();
    let first = bus.emit(Step { nested: false });
    let calls = take(&seen);
    assert_eq!(calls, [(false, first.trace_id()), (true, first.trace_id())]);
    assert_eq!(trace::current(), None, "nothing left behind on the thread");

    let second = bus.emit(Step { nested: false });
    assert_ne!(
        second.trace_id(),
        first.trace_id(),
        "an unrelated emit gets its own trace"
    );
    assert!(take(&seen).iter().all(|&(_, id)| id == second.trace_id()));
}

#[test]
fn emits_inside_a_scope_carry_its_id() {
    let (bus, seen, _sub) = recording_bus();
    let id = TraceId::random();
    let reports = trace::with_trace_id(id, || {
        [
            bus.emit(Step { nested: false }),
            bus.emit(Step { nested: false }),
        ]
    });
    assert!(reports.iter().all(|r| r.trace_id() == id));
    assert!(take(&seen).iter().all(|&(_, t)| t == id));
    assert_eq!(trace::current(), None);
}

#[test]
fn nested_scopes_restore_the_outer_trace() {
    let (outer, inner) = (TraceId::random(), TraceId::random());
    trace::with_trace_id(outer, || {
        trace::with_trace_id(inner, || assert_eq!(trace::current(), Some(inner)));
        assert_eq!(trace::current(), Some(outer));
    });
    assert_eq!(trace::current(), None);
}

#[test]
fn guards_dropped_out_of_order_restore_correctly() {
    let (a, b, c) = (TraceId::random(), TraceId::random(), TraceId::random());
    let ga = trace::enter(a);
    let gb = trace::enter(b);
    let gc = trace::enter(c);
    drop(gb);
    assert_eq!(
        trace::current(),
        Some(c),
        "c is still the innermost open scope"
    );
    drop(gc);
    assert_eq!(trace::current(), Some(a), "b is closed, so a is current");
    drop(ga);
    assert_eq!(trace::current(), None);

    let ga = trace::enter(a);
    let gb = trace::enter(b);
    drop(ga);
    assert_eq!(trace::current(), Some(b));
    drop(gb);
    assert_eq!(trace::current(), None, "no stale id after both are gone");
}

#[test]
fn a_scope_opened_inside_a_handler_does_not_end_the_emits_trace() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let _sub = bus.subscribe(move |_: &Step, ctx: &EventContext| {
        let other = TraceId::random();
        trace::with_trace_id(other, || assert_eq!(trace::current(), Some(other)));
        s.lock()
            .expect("seen")
            .push(trace::current() == Some(ctx.trace_id()));
    });
    bus.emit(Step { nested: true });
    assert_eq!(*seen.lock().expect("seen"), [true]);
    assert_eq!(trace::current(), None);
}

#[test]
fn a_panic_inside_a_scope_still_restores_it() {
    let id = TraceId::random();
    let result = std::panic::catch_unwind(|| trace::with_trace_id(id, || panic!("boom")));
    assert!(result.is_err());
    assert_eq!(trace::current(), None);
}

#[test]
fn threads_start_without_a_trace_unless_it_is_captured() {
    let (bus, seen, _sub) = recording_bus();
    let id = TraceId::random();
    trace::with_trace_id(id, || {
        let uncaptured = std::thread::scope(|s| s.spawn(trace::current).join().expect("thread"));
        assert_eq!(uncaptured, None);

        let captured = trace::capture();
        let bus2 = bus.clone();
        std::thread::spawn(move || captured.run(|| bus2.emit(Step { nested: false })))
            .join()
            .expect("thread");

        let bus3 = bus.clone();
        trace::spawn(move || bus3.emit(Step { nested: false }))
            .join()
            .expect("thread");
    });
    let calls = take(&seen);
    assert_eq!(calls.len(), 4);
    assert!(
        calls.iter().all(|&(_, t)| t == id),
        "both threads ran in the captured trace"
    );

    // Captured outside any scope: the thread has none either, and its emits
    // get fresh traces.
    let captured = trace::capture();
    assert_eq!(captured.trace_id(), None);
    let bus4 = bus.clone();
    let report = std::thread::spawn(move || captured.run(|| bus4.emit(Step { nested: false })))
        .join()
        .expect("thread");
    assert_ne!(report.trace_id(), id);
}

/// Returns `Pending` once before completing, recording the trace it saw at
/// each poll and when dropped.
struct Probe {
    polls: u32,
    seen: Arc<Mutex<Vec<Option<TraceId>>>>,
}

impl Future for Probe {
    type Output = Option<TraceId>;
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        self.seen.lock().expect("seen").push(trace::current());
        self.polls += 1;
        if self.polls < 2 {
            Poll::Pending
        } else {
            Poll::Ready(trace::current())
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.seen.lock().expect("seen").push(trace::current());
    }
}

/// A minimal executor: polls every task round-robin until all are done.
fn run_interleaved(
    mut tasks: Vec<Pin<Box<dyn Future<Output = Option<TraceId>>>>>,
) -> Vec<Option<TraceId>> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut results = vec![None; tasks.len()];
    let mut done = vec![false; tasks.len()];
    while done.iter().any(|d| !d) {
        for (i, task) in tasks.iter_mut().enumerate() {
            if !done[i]
                && let Poll::Ready(value) = task.as_mut().poll(&mut cx)
            {
                results[i] = value;
                done[i] = true;
            }
            // Between polls the executor thread must be trace-free.
            assert_eq!(trace::current(), None);
        }
    }
    results
}

#[test]
fn futures_carry_their_trace_across_polls_without_leaking() {
    let (a, b) = (TraceId::random(), TraceId::random());
    let seen_a = Arc::new(Mutex::new(Vec::new()));
    let seen_b = Arc::new(Mutex::new(Vec::new()));
    let seen_plain = Arc::new(Mutex::new(Vec::new()));
    let task_a = Probe {
        polls: 0,
        seen: Arc::clone(&seen_a),
    }
    .with_trace_id(a);
    let task_b = trace::with_trace_id(b, || {
        Probe {
            polls: 0,
            seen: Arc::clone(&seen_b),
        }
        .in_current_trace()
    });
    let plain = Probe {
        polls: 0,
        seen: Arc::clone(&seen_plain),
    };
    let results = run_interleaved(vec![Box::pin(task_a), Box::pin(task_b), Box::pin(plain)]);
    assert_eq!(results, [Some(a), Some(b), None]);
    // Two polls and the drop (the executor drops tasks when it returns).
    assert_eq!(*seen_a.lock().expect("a"), [Some(a); 3]);
    assert_eq!(*seen_b.lock().expect("b"), [Some(b); 3]);
    assert_eq!(*seen_plain.lock().expect("plain"), [None; 3]);
}

#[test]
fn emits_inside_a_traced_future_carry_its_trace() {
    let (bus, seen, _sub) = recording_bus();
    let id = TraceId::random();
    let bus2 = bus.clone();
    let future = async move { bus2.emit(Step { nested: false }).trace_id() }.with_trace_id(id);
    let mut future = Box::pin(future);
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(id));
    assert!(take(&seen).iter().all(|&(_, t)| t == id));
}

#[test]
fn an_incoming_traceparent_continues_the_callers_trace() {
    let header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let parent = trace::TraceParent::parse(header).expect("valid header");
    let (bus, seen, _sub) = recording_bus();
    trace::with_trace_id(parent.trace_id(), || bus.emit(Step { nested: true }));
    assert_eq!(
        take(&seen)[0].1.to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
}

#[test]
fn trace_ids_are_unique_across_threads() {
    let ids: Vec<TraceId> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..2_500).map(|_| TraceId::random()).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 10_000);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.unheard")]
struct Unheard;

/// The implicit trace ids of many emits on several threads, `heard` or not:
/// every id distinct, and their short forms (what people read in logs)
/// nearly all distinct too.
fn implicit_ids(heard: bool) -> Vec<TraceId> {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let _sub = heard.then(|| bus.subscribe(|_: &Unheard, _: &EventContext| {}));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..5_000)
                        .map(|_| {
                            let report = bus.emit(Unheard);
                            assert_eq!(report.trace_id(), report.trace_id(), "stable");
                            report.trace_id()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    })
}

#[test]
fn implicit_trace_ids_are_unique_and_look_random_heard_or_not() {
    for heard in [false, true] {
        let ids = implicit_ids(heard);
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 20_000, "heard: {heard}");
        // 20,000 draws from 2^32 short forms: ~0.05 collisions expected.
        let shorts: std::collections::HashSet<_> = ids.iter().map(|id| id.short()).collect();
        assert!(shorts.len() >= 19_990, "heard: {heard}: {}", shorts.len());
    }
}

#[test]
fn an_emit_nobody_listens_to_reports_the_trace_it_ran_in() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let id = TraceId::random();
    let report = trace::with_trace_id(id, || bus.emit(Unheard));
    assert_eq!(report.trace_id(), id);
    assert_eq!(format!("{report:?}").matches(&id.to_string()).count(), 1);
    let given = TraceId::random();
    let report = bus.emit_with(Unheard, sbox_events::EmitOptions::new().trace_id(given));
    assert_eq!(report.trace_id(), given);
    // Outside any trace: its own, shown by `Debug` as `trace_id()` gives it.
    let report = bus.emit(Unheard);
    assert_ne!(report.trace_id(), given);
    assert!(format!("{report:?}").contains(&report.trace_id().to_string()));
    assert_eq!(trace::current(), None);
    // The same id wherever the report is read.
    let here = report.trace_id();
    let there = std::thread::spawn(move || report.trace_id())
        .join()
        .expect("thread");
    assert_eq!(there, here);
}

#[test]
fn lines_inside_a_scope_show_its_id_when_a_filter_disables_its_span() {
    use sbox_events::trace::TraceIdFormat;
    use sbox_events_tests::CapturedLogs;
    use tracing_subscriber::layer::SubscriberExt;
    let captured = CapturedLogs::default();
    let writer = captured.clone();
    // A usual setup: only the application's own target is logged, so the
    // `trace` span of `sbox_events` is disabled.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .event_format(TraceIdFormat::new(
            tracing_subscriber::fmt::format().without_time(),
        ))
        .finish()
        .with(
            tracing_subscriber::filter::Targets::new().with_target("my_app", tracing::Level::INFO),
        );
    let id = TraceId::random();
    tracing::subscriber::with_default(subscriber, || {
        trace::with_trace_id(id, || {
            tracing::info!(target: "my_app", "inside the scope");
        });
        tracing::info!(target: "my_app", "outside any trace");
    });
    let text = captured.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!("trace{{trace_id={id}}} ")),
        "{text}"
    );
    assert!(!lines[1].contains("trace_id"), "{text}");
}
