//! Run-time subscriptions: guards, order, changes from inside handlers,
//! concurrent emits, and what the handler context carries.

use sbox_events::{
    EmitOptions, Event, EventBus, EventContext, HandlerOrigin, Metadata, SubscribeOptions,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "test.tick", source = "clock")]
struct Tick {
    n: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.tock")]
struct Tock;

fn bus() -> EventBus {
    EventBus::builder().static_handlers(false).build().unwrap()
}

fn counter(bus: &EventBus) -> (Arc<AtomicUsize>, sbox_events::Subscription) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let sub = bus.subscribe(move |_: &Tick, _: &EventContext| {
        seen.fetch_add(1, Ordering::Relaxed);
    });
    (count, sub)
}

#[test]
fn dropping_the_subscription_unsubscribes() {
    let bus = bus();
    let (count, sub) = counter(&bus);
    assert_eq!(bus.emit(Tick { n: 1 }).delivered(), 1);
    drop(sub);
    assert_eq!(bus.emit(Tick { n: 2 }).delivered(), 0);
    assert_eq!(count.load(Ordering::Relaxed), 1);
}

#[test]
fn unsubscribe_and_detach() {
    let bus = bus();
    let (kept, sub) = counter(&bus);
    sub.detach();
    let (gone, sub) = counter(&bus);
    sub.unsubscribe();
    bus.emit(Tick { n: 1 });
    assert_eq!(
        (kept.load(Ordering::Relaxed), gone.load(Ordering::Relaxed)),
        (1, 0)
    );
}

#[test]
fn subscriptions_only_see_their_event_type_and_bus() {
    let (a, b) = (bus(), bus());
    let (count, _sub) = counter(&a);
    b.emit(Tick { n: 1 });
    a.emit(Tock);
    assert_eq!(count.load(Ordering::Relaxed), 0);
}

#[test]
fn priority_then_subscription_order() {
    let bus = bus();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut subs = Vec::new();
    for (name, priority) in [("b", 0), ("a", 0), ("high", 5), ("low", -5)] {
        let log = Arc::clone(&log);
        subs.push(bus.subscribe_with(
            SubscribeOptions::new().name(name).priority(priority),
            move |_: &Tick, _: &EventContext| log.lock().expect("log").push(name),
        ));
    }
    bus.emit(Tick { n: 1 });
    assert_eq!(*log.lock().expect("log"), ["high", "b", "a", "low"]);
    let listed: Vec<String> = bus
        .handlers::<Tick>()
        .iter()
        .map(|h| h.name().to_owned())
        .collect();
    assert_eq!(listed, ["high", "b", "a", "low"]);
    assert_eq!(
        bus.handlers::<Tick>()[0].origin(),
        HandlerOrigin::Subscription { id: subs[2].id() }
    );
}

#[test]
fn a_handler_can_subscribe_and_the_new_one_runs_from_the_next_emit() {
    let bus = bus();
    let added = Arc::new(Mutex::new(Vec::new()));
    let inner_calls = Arc::new(AtomicUsize::new(0));
    let (added2, inner2) = (Arc::clone(&added), Arc::clone(&inner_calls));
    let _outer = bus.subscribe(move |_: &Tick, ctx: &EventContext| {
        let inner = Arc::clone(&inner2);
        let sub = ctx.bus().subscribe(move |_: &Tick, _: &EventContext| {
            inner.fetch_add(1, Ordering::Relaxed);
        });
        added2.lock().expect("subs").push(sub);
    });
    assert_eq!(bus.emit(Tick { n: 1 }).delivered(), 1);
    assert_eq!(inner_calls.load(Ordering::Relaxed), 0);
    assert_eq!(bus.emit(Tick { n: 2 }).delivered(), 2);
    assert_eq!(inner_calls.load(Ordering::Relaxed), 1);
}

