//! User code never escapes the bus and never runs under one of its locks:
//! the `Drop` of a cancelled async handler's future, an event's `Serialize`
//! under a history or a test recorder, a panicking validator, the captures
//! of a removed closure, a stream consumer's waker, a recorded event's
//! `Deserialize`, and futures dropped while their thread is torn down.

use sbox_events::events::ErrorOccurred;
use sbox_events::history::HistoryQuery;
use sbox_events::stream::{Overflow, StreamItem};
use sbox_events::testing::Recorder;
use sbox_events::trace::{self, TraceFutureExt, TraceId};
use sbox_events::{
    AnyEvent, Event, EventBus, EventContext, EventSelector, Refusal, SubscribeOptions, Subscription,
};
use sbox_events_tests::exec::{block_on, poll_once, yield_now};
use sbox_events_tests::within;
use serde::{Deserialize, Serialize, Serializer};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "test.job")]
struct Job {
    id: u32,
}

/// Panics when dropped: a guard held by user code that misbehaves.
struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

/// (handler, error) of each `error.occurred` seen.
type Errors = Arc<Mutex<Vec<(String, String)>>>;

/// Every `error.occurred` on `bus`.
fn errors_of(bus: &EventBus) -> (Errors, Subscription) {
    let seen: Errors = Arc::default();
    let sink = Arc::clone(&seen);
    let sub = bus.subscribe(move |e: &ErrorOccurred, _: &EventContext| {
        sink.lock()
            .unwrap()
            .push((e.handler.clone(), e.error.clone()));
    });
    (seen, sub)
}

fn plain_bus() -> EventBus {
    EventBus::builder().static_handlers(false).build().unwrap()
}

#[test]
fn a_cancelled_handler_future_whose_drop_panics_is_isolated_and_reported() {
    let bus = plain_bus();
    let (errors, _errors) = errors_of(&bus);
    let _guarded = bus.subscribe_async_with(
        SubscribeOptions::new().name("guarded upload"),
        |_: &Job, _: &EventContext| async {
            let _guard = PanicOnDrop("guard dropped badly");
            std::future::pending::<()>().await;
        },
    );
    let mut future = Box::pin(bus.emit_async(Job { id: 1 }));
    assert!(poll_once(future.as_mut()).is_pending());
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(future)));
    assert!(dropped.is_ok(), "the guard's panic escaped the drop");
    assert_eq!(
        *errors.lock().unwrap(),
        [(
            "guarded upload".to_owned(),
            "guard dropped badly".to_owned()
        )]
    );
    // The thread is clean: the next emit starts at depth 0, in a fresh trace.
    assert_eq!(trace::current(), None);
}

#[test]
fn a_cancelled_handler_future_dropped_during_an_unwind_does_not_abort() {
    let bus = plain_bus();
    let _guarded = bus.subscribe_async(|_: &Job, _: &EventContext| async {
        let _guard = PanicOnDrop("guard dropped during an unwind");
        std::future::pending::<()>().await;
    });
    let caller = catch_unwind(AssertUnwindSafe(|| {
        let mut future = pin!(bus.emit_async(Job { id: 2 }));
        assert!(poll_once(future.as_mut()).is_pending());
        panic!("the caller failed"); // unwinds through the future's drop
    }));
    let payload = caller.expect_err("the caller's own panic");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the caller failed"));
}

fn explode<S: Serializer>(_: &u32, _: S) -> Result<S::Ok, S::Error> {
    panic!("serializer exploded")
}

