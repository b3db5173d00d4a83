//! The envelope keeps its promises: a nested event's sequence number is
//! higher than its parent's (also across threads and in replays), the
//! trace an `emit_async` is told to run in is the one it runs in, every
//! handler failure reaches `error.occurred`, skipped async handlers are not
//! counted as calls, and timestamps out of RFC 3339's range are errors.

use sbox_events::audit::AuditLogger;
use sbox_events::events::ErrorOccurred;
use sbox_events::history::{HistoryQuery, ImportOptions, import_jsonl};
use sbox_events::trace::{self, TraceFutureExt, TraceId};
use sbox_events::{
    EmitOptions, EmitReport, Event, EventBus, EventContext, EventSelector, SubscribeOptions,
};
use sbox_events_tests::exec::{block_on, poll_once, yield_now};
use sbox_events_tests::within;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "env.parent")]
struct Parent {
    id: u32,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "env.child")]
struct Child {
    parent_sequence: u64,
}

/// (parent's sequence, child's sequence) of each child seen.
type Pairs = Arc<Mutex<Vec<(u64, u64)>>>;

/// An `emit_async` future, boxed to move it between threads.
type EmitFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = EmitReport> + Send + 'a>>;

/// A bus where each `Parent` emits a `Child` after an `.await` (from
/// `emit_async`) or at once (from `emit` and replays).
fn nesting_bus() -> (EventBus, Pairs, Vec<sbox_events::Subscription>) {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let pairs: Pairs = Arc::default();
    let sink = Arc::clone(&pairs);
    let mut subs = vec![bus.subscribe(move |child: &Child, ctx: &EventContext| {
        sink.lock()
            .unwrap()
            .push((child.parent_sequence, ctx.sequence()));
    })];
    subs.push(bus.subscribe(|_: &Parent, ctx: &EventContext| {
        if !ctx.is_replay() {
            return;
        }
        ctx.bus().emit(Child {
            parent_sequence: ctx.sequence(),
        });
    }));
    (bus, pairs, subs)
}

#[test]
fn a_nested_async_emit_on_another_thread_gets_a_higher_sequence() {
    within(Duration::from_secs(60), "emit_async across threads", || {
        let (bus, pairs, _subs) = nesting_bus();
        let bus = &bus;
        let _async = bus.subscribe_async(|parent: &Parent, ctx: &EventContext| {
            let (bus, sequence) = (ctx.bus().clone(), ctx.sequence());
            let _ = parent.id;
            async move {
                yield_now().await; // the task moves to thread B here
                bus.emit(Child {
                    parent_sequence: sequence,
                });
            }
        });
        std::thread::scope(|scope| {
            // Thread B takes its block of sequence numbers first: its
            // numbers are lower than any block thread A takes after it.
            let (b_ready, wait_b) = std::sync::mpsc::channel::<()>();
            let (to_b, on_b) = std::sync::mpsc::channel::<EmitFuture<'_>>();
            let b = scope.spawn(move || {
                bus.emit(Parent { id: 0 });
                b_ready.send(()).unwrap();
                let mut future = on_b.recv().unwrap();
                block_on(future.as_mut())
            });
            wait_b.recv().unwrap();
            scope.spawn(move || {
                // Polled on A up to the handler's `.await`, then moved.
                let mut future: EmitFuture<'_> = Box::pin(bus.emit_async(Parent { id: 1 }));
                assert!(poll_once(future.as_mut()).is_pending());
                to_b.send(future).unwrap();
            });
            let report = b.join().unwrap();
            assert!(report.is_ok(), "{report}");
        });
        let pairs = pairs.lock().unwrap();
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        let (parent, child) = pairs[0];
        assert!(
            child > parent,
            "child {child} must come after parent {parent}"
        );
    });
}

#[test]
fn the_children_of_replayed_events_get_higher_sequences() {
    let (bus, pairs, _subs) = nesting_bus();
    let line = r#"{"name":"env.parent","source":"other_process","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","timestamp":"2026-11-27T06:32:20Z","sequence":9000000000000,"metadata":{},"data":{"id":7}}"#;
    let imported = import_jsonl(line.as_bytes(), &ImportOptions::new()).expect("valid");
    let report = bus.replay(&imported.events);
    assert!(report.is_ok(), "{:?}", report.errors());
    let pairs = pairs.lock().unwrap();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    let (parent, child) = pairs[0];
    assert_eq!(parent, 9_000_000_000_000);
    assert!(
        child > parent,
        "child {child} must come after parent {parent}"
    );
}