#[test]
fn a_handler_can_unsubscribe_itself() {
    let bus = bus();
    let slot: Arc<Mutex<Option<sbox_events::Subscription>>> = Arc::new(Mutex::new(None));
    let calls = Arc::new(AtomicUsize::new(0));
    let (slot2, calls2) = (Arc::clone(&slot), Arc::clone(&calls));
    let sub = bus.subscribe(move |_: &Tick, _: &EventContext| {
        calls2.fetch_add(1, Ordering::Relaxed);
        // Dropping our own guard while we run: no deadlock, no use-after-free.
        drop(slot2.lock().expect("slot").take());
    });
    *slot.lock().expect("slot") = Some(sub);
    assert_eq!(bus.emit(Tick { n: 1 }).delivered(), 1);
    assert_eq!(bus.emit(Tick { n: 2 }).delivered(), 0);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[test]
fn unsubscribing_a_later_handler_mid_emit_applies_from_the_next_emit() {
    let bus = bus();
    let (count, victim) = counter(&bus);
    let victim = Mutex::new(Some(victim));
    let _first = bus.subscribe_with(
        SubscribeOptions::new().priority(1),
        move |_: &Tick, _: &EventContext| {
            drop(victim.lock().expect("victim").take());
        },
    );
    assert_eq!(bus.emit(Tick { n: 1 }).delivered(), 2);
    assert_eq!(bus.emit(Tick { n: 2 }).delivered(), 1);
    assert_eq!(count.load(Ordering::Relaxed), 1);
}

#[test]
fn dropping_the_bus_first_is_fine() {
    let bus = bus();
    let (_count, sub) = counter(&bus);
    drop(bus);
    drop(sub);
}

#[test]
fn concurrent_emits_deliver_exactly_once_each() {
    const THREADS: u64 = 4;
    const EMITS: u64 = 5_000;
    let bus = bus();
    let total = Arc::new(AtomicUsize::new(0));
    let sum = Arc::new(AtomicUsize::new(0));
    let (t, s) = (Arc::clone(&total), Arc::clone(&sum));
    let _sub = bus.subscribe(move |tick: &Tick, _: &EventContext| {
        t.fetch_add(1, Ordering::Relaxed);
        s.fetch_add(tick.n as usize, Ordering::Relaxed);
    });
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for n in 1..=EMITS {
                    assert_eq!(bus.emit(Tick { n }).delivered(), 1);
                }
            });
        }
    });
    assert_eq!(total.load(Ordering::Relaxed) as u64, THREADS * EMITS);
    assert_eq!(
        sum.load(Ordering::Relaxed) as u64,
        THREADS * EMITS * (EMITS + 1) / 2
    );
}

#[test]
fn the_context_carries_name_source_metadata_sequence_depth_and_time() {
    let bus = bus();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let _sub = bus.subscribe(move |tick: &Tick, ctx: &EventContext| {
        let before = std::time::SystemTime::now();
        let stamp = ctx.timestamp();
        assert!(before <= stamp && stamp <= std::time::SystemTime::now());
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(
            ctx.timestamp(),
            stamp,
            "read once, then fixed for the event"
        );
        log.lock().expect("log").push((
            tick.n,
            ctx.name(),
            ctx.source().to_owned(),
            ctx.metadata().clone(),
            ctx.sequence(),
            ctx.depth(),
        ));
    });
    bus.emit(Tick { n: 1 });
    bus.emit_with(
        Tick { n: 2 },
        EmitOptions::new()
            .source("scheduler")
            .metadata("job", "nightly"),
    );
    let seen = seen.lock().expect("log");
    assert_eq!(
        (seen[0].1, seen[0].2.as_str(), seen[0].5),
        ("test.tick", "clock", 0)
    );
    assert!(seen[0].3.is_empty());
    assert_eq!(seen[1].2, "scheduler");
    assert_eq!(
        seen[1].3,
        [("job", "nightly")].into_iter().collect::<Metadata>()
    );
    assert!(seen[1].4 > seen[0].4, "sequence increases on a thread");
}

