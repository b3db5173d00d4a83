//! Failure isolation: panics and errors among good handlers, `error.occurred`,
//! the propagate policy, the depth limit, and the log lines.

use sbox_events::events::ErrorOccurred;
use sbox_events::{
    Event, EventBus, EventContext, FailureKind, FailurePolicy, Refusal, SubscribeOptions, trace,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.job_done")]
struct JobDone {
    id: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test.echo")]
struct Echo {
    hops: u32,
}

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, line: impl Into<String>) {
    log.lock().expect("log").push(line.into());
}

/// A bus with a good, an `Err`, a panicking and another good handler.
fn troubled_bus(policy: FailurePolicy) -> (EventBus, Log, Vec<sbox_events::Subscription>) {
    let bus = EventBus::builder()
        .static_handlers(false)
        .failure_policy(policy)
        .build()
        .unwrap();
    let log: Log = Arc::default();
    let mut subs = Vec::new();
    let l = Arc::clone(&log);
    subs.push(bus.subscribe_with(
        SubscribeOptions::new().name("first").priority(3),
        move |_: &JobDone, _: &EventContext| {
            push(&l, "first");
        },
    ));
    let l = Arc::clone(&log);
    subs.push(bus.subscribe_with(
        SubscribeOptions::new().name("erring").priority(2),
        move |job: &JobDone, _: &EventContext| {
            push(&l, "erring");
            Err(format!("job {} has no owner", job.id))
        },
    ));
    let l = Arc::clone(&log);
    subs.push(bus.subscribe_with(
        SubscribeOptions::new().name("panicking").priority(1),
        move |_: &JobDone, _: &EventContext| {
            push(&l, "panicking");
            panic!("disk on fire");
        },
    ));
    let l = Arc::clone(&log);
    subs.push(bus.subscribe_with(
        SubscribeOptions::new().name("last"),
        move |_: &JobDone, _: &EventContext| {
            push(&l, "last");
        },
    ));
    (bus, log, subs)
}

#[test]
fn failures_are_isolated_and_reported() {
    let (bus, log, _subs) = troubled_bus(FailurePolicy::Isolate);
    let report = bus.emit(JobDone { id: 7 });
    assert_eq!(
        *log.lock().expect("log"),
        ["first", "erring", "panicking", "last"]
    );
    assert_eq!((report.delivered(), report.succeeded()), (4, 2));
    assert!(!report.is_ok());
    let failures = report.failures();
    assert_eq!(failures.len(), 2);
    assert_eq!(
        (failures[0].handler(), failures[0].kind()),
        ("erring", FailureKind::Error)
    );
    assert_eq!(failures[0].message(), "job 7 has no owner");
    assert_eq!(failures[0].error_type(), "alloc::string::String");
    assert_eq!(
        (failures[1].handler(), failures[1].kind()),
        ("panicking", FailureKind::Panic)
    );
    assert_eq!(failures[1].message(), "disk on fire");
    assert_eq!(failures[1].event(), "test.job_done");
    assert_eq!(
        report.to_string(),
        "`test.job_done` delivered to 4 handler(s), 2 failed; \
         handler `erring` failed on `test.job_done`: job 7 has no owner; \
         handler `panicking` panicked on `test.job_done`: disk on fire"
    );
}

#[test]
fn each_failure_is_emitted_as_error_occurred_in_the_same_trace() {
    let (bus, _log, _subs) = troubled_bus(FailurePolicy::Isolate);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&errors);
    let _on_error = bus.subscribe(move |err: &ErrorOccurred, ctx: &EventContext| {
        e.lock().expect("errors").push((
            err.clone(),
            ctx.trace_id(),
            ctx.depth(),
            ctx.source().to_owned(),
        ));
    });
    let report = bus.emit(JobDone { id: 1 });
    let errors = errors.lock().expect("errors");
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors[0].0,
        ErrorOccurred {
            error: "job 1 has no owner".into(),
            error_type: "alloc::string::String".into(),
            event: "test.job_done".into(),
            handler: "erring".into(),
        }
    );
    assert_eq!(
        (
            errors[1].0.error_type.as_str(),
            errors[1].0.handler.as_str()
        ),
        ("panic", "panicking")
    );
    for (_, trace_id, depth, source) in errors.iter() {
        assert_eq!(*trace_id, report.trace_id());
        assert_eq!(*depth, 1, "delivered as a nested event");
        assert_eq!(source, "event_bus");
    }
}

#[test]
fn a_failing_error_handler_does_not_loop() {
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let calls = Arc::new(Mutex::new(0));
    let c = Arc::clone(&calls);
    let _bad = bus.subscribe(move |_: &ErrorOccurred, _: &EventContext| {
        *c.lock().expect("calls") += 1;
        panic!("the error handler is broken too");
    });
    let _job = bus.subscribe(|_: &JobDone, _: &EventContext| Err::<(), _>("nope"));
    let report = bus.emit(JobDone { id: 1 });
    assert_eq!(report.failures().len(), 1);
    assert_eq!(
        *calls.lock().expect("calls"),
        1,
        "one error.occurred, not a loop"
    );

    // A failure while handling an error.occurred the application emitted
    // itself is reported, and emits no further error.occurred either.
    let report = bus.emit(ErrorOccurred {
        error: "x".into(),
        error_type: "app".into(),
        event: String::new(),
        handler: "main".into(),
    });
    assert_eq!(report.failures().len(), 1);
    assert_eq!(
        *calls.lock().expect("calls"),
        2,
        "the application's error.occurred was handled once, and nothing followed"
    );
}

