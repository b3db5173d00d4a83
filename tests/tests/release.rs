//! When a subscription's closure is released, with emits running on other
//! threads: dropping a `Subscription` releases its closure (everything it
//! captured) before `drop` returns, unless an emit that started earlier is
//! still running (a synchronous one of any type; a pending `emit_async` of
//! the closure's type only); then as soon as that emit ends. An idle
//! thread, or one that has ended, never keeps a closure alive. Captures record when
//! they are dropped, and complain if they are called after it.

use sbox_events::{Event, EventBus, EventContext, Subscription};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::{Duration, Instant};

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "release.ping")]
struct Ping(u64);

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "release.dive")]
struct Dive(u32);

/// A capture that records its drop, and fails loudly if the closure
/// holding it runs after it.
struct Canary {
    dropped: Arc<AtomicBool>,
    alive: AtomicBool,
}

impl Canary {
    fn new() -> (Canary, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let canary = Canary {
            dropped: Arc::clone(&dropped),
            alive: AtomicBool::new(true),
        };
        (canary, dropped)
    }

    fn check(&self) {
        assert!(
            self.alive.load(Ordering::SeqCst),
            "closure called after its release"
        );
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn subscribe_canary(bus: &EventBus) -> (Subscription, Arc<AtomicBool>) {
    let (canary, dropped) = Canary::new();
    let sub = bus.subscribe(move |_: &Ping, _: &EventContext| canary.check());
    (sub, dropped)
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn idle_and_ended_threads_keep_no_closure_alive() {
    let bus = EventBus::new();
    // Threads that emit (so they hold hazard records and have read the
    // table with the checked closure in it), then wait, idle.
    let idle: Vec<_> = (0..3)
        .map(|_| {
            let bus = bus.clone();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (done_tx, done_rx) = mpsc::channel::<usize>();
            let handle = std::thread::spawn(move || {
                while go_rx.recv().is_ok() {
                    let report = bus.emit(Ping(1));
                    assert!(report.failures().is_empty(), "{report}");
                    let _ = done_tx.send(report.delivered());
                }
            });
            (go_tx, done_rx, handle)
        })
        .collect();
    for round in 0..50 {
        let (sub, dropped) = subscribe_canary(&bus);
        for (go, done, _) in &idle {
            go.send(()).unwrap();
            assert_eq!(done.recv().unwrap(), 1, "round {round}");
        }
        // And threads that emitted and ended.
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| assert_eq!(bus.emit(Ping(2)).delivered(), 1));
            }
        });
        drop(sub);
        assert!(dropped.load(Ordering::SeqCst), "round {round}: kept alive");
    }
    for (go, _, handle) in idle {
        drop(go);
        handle.join().unwrap();
    }
}

/// A capture whose drop uses the bus it was subscribed on: subscribes,
/// unsubscribes and emits. Released by a reader, it must not deadlock.
struct UsesBusOnDrop(EventBus, Arc<AtomicUsize>);

impl Drop for UsesBusOnDrop {
    fn drop(&mut self) {
        let seen = Arc::clone(&self.1);
        let sub = self.0.subscribe(move |_: &Dive, _: &EventContext| {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        self.0.emit(Dive(0));
        drop(sub);
    }
}

#[test]
fn a_closure_running_elsewhere_is_released_when_that_emit_ends() {
    let bus = EventBus::new();
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let (canary, dropped) = Canary::new();
    let on_drop = UsesBusOnDrop(bus.clone(), Arc::new(AtomicUsize::new(0)));
    let seen_on_drop = Arc::clone(&on_drop.1);
    let (e, r) = (Arc::clone(&entered), Arc::clone(&release));
    let sub = bus.subscribe(move |ping: &Ping, _: &EventContext| {
        let _keep = &on_drop;
        canary.check();
        if ping.0 == 1 {
            e.wait(); // running on the emitter thread
            r.wait(); // until the test has dropped the subscription
            canary.check();
        }
    });
    let emitter = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            let report = bus.emit(Ping(1));
            assert!(report.failures().is_empty(), "{report}");
            report.delivered()
        })
    };
    entered.wait();
    drop(sub);
    // The emit that started earlier still runs the closure.
    assert!(!dropped.load(Ordering::SeqCst));
    assert_eq!(bus.emit(Ping(2)).delivered(), 0);
    release.wait();
    assert_eq!(emitter.join().unwrap(), 1);
    // Released by the emitter as its emit ended, including the capture
    // that used the bus from its drop.
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(seen_on_drop.load(Ordering::SeqCst), 1);
}