#[test]
fn nested_events_are_delivered_depth_first_with_increasing_depth_and_sequence() {
    let bus = bus();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l1 = Arc::clone(&log);
    let _tick = bus.subscribe(move |tick: &Tick, ctx: &EventContext| {
        l1.lock()
            .expect("log")
            .push(format!("tick {} depth {}", tick.n, ctx.depth()));
        if tick.n < 3 {
            let report = ctx.bus().emit(Tick { n: tick.n + 1 });
            assert!(report.is_ok());
        }
        l1.lock()
            .expect("log")
            .push(format!("tick {} done", tick.n));
    });
    bus.emit(Tick { n: 1 });
    assert_eq!(
        *log.lock().expect("log"),
        [
            "tick 1 depth 0",
            "tick 2 depth 1",
            "tick 3 depth 2",
            "tick 3 done",
            "tick 2 done",
            "tick 1 done"
        ]
    );
}

#[test]
fn the_global_bus_is_shared() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let _sub = EventBus::global().subscribe(move |_: &Tock, _: &EventContext| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    std::thread::spawn(|| EventBus::global().emit(Tock))
        .join()
        .expect("thread");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert!(
        EventBus::install_global(EventBus::new()).is_err(),
        "already initialised"
    );
}

#[test]
fn a_route_on_one_bus_does_not_change_another_bus_even_after_it_is_dropped() {
    let plain = bus();
    let (seen_on_plain, _plain_sub) = counter(&plain);
    {
        let other = bus();
        let (seen_on_other, _other_sub) = counter(&other);
        plain.emit(Tick { n: 1 });
        other.emit(Tick { n: 1 });
        assert_eq!(seen_on_other.load(Ordering::Relaxed), 1);
        // `other` and its subscription are dropped here, route table and all.
    }
    plain.emit(Tick { n: 2 });
    assert_eq!(seen_on_plain.load(Ordering::Relaxed), 2);
    drop(_plain_sub);
    assert_eq!(plain.emit(Tick { n: 3 }).delivered(), 0);
}

