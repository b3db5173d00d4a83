//! The link-time registry, introspected: every event type (name, source,
//! Rust type, fields with their types) and every `#[handler]` (name, event,
//! priority, module), plus an explicit check for duplicate event names.
//!
//! ```rust,standalone_crate
//! use sbox_events::catalog;
//!
//! let catalog = catalog::catalog();
//! let built = catalog.events.iter().find(|e| e.name == "config.built").expect("linked");
//! assert_eq!(built.rust_type, "sbox_events::events::ConfigBuilt");
//! assert_eq!(built.fields[0].name, "servers_count");
//! assert_eq!(built.fields[0].rust_type, "u64");
//! catalog::check().expect("no two event types share a name");
//! ```
//!
//! Two event types with the same name compile and link (the linker cannot
//! know), but make name-based features ambiguous: an imported record of that
//! name cannot be resolved, and selectors match both. Call [`check`] at
//! start-up (or in a test) to catch it.

use crate::any::EventType;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// Everything linked into the binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Catalog {
    /// Event types, by name (then Rust type).
    pub events: Vec<EventEntry>,
    /// Names that belong to more than one event type.
    pub duplicates: Vec<DuplicateName>,
}

/// One event type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EventEntry {
    /// `Event::NAME`.
    pub name: &'static str,
    /// `Event::SOURCE`.
    pub source: &'static str,
    /// The Rust type's path.
    pub rust_type: &'static str,
    /// `Event::FINGERPRINT`: the schema's fingerprint (or `v<N>`).
    pub fingerprint: &'static str,
    /// The struct's fields, in declaration order (tuple fields are `0`, `1`...).
    pub fields: Vec<FieldEntry>,
    /// Its `#[handler]`s, in dispatch order.
    pub handlers: Vec<HandlerEntry>,
}

/// One field of an event type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FieldEntry {
    /// Field name.
    pub name: &'static str,
    /// Its type, as written in the struct.
    pub rust_type: &'static str,
}

/// One `#[handler]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HandlerEntry {
    /// Its name (its path unless `name = ".."` was given).
    pub name: String,
    /// The event it handles.
    pub event: &'static str,
    /// Its priority.
    pub priority: i32,
    /// The function's full path.
    pub path: &'static str,
    /// The module it is defined in.
    pub module: &'static str,
    /// Whether it is an `async fn`.
    pub is_async: bool,
    /// The events it declares it emits (`#[handler(emits = [...])]`), by
    /// name; `None` if it declares nothing.
    pub emits: Option<Vec<&'static str>>,
    /// The types of the resources it takes, in parameter order (see
    /// [`EventBusBuilder::resource`](crate::EventBusBuilder::resource)).
    pub resources: Vec<&'static str>,
}

/// A name shared by several event types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DuplicateName {
    /// The name.
    pub name: &'static str,
    /// The Rust types that claim it.
    pub rust_types: Vec<&'static str>,
}

/// Reads the catalog.
pub fn catalog() -> Catalog {
    let types = EventType::all();
    let mut by_name: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
    for t in &types {
        by_name.entry(t.name()).or_default().push(t.rust_type());
    }
    let duplicates = by_name
        .into_iter()
        .filter(|(_, rust_types)| rust_types.len() > 1)
        .map(|(name, rust_types)| DuplicateName { name, rust_types })
        .collect();
    let events = types
        .into_iter()
        .map(|t| EventEntry {
            name: t.name(),
            source: t.source(),
            rust_type: t.rust_type(),
            fingerprint: t.fingerprint(),
            fields: t
                .0
                .fields()
                .iter()
                .map(|&(name, rust_type)| FieldEntry { name, rust_type })
                .collect(),
            handlers: t
                .static_handlers()
                .into_iter()
                .map(|h| {
                    let path = match h.origin() {
                        crate::handler::HandlerOrigin::Static { path } => path,
                        crate::handler::HandlerOrigin::Subscription { .. } => "",
                    };
                    HandlerEntry {
                        name: h.name().to_owned(),
                        event: h.event(),
                        priority: h.priority(),
                        path,
                        module: path.rsplit_once("::").map_or("", |(module, _)| module),
                        is_async: h.is_async(),
                        emits: h.emits().map(<[&str]>::to_vec),
                        resources: h.resources().collect(),
                    }
                })
                .collect(),
        })
        .collect();
    Catalog { events, duplicates }
}

impl HandlerEntry {
    /// `crate · priority N · sync` (or `async`).
    fn summary(&self) -> String {
        let krate = self.path.split("::").next().unwrap_or_default();
        let kind = if self.is_async { "async" } else { "sync" };
        format!("{krate} · priority {} · {kind}", self.priority)
    }
}

