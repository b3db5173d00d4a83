//! Options of a bus ([`EventBusBuilder`]) and of one emit ([`EmitOptions`]).

use super::hooks::types_with_hooks;
use super::resources::{BuildError, Held, MissingResource, index_of};
use super::routes::{Control, RouteConfig, RouteTable};
use super::table::Tables;
use super::{BusInner, EmitReport, EventBus, Recorder};
use crate::any::EventType;
use crate::envelope::{Cause, EventId, Metadata};
use crate::handler::HandlerOrigin;
use crate::trace::TraceId;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Default limit of nested emits; see [`EventBusBuilder::max_depth`].
pub const DEFAULT_MAX_DEPTH: u32 = 32;

#[derive(Clone, Copy, Debug)]
pub(super) struct Config {
    pub(super) failure_policy: FailurePolicy,
    pub(super) max_depth: u32,
    pub(super) static_handlers: bool,
    pub(super) error_events: bool,
    pub(super) handler_stats: bool,
    pub(super) validate_on_emit: bool,
    pub(super) record_replays: bool,
    pub(super) flight_recorder: bool,
}

impl Config {
    pub(super) fn routes(&self) -> RouteConfig {
        RouteConfig {
            static_handlers: self.static_handlers,
            handler_stats: self.handler_stats,
        }
    }
}

/// Options for [`EventBus::builder`].
#[derive(Clone)]
#[must_use]
pub struct EventBusBuilder {
    pub(super) config: Config,
    pub(super) recorder: Option<Arc<dyn Recorder>>,
    /// (type index, the resource as the bus holds it, the type's name).
    pub(super) resources: Vec<(usize, Held)>,
    /// `#[handler]`s enabled or disabled by name.
    pub(super) overrides: Vec<(String, bool)>,
}

impl fmt::Debug for EventBusBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBusBuilder")
            .field("config", &self.config)
            .field("recorder", &self.recorder.is_some())
            .field(
                "resources",
                &self
                    .resources
                    .iter()
                    .map(|(_, held)| held.name())
                    .collect::<Vec<_>>(),
            )
            .field("overrides", &self.overrides)
            .finish()
    }
}