#[test]
fn a_handler_that_unsubscribes_itself_is_released_when_its_emit_ends() {
    let bus = EventBus::new();
    let holder: Arc<Mutex<Option<Subscription>>> = Arc::new(Mutex::new(None));
    let (canary, dropped) = Canary::new();
    let (h, d) = (Arc::clone(&holder), Arc::clone(&dropped));
    let sub = bus.subscribe(move |_: &Ping, _: &EventContext| {
        canary.check();
        drop(h.lock().unwrap().take());
        // Still running: not released under our feet.
        assert!(!d.load(Ordering::SeqCst));
        canary.check();
    });
    *holder.lock().unwrap() = Some(sub);
    let report = bus.emit(Ping(1));
    // A failed assertion in the handler would be a failure here.
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.delivered(), 1);
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn deeply_nested_emits_release_closures_as_they_end() {
    // Deeper than the per-thread hazard slots: the innermost emits read
    // the route table another way, and everything still holds.
    let bus = EventBus::builder().max_depth(30).build().unwrap();
    let victim: Arc<Mutex<Option<Subscription>>> = Arc::new(Mutex::new(None));
    let (canary, dropped) = Canary::new();
    let deepest = Arc::new(AtomicU64::new(0));
    let (v, d, deep) = (
        Arc::clone(&victim),
        Arc::clone(&dropped),
        Arc::clone(&deepest),
    );
    let _diver = bus.subscribe(move |dive: &Dive, ctx: &EventContext| {
        deep.fetch_max(u64::from(dive.0), Ordering::SeqCst);
        if dive.0 < 25 {
            let report = ctx.bus().emit(Dive(dive.0 + 1));
            assert!(report.is_ok(), "{report}");
        } else {
            // At the bottom: every emit above still runs the victim's
            // route.
            drop(v.lock().unwrap().take());
            assert!(!d.load(Ordering::SeqCst));
        }
    });
    // Subscribed after the diver: on the way back up, each level calls it
    // (from the table it read), after the bottom dropped it.
    let calls = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&calls);
    *victim.lock().unwrap() = Some(bus.subscribe(move |_: &Dive, _: &EventContext| {
        canary.check();
        c.fetch_add(1, Ordering::SeqCst);
    }));
    let report = bus.emit(Dive(0));
    assert!(report.is_ok(), "{report}");
    assert_eq!(deepest.load(Ordering::SeqCst), 25);
    assert_eq!(calls.load(Ordering::SeqCst), 26);
    assert!(dropped.load(Ordering::SeqCst));
    // And the next emits work as before.
    assert_eq!(bus.emit(Dive(25)).delivered(), 1);
}

struct EmitOnDrop(EventBus, Arc<AtomicUsize>);

impl Drop for EmitOnDrop {
    fn drop(&mut self) {
        self.1
            .fetch_add(self.0.emit(Ping(7)).delivered(), Ordering::SeqCst);
    }
}

thread_local! {
    static EMIT_ON_DROP: RefCell<Option<EmitOnDrop>> = const { RefCell::new(None) };
}

