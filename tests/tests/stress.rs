//! Stress, bounded by fixed iteration counts: threads emit while others
//! subscribe and unsubscribe, 1% of handler calls panic, and one handler
//! re-emits its own event until the depth limit stops it. Checks exact
//! delivery counts, that every panic is reported, that a dropped
//! subscription is never reached by a later emit on the thread that dropped
//! it, and (through a watchdog) that nothing deadlocks.

use sbox_events::{Event, EventBus, EventContext, FailureKind, Refusal, SubscribeOptions};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "stress.work_item")]
struct WorkItem {
    n: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "stress.echo")]
struct Echo;

const EMITTERS: u64 = 3;
const EMITS: u64 = 20_000;
const CHURNERS: u64 = 2;
const CHURN_ROUNDS: u64 = 300;
const PANIC_EVERY: u64 = 100; // 1% of calls

const MESSAGE: &str = "stress: planned panic";

/// The default hook would print thousands of planned panics.
fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let planned = info.payload().downcast_ref::<&str>() == Some(&MESSAGE);
            if !planned {
                default(info);
            }
        }));
    });
}

/// Aborts the whole test binary if the test is still running after `limit`.
fn watchdog(limit: Duration) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    std::thread::spawn(move || {
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        while !flag.load(Ordering::Relaxed) {
            if waited >= limit {
                eprintln!("stress test still running after {limit:?}: deadlock?");
                std::process::abort();
            }
            std::thread::sleep(step);
            waited += step;
        }
    });
    done
}

thread_local! {
    /// Set by a churn thread right after it drops its subscription.
    static DROPPED_HERE: Cell<u64> = const { Cell::new(0) };
}

#[test]
fn emitters_churners_and_panics_together() {
    quiet_planned_panics();
    let done = watchdog(Duration::from_secs(60));
    let bus = EventBus::builder()
        .static_handlers(false)
        .error_events(false)
        .build()
        .unwrap();

    // Present throughout: must see every emit exactly once.
    let steady = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&steady);
    let _steady = bus.subscribe_with(
        SubscribeOptions::new().name("steady"),
        move |_: &WorkItem, _: &EventContext| {
            s.fetch_add(1, Ordering::Relaxed);
        },
    );
    // Panics on 1% of the events, deterministically.
    let _flaky = bus.subscribe_with(
        SubscribeOptions::new().name("flaky"),
        |item: &WorkItem, _: &EventContext| {
            if item.n.is_multiple_of(PANIC_EVERY) {
                std::panic::panic_any(MESSAGE);
            }
        },
    );

    let violations = Arc::new(AtomicU64::new(0));
    let churn_calls = Arc::new(AtomicU64::new(0));
    let panics_reported = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..EMITTERS {
            scope.spawn(|| {
                for n in 1..=EMITS {
                    let report = bus.emit(WorkItem { n });
                    for failure in report.failures() {
                        assert_eq!(
                            (failure.handler(), failure.kind()),
                            ("flaky", FailureKind::Panic)
                        );
                        panics_reported.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        for churner in 1..=CHURNERS {
            let (violations, churn_calls, bus) =
                (Arc::clone(&violations), Arc::clone(&churn_calls), &bus);
            scope.spawn(move || {
                for round in 1..=CHURN_ROUNDS {
                    let token = churner * 1_000_000 + round;
                    let (v, c) = (Arc::clone(&violations), Arc::clone(&churn_calls));
                    let sub = bus.subscribe(move |_: &WorkItem, _: &EventContext| {
                        c.fetch_add(1, Ordering::Relaxed);
                        // Running on the thread that dropped this very
                        // subscription, after it dropped it: not allowed.
                        if DROPPED_HERE.with(Cell::get) == token {
                            v.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    bus.emit(WorkItem { n: 1 });
                    drop(sub);
                    DROPPED_HERE.with(|d| d.set(token));
                    bus.emit(WorkItem { n: 1 });
                }
            });
        }
    });

    let churn_emits = CHURNERS * CHURN_ROUNDS * 2;
    assert_eq!(
        steady.load(Ordering::Relaxed),
        EMITTERS * EMITS + churn_emits
    );
    assert_eq!(
        panics_reported.load(Ordering::Relaxed),
        EMITTERS * (EMITS / PANIC_EVERY)
    );
    assert_eq!(violations.load(Ordering::Relaxed), 0);
    assert!(
        churn_calls.load(Ordering::Relaxed) >= CHURNERS * CHURN_ROUNDS,
        "each churn subscription saw its own emit"
    );
    assert!(
        bus.handlers::<WorkItem>().len() == 2,
        "only the steady subscriptions remain"
    );

    // Re-entrancy storm: a handler re-emitting its own event, from several
    // threads at once, stops cleanly at the depth limit.
    let refused = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&refused);
    let _storm = bus.subscribe(move |_: &Echo, ctx: &EventContext| {
        let report = ctx.bus().emit(Echo);
        if let Some(Refusal::DepthLimit { depth, limit }) = report.refused() {
            assert_eq!(depth, limit);
            r.fetch_add(1, Ordering::Relaxed);
        }
    });
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..50 {
                    assert!(bus.emit(Echo).is_ok());
                }
            });
        }
    });
    assert_eq!(
        refused.load(Ordering::Relaxed),
        200,
        "one refusal per storm"
    );
    done.store(true, Ordering::Relaxed);
}