impl EventBusBuilder {
    /// What a failing handler does to the emit (default: [`FailurePolicy::Isolate`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.config.failure_policy = policy;
        self
    }

    /// How many emits may be nested inside handlers before an emit is refused
    /// (default [`DEFAULT_MAX_DEPTH`]). An emit outside any handler is at
    /// depth 0, so `max_depth(1)` allows no nested emit. `0` refuses every emit.
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.config.max_depth = depth;
        self
    }

    /// Whether `#[handler]` functions run on this bus (default `true`). A bus
    /// without them runs only its subscriptions: what a test usually wants.
    pub fn static_handlers(mut self, enabled: bool) -> Self {
        self.config.static_handlers = enabled;
        self
    }

    /// Whether handler failures are emitted as [`ErrorOccurred`](crate::events::ErrorOccurred)
    /// (default `true`).
    pub fn error_events(mut self, enabled: bool) -> Self {
        self.config.error_events = enabled;
        self
    }

    /// Whether to time every handler call (default `false`); read the
    /// results with [`EventBus::handler_stats`]. See [`HandlerStats`](crate::HandlerStats) for
    /// what it costs.
    pub fn handler_stats(mut self, enabled: bool) -> Self {
        self.config.handler_stats = enabled;
        self
    }

    /// Refuse events whose [`Event::validate`](crate::Event::validate) fails (default `false`): they
    /// are not delivered, and the report says why ([`Refusal::Invalid`](crate::Refusal::Invalid)).
    /// Costs one call of the event's validation per emit when on.
    pub fn validate_on_emit(mut self, enabled: bool) -> Self {
        self.config.validate_on_emit = enabled;
        self
    }

    /// Plugs in a recorder (the history does this).
    #[cfg_attr(not(feature = "history"), allow(dead_code))]
    pub(crate) fn recorder(mut self, recorder: Arc<dyn Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Turns the flight recorder on (the history does this).
    #[cfg_attr(not(feature = "history"), allow(dead_code))]
    pub(crate) fn set_flight_recorder(mut self, enabled: bool) -> Self {
        self.config.flight_recorder = enabled;
        self
    }

    /// Record replayed events in the history too (default `false`).
    pub fn record_replays(mut self, enabled: bool) -> Self {
        self.config.record_replays = enabled;
        self
    }

    /// Does not run the `#[handler]` named `name` on this bus (see
    /// [`EventBus::disable_handler`]); it needs no resource then.
    pub fn disable_handler(mut self, name: impl Into<String>) -> Self {
        self.overrides.push((name.into(), false));
        self
    }

    /// Runs the `#[handler]` named `name` on this bus, also when the bus
    /// runs no `#[handler]`s otherwise
    /// ([`static_handlers(false)`](EventBusBuilder::static_handlers)): what
    /// a unit test of one handler does, with its resources (test doubles)
    /// given by [`resource`](EventBusBuilder::resource).
    pub fn enable_handler(mut self, name: impl Into<String>) -> Self {
        self.overrides.push((name.into(), true));
        self
    }

    /// The bus, once it is sure it can run every `#[handler]` it enables:
    /// fails, listing them all, when a handler takes a resource the bus was
    /// not given (or a handler name given to `enable_handler` /
    /// `disable_handler` belongs to no `#[handler]`).
    ///
    /// ```rust,standalone_crate
    /// use sbox_events::{handler, EventBus, events::ConfigBuilt};
    ///
    /// pub struct Storage;
    ///
    /// #[handler]
    /// fn store(_: &ConfigBuilt, _: &Storage) {}
    ///
    /// let err = EventBus::builder().build().unwrap_err();
    /// assert_eq!(err.missing[0].resource, std::any::type_name::<Storage>());
    /// assert!(err.to_string().contains("::store` (crate "), "{err}");
    ///
    /// assert!(EventBus::builder().resource(Storage).build().is_ok());
    /// let name = format!("{}::store", module_path!());
    /// assert!(EventBus::builder().disable_handler(name).build().is_ok());
    /// ```
    ///
    /// [`EventBus::new`] and [`EventBus::global`] never fail: a handler
    /// whose resource they lack is skipped (and reported) instead.
    pub fn build(self) -> Result<EventBus, BuildError> {
        let error = self.check();
        if error.missing.is_empty() && error.unknown_handlers.is_empty() {
            Ok(self.build_unchecked())
        } else {
            // Its resources are released now: a panic in one's `Drop` is
            // logged here (no bus exists to report it).
            drop(self);
            super::failures::log_release_failures();
            Err(error)
        }
    }

    /// Every enabled `#[handler]` resource this bus would lack, and every
    /// unknown handler name.
    fn check(&self) -> BuildError {
        let overrides: BTreeMap<&str, bool> = self
            .overrides
            .iter()
            .map(|(name, enabled)| (name.as_str(), *enabled))
            .collect();
        let held: Vec<usize> = self.resources.iter().map(|(index, _)| *index).collect();
        let mut missing = Vec::new();
        let mut known = BTreeSet::new();
        for event_type in EventType::all() {
            for handler in event_type.static_handlers() {
                known.insert(handler.name().to_owned());
                let enabled = overrides
                    .get(handler.name())
                    .copied()
                    .unwrap_or(self.config.static_handlers);
                if !enabled {
                    continue;
                }
                for need in handler.resources {
                    if !held.contains(&index_of(need.type_id())) {
                        missing.push(MissingResource {
                            handler: handler.name().to_owned(),
                            path: match handler.origin() {
                                HandlerOrigin::Static { path } => path,
                                HandlerOrigin::Subscription { .. } => "",
                            },
                            event: handler.event(),
                            resource: need.type_name(),
                        });
                    }
                }
            }
        }
        let unknown_handlers = overrides
            .keys()
            .filter(|name| !known.contains(**name))
            .map(|name| (*name).to_owned())
            .collect();
        BuildError {
            missing,
            unknown_handlers,
        }
    }

    /// The bus, whatever its handlers need (see [`EventBus::new`]).
    pub(super) fn build_unchecked(self) -> EventBus {
        let size = self
            .resources
            .iter()
            .map(|(index, _)| index + 1)
            .max()
            .unwrap_or(0);
        let mut resources: Vec<Option<Held>> = vec![None; size];
        for (index, value) in self.resources {
            resources[index] = Some(value);
        }
        let control = Control {
            overrides: self.overrides.iter().cloned().collect(),
            ..Control::default()
        };
        let rebuild_all = self.config.handler_stats || !self.overrides.is_empty();
        let bus = EventBus {
            inner: Arc::new(BusInner {
                config: self.config,
                recorder: self.recorder,
                routes: Tables::new(RouteTable::default()),
                control: Mutex::new(control),
                resources: resources.into_boxed_slice(),
            }),
        };
        if rebuild_all {
            // Statistics cells and handlers enabled by name live in routes.
            bus.change(|config, control, table| {
                for (_, hooks) in types_with_hooks() {
                    (hooks.rebuild)(config, control, table);
                }
            });
        }
        bus
    }
}

