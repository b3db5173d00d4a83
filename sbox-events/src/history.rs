//! A bounded history of emitted events, queries over it, export to and
//! import from JSON Lines, and the records [`EventBus::replay`] re-dispatches.
//!
//! # Recording
//!
//! Opt-in per bus with [`EventBusBuilder::history`]:
//!
//! ```
//! use sbox_events::events::ConfigExported;
//! use sbox_events::history::HistoryQuery;
//! use sbox_events::EventBus;
//!
//! let bus = EventBus::builder().history(1 << 20).build(); // 1 MiB
//! bus.emit(ConfigExported { path: "a.json".into(), export_format: "sing-box".into(), file_size: 10 });
//! let history = bus.history().expect("enabled");
//! let recorded = history.query(&HistoryQuery::new());
//! assert_eq!(recorded[0].name(), "config.exported");
//! assert_eq!(history.stats().entries, 1);
//! ```
//!
//! The history is a ring bounded by **bytes**, not by count: the default is
//! [`DEFAULT_HISTORY_BYTES`] (8 MiB) and no history holds more than
//! [`MAX_HISTORY_BYTES`] (10 MB, the original design's budget; larger
//! requests are clamped). The bytes counted are everything the history keeps
//! alive: its slot array (`capacity × size_of::<RecordedEvent>()`) plus each
//! record's heap data (the event as JSON, an owned source, metadata). When a
//! new record does not fit, the oldest are evicted first and counted
//! ([`HistoryStats::evicted`]); a record larger than the whole budget is not
//! kept and counted as [`HistoryStats::oversized`] (its serialization stops
//! as soon as it is over, so refusing a huge event costs at most the budget).
//!
//! Cost when on: the clock is read at emit (so handlers and the history see
//! the same timestamp), the event is serialized to JSON, and one mutex shared
//! by all emitting threads is taken to append. Replays are not recorded
//! (unless [`EventBusBuilder::record_replays`]).
//!
//! # JSON Lines
//!
//! [`History::export_jsonl`] writes one envelope per line:
//!
//! ```text
//! {"name":"config.exported","source":"config_builder","trace_id":"…","timestamp":"2026-11-27T06:32:20.123456Z","sequence":7,"metadata":{},"data":{…}}
//! ```
//!
//! [`import_jsonl`] reads them back (audit logs too: their extra `depth` is
//! accepted): the name is resolved through the link-time list of event types
//! to the typed deserializer, the fields must fit that type, and its
//! [`Event::validate`](crate::Event::validate) must pass. Errors name the
//! line and the reason. A UTF-8 byte order mark before the first line is
//! skipped. Strict by default: any bad line makes the import an
//! error, which still carries every valid record; lenient mode skips bad
//! lines and lists them.

use crate::any::EventType;
use crate::escape::EscapedDisplay;
use crate::event::Metadata;
use crate::trace::TraceId;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::mem::size_of;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

#[allow(unused_imports)] // for intra-doc links
use crate::{EventBus, EventBusBuilder};

/// The history budget when none is given.
pub const DEFAULT_HISTORY_BYTES: usize = 8 * 1024 * 1024;

/// The most any history holds (the original design's 10 MB).
pub const MAX_HISTORY_BYTES: usize = 10_000_000;

/// One recorded (or imported) event: its envelope and its fields as JSON.
#[derive(Clone)]
pub struct RecordedEvent {
    pub(crate) event_type: EventType,
    pub(crate) source: Cow<'static, str>,
    pub(crate) trace_id: TraceId,
    pub(crate) timestamp: SystemTime,
    pub(crate) sequence: u64,
    pub(crate) metadata: Metadata,
    /// The event's fields as JSON (produced by serde_json, or checked by
    /// it on import).
    pub(crate) data: Box<str>,
}

impl RecordedEvent {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        self.event_type.name()
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// Who emitted it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Its trace.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// When it was emitted.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// Its sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Its metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Its fields, as JSON text.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The typed event, if it is an `E`.
    pub fn to_event<E: crate::Event>(&self) -> Option<Result<E, serde_json::Error>> {
        (self.event_type == EventType::of::<E>()).then(|| serde_json::from_str(&self.data))
    }