fn refuse<S: Serializer>(_: &u32, _: S) -> Result<S::Ok, S::Error> {
    Err(serde::ser::Error::custom("this value cannot be written"))
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.unserializable")]
struct Unserializable {
    #[serde(serialize_with = "explode")]
    n: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.refused_by_serde")]
struct RefusedBySerde {
    #[serde(serialize_with = "refuse")]
    n: u32,
}

#[test]
fn a_panicking_serialize_under_a_history_is_reported_and_handlers_still_run() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap();
    let (errors, _errors) = errors_of(&bus);
    let calls = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&calls);
    let _handler = bus.subscribe(move |_: &Unserializable, _: &EventContext| {
        *counter.lock().unwrap() += 1;
    });
    let report = catch_unwind(AssertUnwindSafe(|| bus.emit(Unserializable { n: 1 })))
        .expect("the serializer's panic escaped emit");
    assert_eq!(*calls.lock().unwrap(), 1, "the handler ran");
    assert_eq!(report.delivered(), 1);
    assert!(!report.is_ok());
    let [not_recorded] = report.not_recorded() else {
        panic!("one recorder failed: {report}")
    };
    assert_eq!(not_recorded.handler(), "sbox_events::history");
    assert_eq!(not_recorded.message(), "serializer exploded");
    assert!(report.to_string().contains("not recorded"), "{report}");
    assert_eq!(
        *errors.lock().unwrap(),
        [(
            "sbox_events::history".to_owned(),
            "serializer exploded".to_owned()
        )]
    );
    let history = bus.history().expect("history");
    assert_eq!(history.stats().unserializable, 1);
    let kept: Vec<&str> = history
        .query(&HistoryQuery::new())
        .iter()
        .map(|record| record.name())
        .collect();
    assert_eq!(kept, ["error.occurred"], "only the failure was recorded");

    // A `Serialize` that returns an error is reported the same way.
    let report = bus.emit(RefusedBySerde { n: 2 });
    assert_eq!(report.not_recorded().len(), 1, "{report}");
    assert!(
        report.not_recorded()[0]
            .message()
            .contains("this value cannot be written"),
        "{report}"
    );
}

#[test]
fn a_panicking_serialize_under_a_test_recorder_is_reported() {
    let bus = plain_bus();
    let recorder = Recorder::all(&bus);
    let report = catch_unwind(AssertUnwindSafe(|| bus.emit(Unserializable { n: 1 })))
        .expect("the serializer's panic escaped emit");
    assert_eq!(report.not_recorded().len(), 1, "{report}");
    assert_eq!(
        report.not_recorded()[0].handler(),
        "sbox_events::testing::Recorder"
    );
    // The `error.occurred` it caused serializes fine and is recorded.
    assert_eq!(recorder.names(), ["error.occurred"]);
}

fn validator_panics(_: &Validated) -> Result<(), String> {
    panic!("validator exploded")
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.validated", validate = validator_panics)]
struct Validated;

#[test]
fn a_panicking_validator_is_a_refusal() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .validate_on_emit(true)
        .build()
        .unwrap();
    let report = catch_unwind(AssertUnwindSafe(|| bus.emit(Validated)))
        .expect("the validator's panic escaped emit");
    assert_eq!(
        report.refused(),
        Some(&Refusal::Invalid {
            reason: "validation panicked: validator exploded".into()
        })
    );
    let report = block_on(bus.emit_async(Validated));
    assert!(
        matches!(report.refused(), Some(Refusal::Invalid { .. })),
        "{report}"
    );
}

#[test]
fn captures_released_by_a_running_emit_are_dropped_inside_isolation() {
    within(Duration::from_secs(60), "release during an emit", || {
        let bus = plain_bus();
        let (errors, _errors) = errors_of(&bus);
        let (entered, wait_entered) = mpsc::channel::<()>();
        let (resume, wait_resume) = mpsc::channel::<()>();
        let wait_resume = Mutex::new(wait_resume);
        let _gate = bus.subscribe_with(
            SubscribeOptions::new().name("gate").priority(10),
            move |_: &Job, _: &EventContext| {
                entered.send(()).unwrap();
                wait_resume.lock().unwrap().recv().unwrap();
            },
        );
        let bomb = PanicOnDrop("capture dropped badly");
        let doomed = bus.subscribe_with(
            SubscribeOptions::new().name("doomed"),
            move |_: &Job, _: &EventContext| {
                let _ = &bomb;
            },
        );
        std::thread::scope(|scope| {
            let emitter =
                scope.spawn(|| catch_unwind(AssertUnwindSafe(|| bus.emit(Job { id: 3 }))));
            wait_entered.recv().unwrap();
            // Unsubscribed while the emit runs: the emit still holds the
            // closure, and releases it last.
            drop(doomed);
            assert!(errors.lock().unwrap().is_empty(), "released too early");
            resume.send(()).unwrap();
            let report = emitter
                .join()
                .expect("the emitting thread")
                .expect("the capture's panic escaped emit");
            assert_eq!(report.delivered(), 2, "{report}");
            let [failure] = report.drop_failures() else {
                panic!("one release failed: {report}")
            };
            assert_eq!(failure.handler(), "doomed");
            assert_eq!(failure.message(), "capture dropped badly");
        });
        assert_eq!(
            *errors.lock().unwrap(),
            [("doomed".to_owned(), "capture dropped badly".to_owned())]
        );
    });
}