/// What a failing handler does to the emit that called it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Record the failure, log it, emit `error.occurred`, run the remaining
    /// handlers, return normally.
    #[default]
    Isolate,
    /// Log it, then re-raise: a panic resumes with its original payload, an
    /// `Err` panics with the failure's description. Remaining handlers do not
    /// run. Useful in tests. An event the bus owns (decoded for a replay or
    /// an emit by name, or given to `emit_async`) that panics in its `Drop`
    /// during that unwind is logged, not re-raised (a second panic while
    /// unwinding would abort the process).
    Propagate,
}

/// Source and metadata for one emit; see [`EventBus::emit_with`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct EmitOptions {
    pub(super) source: Option<Cow<'static, str>>,
    pub(super) metadata: Metadata,
    pub(super) timestamp: Option<SystemTime>,
    pub(super) trace_id: Option<TraceId>,
    pub(super) event_id: Option<EventId>,
    pub(super) remote: Option<Cow<'static, str>>,
    pub(super) cause: Option<Cause>,
}

impl EmitOptions {
    /// No overrides: the event's default source, no metadata.
    pub fn new() -> Self {
        EmitOptions::default()
    }

    /// Who emits the event (instead of `Event::SOURCE`).
    pub fn source(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Adds one metadata entry.
    pub fn metadata(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.metadata.insert(key, value);
        self
    }

    /// When the event happened, if not now: an event read from a device's
    /// log, received from another process, or re-emitted later. Handlers
    /// see it as [`EventContext::timestamp`](crate::EventContext::timestamp),
    /// and the history and audit log record it. Without it the timestamp is
    /// read from the clock when first asked for.
    pub fn timestamp(mut self, time: SystemTime) -> Self {
        self.timestamp = Some(time);
        self
    }

    /// The trace the event runs in (it and everything its handlers emit),
    /// instead of the current one; see [`crate::trace`].
    pub fn trace_id(mut self, id: TraceId) -> Self {
        self.trace_id = Some(id);
        self
    }

    /// The event's id, when it already has one: an event received from
    /// another process, or re-emitted. Without it an id is made on first
    /// request ([`EventContext::event_id`](crate::EventContext::event_id)).
    pub fn event_id(mut self, id: EventId) -> Self {
        self.event_id = Some(id);
        self
    }

    /// Marks the event as received from another process, whose instance id
    /// this is ([`EventContext::remote`](crate::EventContext::remote)): what a
    /// bridge to a broker sets, with the event's original id, trace and
    /// timestamp.
    pub fn remote(mut self, instance: impl Into<Cow<'static, str>>) -> Self {
        self.remote = Some(instance.into());
        self
    }

    /// What caused the event, when it was caused elsewhere (an event
    /// received from another process keeps its sender's cause). Without
    /// it, what runs now is the cause
    /// ([`EventContext::cause`](crate::EventContext::cause)).
    pub fn cause(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }

    /// The event follows from the one `report` is about: it is caused by
    /// that event, outside any of its handlers. What a pipeline that
    /// emits one stage's event after another's uses, so that
    /// [trace trees](crate::history::TraceTree) show the stages as a chain
    /// (same trace as the report's, if none is current).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use sbox_events::{EmitOptions, Event, EventBus, EventContext};
    ///
    /// #[derive(Event, Serialize, Deserialize)]
    /// #[event(name = "demo.fetched")]
    /// struct Fetched { bytes: u64 }
    ///
    /// #[derive(Event, Serialize, Deserialize)]
    /// #[event(name = "demo.parsed")]
    /// struct Parsed { servers: u32 }
    ///
    /// let bus = EventBus::new();
    /// bus.subscribe(|_: &Parsed, ctx: &EventContext| {
    ///     let cause = ctx.cause().expect("caused by the fetch");
    ///     assert_eq!((cause.event(), cause.handler()), ("demo.fetched", None));
    /// })
    /// .detach();
    /// let fetched = bus.emit(Fetched { bytes: 512 });
    /// let parsed = bus.emit_with(Parsed { servers: 3 }, EmitOptions::new().caused_by(&fetched));
    /// assert_eq!(parsed.trace_id(), fetched.trace_id());
    /// assert!(parsed.is_ok());
    /// ```
    pub fn caused_by(mut self, report: &EmitReport) -> Self {
        self.cause = Some(Cause::new(report.event(), report.sequence(), None, None));
        if self.trace_id.is_none() && crate::trace::current().is_none() {
            self.trace_id = Some(report.trace_id());
        }
        self
    }

    /// Replaces all metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}