    /// Heap bytes this record owns.
    fn heap_bytes(&self) -> usize {
        let source = match &self.source {
            Cow::Owned(s) => s.capacity(),
            Cow::Borrowed(_) => 0,
        };
        source + self.metadata.heap_bytes() + self.data.len()
    }

    fn envelope(&self) -> serde_json::Result<Envelope<'_>> {
        let data = serde_json::from_str(&self.data)?;
        Ok(Envelope {
            name: Cow::Borrowed(self.name()),
            source: Cow::Borrowed(&self.source),
            trace_id: self.trace_id,
            timestamp: humantime::format_rfc3339_nanos(self.timestamp).to_string(),
            sequence: self.sequence,
            depth: None,
            metadata: Cow::Borrowed(&self.metadata),
            data,
        })
    }
}

impl fmt::Debug for RecordedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedEvent")
            .field("name", &self.name())
            .field("source", &self.source)
            .field("trace_id", &self.trace_id)
            .field("sequence", &self.sequence)
            .field("metadata", &self.metadata)
            .field("data", &&*self.data)
            .finish()
    }
}

impl PartialEq for RecordedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event_type == other.event_type
            && self.source == other.source
            && self.trace_id == other.trace_id
            && self.timestamp == other.timestamp
            && self.sequence == other.sequence
            && self.metadata == other.metadata
            && self.data == other.data
    }
}

/// The JSON Lines envelope.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    trace_id: TraceId,
    timestamp: String,
    sequence: u64,
    /// Written by the audit log; accepted and ignored here.
    #[serde(default, skip_serializing)]
    #[allow(dead_code)]
    depth: Option<u32>,
    #[serde(default)]
    metadata: Cow<'a, Metadata>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The bounded history of one bus; see the [module docs](self).
pub struct History {
    cap: usize,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<RecordedEvent>,
    heap_bytes: usize,
    recorded: u64,
    evicted: u64,
    oversized: u64,
}

const SLOT: usize = size_of::<RecordedEvent>();

impl Ring {
    fn bytes(&self) -> usize {
        self.entries.capacity() * SLOT + self.heap_bytes
    }

    fn pop_oldest(&mut self) -> bool {
        match self.entries.pop_front() {
            Some(old) => {
                self.heap_bytes -= old.heap_bytes();
                self.evicted += 1;
                true
            }
            None => false,
        }
    }
}

/// Counters of a [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryStats {
    /// Records held now.
    pub entries: usize,
    /// Bytes held now (slots plus heap data), at most `capacity_bytes`.
    pub bytes: usize,
    /// The budget.
    pub capacity_bytes: usize,
    /// Records ever added.
    pub recorded: u64,
    /// Records evicted to make room.
    pub evicted: u64,
    /// Records not kept because they alone exceed the budget.
    pub oversized: u64,
}

