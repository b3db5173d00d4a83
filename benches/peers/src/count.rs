//! `PEERS_COUNT=<scenario> PEERS_EVENTS=<n>`: one scenario run once, for
//! instruction counting under callgrind (`scripts/instructions.sh`).

use super::*;
use futures_core::Stream;
use sbox_events::stream::Overflow;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Runs `scenario` with `events` events.
pub(crate) fn count_instructions(scenario: &str, events: u64) {
    let event_one = One(7);
    let event_ten = Ten(7);
    let closure = Closure(7);
    let bus = EventBus::new();
    let event_none = None0(7);
    let event_resource = WithResource(7);
    let resourced = builder().build().unwrap();
    let closures1 = EventBus::builder().static_handlers(false).build().unwrap();
    let _c1 = closures1.subscribe(|e: &Closure, _: &EventContext| sink(e.0));
    let closures10 = EventBus::builder().static_handlers(false).build().unwrap();
    let _c10: Vec<_> = (0..10)
        .map(|_| closures10.subscribe(|e: &Closure, _: &EventContext| sink(e.0)))
        .collect();
    let history = builder().history(8 << 20).build().unwrap();
    let streams = EventBus::builder().static_handlers(false).build().unwrap();
    let mut stream = streams.subscribe_stream::<Streamed>(1024, Overflow::DropOldest);
    let streamed = Streamed(7);
    let (sender, mut receiver) = tokio::sync::broadcast::channel::<Streamed>(1024);
    let mut cx = Context::from_waker(Waker::noop());
    let event_async = Async1(7);
    let boxed: [fn(&Async1) -> BoxedFuture<'_>; 1] = black_box([boxed_one]);
    let mut world = evenio::prelude::World::new();
    let handlers = match scenario {
        "evenio0" => 0,
        "evenio10" => 10,
        _ => 1,
    };
    add_evenio_handlers(&mut world, handlers);
    let mut bevy_world = bevy_ecs::world::World::new();
    if scenario == "bevy1" {
        bevy_world.add_observer(|e: bevy_ecs::observer::On<BevyEvent>| sink(e.0));
    }
    bevy_world.flush();
    match scenario {
        "floor1" => (0..events).for_each(|i| sink(black_box(i))),
        "sbox0" => (0..events).for_each(|_| {
            black_box(bus.emit_ref(black_box(&event_none)));
        }),
        "sboxres1" => (0..events).for_each(|_| {
            black_box(resourced.emit_ref(black_box(&event_resource)));
        }),
        "sbox1" => (0..events).for_each(|_| {
            black_box(bus.emit_ref(black_box(&event_one)));
        }),
        "sbox10" => (0..events).for_each(|_| {
            black_box(bus.emit_ref(black_box(&event_ten)));
        }),
        "closure1" => (0..events).for_each(|_| {
            black_box(closures1.emit_ref(black_box(&closure)));
        }),
        "closure10" => (0..events).for_each(|_| {
            black_box(closures10.emit_ref(black_box(&closure)));
        }),
        "evenio0" | "evenio1" | "evenio10" => {
            (0..events).for_each(|i| world.send(EvenioEvent(black_box(i))))
        }
        "bevy0" | "bevy1" => (0..events).for_each(|i| bevy_world.trigger(BevyEvent(black_box(i)))),
        "history1" => (0..events).for_each(|_| {
            black_box(history.emit_ref(black_box(&event_one)));
        }),
        "stream1" => (0..events).for_each(|_| {
            black_box(streams.emit_ref(black_box(&streamed)));
            match Pin::new(&mut stream).poll_next(&mut cx) {
                Poll::Ready(Some(item)) => drop(black_box(item)),
                _ => unreachable!("the event just emitted is there"),
            }
        }),
        "broadcast1" => (0..events).for_each(|_| {
            let _ = black_box(sender.send(black_box(streamed.clone())));
            black_box(receiver.try_recv().ok());
        }),
        "async1" => (0..events).for_each(|_| {
            black_box(run_now(bus.emit_async(black_box(&event_async).clone())));
        }),
        "asyncfloor1" => (0..events).for_each(|_| {
            let event = black_box(&event_async).clone();
            run_now(async {
                for handler in black_box(&boxed) {
                    let _ = black_box(handler(&event).await);
                }
            });
        }),
        other => panic!("unknown scenario {other:?}"),
    }
}
