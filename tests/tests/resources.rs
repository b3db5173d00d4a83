//! Handlers with application state: `#[handler]`s taking resources the bus
//! holds, checked when the bus is built, shared by sync and async handlers
//! on every thread, replaced by test doubles in unit tests, and reported
//! (never silent) on a bus that lacks them.

use sbox_events::history::HistoryQuery;
use sbox_events::{
    EmitOptions, Event, EventBus, EventContext, SkipReason, handler, trace::TraceIdFormat,
};
use sbox_events_tests::CapturedLogs;
use sbox_events_tests::exec::block_on;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "state.config_built")]
pub struct ConfigBuilt {
    pub name: String,
    pub bytes: u64,
}

/// Application state: bytes seen, by any handler on any thread.
#[derive(Default)]
pub struct Counter(AtomicU64);

/// The loaded configuration.
pub struct AppConfig {
    pub bucket: String,
}

/// Where configs go: a trait, so tests hand in a double.
pub trait ConfigStore: Send + Sync {
    fn put(&self, key: &str, bytes: u64) -> Result<(), String>;
}

#[handler(priority = 5)]
fn count(event: &ConfigBuilt, ctx: &EventContext, counter: &Counter) {
    assert_eq!(ctx.name(), "state.config_built");
    counter.0.fetch_add(event.bytes, Ordering::Relaxed);
}

#[handler]
async fn count_async(event: &ConfigBuilt, counter: &Counter) {
    sbox_events_tests::exec::yield_now().await;
    counter.0.fetch_add(event.bytes, Ordering::Relaxed);
}

#[handler(name = "store")]
fn store(event: &ConfigBuilt, store: &dyn ConfigStore, config: &AppConfig) -> Result<(), String> {
    store.put(&format!("{}/{}", config.bucket, event.name), event.bytes)
}

/// A test double: remembers what was put.
#[derive(Default)]
struct FakeStore(Mutex<Vec<(String, u64)>>);

impl ConfigStore for FakeStore {
    fn put(&self, key: &str, bytes: u64) -> Result<(), String> {
        self.0.lock().unwrap().push((key.to_owned(), bytes));
        Ok(())
    }
}

fn config(name: &str) -> ConfigBuilt {
    ConfigBuilt {
        name: name.into(),
        bytes: 10,
    }
}

/// A bus with every resource this binary's handlers take.
fn full_bus() -> (EventBus, Arc<FakeStore>) {
    let fake = Arc::new(FakeStore::default());
    let bus = EventBus::builder()
        .resource(Counter::default())
        .resource(AppConfig {
            bucket: "configs".into(),
        })
        .shared_resource::<dyn ConfigStore>(fake.clone())
        .history(1 << 20)
        .build()
        .expect("every resource is there");
    (bus, fake)
}

#[test]
fn the_build_fails_listing_every_missing_resource_at_once() {
    let err = EventBus::builder()
        .resource(Counter::default())
        .build()
        .expect_err("two resources are missing");
    let mut missing: Vec<(String, &str)> = err
        .missing
        .iter()
        .map(|m| (m.handler.clone(), m.resource))
        .collect();
    missing.sort();
    assert_eq!(
        missing,
        [
            ("store".to_owned(), "dyn resources::ConfigStore"),
            ("store".to_owned(), "resources::AppConfig"),
        ]
    );
    let text = err.to_string();
    assert!(
        text.starts_with("2 handler resource(s) missing: "),
        "{text}"
    );
    assert!(
        text.contains(
            "`store` (crate resources, on state.config_built) takes `&resources::AppConfig`"
        ),
        "{text}"
    );

    // Disabling the handler lifts its requirements.
    let bus = EventBus::builder()
        .resource(Counter::default())
        .disable_handler("store")
        .build()
        .expect("builds without `store`");
    assert!(!bus.is_handler_enabled("store"));

    // A name no handler has is an error too, not silence.
    let err = EventBus::builder()
        .static_handlers(false)
        .enable_handler("no_such::handler")
        .build()
        .expect_err("unknown name");
    assert_eq!(err.unknown_handlers, ["no_such::handler"]);
}