impl History {
    pub(crate) fn new(cap: usize) -> History {
        History {
            cap: cap.min(MAX_HISTORY_BYTES),
            ring: Mutex::new(Ring::default()),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most JSON bytes one record's data may take: past this it could
    /// not be kept even alone, so serialization stops there.
    pub(crate) fn data_limit(&self) -> usize {
        self.cap.saturating_sub(SLOT)
    }

    /// Counts a record that was not kept because it exceeds the budget.
    pub(crate) fn push_oversized(&self) {
        let mut ring = self.ring();
        ring.recorded += 1;
        ring.oversized += 1;
    }

    pub(crate) fn push(&self, record: RecordedEvent) {
        let size = record.heap_bytes();
        let mut ring = self.ring();
        ring.recorded += 1;
        if size + SLOT > self.cap {
            ring.oversized += 1;
            return;
        }
        if ring.entries.len() == ring.entries.capacity() {
            // Grow the slot array only as far as it fits beside the data
            // already held and the new record; otherwise reuse a slot.
            let len = ring.entries.len();
            let room = self.cap.saturating_sub(ring.heap_bytes + size) / SLOT;
            let target = (len * 2).max(16).min(room);
            if target > len {
                ring.entries.reserve_exact(target - len);
            } else {
                ring.pop_oldest();
            }
        }
        ring.heap_bytes += size;
        ring.entries.push_back(record);
        while ring.bytes() > self.cap {
            if ring.entries.len() > 1 {
                ring.pop_oldest();
            } else {
                // Only the new record is left and the slot array is too big
                // for it: give the array back (the record alone fits).
                ring.entries.shrink_to_fit();
                break;
            }
        }
    }

    /// The records matching `query`, oldest first.
    pub fn query(&self, query: &HistoryQuery) -> Vec<RecordedEvent> {
        self.ring()
            .entries
            .iter()
            .filter(|r| query.matches(r))
            .cloned()
            .collect()
    }

    /// Counters and current size.
    pub fn stats(&self) -> HistoryStats {
        let ring = self.ring();
        HistoryStats {
            entries: ring.entries.len(),
            bytes: ring.bytes(),
            capacity_bytes: self.cap,
            recorded: ring.recorded,
            evicted: ring.evicted,
            oversized: ring.oversized,
        }
    }

    /// Forgets every record and frees their memory (counters are kept).
    pub fn clear(&self) {
        let mut ring = self.ring();
        ring.entries = VecDeque::new();
        ring.heap_bytes = 0;
    }

    /// Writes the records matching `query` as JSON Lines; returns how many.
    pub fn export_jsonl(&self, query: &HistoryQuery, out: impl Write) -> io::Result<usize> {
        export_jsonl(&self.query(query), out)
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Writes records as JSON Lines (one envelope per line); returns how many.
pub fn export_jsonl<'a>(
    records: impl IntoIterator<Item = &'a RecordedEvent>,
    mut out: impl Write,
) -> io::Result<usize> {
    let mut count = 0;
    for record in records {
        serde_json::to_writer(&mut out, &record.envelope()?)?;
        out.write_all(b"\n")?;
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

/// Which records a [`History::query`] returns; all criteria must hold.
///
/// ```
/// use sbox_events::history::HistoryQuery;
/// use sbox_events::EventSelector;
/// use std::time::{Duration, SystemTime};
///
/// let recent_failures = HistoryQuery::new()
///     .events(EventSelector::pattern("*.failed")?)
///     .since(SystemTime::now() - Duration::from_secs(3600));
/// # let _ = recent_failures;
/// # Ok::<(), sbox_events::SelectorError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct HistoryQuery {
    events: Option<crate::EventSelector>,
    trace_id: Option<TraceId>,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

impl HistoryQuery {
    /// Every record.
    pub fn new() -> Self {
        HistoryQuery::default()
    }

    /// Only these event names or patterns.
    pub fn events(mut self, selector: crate::EventSelector) -> Self {
        self.events = Some(selector);
        self
    }

    /// Only this trace.
    pub fn trace_id(mut self, trace_id: TraceId) -> Self {
        self.trace_id = Some(trace_id);
        self
    }

    /// Only records at or after this time.
    pub fn since(mut self, time: SystemTime) -> Self {
        self.since = Some(time);
        self
    }

    /// Only records before this time.
    pub fn until(mut self, time: SystemTime) -> Self {
        self.until = Some(time);
        self
    }

    /// Whether `record` is selected.
    pub fn matches(&self, record: &RecordedEvent) -> bool {
        self.events
            .as_ref()
            .is_none_or(|s| s.matches(record.name()))
            && self.trace_id.is_none_or(|t| t == record.trace_id)
            && self.since.is_none_or(|t| record.timestamp >= t)
            && self.until.is_none_or(|t| record.timestamp < t)
    }
}

/// How [`import_jsonl`] treats bad lines.
#[derive(Clone, Debug)]
#[must_use]
pub struct ImportOptions {
    lenient: bool,
    max_line_bytes: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            lenient: false,
            max_line_bytes: 1024 * 1024,
        }
    }
}

impl ImportOptions {
    /// Strict, lines up to 1 MiB.
    pub fn new() -> Self {
        ImportOptions::default()
    }

    /// Skip bad lines and list them instead of failing (default `false`).
    pub fn lenient(mut self, lenient: bool) -> Self {
        self.lenient = lenient;
        self
    }

    /// The longest line accepted, in bytes, newline excluded (default 1 MiB).
    /// A longer line is an error; it is skipped without being held in memory.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }
}

/// What an import produced.
#[derive(Debug, Default)]
pub struct Imported {
    /// The valid records, in file order.
    pub events: Vec<RecordedEvent>,
    /// The bad lines that were skipped (lenient mode only).
    pub skipped: Vec<LineError>,
}

/// A strict import found bad lines. Nothing valid is lost: `imported` holds
/// every valid record of the whole input.
#[derive(Debug)]
pub struct ImportError {
    /// Every bad line, in order (at least one).
    pub errors: Vec<LineError>,
    /// The valid records.
    pub imported: Vec<RecordedEvent>,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [] => f.write_str("import failed"),
            [only] => write!(f, "import failed: {only}"),
            [first, rest @ ..] => write!(
                f,
                "import failed: {first} (and {} more bad lines)",
                rest.len()
            ),
        }
    }
}

impl std::error::Error for ImportError {}

/// One bad line of an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: LineErrorKind,
}