#[test]
fn a_panicking_capture_does_not_escape_unsubscribe_or_the_bus_drop() {
    let bus = plain_bus();
    let (errors, _errors) = errors_of(&bus);
    let bomb = PanicOnDrop("dropped at unsubscribe");
    let sub = bus.subscribe(move |_: &Job, _: &EventContext| {
        let _ = &bomb;
    });
    assert!(catch_unwind(AssertUnwindSafe(move || drop(sub))).is_ok());
    assert_eq!(errors.lock().unwrap().len(), 1);
    assert_eq!(errors.lock().unwrap()[0].1, "dropped at unsubscribe");

    let bomb = PanicOnDrop("dropped with the bus");
    bus.subscribe(move |_: &Job, _: &EventContext| {
        let _ = &bomb;
    })
    .detach();
    assert!(catch_unwind(AssertUnwindSafe(move || drop(bus))).is_ok());
}

#[test]
fn a_closure_that_selects_no_event_type_is_kept_until_unsubscribed_then_released_in_isolation() {
    let bus = plain_bus();
    let (errors, _errors) = errors_of(&bus);
    let nothing = EventSelector::pattern("isolation.nothing.*").unwrap();
    let (dropped, released) = mpsc::channel::<()>();
    struct Flag(mpsc::Sender<()>);
    impl Drop for Flag {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let flag = Flag(dropped);
    let sub = bus.subscribe_any(nothing.clone(), move |_: &AnyEvent, _: &EventContext| {
        let _ = &flag;
    });
    assert!(released.try_recv().is_err(), "kept while subscribed");
    drop(sub);
    assert!(released.try_recv().is_ok(), "released at unsubscribe");

    let bomb = PanicOnDrop("dropped at unsubscribe, selecting nothing");
    let subscribed = catch_unwind(AssertUnwindSafe(|| {
        bus.subscribe_any(nothing, move |_: &AnyEvent, _: &EventContext| {
            let _ = &bomb;
        })
    }));
    let sub = subscribed.expect("subscribing drops nothing");
    assert!(errors.lock().unwrap().is_empty());
    assert!(catch_unwind(AssertUnwindSafe(move || drop(sub))).is_ok());
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].1, "dropped at unsubscribe, selecting nothing");
}

/// A waker that emits on a bus when it is dropped.
struct EmittingWaker(EventBus);

impl Wake for EmittingWaker {
    fn wake(self: Arc<Self>) {}
}

impl Drop for EmittingWaker {
    fn drop(&mut self) {
        self.0.emit(Job { id: 99 });
    }
}