#[test]
fn a_failure_nested_inside_an_error_handler_emits_no_error_event() {
    // The error handler emits another event whose handler fails: still part
    // of handling error.occurred, so no second error.occurred.
    let bus = EventBus::builder().static_handlers(false).build().unwrap();
    let calls = Arc::new(Mutex::new(0));
    let c = Arc::clone(&calls);
    let _on_error = bus.subscribe(move |_: &ErrorOccurred, ctx: &EventContext| {
        *c.lock().expect("calls") += 1;
        ctx.bus().emit(Echo { hops: 0 });
    });
    let _echo = bus.subscribe(|_: &Echo, _: &EventContext| Err::<(), _>("echo failed"));
    let report = bus.emit(ErrorOccurred {
        error: "x".into(),
        error_type: "app".into(),
        event: String::new(),
        handler: "main".into(),
    });
    assert!(report.is_ok(), "{report}");
    assert_eq!(*calls.lock().expect("calls"), 1);
}

/// A panic payload whose own `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload exploded while being dropped");
    }
}

#[test]
fn a_panic_payload_that_panics_when_dropped_does_not_escape_emit() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .error_events(false)
        .build()
        .unwrap();
    let after = Arc::new(Mutex::new(0));
    let a = Arc::clone(&after);
    let _bomb = bus.subscribe_with(
        SubscribeOptions::new().name("bomb").priority(1),
        |_: &JobDone, _: &EventContext| std::panic::panic_any(Bomb),
    );
    let _later = bus.subscribe(move |_: &JobDone, _: &EventContext| {
        *a.lock().expect("after") += 1;
    });
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bus.emit(JobDone { id: 1 })));
    let report = caught.expect("emit returned a report instead of unwinding");
    assert_eq!(report.delivered(), 2);
    assert_eq!(report.failures().len(), 1);
    assert_eq!(report.failures()[0].handler(), "bomb");
    assert_eq!(report.failures()[0].kind(), FailureKind::Panic);
    assert_eq!(*after.lock().expect("after"), 1, "the later handler ran");
}

#[test]
fn error_events_can_be_switched_off() {
    let bus = EventBus::builder()
        .static_handlers(false)
        .error_events(false)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(0));
    let s = Arc::clone(&seen);
    let _on_error =
        bus.subscribe(move |_: &ErrorOccurred, _: &EventContext| *s.lock().expect("seen") += 1);
    let _job = bus.subscribe(|_: &JobDone, _: &EventContext| Err::<(), _>("nope"));
    assert_eq!(bus.emit(JobDone { id: 1 }).failures().len(), 1);
    assert_eq!(*seen.lock().expect("seen"), 0);
}

#[test]
#[should_panic(expected = "disk on fire")]
fn propagate_resumes_a_panic_with_its_payload() {
    let (bus, _log, mut subs) = troubled_bus(FailurePolicy::Propagate);
    drop(subs.remove(1)); // remove "erring" so the panic comes first
    bus.emit(JobDone { id: 1 });
}

#[test]
fn propagate_turns_an_error_into_a_panic_and_restores_thread_state() {
    let (bus, log, _subs) = troubled_bus(FailurePolicy::Propagate);
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bus.emit(JobDone { id: 9 })));
    let payload = caught.expect_err("propagated");
    let message = payload.downcast_ref::<String>().expect("formatted message");
    assert_eq!(
        message,
        "handler `erring` failed on `test.job_done`: job 9 has no owner"
    );
    assert_eq!(
        *log.lock().expect("log"),
        ["first", "erring"],
        "stops at the failure"
    );
    assert_eq!(
        trace::current(),
        None,
        "the implicit trace was removed while unwinding"
    );
    let (good, _, _subs) = troubled_bus(FailurePolicy::Isolate);
    let depth_ok = good.subscribe(|_: &Echo, ctx: &EventContext| assert_eq!(ctx.depth(), 0));
    assert!(good.emit(Echo { hops: 0 }).is_ok(), "depth was restored");
    drop(depth_ok);
}

fn echo_bus(
    max_depth: u32,
) -> (
    EventBus,
    Arc<Mutex<Vec<sbox_events::EmitReport>>>,
    sbox_events::Subscription,
) {
    let bus = EventBus::builder()
        .static_handlers(false)
        .max_depth(max_depth)
        .build()
        .unwrap();
    let refused = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&refused);
    let sub = bus.subscribe(move |echo: &Echo, ctx: &EventContext| {
        let report = ctx.bus().emit(Echo {
            hops: echo.hops + 1,
        });
        if report.refused().is_some() {
            r.lock().expect("refused").push(report);
        }
    });
    (bus, refused, sub)
}

#[test]
fn a_handler_that_re_emits_forever_hits_the_depth_limit() {
    let (bus, refused, _sub) = echo_bus(sbox_events::DEFAULT_MAX_DEPTH);
    let report = bus.emit(Echo { hops: 0 });
    assert!(report.is_ok(), "the outer emit itself succeeded");
    let refused = refused.lock().expect("refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0].refused(),
        Some(&Refusal::DepthLimit {
            depth: 32,
            limit: 32
        })
    );
    assert_eq!(refused[0].delivered(), 0);
    assert_eq!(refused[0].trace_id(), report.trace_id());
    assert_eq!(
        refused[0].to_string(),
        "`test.echo` refused: an emit at nesting depth 32 is over the limit: max_depth 32 \
         allows depths 0 to 31 (does a handler re-emit in a loop?)"
    );
}

#[test]
fn the_depth_limit_is_configurable() {
    let (bus, refused, _sub) = echo_bus(3);
    bus.emit(Echo { hops: 0 });
    assert_eq!(
        refused.lock().expect("refused")[0].refused(),
        Some(&Refusal::DepthLimit { depth: 3, limit: 3 })
    );
    let (bus, _, _sub) = echo_bus(0);
    assert!(
        bus.emit(Echo { hops: 0 }).refused().is_some(),
        "0 refuses every emit"
    );
}
