//! An audit trail of significant events: through `tracing`, and optionally
//! to a JSON Lines file.
//!
//! ```no_run
//! use sbox_events::EventBus;
//! use sbox_events::audit::AuditLogger;
//!
//! let bus = EventBus::new();
//! let audit = AuditLogger::builder()
//!     .jsonl("/var/log/sboxmgr/audit.jsonl")
//!     .attach(&bus)?; // fails with a clear message if the file cannot be opened
//! // ... emit events; keep `audit` alive as long as you want auditing.
//! println!("{} records written", audit.records());
//! # Ok::<(), sbox_events::audit::AuditError>(())
//! ```
//!
//! # What is recorded
//!
//! By default [`DEFAULT_EVENTS`]: `subscription.processed`,
//! `subscription.failed`, `config.exported` and `error.occurred`.
//! [`AuditLoggerBuilder::events`] takes any [`EventSelector`] (names,
//! patterns, or all events).
//!
//! Each record is logged at INFO level with target [`TARGET`], with the fields
//! `event`, `source`, `trace_id`, `sequence` and `data` (the event's fields as
//! one JSON object: `tracing` field names are static, so they cannot be
//! spread into fields of their own).
//!
//! With [`jsonl`](AuditLoggerBuilder::jsonl) each record is also one line of
//! JSON in that file, in the same envelope as the history's JSON Lines
//! (so [`import_jsonl`](crate::history::import_jsonl) reads audit logs), with
//! the nesting depth added:
//!
//! ```text
//! {"name":"config.exported","source":"config_builder","trace_id":"4bf9…","timestamp":"2026-11-27T06:32:20.123456789Z","sequence":42,"depth":0,"metadata":{},"data":{"path":"out.json","export_format":"sing-box","file_size":512}}
//! ```
//!
//! JSON escaping makes a record one line whatever the data holds (newlines,
//! quotes, control characters), so data cannot forge or break records.
//!
//! # Durability and write failures
//!
//! Each record is appended (the file is opened in append mode) before `emit`
//! returns, so it survives the process crashing right after. With
//! [`fsync`](AuditLoggerBuilder::fsync) the file's data is also synced to the
//! disk per record, so it survives a power loss, at the cost of a disk flush
//! per record.
//!
//! **Every complete line of the file is a readable record**, also after a
//! failed write. A write can fail part-way (the disk fills up mid-record):
//! the logger then truncates the file back to where that record began. If
//! even that fails, the next record starts on a fresh line, so the partial
//! line stays alone and every other line stays readable. A file that already
//! ends in a partial line when it is opened (a crash during an earlier
//! write) is handled the same way.
//!
//! [`AuditLogger::records`] counts the records written (readable in the
//! file, when there is one) and [`AuditLogger::write_errors`] the records
//! lost; each loss is also logged (ERROR, target [`TARGET`]). A failed write
//! never panics and never stops other handlers. The logger assumes it is the
//! file's only writer: another process appending at the same time could see
//! its partial record truncated.
//!
//! The file is opened once, by [`attach`](AuditLoggerBuilder::attach), for
//! reading and appending (it reads the file's last byte to tell whether it
//! ends mid-line, so a write-only file is refused), and kept open: a log
//! rotated by renaming keeps receiving records under its new name. Rotate
//! by copying and truncating (appends then continue at the new end), or by
//! attaching a new logger to the new file and then dropping the old one
//! (until it is dropped, records go to both files).
//!
//! # Order and cost
//!
//! The logger subscribes at [`PRIORITY`], ahead of ordinary handlers, so its
//! timestamp is the emit time. Audited events pay for serialization and the
//! write; writes from several threads take turns on one mutex. Other events
//! pay nothing: the subscription is only in the selected types' routes.

use crate::any::{AnyEvent, EventSelector};
use crate::bus::{EventBus, SubscribeOptions, Subscription};
use crate::context::EventContext;
use crate::escape::{EscapedDisplay, LogSafe};
use crate::jsonl::Line;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The events audited by default, as in the original design.
pub const DEFAULT_EVENTS: [&str; 4] = [
    "subscription.processed",
    "subscription.failed",
    "config.exported",
    "error.occurred",
];

/// The `tracing` target of audit records.
pub const TARGET: &str = "sbox_events::audit";

/// The priority the audit subscription runs at (ahead of the default 0).
pub const PRIORITY: i32 = 1_000_000;

/// Records significant events; auditing stops when it is dropped.
#[must_use = "auditing stops when the AuditLogger is dropped: keep it alive"]
pub struct AuditLogger {
    state: Arc<State>,
    _subscription: Subscription,
}

struct State {
    file: Option<Mutex<LogFile>>,
    path: Option<PathBuf>,
    fsync: bool,
    records: AtomicU64,
    write_errors: AtomicU64,
}

/// Options for [`AuditLogger::builder`].
#[derive(Debug)]
#[must_use]
pub struct AuditLoggerBuilder {
    selector: Option<EventSelector>,
    path: Option<PathBuf>,
    fsync: bool,
}

impl AuditLogger {
    /// Audits [`DEFAULT_EVENTS`] on `bus` through `tracing` only.
    pub fn attach(bus: &EventBus) -> AuditLogger {
        let state = Arc::new(State {
            file: None,
            path: None,
            fsync: false,
            records: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        });
        AuditLogger::subscribe(bus, default_selector(), state)
    }

    /// Options: which events, a JSON Lines file, fsync.
    pub fn builder() -> AuditLoggerBuilder {
        AuditLoggerBuilder {
            selector: None,
            path: None,
            fsync: false,
        }
    }