/// Why a line could not be imported.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineErrorKind {
    /// Longer than [`ImportOptions::max_line_bytes`].
    TooLong {
        /// The line's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Not UTF-8.
    NotUtf8,
    /// Not JSON.
    MalformedJson {
        /// 1-based column of the problem.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// JSON, but not an envelope (missing or wrong `name`, `trace_id`...).
    BadEnvelope {
        /// What is wrong.
        message: String,
    },
    /// No event type of this name is linked into the binary.
    UnknownEvent {
        /// The name.
        name: String,
    },
    /// Several event types share this name (see [`crate::catalog::check`]).
    AmbiguousEvent {
        /// The name.
        name: String,
    },
    /// The fields do not fit the event type.
    Schema {
        /// The event name.
        event: String,
        /// What does not fit.
        message: String,
    },
    /// The event's validation rejected it.
    Invalid {
        /// The event name.
        event: String,
        /// Why.
        reason: String,
    },
    /// Reading failed; nothing after this line was read.
    Io {
        /// The I/O error.
        message: String,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parser messages may quote the input: escape what they quote.
        write!(f, "line {}: {}", self.line, EscapedDisplay(&self.kind))
    }
}

impl fmt::Display for LineErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineErrorKind::TooLong { bytes, limit } => {
                write!(f, "line is {bytes} bytes, longer than the limit of {limit}")
            }
            LineErrorKind::NotUtf8 => f.write_str("not UTF-8"),
            LineErrorKind::MalformedJson { column, message } => {
                write!(f, "malformed JSON at column {column}: {message}")
            }
            LineErrorKind::BadEnvelope { message } => write!(f, "not an event record: {message}"),
            LineErrorKind::UnknownEvent { name } => {
                write!(
                    f,
                    "unknown event name {name:?} (no such event type is linked into this binary)"
                )
            }
            LineErrorKind::AmbiguousEvent { name } => {
                write!(f, "event name {name:?} belongs to several event types")
            }
            LineErrorKind::Schema { event, message } => {
                write!(f, "fields do not fit `{event}`: {message}")
            }
            LineErrorKind::Invalid { event, reason } => write!(f, "invalid `{event}`: {reason}"),
            LineErrorKind::Io { message } => write!(f, "read error: {message}"),
        }
    }
}

impl std::error::Error for LineError {}