#[test]
fn filters_pick_events_by_fields_source_and_metadata() {
    let bus = bus();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut subs = Vec::new();
    type Filter = fn(&Tick, &EventContext) -> bool;
    let filters: [(&'static str, Filter); 3] = [
        ("even", |t, _| t.n % 2 == 0),
        ("from scheduler", |_, ctx| ctx.source() == "scheduler"),
        ("tenant a", |_, ctx| {
            ctx.metadata().get("tenant") == Some("a")
        }),
    ];
    for (name, filter) in filters {
        let s = Arc::clone(&seen);
        subs.push(bus.subscribe_filtered(
            SubscribeOptions::new().name(name),
            filter,
            move |t: &Tick, _: &EventContext| s.lock().expect("seen").push((name, t.n)),
        ));
    }
    assert_eq!(
        bus.emit(Tick { n: 1 }).delivered(),
        0,
        "rejected events are not counted"
    );
    assert_eq!(bus.emit(Tick { n: 2 }).delivered(), 1);
    let options = EmitOptions::new()
        .source("scheduler")
        .metadata("tenant", "a");
    assert_eq!(bus.emit_with(Tick { n: 3 }, options).delivered(), 2);
    assert_eq!(
        *seen.lock().expect("seen"),
        [("even", 2), ("from scheduler", 3), ("tenant a", 3)]
    );
}

/// What each emit ran, in order, and which handlers failed.
fn ran(
    bus: &EventBus,
    log: &Mutex<Vec<&'static str>>,
    tick: Tick,
) -> (Vec<&'static str>, Vec<String>) {
    let report = bus.emit(tick);
    let failed = report
        .failures()
        .iter()
        .map(|f| f.handler().to_owned())
        .collect();
    (std::mem::take(&mut *log.lock().expect("log")), failed)
}

#[test]
fn plain_closures_keep_order_and_failures_as_filtered_and_erased_ones_come_and_go() {
    let bus = bus();
    let log = Arc::new(Mutex::new(Vec::new()));
    let plain = |name: &'static str, priority: i32| {
        let log = Arc::clone(&log);
        bus.subscribe_with(
            SubscribeOptions::new().name(name).priority(priority),
            move |t: &Tick, _: &EventContext| {
                log.lock().expect("log").push(name);
                match t.n {
                    13 if name == "second" => panic!("unlucky"),
                    7 if name == "third" => Err("seven".to_owned()),
                    _ => Ok(()),
                }
            },
        )
    };
    let _third = plain("third", 1);
    let _first = plain("first", 3);
    let _second = plain("second", 2);
    let all = vec!["first", "second", "third"];
    assert_eq!(ran(&bus, &log, Tick { n: 1 }), (all.clone(), vec![]));
    assert_eq!(
        ran(&bus, &log, Tick { n: 13 }),
        (all.clone(), vec!["second".to_owned()])
    );
    assert_eq!(
        ran(&bus, &log, Tick { n: 7 }),
        (all.clone(), vec!["third".to_owned()])
    );

    // A filtered subscription between them, then a type-erased one.
    let l = Arc::clone(&log);
    let even = bus.subscribe_filtered(
        SubscribeOptions::new().name("even").priority(2),
        |t: &Tick, _: &EventContext| t.n.is_multiple_of(2),
        move |_: &Tick, _: &EventContext| l.lock().expect("log").push("even"),
    );
    let l = Arc::clone(&log);
    let any = bus.subscribe_any_with(
        SubscribeOptions::new().name("any").priority(-1),
        sbox_events::EventSelector::names(["test.tick"]).expect("a known event"),
        move |_: &sbox_events::AnyEvent, _: &EventContext| l.lock().expect("log").push("any"),
    );
    assert_eq!(
        ran(&bus, &log, Tick { n: 2 }),
        (vec!["first", "second", "even", "third", "any"], vec![])
    );
    assert_eq!(
        ran(&bus, &log, Tick { n: 13 }),
        (
            vec!["first", "second", "third", "any"],
            vec!["second".to_owned()]
        )
    );
    drop((even, any));

    // Plain closures alone again.
    assert_eq!(
        ran(&bus, &log, Tick { n: 7 }),
        (all.clone(), vec!["third".to_owned()])
    );
    drop(_first);
    assert_eq!(
        ran(&bus, &log, Tick { n: 13 }),
        (vec!["second", "third"], vec!["second".to_owned()])
    );
}

#[test]
fn handler_statistics_count_a_route_of_plain_closures_alone() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .error_events(false)
        .handler_stats(true)
        .build()
        .unwrap();
    let _quiet = bus.subscribe_with(
        SubscribeOptions::new().name("quiet"),
        |_: &Tick, _: &EventContext| {},
    );
    let _odd = bus.subscribe_with(
        SubscribeOptions::new().name("odd"),
        |t: &Tick, _: &EventContext| match t.n % 2 {
            1 => Err("odd"),
            _ => Ok(()),
        },
    );
    for n in 0..5 {
        bus.emit(Tick { n });
    }
    let stats = bus.handler_stats();
    let counts = |name: &str| {
        let s = stats
            .iter()
            .find(|s| s.handler == name)
            .unwrap_or_else(|| panic!("no stats for {name}: {stats:#?}"));
        (s.calls, s.errors)
    };
    assert_eq!((counts("quiet"), counts("odd")), ((5, 0), (5, 2)));
}

#[test]
fn a_panicking_filter_is_the_subscriptions_failure() {
    let bus = bus();
    let _sub = bus.subscribe_filtered(
        SubscribeOptions::new().name("picky"),
        |t: &Tick, _: &EventContext| {
            if t.n == 13 {
                panic!("unlucky filter")
            } else {
                true
            }
        },
        |_: &Tick, _: &EventContext| {},
    );
    let report = bus.emit(Tick { n: 13 });
    assert_eq!(report.failures()[0].handler(), "picky");
    assert_eq!(report.failures()[0].message(), "unlucky filter");
    assert!(bus.emit(Tick { n: 1 }).is_ok());
}