    fn subscribe(bus: &EventBus, selector: EventSelector, state: Arc<State>) -> AuditLogger {
        let writer = Arc::clone(&state);
        let subscription = bus.subscribe_any_with(
            SubscribeOptions::new().name("audit").priority(PRIORITY),
            selector,
            move |event: &AnyEvent, ctx: &EventContext| writer.record(event, ctx),
        );
        AuditLogger {
            state,
            _subscription: subscription,
        }
    }

    /// Records written so far: with a JSON Lines file, the records
    /// appended to it (each one a readable line); without one, the records
    /// logged through `tracing`.
    pub fn records(&self) -> u64 {
        self.state.records.load(Ordering::Relaxed)
    }

    /// Records lost: they could not be serialized, or not written to the
    /// file (see [Durability and write failures](self#durability-and-write-failures)).
    pub fn write_errors(&self) -> u64 {
        self.state.write_errors.load(Ordering::Relaxed)
    }

    /// The JSON Lines file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.state.path.as_deref()
    }
}

impl fmt::Debug for AuditLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLogger")
            .field("path", &self.state.path)
            .field("records", &self.records())
            .field("write_errors", &self.write_errors())
            .finish()
    }
}

fn default_selector() -> EventSelector {
    // The default names are the crate's own events: always linked.
    EventSelector::names(DEFAULT_EVENTS).unwrap_or_else(|_| EventSelector::all())
}

impl AuditLoggerBuilder {
    /// Which events to audit (default [`DEFAULT_EVENTS`]).
    pub fn events(mut self, selector: EventSelector) -> Self {
        self.selector = Some(selector);
        self
    }

    /// Also append each record to this JSON Lines file (created if missing).
    pub fn jsonl(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Sync the file's data to disk after each record (default `false`).
    pub fn fsync(mut self, enabled: bool) -> Self {
        self.fsync = enabled;
        self
    }

    /// Subscribes to `bus`. Fails if the file cannot be opened for reading
    /// and appending.
    pub fn attach(self, bus: &EventBus) -> Result<AuditLogger, AuditError> {
        let file = match &self.path {
            Some(path) => Some(Mutex::new(LogFile::open(path).map_err(|source| {
                AuditError {
                    path: path.clone(),
                    source,
                }
            })?)),
            None => None,
        };
        let state = Arc::new(State {
            file,
            path: self.path,
            fsync: self.fsync,
            records: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        });
        let selector = self.selector.unwrap_or_else(default_selector);
        Ok(AuditLogger::subscribe(bus, selector, state))
    }
}

/// The JSON Lines file, kept at a record boundary.
struct LogFile {
    file: File,
    /// A failed write could not be undone: the file may end mid-line.
    torn: bool,
}

impl LogFile {
    /// Opens for appending; a file that ends mid-line gets a fresh line.
    fn open(path: &Path) -> io::Result<LogFile> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let mut log = LogFile { file, torn: true };
        log.end_line()?;
        Ok(log)
    }

    /// Starts a fresh line if the file ends in a partial one.
    fn end_line(&mut self) -> io::Result<()> {
        let len = self.file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8];
            self.file.seek(SeekFrom::Start(len - 1))?;
            self.file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                self.file.write_all(b"\n")?;
            }
        }
        self.torn = false;
        Ok(())
    }

    /// Appends one record (a line ending in `\n`), all or nothing: after a
    /// failure the file is truncated back to where the record began, or,
    /// if that fails too, the next append starts on a fresh line.
    fn append(&mut self, line: &[u8], fsync: bool) -> io::Result<()> {
        if self.torn {
            self.end_line()?;
        }
        let start = self.file.seek(SeekFrom::End(0))?;
        let written = self
            .file
            .write_all(line)
            .and_then(|()| if fsync { self.file.sync_data() } else { Ok(()) });
        if written.is_err() {
            self.torn = self.file.set_len(start).is_err();
        }
        written
    }
}

impl State {
    fn record(&self, event: &AnyEvent<'_>, ctx: &EventContext<'_>) {
        let data = match event.to_json() {
            Ok(data) => data,
            Err(err) => return self.failed(event.name(), ctx, &err),
        };
        tracing::info!(
            target: TARGET,
            event = event.name(),
            source = ctx.source(),
            trace_id = %ctx.trace_id(),
            sequence = ctx.sequence(),
            data = %EscapedDisplay(&data),
            "audit"
        );
        let Some(file) = &self.file else {
            self.records.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let envelope = ctx.envelope();
        let record = match Line::of(&envelope, event.event_type().fingerprint(), true, data) {
            Ok(record) => record,
            Err(err) => return self.failed(event.name(), ctx, &err),
        };
        let mut line = match serde_json::to_vec(&record) {
            Ok(line) => line,
            Err(err) => return self.failed(event.name(), ctx, &err),
        };
        line.push(b'\n');
        let written = file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(&line, self.fsync);
        match written {
            Ok(()) => {
                self.records.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => self.failed(event.name(), ctx, &err),
        }
    }

    #[cold]
    fn failed(&self, event: &str, ctx: &EventContext<'_>, err: &dyn fmt::Display) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            target: TARGET,
            event,
            trace_id = %ctx.trace_id(),
            path = ?self.path,
            error = %LogSafe(&err.to_string()),
            "audit record could not be written"
        );
    }
}

/// The audit log file could not be opened.
#[derive(Debug)]
pub struct AuditError {
    path: PathBuf,
    source: io::Error,
}

impl AuditError {
    /// The file that could not be opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why it could not (also [`std::error::Error::source`]).
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot open audit log {} for appending",
            self.path.display()
        )
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
