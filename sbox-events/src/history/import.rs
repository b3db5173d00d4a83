//! JSON Lines out ([`export_jsonl`]) and in ([`import_jsonl`]), in the
//! crate's one record envelope.

use super::RecordedEvent;
use super::record::source_of;
use crate::any::EventType;
use crate::envelope::{Envelope, EventId};
use crate::escape::EscapedDisplay;
use crate::event::{JsonProblem, all_events};
use crate::jsonl::Line;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, Write};

/// Writes records as JSON Lines (one envelope per line); returns how many.
pub fn export_jsonl<'a>(
    records: impl IntoIterator<Item = &'a RecordedEvent>,
    mut out: impl Write,
) -> io::Result<usize> {
    let mut count = 0;
    for record in records {
        serde_json::to_writer(&mut out, &record.line()?)?;
        out.write_all(b"\n")?;
        count += 1;
    }
    out.flush()?;
    Ok(count)
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
#[non_exhaustive]
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
    errors: Vec<LineError>,
    imported: Vec<RecordedEvent>,
}

impl ImportError {
    /// Every bad line, in order (at least one).
    pub fn errors(&self) -> &[LineError] {
        &self.errors
    }

    /// The valid records of the whole input.
    pub fn imported(&self) -> &[RecordedEvent] {
        &self.imported
    }

    /// The valid records, to keep them.
    pub fn into_imported(self) -> Vec<RecordedEvent> {
        self.imported
    }
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
    line: usize,
    kind: LineErrorKind,
}

impl LineError {
    /// 1-based line number.
    pub fn line(&self) -> usize {
        self.line
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &LineErrorKind {
        &self.kind
    }
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
    /// The line was written by a version of the event type whose schema
    /// differs from the one linked here (see
    /// [`Event::FINGERPRINT`](crate::Event::FINGERPRINT)): its fields
    /// would be misread.
    Fingerprint {
        /// The event name.
        event: String,
        /// The linked type's fingerprint.
        expected: String,
        /// The line's.
        found: String,
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
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl fmt::Display for LineErrorKind {
    /// Escaped ([`LogSafe`](crate::escape::LogSafe)): parser messages and
    /// names may quote the input.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", EscapedDisplay(Unescaped(self)))
    }
}

/// A [`LineErrorKind`]'s text as it is, for [`EscapedDisplay`].
struct Unescaped<'a>(&'a LineErrorKind);

impl fmt::Display for Unescaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
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
            LineErrorKind::Fingerprint {
                event,
                expected,
                found,
            } => write!(
                f,
                "`{event}` was written with schema {found:?}, but this binary's `{event}` has \
                 schema {expected:?} (a different version of the event type)"
            ),
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
/// typed-checked records; see the [module docs](crate::history).
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
/// assert_eq!(err.imported().len(), 1, "the valid line is kept");
/// assert_eq!(err.errors()[0].line(), 2);
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
    // A byte order mark before the first line is skipped, not counted in
    // its length (a read error here is met again, and reported, below).
    let mut bom_skipped = false;
    if let Ok(start) = input.fill_buf()
        && start.starts_with(BOM)
    {
        input.consume(BOM.len());
        bom_skipped = true;
    }
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
        // (Here when the first read held less than the mark: one mark only.)
        if line == 1 && !bom_skipped && buf.starts_with(BOM) {
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
    // The line's last byte, also when it was not kept.
    let mut last = None;
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
        if let Some(&byte) = chunk.last() {
            last = Some(byte);
        }
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
    if last == Some(b'\r') {
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        length -= 1;
    }
    Ok(any.then_some(length))
}

fn parse_line(text: &str) -> Result<RecordedEvent, LineErrorKind> {
    let line: Line<'_, &RawValue> = serde_json::from_str(text).map_err(|err| {
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
    let mut matching = all_events().filter(|e| e.name() == line.name);
    let event_type = match (matching.next(), matching.next()) {
        (Some(vtable), None) => EventType(vtable),
        (Some(_), Some(_)) => {
            return Err(LineErrorKind::AmbiguousEvent {
                name: line.name.into_owned(),
            });
        }
        (None, _) => {
            return Err(LineErrorKind::UnknownEvent {
                name: line.name.into_owned(),
            });
        }
    };
    if let Some(found) = &line.fingerprint
        && found != event_type.fingerprint()
    {
        return Err(LineErrorKind::Fingerprint {
            event: event_type.name().to_owned(),
            expected: event_type.fingerprint().to_owned(),
            found: found.as_ref().chars().take(64).collect(),
        });
    }
    let timestamp =
        humantime::parse_rfc3339(&line.timestamp).map_err(|err| LineErrorKind::BadEnvelope {
            message: format!("timestamp {:?} is not RFC 3339 UTC: {err}", line.timestamp),
        })?;
    event_type
        .0
        .check_json(line.data.get())
        .map_err(|problem| match problem {
            JsonProblem::Schema(message) => LineErrorKind::Schema {
                event: event_type.name().to_owned(),
                message: strip_position(&message),
            },
            JsonProblem::Invalid(reason) => LineErrorKind::Invalid {
                event: event_type.name().to_owned(),
                reason,
            },
        })?;
    let envelope = Envelope {
        name: event_type.name(),
        // Lines written before events had ids get one derived from the
        // line, the same on every import.
        event_id: line
            .event_id
            .unwrap_or_else(|| EventId::derived(timestamp, line_seed(text))),
        trace_id: line.trace_id,
        sequence: line.sequence,
        source: source_of(&line.source, event_type.source()),
        metadata: line.metadata.into_owned(),
        timestamp,
        depth: line.depth.unwrap_or(0),
        replay: line.replay,
        remote: line.remote.map(|remote| Box::from(remote.as_ref())),
        cause: line.cause.map(Box::new),
    };
    Ok(RecordedEvent {
        event_type,
        envelope,
        data: line.data.get().into(),
        handlers: line.handlers.map(Cow::into_owned).unwrap_or_default(),
    })
}

/// 128 bits that depend on every byte of `text` (two FNV-1a hashes).
fn line_seed(text: &str) -> u128 {
    let hash = |basis: u64| {
        text.bytes().fold(basis, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    (u128::from(hash(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(hash(0x6c62_272e_07bb_0142))
}

/// serde_json ends messages with " at line 1 column N"; we report the file's
/// line and the column ourselves.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
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
        // A long line's `\r\n` is not counted either.
        let mut reader = &b"0123456789\r\n"[..];
        assert_eq!(
            read_line_limited(&mut reader, &mut buf, 5).expect("read"),
            Some(10)
        );
    }
}
