//! W3C `traceparent` headers ([`TraceParent`]) and the strict parser both
//! id kinds share ([`ParseTraceError`]).

use super::TraceId;
use core::fmt;
use core::num::NonZeroU64;
use core::str::FromStr;

/// A parsed W3C `traceparent` header: `version-traceid-parentid-flags`.
///
/// ```
/// use sbox_events::trace::TraceParent;
///
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let parent = TraceParent::parse(header)?;
/// assert_eq!(parent.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(parent.sampled());
/// assert_eq!(parent.to_string(), header);
///
/// let err = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")
///     .unwrap_err();
/// assert_eq!(err.to_string(), "invalid traceparent at byte 36: parent-id is all zeros");
/// # Ok::<(), sbox_events::trace::ParseTraceError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: NonZeroU64,
    flags: u8,
}

impl TraceParent {
    /// A version-00 header value for these parts.
    pub const fn new(trace_id: TraceId, parent_id: NonZeroU64, flags: u8) -> TraceParent {
        TraceParent {
            trace_id,
            parent_id,
            flags,
        }
    }

    /// Parses a `traceparent` header value strictly, as W3C Trace Context
    /// level 1 says: version 00 is exactly 55 characters; a higher version may
    /// carry more fields after a `-`; version `ff`, uppercase hex and all-zero
    /// ids are errors.
    pub fn parse(input: &str) -> Result<TraceParent, ParseTraceError> {
        const LEN: usize = 55;
        let s = Subject::TraceParent;
        let bytes = input.as_bytes();
        if bytes.len() < LEN {
            return Err(ParseTraceError::new(
                s,
                0,
                ErrorKind::Length {
                    expected: LEN,
                    found: input.chars().count(),
                },
            ));
        }
        let version = parse_hex(input, 0, 2, s)? as u8;
        if version == 0xff {
            return Err(ParseTraceError::new(s, 0, ErrorKind::ForbiddenVersion));
        }
        for at in [2, 35, 52] {
            expect_dash(input, at)?;
        }
        let trace_id = parse_hex(input, 3, 32, s)?;
        let parent_id = parse_hex(input, 36, 16, s)? as u64;
        let flags = parse_hex(input, 53, 2, s)? as u8;
        if version == 0 && bytes.len() != LEN {
            return Err(ParseTraceError::new(s, LEN, ErrorKind::TrailingData));
        }
        if bytes.len() > LEN {
            expect_dash(input, LEN)?;
        }
        let trace_id = TraceId::from_u128(trace_id)
            .ok_or_else(|| ParseTraceError::new(s, 3, ErrorKind::AllZero))?;
        let parent_id = NonZeroU64::new(parent_id)
            .ok_or_else(|| ParseTraceError::new(s, 36, ErrorKind::ParentAllZero))?;
        Ok(TraceParent::new(trace_id, parent_id, flags))
    }

    /// The trace this request belongs to.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The caller's span id (`parent-id`).
    pub const fn parent_id(&self) -> NonZeroU64 {
        self.parent_id
    }

    /// The trace flags byte.
    pub const fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled this trace (flag bit 0).
    pub const fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{:016x}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

impl FromStr for TraceParent {
    type Err = ParseTraceError;
    fn from_str(input: &str) -> Result<TraceParent, ParseTraceError> {
        TraceParent::parse(input)
    }
}

fn expect_dash(input: &str, at: usize) -> Result<(), ParseTraceError> {
    match input.as_bytes().get(at) {
        Some(b'-') => Ok(()),
        _ => Err(ParseTraceError::new(
            Subject::TraceParent,
            at,
            ErrorKind::Delimiter {
                found: char_at(input, at),
            },
        )),
    }
}

/// Lowercase hex digits `input[start..start + len]` (callers check the length).
pub(super) fn parse_hex(
    input: &str,
    start: usize,
    len: usize,
    subject: Subject,
) -> Result<u128, ParseTraceError> {
    let mut value: u128 = 0;
    for (offset, byte) in input.as_bytes()[start..start + len].iter().enumerate() {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            _ => {
                let at = start + offset;
                let kind = if byte.is_ascii_hexdigit() {
                    ErrorKind::Uppercase {
                        found: char_at(input, at),
                    }
                } else {
                    ErrorKind::NotHex {
                        found: char_at(input, at),
                    }
                };
                return Err(ParseTraceError::new(subject, at, kind));
            }
        };
        value = value << 4 | u128::from(digit);
    }
    Ok(value)
}

/// The character starting at byte `at`, or U+FFFD when `at` falls inside a
/// multi-byte character: the dashes are checked before the hex fields, so
/// the bytes before `at` are not necessarily all ASCII.
pub(super) fn char_at(input: &str, at: usize) -> char {
    input
        .get(at..)
        .and_then(|rest| rest.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Why a trace id or `traceparent` header was rejected, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseTraceError {
    subject: Subject,
    position: usize,
    kind: ErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Subject {
    TraceId,
    TraceParent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ErrorKind {
    Length { expected: usize, found: usize },
    NotHex { found: char },
    Uppercase { found: char },
    Delimiter { found: char },
    AllZero,
    ParentAllZero,
    ForbiddenVersion,
    TrailingData,
}

impl ParseTraceError {
    pub(super) fn new(subject: Subject, position: usize, kind: ErrorKind) -> Self {
        ParseTraceError {
            subject,
            position,
            kind,
        }
    }

    /// The byte offset in the input where the problem is.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl fmt::Display for ParseTraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match self.subject {
            Subject::TraceId => "trace id",
            Subject::TraceParent => "traceparent",
        };
        write!(f, "invalid {subject} at byte {}: ", self.position)?;
        match &self.kind {
            ErrorKind::Length { expected, found } if self.subject == Subject::TraceId => {
                write!(
                    f,
                    "expected {expected} lowercase hex digits, found {found} characters"
                )
            }
            ErrorKind::Length { expected, found } => write!(
                f,
                "expected at least {expected} characters \
                 (version-traceid-parentid-flags), found {found}"
            ),
            ErrorKind::NotHex { found } => write!(f, "{found:?} is not a hex digit"),
            ErrorKind::Uppercase { found } => write!(
                f,
                "{found:?} is not a lowercase hex digit (W3C ids are lowercase)"
            ),
            ErrorKind::Delimiter { found } => write!(f, "expected '-', found {found:?}"),
            ErrorKind::AllZero => f.write_str("trace-id is all zeros"),
            ErrorKind::ParentAllZero => f.write_str("parent-id is all zeros"),
            ErrorKind::ForbiddenVersion => f.write_str("version ff is forbidden"),
            ErrorKind::TrailingData => f.write_str("version 00 has exactly 55 characters"),
        }
    }
}

impl std::error::Error for ParseTraceError {}
