//! What each handler did with an event: [`HandlerRun`], kept by the
//! history when the bus's flight recorder is on
//! ([`EventBusBuilder::flight_recorder`](crate::EventBusBuilder::flight_recorder)),
//! and what trace trees and their pictures are drawn from
//! ([`History::tree`](crate::history::History::tree)).
//!
//! ```
//! # #[cfg(feature = "history")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use serde::{Deserialize, Serialize};
//! use sbox_events::flight::RunOutcome;
//! use sbox_events::{Event, EventBus, EventContext};
//!
//! #[derive(Event, Serialize, Deserialize)]
//! #[event(name = "demo.built")]
//! struct ConfigBuilt { servers: u32 }
//!
//! let bus = EventBus::builder()
//!     .history(1 << 20)
//!     .flight_recorder(true)
//!     .static_handlers(false)
//!     .build()?;
//! bus.subscribe(|_: &ConfigBuilt, _: &EventContext| Err::<(), _>("disk full"))
//!     .detach();
//! bus.emit(ConfigBuilt { servers: 3 });
//! let records = bus.history().unwrap().query(&Default::default());
//! let run = &records[0].handlers()[0];
//! assert_eq!(run.outcome(), &RunOutcome::Error { message: "disk full".into() });
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "history"))]
//! # fn main() {}
//! ```

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One handler's call for one event: who, how it ended, when it started,
/// how long it took, on which thread.
///
/// For an async handler (run by [`emit_async`](crate::EventBus::emit_async))
/// the duration runs from its first poll to its completion, awaits
/// included; the thread is the one of its first poll.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandlerRun {
    pub(crate) handler: Cow<'static, str>,
    #[serde(flatten)]
    pub(crate) outcome: RunOutcome,
    #[serde(rename = "started_ns", with = "nanos")]
    pub(crate) started: SystemTime,
    #[serde(rename = "duration_ns", with = "duration_nanos")]
    pub(crate) duration: Duration,
    pub(crate) thread: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) thread_name: Option<Arc<str>>,
}

impl HandlerRun {
    /// The handler's name (a `#[handler]`'s path, a subscription's name).
    pub fn handler(&self) -> &str {
        &self.handler
    }

    /// How the call ended.
    pub fn outcome(&self) -> &RunOutcome {
        &self.outcome
    }

    /// When the call started (wall clock).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// How long the call took.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The thread it ran on: a number given to each thread of the process
    /// the first time it runs a handler with the flight recorder on (1 for
    /// the first such thread), stable for the thread's life.
    pub fn thread(&self) -> u64 {
        self.thread
    }

    /// The thread's name, if it has one (`main`, a pool's worker name).
    pub fn thread_name(&self) -> Option<&str> {
        self.thread_name.as_deref()
    }
}

/// How a handler's call ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunOutcome {
    /// It returned `Ok`.
    Ok,
    /// It returned `Err`.
    Error {
        /// The error's message.
        message: String,
    },
    /// It panicked (and the bus caught it).
    Panic {
        /// The panic's message.
        message: String,
    },
    /// It was not called: an async handler in a synchronous emit, or a
    /// `#[handler]` whose resource the bus lacks.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Its subscription's filter turned the event down.
    Filtered,
}

impl RunOutcome {
    /// `ok`, `error`, `panic`, `skipped` or `filtered`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Error { .. } => "error",
            RunOutcome::Panic { .. } => "panic",
            RunOutcome::Skipped { .. } => "skipped",
            RunOutcome::Filtered => "filtered",
        }
    }

    /// The error or panic message, or why it was skipped.
    pub fn message(&self) -> Option<&str> {
        match self {
            RunOutcome::Error { message } | RunOutcome::Panic { message } => Some(message),
            RunOutcome::Skipped { reason } => Some(reason),
            RunOutcome::Ok | RunOutcome::Filtered => None,
        }
    }

    /// Whether the handler failed (an error or a panic).
    pub fn is_failure(&self) -> bool {
        matches!(self, RunOutcome::Error { .. } | RunOutcome::Panic { .. })
    }
}

/// This thread's number and name, for [`HandlerRun::thread`].
pub(crate) fn this_thread() -> (u64, Option<Arc<str>>) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TAG: OnceCell<(u64, Option<Arc<str>>)> = const { OnceCell::new() };
    }
    TAG.try_with(|tag| {
        tag.get_or_init(|| {
            let name = std::thread::current().name().map(Arc::from);
            (NEXT.fetch_add(1, Ordering::Relaxed), name)
        })
        .clone()
    })
    // The thread is exiting: its tag is gone.
    .unwrap_or((0, None))
}

/// `SystemTime` as nanoseconds since 1970 (0 for earlier times).
mod nanos {
    use super::{Duration, SystemTime, UNIX_EPOCH};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        s.serialize_u64(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let nanos = u64::deserialize(d)?;
        Ok(UNIX_EPOCH + Duration::from_nanos(nanos))
    }
}

/// `Duration` as nanoseconds.
mod duration_nanos {
    use super::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_nanos(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_round_trips_through_json() {
        let run = HandlerRun {
            handler: "app::save".into(),
            outcome: RunOutcome::Error {
                message: "disk full".into(),
            },
            started: UNIX_EPOCH + Duration::new(1_764_748_800, 123_456_789),
            duration: Duration::from_micros(1500),
            thread: 2,
            thread_name: Some("main".into()),
        };
        let json = serde_json::to_string(&run).unwrap();
        assert_eq!(
            json,
            r#"{"handler":"app::save","outcome":"error","message":"disk full","started_ns":1764748800123456789,"duration_ns":1500000,"thread":2,"thread_name":"main"}"#
        );
        assert_eq!(serde_json::from_str::<HandlerRun>(&json).unwrap(), run);
    }

    #[test]
    fn threads_get_distinct_stable_numbers() {
        let here = this_thread();
        assert_eq!(this_thread(), here);
        let there = std::thread::spawn(this_thread).join().unwrap();
        assert_ne!(there.0, here.0);
    }
}
