//! A resource whose `Drop` panics: released in isolation by the builder
//! (a replaced one, a bus not built) and by the bus's drop, and logged
//! there. A binary of its own: it reads what is logged through a scoped
//! `tracing` subscriber, which tests running beside it on other threads
//! could disturb.

use sbox_events::events::ErrorOccurred;
use sbox_events::{Event, EventBus, EventContext};
use serde::{Deserialize, Serialize};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "resource_drops.job")]
struct Job {
    id: u32,
}

#[test]
fn a_resource_whose_drop_panics_escapes_neither_the_builder_nor_the_bus_drop() {
    let captured = sbox_events_tests::CapturedLogs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let bus = catch_unwind(|| {
            EventBus::builder()
                .static_handlers(false)
                .resource(PanicOnDrop("replaced resource dropped"))
                .resource(PanicOnDrop("resource dropped with the bus"))
                .build()
                .unwrap()
        })
        .expect("replacing a resource drops the old one in isolation");
        // Logged by the builder: not left for another bus's next emit.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        let _errors = bus.subscribe(move |e: &ErrorOccurred, _: &EventContext| {
            sink.lock().unwrap().push(e.error.clone());
        });
        bus.emit(Job { id: 1 });
        assert!(errors.lock().unwrap().is_empty());
        drop(_errors);
        assert!(catch_unwind(AssertUnwindSafe(move || drop(bus))).is_ok());
        // A failed build releases its resources too.
        let failed = catch_unwind(|| {
            EventBus::builder()
                .resource(PanicOnDrop("resource of a bus not built"))
                .enable_handler("no such handler")
                .build()
        })
        .expect("a failed build drops its resources in isolation");
        assert!(failed.is_err());
    });
    let logs = captured.text();
    for message in [
        "replaced resource dropped",
        "resource dropped with the bus",
        "resource of a bus not built",
    ] {
        assert!(logs.contains(message), "{message} not logged: {logs}");
    }
}