#[test]
fn a_stream_consumers_waker_runs_outside_the_queue_lock() {
    within(Duration::from_secs(30), "waker dropped by a stream", || {
        let bus = plain_bus();
        let mut jobs = bus.subscribe_stream::<Job>(8, Overflow::DropOldest);
        let first = Waker::from(Arc::new(EmittingWaker(bus.clone())));
        {
            let mut next = pin!(jobs.recv());
            let mut cx = Context::from_waker(&first);
            assert!(next.as_mut().poll(&mut cx).is_pending());
            drop(first); // the stream holds the last reference now
            // Polled with another waker: the first is replaced and dropped,
            // and its `Drop` emits on the bus (which pushes to this stream).
            let second = Waker::noop();
            match next.as_mut().poll(&mut Context::from_waker(second)) {
                Poll::Ready(Some(StreamItem::Event(job))) => assert_eq!(job.event().id, 99),
                Poll::Pending => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let got = block_on(jobs.recv());
        assert!(
            matches!(&got, Some(StreamItem::Event(job)) if job.event().id == 99) || jobs.is_empty(),
            "{got:?}"
        );
    });
}

static REENTRANT_BUS: OnceLock<EventBus> = OnceLock::new();

#[derive(Event, Serialize, Debug, PartialEq)]
#[event(name = "test.reentrant")]
struct Reentrant {
    n: u32,
}

/// A `Deserialize` that emits on the recorded bus.
impl<'de> Deserialize<'de> for Reentrant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            n: u32,
        }
        let raw = Raw::deserialize(d)?;
        if let Some(bus) = REENTRANT_BUS.get() {
            bus.emit(Job { id: raw.n });
        }
        Ok(Reentrant { n: raw.n })
    }
}

#[test]
fn a_recorded_events_deserialize_runs_outside_the_recorders_lock() {
    within(Duration::from_secs(30), "Deserialize that emits", || {
        let bus = REENTRANT_BUS.get_or_init(plain_bus);
        let recorder = Recorder::all(bus);
        bus.emit(Reentrant { n: 7 });
        assert_eq!(recorder.events::<Reentrant>(), [Reentrant { n: 7 }]);
        assert_eq!(recorder.assert_emitted::<Reentrant>(), Reentrant { n: 7 });
        assert_eq!(recorder.count::<Job>(), 2, "each decode emitted a job");
    });
}

/// Runs this test binary again with `SBOX_CHILD` set to `name`, so a
/// scenario that would abort the process fails the test instead of
/// killing the test harness.
fn in_a_child_process(name: &str) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("SBOX_CHILD", name)
        .status()
        .expect("run the test binary");
    assert!(status.success(), "the child process failed: {status}");
}

fn is_child(name: &str) -> bool {
    std::env::var("SBOX_CHILD").is_ok_and(|child| child == name)
}

#[test]
fn futures_dropped_during_thread_teardown_do_not_abort() {
    const NAME: &str = "futures_dropped_during_thread_teardown_do_not_abort";
    if !is_child(NAME) {
        return in_a_child_process(NAME);
    }
    type Held = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
    thread_local! {
        static HELD: std::cell::RefCell<Vec<Held>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let bus: &'static EventBus = Box::leak(Box::new(plain_bus()));
    bus.subscribe_async(|_: &Job, _: &EventContext| async {
        yield_now().await;
    })
    .detach();
    std::thread::spawn(move || {
        // Registered first, so destroyed last: after the trace's own
        // thread-locals are gone.
        HELD.with(|held| {
            let mut emit = Box::pin(async move {
                bus.emit_async(Job { id: 4 }).await;
            });
            assert!(poll_once(emit.as_mut()).is_pending());
            held.borrow_mut().push(emit);
            held.borrow_mut()
                .push(Box::pin(async {}.with_trace_id(TraceId::random())));
        });
        drop(trace::enter(TraceId::random()));
    })
    .join()
    .expect("the thread ends cleanly");
}

/// A `tracing` subscriber that panics when a span is created.
struct PanickingSubscriber;

impl tracing::Subscriber for PanickingSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        panic!("subscriber exploded")
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_panicking_tracing_subscriber_leaves_no_stale_trace() {
    tracing::subscriber::with_default(PanickingSubscriber, || {
        let id = TraceId::random();
        let entered = catch_unwind(|| trace::with_trace_id(id, || ()));
        assert!(entered.is_err(), "the subscriber panicked");
        assert_eq!(trace::current(), None, "the scope was left behind");
    });
}

#[derive(Event, Serialize, Debug)]
#[event(name = "test.cursed")]
struct Cursed {
    n: u32,
}

/// A `Deserialize` that panics on 13.
impl<'de> Deserialize<'de> for Cursed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            n: u32,
        }
        let raw = Raw::deserialize(d)?;
        assert_ne!(raw.n, 13, "unlucky number");
        Ok(Cursed { n: raw.n })
    }
}