#[test]
fn an_emit_during_thread_teardown_still_reaches_closures() {
    let bus = EventBus::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let _sub = bus.subscribe(move |_: &Ping, _: &EventContext| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let delivered = Arc::new(AtomicUsize::new(0));
    let (b, d) = (bus.clone(), Arc::clone(&delivered));
    std::thread::spawn(move || {
        // Registered before the first emit takes this thread's hazard
        // record: destructors run in reverse order, so the record is given
        // back first, and the emit from this destructor reads the table
        // without it.
        EMIT_ON_DROP.with(|slot| *slot.borrow_mut() = Some(EmitOnDrop(b.clone(), d)));
        assert_eq!(b.emit(Ping(1)).delivered(), 1);
    })
    .join()
    .unwrap();
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Waits until every emitter has finished one more emit than now (so the
/// one each is in, if any, has ended).
fn each_finishes_one_more(finished: &[AtomicU64], what: &str) {
    let seen: Vec<u64> = finished.iter().map(|f| f.load(Ordering::SeqCst)).collect();
    wait_until(what, || {
        finished
            .iter()
            .zip(&seen)
            .all(|(f, s)| f.load(Ordering::SeqCst) > *s)
    });
}

#[test]
fn churn_across_threads_never_calls_a_released_closure() {
    const EMITTERS: usize = 3;
    const ROUNDS: usize = 400;
    let bus = EventBus::new();
    let stop = Arc::new(AtomicBool::new(false));
    // Each emitter counts the emits it has finished.
    let finished: Arc<Vec<AtomicU64>> =
        Arc::new((0..EMITTERS).map(|_| AtomicU64::new(0)).collect());
    let _steady = bus.subscribe(|_: &Ping, _: &EventContext| {});
    let emitters: Vec<_> = (0..EMITTERS)
        .map(|i| {
            let (bus, stop, finished) = (bus.clone(), Arc::clone(&stop), Arc::clone(&finished));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let report = bus.emit(Ping(i as u64));
                    assert!(report.failures().is_empty(), "{report}");
                    finished[i].fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for round in 0..ROUNDS {
        let (sub, dropped) = subscribe_canary(&bus);
        if round % 2 == 0 {
            // Let some emits reach it.
            each_finishes_one_more(&finished, "emitters to move on");
        }
        drop(sub);
        // Any emit still running it started before `drop`: once each
        // emitter has finished the emit it was in, the closure is gone.
        each_finishes_one_more(&finished, "emits running at the drop to end");
        if !dropped.load(Ordering::SeqCst) {
            let start = Instant::now();
            while !dropped.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(2) {
                std::thread::yield_now();
            }
            panic!(
                "round {round}: not released; later: {} after {:?}",
                dropped.load(Ordering::SeqCst),
                start.elapsed()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for emitter in emitters {
        emitter.join().unwrap();
    }
}

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "release.waited")]
struct Waited(u8);

#[test]
fn a_pending_emit_async_of_another_type_keeps_no_released_closure() {
    let bus = EventBus::new();
    // An async handler that never finishes: its emit stays pending.
    let _waiting = bus.subscribe_async(|_: &Waited, _: &EventContext| std::future::pending::<()>());
    let (canary, dropped) = Canary::new();
    let ping = bus.subscribe(move |_: &Ping, _: &EventContext| canary.check());
    let mut emit = Box::pin(bus.emit_async(Waited(0)));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(emit.as_mut().poll(&mut cx).is_pending());

    // That emit can never run a `Ping` closure: dropping the subscription
    // releases it now, not when the emit is dropped.
    drop(ping);
    assert!(
        dropped.load(Ordering::SeqCst),
        "kept by a pending emit of another type"
    );
    drop(emit);
}

/// Panics when dropped: a capture that misbehaves.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("capture dropped badly");
    }
}

#[test]
fn a_release_at_the_end_of_an_emit_is_caused_by_the_event_not_its_last_handler() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    // (cause's event, cause's handler) of each `error.occurred`.
    let causes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&causes);
    bus.subscribe(
        move |_: &sbox_events::events::ErrorOccurred, ctx: &EventContext| {
            let cause = ctx.cause().expect("a cause");
            let entry = (cause.event().to_owned(), cause.handler().map(str::to_owned));
            sink.lock().unwrap().push(entry);
        },
    )
    .detach();
    let doomed: Arc<Mutex<Option<Subscription>>> = Arc::default();
    let killer = Arc::clone(&doomed);
    let first = sbox_events::SubscribeOptions::new()
        .name("killer")
        .priority(10);
    bus.subscribe_with(first, move |_: &Ping, _: &EventContext| {
        // Unsubscribed while this emit holds it: released when it ends.
        drop(killer.lock().unwrap().take());
    })
    .detach();
    let arm = |doomed: &Mutex<Option<Subscription>>| {
        let bomb = Bomb;
        let last = sbox_events::SubscribeOptions::new().name("doomed");
        let sub = bus.subscribe_with(last, move |_: &Ping, _: &EventContext| {
            let _ = &bomb;
        });
        *doomed.lock().unwrap() = Some(sub);
    };

    arm(&doomed);
    let report = bus.emit(Ping(1));
    assert_eq!(report.drop_failures().len(), 1, "{report}");
    arm(&doomed);
    let report = sbox_events_tests::exec::block_on(bus.emit_async(Ping(2)));
    assert_eq!(report.drop_failures().len(), 1, "{report}");

    let expected = ("release.ping".to_owned(), None);
    assert_eq!(*causes.lock().unwrap(), [expected.clone(), expected]);
}
