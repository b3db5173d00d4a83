//! What `emit_async` allocates, counted (deterministic): nothing of its own,
//! and one boxed future per async handler call, with or without a `tracing`
//! subscriber. The future is polled with a no-op waker, so the executor
//! allocates nothing either.

use sbox_events::{Event, EventBus, EventContext, handler};
use sbox_events_tests::alloc::{self, Counting};
use sbox_events_tests::exec::poll_once;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::task::Poll;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "alloc.sync_only")]
struct SyncOnly(u64);

#[handler]
fn sync_only(event: &SyncOnly) {
    std::hint::black_box(event.0);
}

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "alloc.two_async")]
struct TwoAsync(u64);

#[handler]
async fn first_async(event: &TwoAsync) {
    std::hint::black_box(event.0);
}

#[handler]
async fn second_async(event: &TwoAsync, ctx: &EventContext<'_>) {
    std::hint::black_box((event.0, ctx.depth()));
}

const EMITS: u64 = 1_000;

fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(value) = poll_once(future.as_mut()) {
            return value;
        }
    }
}

/// Allocations per `emit_async` of `event` on this thread, after a warm-up.
fn allocations_per_emit<E: Event + Clone>(bus: &EventBus, event: &E) -> f64 {
    for _ in 0..100 {
        run_now(bus.emit_async(event.clone()));
    }
    let before = alloc::allocations_on_this_thread();
    for _ in 0..EMITS {
        std::hint::black_box(run_now(bus.emit_async(event.clone())));
    }
    (alloc::allocations_on_this_thread() - before) as f64 / EMITS as f64
}

#[test]
fn emit_async_allocates_one_boxed_future_per_async_handler_and_nothing_else() {
    let bus = EventBus::new();
    let _closure = bus.subscribe_async(|e: &SyncOnly, _: &EventContext| {
        let value = e.0;
        async move {
            std::hint::black_box(value);
        }
    });
    let check = |bus: &EventBus, with: &str| {
        assert_eq!(
            allocations_per_emit(bus, &TwoAsync(1)),
            2.0,
            "two async #[handler]s, {with}"
        );
        assert_eq!(
            allocations_per_emit(bus, &SyncOnly(1)),
            1.0,
            "a sync #[handler] and an async subscription, {with}"
        );
    };
    check(&bus, "no tracing subscriber");
    let plain = EventBus::builder().build().unwrap();
    assert_eq!(
        allocations_per_emit(&plain, &SyncOnly(1)),
        0.0,
        "only a sync #[handler]: nothing"
    );
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    )
    .expect("the only subscriber of this binary");
    check(&bus, "with a tracing subscriber at INFO");
}