#[test]
fn sync_and_async_handlers_share_resources_across_threads() {
    let (bus, fake) = full_bus();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let bus = &bus;
            scope.spawn(move || {
                for i in 0..50 {
                    let report = block_on(bus.emit_async(config(&format!("t{thread}-{i}"))));
                    assert!(report.is_ok(), "{report}");
                }
            });
        }
    });
    let counter = bus.resource::<Counter>().expect("held");
    // 200 emits, each counted by the sync and the async handler.
    assert_eq!(counter.0.load(Ordering::Relaxed), 200 * 10 * 2);
    assert_eq!(fake.0.lock().unwrap().len(), 200);
    let handlers = bus.handlers::<ConfigBuilt>();
    let store = handlers.iter().find(|h| h.name() == "store").unwrap();
    assert_eq!(
        store.resources().collect::<Vec<_>>(),
        ["dyn resources::ConfigStore", "resources::AppConfig"]
    );
    assert!(store.missing_resources().is_empty());
}

#[test]
fn replay_and_emit_async_see_the_same_resources() {
    let (bus, fake) = full_bus();
    bus.emit(config("original"));
    let records = bus.history().unwrap().query(&HistoryQuery::new());
    let replayed = bus.replay(&records);
    assert_eq!(replayed.reports().len(), 1);
    block_on(bus.emit_async(config("awaited")));
    let keys: Vec<String> = fake
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        keys,
        ["configs/original", "configs/original", "configs/awaited"]
    );
}

#[test]
fn one_handler_unit_tested_against_a_test_double() {
    // Only `store` runs, with a double for its storage.
    let fake = Arc::new(FakeStore::default());
    let bus = EventBus::builder()
        .static_handlers(false)
        .enable_handler("store")
        .shared_resource::<dyn ConfigStore>(fake.clone())
        .resource(AppConfig {
            bucket: "test".into(),
        })
        .build()
        .expect("store's resources are given");
    let report = bus.emit(config("unit"));
    assert_eq!(report.delivered(), 1, "{report}");
    assert!(report.is_ok(), "{report}");
    assert_eq!(*fake.0.lock().unwrap(), [("test/unit".to_owned(), 10)]);
    let names: Vec<String> = bus
        .handlers::<ConfigBuilt>()
        .iter()
        .map(|h| h.name().to_owned())
        .collect();
    assert_eq!(names, ["store"]);
}

#[test]
fn a_default_bus_skips_and_reports_handlers_whose_resources_it_lacks() {
    let captured = CapturedLogs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .event_format(TraceIdFormat::new(tracing_subscriber::fmt::format()))
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let bus = EventBus::new(); // never fails
        for _ in 0..3 {
            let report = bus.emit_with(config("x"), EmitOptions::new());
            let skips: Vec<(String, SkipReason)> = report
                .skips()
                .map(|(name, reason)| (name.to_owned(), reason))
                .collect();
            assert_eq!(report.delivered(), 0, "{report}");
            assert!(
                skips.contains(&(
                    "store".to_owned(),
                    SkipReason::MissingResource {
                        type_name: "dyn resources::ConfigStore"
                    }
                )),
                "{skips:?}"
            );
            assert!(report.to_string().contains("the bus has no `"), "{report}");
        }
        let handlers = bus.handlers::<ConfigBuilt>();
        let store = handlers.iter().find(|h| h.name() == "store").unwrap();
        assert_eq!(
            store.missing_resources(),
            ["dyn resources::ConfigStore", "resources::AppConfig"]
        );
    });
    let logs = captured.text();
    let warnings = logs
        .lines()
        .filter(|l| l.contains("handler skipped: the bus has no"))
        .count();
    // Once per handler (count, count_async's sync stand-in is async-skipped,
    // and store), not once per emit.
    assert_eq!(warnings, 2, "{logs}");
}