#[test]
fn emit_async_with_trace_id_runs_in_that_trace() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let _sub = bus.subscribe(move |_: &Parent, ctx: &EventContext| {
        sink.lock().unwrap().push(ctx.trace_id());
        ctx.bus().emit(Child { parent_sequence: 0 });
    });
    let sink = Arc::clone(&seen);
    let _child = bus.subscribe(move |_: &Child, ctx: &EventContext| {
        sink.lock().unwrap().push(ctx.trace_id());
    });
    let id = TraceId::random();
    let other = TraceId::random();
    // Made inside another trace: `with_trace_id` still decides.
    let future = trace::with_trace_id(other, || bus.emit_async(Parent { id: 1 }));
    let report = block_on(future.with_trace_id(id));
    assert_eq!(report.trace_id(), id);
    assert_eq!(*seen.lock().unwrap(), [id, id]);
    assert_eq!(trace::current(), None);
}

#[test]
fn a_failure_with_an_empty_message_still_reaches_error_occurred() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .validate_on_emit(true)
        .build()
        .unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&errors);
    let _errors = bus.subscribe(move |e: &ErrorOccurred, _: &EventContext| {
        sink.lock().unwrap().push(e.clone());
    });
    let _quiet = bus.subscribe_with(
        SubscribeOptions::new().name("quiet"),
        |_: &Parent, _: &EventContext| Err(String::new()),
    );
    let _mute = bus.subscribe_with(
        SubscribeOptions::new().name("mute").priority(-1),
        |_: &Parent, _: &EventContext| panic!(""),
    );
    let report = bus.emit(Parent { id: 1 });
    assert_eq!(report.failures().len(), 2);
    let errors = errors.lock().unwrap();
    let handlers: Vec<&str> = errors.iter().map(|e| e.handler.as_str()).collect();
    assert_eq!(handlers, ["quiet", "mute"], "{errors:?}");
    for error in errors.iter() {
        assert!(!error.error.trim().is_empty(), "{error:?}");
        assert!(error.error.contains("empty"), "{error:?}");
    }
}

#[test]
fn a_skipped_async_handler_is_not_counted_as_a_call() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .handler_stats(true)
        .build()
        .unwrap();
    let _async = bus.subscribe_async_with(
        SubscribeOptions::new().name("uploader"),
        |_: &Parent, _: &EventContext| async {},
    );
    for id in 0..10 {
        let report = bus.emit(Parent { id });
        assert_eq!(report.skipped().len(), 1);
    }
    let stats = bus.handler_stats();
    let uploader = stats
        .iter()
        .find(|s| s.handler == "uploader")
        .expect("listed");
    assert_eq!(uploader.calls, 0, "{uploader:?}");
    block_on(bus.emit_async(Parent { id: 10 }));
    let stats = bus.handler_stats();
    let uploader = stats.iter().find(|s| s.handler == "uploader").unwrap();
    assert_eq!(uploader.calls, 1, "{uploader:?}");
}

/// A time a device without a real-time clock may report, and one past
/// what RFC 3339 can write.
fn out_of_range_times() -> [SystemTime; 2] {
    [
        UNIX_EPOCH - Duration::from_secs(86_400),
        UNIX_EPOCH + Duration::from_secs(253_402_300_800 + 10),
    ]
}

#[test]
fn out_of_range_timestamps_are_audit_write_errors_not_panics() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let audit = AuditLogger::builder()
        .events(EventSelector::names(["env.parent"]).unwrap())
        .jsonl(&path)
        .attach(&bus)
        .expect("audit log");
    for time in out_of_range_times() {
        let report = bus.emit_with(Parent { id: 1 }, EmitOptions::new().timestamp(time));
        assert!(report.is_ok(), "{report}");
    }
    bus.emit(Parent { id: 2 });
    assert_eq!((audit.records(), audit.write_errors()), (1, 2));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn out_of_range_timestamps_make_an_export_fail_with_an_io_error() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap();
    for time in out_of_range_times() {
        bus.emit_with(Parent { id: 1 }, EmitOptions::new().timestamp(time));
        let history = bus.history().unwrap();
        let mut out = Vec::new();
        let err = history
            .export_jsonl(&HistoryQuery::new(), &mut out)
            .expect_err("cannot be written");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("RFC 3339"), "{err}");
        history.clear();
    }
}

#[test]
fn an_emit_keeps_the_timestamp_it_is_given() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let when = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let seen = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&seen);
    let _sub = bus.subscribe(move |_: &Parent, ctx: &EventContext| {
        *sink.lock().unwrap() = Some(ctx.timestamp());
    });
    bus.emit_with(Parent { id: 1 }, EmitOptions::new().timestamp(when));
    assert_eq!(*seen.lock().unwrap(), Some(when));
    block_on(
        bus.emit_async_with(Parent { id: 2 }, EmitOptions::new().timestamp(when))
            .in_current_trace(),
    );
    assert_eq!(*seen.lock().unwrap(), Some(when));
}