/// Reads JSON Lines written by [`export_jsonl`] (or an audit log) into
/// typed-checked records; see the [module docs](self).
///
/// ```rust,standalone_crate
/// use sbox_events::history::{import_jsonl, ImportOptions, LineErrorKind};
///
/// let input = concat!(
///     r#"{"name":"config.exported","source":"cli","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","#,
///     r#""timestamp":"2026-11-27T06:32:20Z","sequence":1,"metadata":{},"#,
///     r#""data":{"path":"a.json","export_format":"sing-box","file_size":10}}"#, "\n",
///     r#"{"name":"config.exploded"}"#, "\n",
/// );
/// let err = import_jsonl(input.as_bytes(), &ImportOptions::new()).unwrap_err();
/// assert_eq!(err.imported.len(), 1, "the valid line is kept");
/// assert_eq!(err.errors[0].line, 2);
/// assert_eq!(
///     err.to_string(),
///     "import failed: line 2: not an event record: missing field `source` (column 26)"
/// );
///
/// let ok = import_jsonl(input.as_bytes(), &ImportOptions::new().lenient(true))?;
/// assert_eq!((ok.events.len(), ok.skipped.len()), (1, 1));
/// # Ok::<(), sbox_events::history::ImportError>(())
/// ```
pub fn import_jsonl(
    mut input: impl BufRead,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        let read = match read_line_limited(&mut input, &mut buf, options.max_line_bytes) {
            Ok(read) => read,
            Err(err) => {
                errors.push(LineError {
                    line: line + 1,
                    kind: LineErrorKind::Io {
                        message: err.to_string(),
                    },
                });
                break;
            }
        };
        let Some(mut length) = read else { break };
        line += 1;
        if line == 1 && buf.starts_with(BOM) {
            buf.drain(..BOM.len());
            length -= BOM.len();
        }
        let result = if length > options.max_line_bytes {
            Err(LineErrorKind::TooLong {
                bytes: length,
                limit: options.max_line_bytes,
            })
        } else {
            match std::str::from_utf8(&buf) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => parse_line(text),
                Err(_) => Err(LineErrorKind::NotUtf8),
            }
        };
        match result {
            Ok(record) => events.push(record),
            Err(kind) => errors.push(LineError { line, kind }),
        }
    }
    if errors.is_empty() || options.lenient {
        Ok(Imported {
            events,
            skipped: errors,
        })
    } else {
        Err(ImportError {
            errors,
            imported: events,
        })
    }
}

/// A UTF-8 byte order mark, accepted before the first line.
const BOM: &[u8] = "\u{feff}".as_bytes();

