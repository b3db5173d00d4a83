//! Emitting an event known only by name, from its JSON: what a bridge
//! does with an event received from another process (with its original
//! envelope, through [`EmitOptions`]), and what a tool that reads events
//! from a file does.
//!
//! The name is resolved through the link-time list of event types to the
//! type's deserializer, once per call (a scan of the types; cheap next to
//! the deserialization). The event's `Deserialize` runs isolated.

use super::hooks::hooks_of;
use super::{EmitOptions, EmitReport, EventBus};
use crate::any::EventType;
use crate::escape::LogSafe;
use crate::event::all_events;
use std::fmt;
use std::future::Future;

impl EventBus {
    /// Emits the event named `name`, deserialized from `json`, with
    /// `options` (source, metadata, and for an event received from
    /// elsewhere its original [trace](EmitOptions::trace_id),
    /// [id](EmitOptions::event_id), [timestamp](EmitOptions::timestamp)
    /// and [remote mark](EmitOptions::remote)). Async handlers are skipped
    /// as by [`emit`](EventBus::emit): see
    /// [`emit_json_async`](EventBus::emit_json_async).
    ///
    /// ```
    /// use sbox_events::{EmitOptions, EventBus, EventContext, events::ConfigExported};
    ///
    /// let bus = EventBus::new();
    /// let _sub = bus.subscribe(|e: &ConfigExported, ctx: &EventContext| {
    ///     assert_eq!(ctx.remote(), Some("orchestrator-1"));
    ///     assert_eq!(e.file_size, 512);
    /// });
    /// let json = r#"{"path":"out.json","export_format":"sing-box","file_size":512}"#;
    /// let options = EmitOptions::new().remote("orchestrator-1");
    /// let report = bus.emit_json("config.exported", json, options)?;
    /// assert_eq!(report.delivered(), 1);
    ///
    /// let err = bus.emit_json("config.exploded", "{}", EmitOptions::new()).unwrap_err();
    /// assert_eq!(err.to_string(), "no event type named \"config.exploded\" is linked into this binary");
    /// # Ok::<(), sbox_events::ByNameError>(())
    /// ```
    pub fn emit_json(
        &self,
        name: &str,
        json: &str,
        options: EmitOptions,
    ) -> Result<EmitReport, ByNameError> {
        let event_type = resolve(name)?;
        let hooks = hooks_of(event_type).ok_or_else(|| ByNameError::Unknown {
            name: name.to_owned(),
        })?;
        let record = super::JsonRecord {
            json,
            given: super::Given::by_name(event_type, &options),
        };
        (hooks.dispatch_json)(self, &record).map_err(|message| ByNameError::Decode {
            event: event_type.name(),
            message,
        })
    }

    /// [`emit_json`](EventBus::emit_json) that awaits async handlers, as
    /// [`emit_async_with`](EventBus::emit_async_with) does. The event is
    /// deserialized now; the returned future runs its handlers.
    pub fn emit_json_async(
        &self,
        name: &str,
        json: &str,
        options: EmitOptions,
    ) -> Result<impl Future<Output = EmitReport> + Send + '_, ByNameError> {
        let event_type = resolve(name)?;
        let hooks = hooks_of(event_type).ok_or_else(|| ByNameError::Unknown {
            name: name.to_owned(),
        })?;
        (hooks.dispatch_json_async)(self, json, options).map_err(|message| ByNameError::Decode {
            event: event_type.name(),
            message,
        })
    }
}

/// The one linked event type named `name`.
fn resolve(name: &str) -> Result<EventType, ByNameError> {
    let mut matching = all_events().filter(|e| e.name() == name);
    match (matching.next(), matching.next()) {
        (Some(vtable), None) => Ok(EventType(vtable)),
        (Some(_), Some(_)) => Err(ByNameError::Ambiguous {
            name: name.to_owned(),
        }),
        (None, _) => Err(ByNameError::Unknown {
            name: name.to_owned(),
        }),
    }
}

/// Why [`EventBus::emit_json`] emitted nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ByNameError {
    /// No event type of this name is linked into the binary.
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// Several event types share this name (see [`crate::catalog::check`]).
    Ambiguous {
        /// The name asked for.
        name: String,
    },
    /// The JSON is not an event of that type (or its `Deserialize` panicked).
    Decode {
        /// The event's name.
        event: &'static str,
        /// What the deserializer said.
        message: String,
    },
}

impl fmt::Display for ByNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `{:?}` escapes what a name from the outside may hold.
            ByNameError::Unknown { name } => {
                write!(f, "no event type named {name:?} is linked into this binary")
            }
            ByNameError::Ambiguous { name } => {
                write!(f, "event name {name:?} belongs to several event types")
            }
            ByNameError::Decode { event, message } => {
                write!(f, "not a `{event}`: {}", LogSafe(message))
            }
        }
    }
}

impl std::error::Error for ByNameError {}