#[test]
fn a_panicking_deserialize_fails_one_import_line_or_one_replayed_record() {
    use sbox_events::history::{ImportOptions, LineErrorKind, import_jsonl};
    let bus = EventBus::builder()
        .static_handlers(false)
        .history(1 << 20)
        .build()
        .unwrap();
    bus.emit(Cursed { n: 13 });
    bus.emit(Cursed { n: 14 });
    let history = bus.history().expect("history");
    let records = history.query(&HistoryQuery::new());

    let replayed = catch_unwind(AssertUnwindSafe(|| bus.replay(&records)))
        .expect("the Deserialize's panic escaped replay");
    assert_eq!(replayed.reports().len(), 1, "the good record was replayed");
    let [error] = replayed.errors() else {
        panic!("one record failed: {:?}", replayed.errors())
    };
    assert!(error.message().contains("unlucky number"), "{error}");

    let mut jsonl = Vec::new();
    history
        .export_jsonl(&HistoryQuery::new(), &mut jsonl)
        .expect("export");
    let imported = catch_unwind(AssertUnwindSafe(|| {
        import_jsonl(&jsonl[..], &ImportOptions::new().lenient(true))
    }))
    .expect("the Deserialize's panic escaped import")
    .expect("lenient");
    assert_eq!(imported.events.len(), 1, "the good line was imported");
    let [bad] = &imported.skipped[..] else {
        panic!("one bad line: {:?}", imported.skipped)
    };
    assert_eq!(bad.line(), 1);
    assert!(
        matches!(bad.kind(), LineErrorKind::Schema { message, .. } if message.contains("unlucky number")),
        "{bad}"
    );
}

#[test]
fn a_report_tells_a_closure_released_from_the_event_dropped_whatever_the_names() {
    let bus = plain_bus();
    let doomed: Arc<Mutex<Option<Subscription>>> = Arc::default();
    let held = Arc::clone(&doomed);
    let unsubscriber = SubscribeOptions::new().name("unsubscriber").priority(10);
    bus.subscribe_with(unsubscriber, move |_: &Job, _: &EventContext| {
        drop(held.lock().unwrap().take());
    })
    .detach();
    // A subscription may be named anything, this too.
    let bomb = PanicOnDrop("capture dropped badly");
    let named = SubscribeOptions::new().name("the event's `Drop`");
    let sub = bus.subscribe_with(named, move |_: &Job, _: &EventContext| {
        let _ = &bomb;
    });
    *doomed.lock().unwrap() = Some(sub);
    let report = bus.emit(Job { id: 4 });
    assert_eq!(report.drop_failures().len(), 1, "{report}");
    let text = report.to_string();
    assert!(text.contains("while its closure was dropped"), "{text}");
    assert!(!text.contains("the event panicked"), "{text}");
}

fn never_valid(_: &Invalid) -> Result<(), String> {
    Err("never valid".into())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.invalid", validate = never_valid)]
struct Invalid {
    #[serde(skip)]
    _fuse: Option<PanicOnDrop>,
}

#[test]
fn a_refused_report_still_shows_the_event_panicking_when_dropped() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .validate_on_emit(true)
        .build()
        .unwrap();
    let emit = bus.emit_async(Invalid {
        _fuse: Some(PanicOnDrop("dropped badly")),
    });
    let report = catch_unwind(AssertUnwindSafe(|| block_on(emit))).expect("no unwind");
    assert!(report.refused().is_some(), "{report}");
    assert_eq!(report.drop_failures().len(), 1, "{report}");
    let text = report.to_string();
    assert!(text.contains("never valid"), "{text}");
    assert!(text.contains("dropped badly"), "{text}");
}