#[test]
fn erased_subscriptions_take_filters_too() {
    let bus = bus();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let _sub = bus.subscribe_any_filtered(
        SubscribeOptions::new(),
        sbox_events::EventSelector::pattern("test.*").expect("valid"),
        |e: &sbox_events::AnyEvent, _: &EventContext| {
            e.downcast_ref::<Tick>().is_some_and(|t| t.n > 5)
        },
        move |e: &sbox_events::AnyEvent, _: &EventContext| s.lock().expect("seen").push(e.name()),
    );
    bus.emit(Tick { n: 1 });
    bus.emit(Tick { n: 6 });
    assert_eq!(bus.emit(Tock).delivered(), 0);
    assert_eq!(*seen.lock().expect("seen"), ["test.tick"]);
}

// No user code runs under a bus lock: a closure's captures may themselves
// hold subscriptions of the same bus, or subscribe while being dropped.

const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(30);

#[test]
fn dropping_a_subscription_that_owns_another_subscription_returns() {
    let bus = bus();
    let (count, inner) = counter(&bus);
    let outer = bus.subscribe(move |_: &Tock, _: &EventContext| {
        let _keep = &inner;
    });
    let emitter = bus.clone();
    sbox_events_tests::within(WATCHDOG, "dropping the outer subscription", move || {
        drop(outer);
        // The inner subscription went with the outer closure.
        assert_eq!(emitter.emit(Tick { n: 1 }).delivered(), 0);
        assert_eq!(emitter.emit(Tock).delivered(), 0);
    });
    assert_eq!(count.load(Ordering::Relaxed), 0);
}

#[test]
fn dropping_an_erased_subscription_that_owns_another_subscription_returns() {
    let bus = bus();
    let (_count, inner) = counter(&bus);
    let outer = bus.subscribe_any(
        sbox_events::EventSelector::names(["test.tock"]).expect("linked"),
        move |_: &sbox_events::AnyEvent, _: &EventContext| {
            let _keep = &inner;
        },
    );
    let emitter = bus.clone();
    sbox_events_tests::within(WATCHDOG, "dropping the erased subscription", move || {
        drop(outer);
        assert_eq!(emitter.emit(Tick { n: 1 }).delivered(), 0);
        assert_eq!(emitter.emit(Tock).delivered(), 0);
    });
}

/// Subscribes to its bus when dropped.
struct SubscribesOnDrop {
    bus: EventBus,
    made: Arc<Mutex<Option<sbox_events::Subscription>>>,
}

impl Drop for SubscribesOnDrop {
    fn drop(&mut self) {
        let sub = self.bus.subscribe(|_: &Tock, _: &EventContext| {});
        *self.made.lock().expect("slot") = Some(sub);
    }
}

#[test]
fn a_closure_whose_captures_subscribe_on_drop_can_be_unsubscribed() {
    let bus = bus();
    let made = Arc::new(Mutex::new(None));
    // The capture holds a clone of the bus (a deliberate cycle, broken when
    // the subscription is dropped).
    let capture = SubscribesOnDrop {
        bus: bus.clone(),
        made: Arc::clone(&made),
    };
    let sub = bus.subscribe(move |_: &Tick, _: &EventContext| {
        let _keep = &capture;
    });
    let emitter = bus.clone();
    sbox_events_tests::within(WATCHDOG, "dropping the subscription", move || {
        drop(sub);
        assert_eq!(emitter.emit(Tock).delivered(), 1, "subscribed from Drop");
    });
    drop(made.lock().expect("slot").take());
    assert_eq!(bus.emit(Tock).delivered(), 0);
}