/// Text for a DOT label in quotes.
fn dot_text(text: &str) -> String {
    crate::escape::LogSafe(text)
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// Fails if two event types linked into the binary share a name.
pub fn check() -> Result<(), DuplicateEvents> {
    let duplicates = catalog().duplicates;
    if duplicates.is_empty() {
        Ok(())
    } else {
        Err(DuplicateEvents(duplicates))
    }
}

/// [`check`] found names used by several event types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateEvents(pub Vec<DuplicateName>);

impl fmt::Display for DuplicateEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, dup) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "event name \"{}\" is claimed by {} types: {}",
                dup.name,
                dup.rust_types.len(),
                dup.rust_types.join(", ")
            )?;
        }
        f.write_str("; give all but one another #[event(name = \"...\")]")
    }
}

impl std::error::Error for DuplicateEvents {}

impl Catalog {
    /// The catalog as a [Mermaid](https://mermaid.js.org) flowchart: every
    /// event type (rounded), every `#[handler]` (a box with its crate,
    /// priority, and whether it is async), an arrow from each event to its
    /// handlers and from each handler to the events it declares it emits.
    ///
    /// ```text
    /// flowchart LR
    ///     e0(["subscription.fetched"])
    ///     h0_0["my_app::parse<br/>my_app · priority 0 · sync"]
    ///     e0 --> h0_0
    ///     h0_0 --> e1
    /// ```
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let index = self.index();
        for (i, event) in self.events.iter().enumerate() {
            let _ = writeln!(
                out,
                "    e{i}([\"{}\"])",
                crate::escape::mermaid_label(event.name)
            );
        }
        for (i, event) in self.events.iter().enumerate() {
            for (n, handler) in event.handlers.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "    h{i}_{n}[\"{}<br/>{}\"]",
                    crate::escape::mermaid_label(&handler.name),
                    crate::escape::mermaid_label(&handler.summary())
                );
                let _ = writeln!(out, "    e{i} --> h{i}_{n}");
                for emitted in handler.emits.iter().flatten() {
                    if let Some(to) = index.get(emitted) {
                        let _ = writeln!(out, "    h{i}_{n} --> e{to}");
                    }
                }
            }
        }
        out
    }

    /// The catalog as a Graphviz DOT graph (`dot -Tsvg`), with the same
    /// nodes and edges as [`to_mermaid`](Catalog::to_mermaid).
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph catalog {\n    rankdir=LR;\n    node [fontname=\"Helvetica\"];\n",
        );
        let index = self.index();
        for (i, event) in self.events.iter().enumerate() {
            let _ = writeln!(
                out,
                "    e{i} [label=\"{}\", shape=box, style=rounded];",
                dot_text(event.name)
            );
        }
        for (i, event) in self.events.iter().enumerate() {
            for (n, handler) in event.handlers.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "    h{i}_{n} [label=\"{}\\n{}\", shape=box];",
                    dot_text(&handler.name),
                    dot_text(&handler.summary())
                );
                let _ = writeln!(out, "    e{i} -> h{i}_{n};");
                for emitted in handler.emits.iter().flatten() {
                    if let Some(to) = index.get(emitted) {
                        let _ = writeln!(out, "    h{i}_{n} -> e{to};");
                    }
                }
            }
        }
        out.push_str("}\n");
        out
    }

    /// Each event name's position (the first type of a duplicated name).
    fn index(&self) -> BTreeMap<&'static str, usize> {
        let mut index = BTreeMap::new();
        for (i, event) in self.events.iter().enumerate() {
            index.entry(event.name).or_insert(i);
        }
        index
    }

    /// A readable listing: one block per event, fields then handlers.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let handlers: usize = self.events.iter().map(|e| e.handlers.len()).sum();
        let _ = writeln!(
            out,
            "{} event types, {handlers} #[handler]s",
            self.events.len()
        );
        for event in &self.events {
            let _ = writeln!(
                out,
                "\n{}  (source {}, type {}, schema {})",
                event.name, event.source, event.rust_type, event.fingerprint
            );
            for field in &event.fields {
                let _ = writeln!(out, "    {}: {}", field.name, field.rust_type);
            }
            for handler in &event.handlers {
                let kind = if handler.is_async { "async, " } else { "" };
                let _ = write!(
                    out,
                    "  -> {} ({kind}priority {}, in {})",
                    handler.name, handler.priority, handler.module
                );
                if !handler.resources.is_empty() {
                    let _ = write!(out, " takes &{}", handler.resources.join(", &"));
                }
                if let Some(emits) = &handler.emits {
                    match emits.is_empty() {
                        true => out.push_str(" emits nothing"),
                        false => {
                            let _ = write!(out, " emits {}", emits.join(", "));
                        }
                    }
                }
                let _ = writeln!(out);
            }
        }
        for dup in &self.duplicates {
            let _ = writeln!(
                out,
                "\nDUPLICATE name \"{}\": {}",
                dup.name,
                dup.rust_types.join(", ")
            );
        }
        out
    }
}