/// Reads one line into `buf` (without its `\n` or `\r\n`) unless it is
/// longer than `limit`, in which case it is consumed but not kept. Returns
/// the line's length, or `None` at the end of the input.
fn read_line_limited(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<usize>> {
    let mut length = 0;
    let mut any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if available.is_empty() {
            break;
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        length += chunk.len();
        if length <= limit.saturating_add(1) {
            buf.extend_from_slice(chunk);
        } else {
            buf.clear();
        }
        let consumed = chunk.len() + usize::from(done);
        input.consume(consumed);
        if done {
            break;
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
        length -= 1;
    }
    Ok(any.then_some(length))
}

fn parse_line(text: &str) -> Result<RecordedEvent, LineErrorKind> {
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|err| {
        if err.is_syntax() || err.is_eof() {
            LineErrorKind::MalformedJson {
                column: err.column(),
                message: strip_position(&err.to_string()),
            }
        } else {
            LineErrorKind::BadEnvelope {
                message: format!(
                    "{} (column {})",
                    strip_position(&err.to_string()),
                    err.column()
                ),
            }
        }
    })?;
    let mut matching = crate::registry::all_events().filter(|e| e.name() == envelope.name);
    let event_type = match (matching.next(), matching.next()) {
        (Some(vtable), None) => EventType(vtable),
        (Some(_), Some(_)) => {
            return Err(LineErrorKind::AmbiguousEvent {
                name: envelope.name.into_owned(),
            });
        }
        (None, _) => {
            return Err(LineErrorKind::UnknownEvent {
                name: envelope.name.into_owned(),
            });
        }
    };
    let timestamp = humantime::parse_rfc3339(&envelope.timestamp).map_err(|err| {
        LineErrorKind::BadEnvelope {
            message: format!(
                "timestamp {:?} is not RFC 3339 UTC: {err}",
                envelope.timestamp
            ),
        }
    })?;
    event_type
        .0
        .check_json(envelope.data.get())
        .map_err(|problem| match problem {
            crate::registry::JsonProblem::Schema(message) => LineErrorKind::Schema {
                event: event_type.name().to_owned(),
                message: strip_position(&message),
            },
            crate::registry::JsonProblem::Invalid(reason) => LineErrorKind::Invalid {
                event: event_type.name().to_owned(),
                reason,
            },
        })?;
    let source = source_of(&envelope.source, event_type.source());
    Ok(RecordedEvent {
        event_type,
        source,
        trace_id: envelope.trace_id,
        timestamp,
        sequence: envelope.sequence,
        metadata: envelope.metadata.into_owned(),
        data: envelope.data.get().into(),
    })
}

/// serde_json ends messages with " at line 1 column N"; we report the file's
/// line and the column ourselves.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// The record's source: borrowed (no heap bytes) when it is the default.
fn source_of(source: &str, default: &'static str) -> Cow<'static, str> {
    if source == default {
        Cow::Borrowed(default)
    } else {
        Cow::Owned(source.to_owned())
    }
}

/// Why an event being emitted was not recorded.
pub(crate) enum NotRecorded {
    /// Its JSON exceeds the limit (serialization stopped there).
    Oversized,
    /// It could not be serialized.
    Serialize,
}

/// Makes a record of an event being emitted now, unless its JSON is longer
/// than `limit` bytes: serialization stops as soon as it is, so a huge event
/// costs at most `limit` bytes to refuse.
pub(crate) fn record<E: crate::Event>(
    event: &E,
    limit: usize,
    source: &str,
    trace_id: TraceId,
    timestamp: SystemTime,
    sequence: u64,
    metadata: &Metadata,
) -> Result<RecordedEvent, NotRecorded> {
    let mut out = Limited {
        buf: Vec::new(),
        limit,
    };
    if let Err(err) = serde_json::to_writer(&mut out, event) {
        return Err(if err.is_io() {
            NotRecorded::Oversized
        } else {
            NotRecorded::Serialize
        });
    }
    let data = String::from_utf8(out.buf).map_err(|_| NotRecorded::Serialize)?;
    Ok(RecordedEvent {
        event_type: EventType::of::<E>(),
        source: source_of(source, E::SOURCE),
        trace_id,
        timestamp,
        sequence,
        metadata: metadata.clone(),
        data: data.into_boxed_str(),
    })
}

/// A buffer that refuses to grow past `limit` bytes.
struct Limited {
    buf: Vec<u8>,
    limit: usize,
}

impl Write for Limited {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let needed = self.buf.len() + data.len();
        if needed > self.limit {
            return Err(io::Error::other("over the history's budget"));
        }
        if needed > self.buf.capacity() {
            let target = (self.buf.capacity() * 2).clamp(needed, self.limit);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_measured_but_not_kept() {
        let input = b"short\r\n0123456789\nlast";
        let mut reader = &input[..];
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut reader, &mut buf, 5).expect("read"),
            Some(5)
        );
        assert_eq!(buf, b"short");
        buf.clear();
        assert_eq!(
            read_line_limited(&mut reader, &mut buf, 5).expect("read"),
            Some(10)
        );
        assert!(buf.len() <= 6, "a long line is not held: {buf:?}");
        buf.clear();
        assert_eq!(
            read_line_limited(&mut reader, &mut buf, 5).expect("read"),
            Some(4)
        );
        assert_eq!(buf, b"last");
        buf.clear();
        assert_eq!(
            read_line_limited(&mut reader, &mut buf, 5).expect("read"),
            None
        );
    }
}
