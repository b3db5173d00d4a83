//! Reading a subscription in one pass with bounded memory: a size cap, a
//! UTF-8 byte order mark skipped (before the body or inside its base64),
//! plain or base64 bodies (base64 decoded as
//! it streams: either alphabet, padding optional, line breaks anywhere), and
//! lines of bounded length handed out one at a time; or a SIP008 JSON
//! document, its servers handed out one at a time as `ss://` links.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;

use super::sip008::{self, Sip008Error};

/// How the subscription was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One URI per line.
    Plain,
    /// The list, base64 encoded as a whole.
    Base64,
    /// A SIP008 JSON document (`{"version": 1, "servers": [...]}`).
    Sip008,
}

impl Format {
    /// `plain` or `base64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Base64 => "base64",
            Format::Sip008 => "sip008",
        }
    }
}

/// Where an entry of a subscription is (1-based): a line of a list, or a
/// server of a SIP008 document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The line's number in the (decoded) list.
    Line(usize),
    /// The server's position in the document's `servers`.
    Server(usize),
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Line(n) => write!(f, "line {n}"),
            Entry::Server(n) => write!(f, "server {n}"),
        }
    }
}

/// A UTF-8 byte order mark.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// The longest line kept; longer lines are reported, not held.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Plain or base64.
    pub format: Format,
    /// Bytes of the file read.
    pub bytes: u64,
}

/// Why the subscription as a whole could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// `io`, `too_large`, `empty` or `format`.
    pub kind: &'static str,
    /// For people (without the file name, which the caller adds).
    pub message: String,
}

impl InputError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        InputError {
            kind,
            message: message.into(),
        }
    }
}

/// Reads `path`, calling `line` for every non-blank, non-comment line with
/// its position and its text (or why it is unusable); for a SIP008
/// document, for every server with its position and its `ss://` link. Stops
/// with an error past `max_bytes` bytes of input.
pub fn read_lines(
    path: &Path,
    max_bytes: u64,
    mut line: impl FnMut(Entry, Result<&str, String>),
) -> Result<Fetched, InputError> {
    let file = File::open(path).map_err(|e| InputError::new("io", format!("cannot read: {e}")))?;
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > max_bytes
    {
        return Err(too_large(max_bytes));
    }
    let mut capped = Capped::new(file, max_bytes);
    let (format, head) = sniff(&mut capped, max_bytes)?;
    let body = Cursor::new(head).chain(&mut capped);
    let result = match format {
        Format::Sip008 => {
            let mut server = |n, link: Result<String, String>| {
                line(Entry::Server(n), link.as_deref().map_err(Clone::clone))
            };
            return match sip008::each_server(body, &mut server) {
                Ok(()) => Ok(Fetched {
                    format,
                    bytes: capped.read,
                }),
                Err(Sip008Error::Io(e)) if e.kind() == io::ErrorKind::FileTooLarge => {
                    Err(too_large(max_bytes))
                }
                Err(Sip008Error::Io(e)) => Err(InputError::new("io", format!("cannot read: {e}"))),
                Err(Sip008Error::Format(e)) => Err(InputError::new(
                    "format",
                    format!("the subscription is not a usable SIP008 document: {e}"),
                )),
            };
        }
        Format::Plain => each_line(BufReader::with_capacity(1 << 16, body), &mut line),
        Format::Base64 => each_line(
            BufReader::with_capacity(1 << 16, Base64Decoder::new(body)),
            &mut line,
        ),
    };
    result.map_err(|e| match e.kind() {
        io::ErrorKind::FileTooLarge => too_large(max_bytes),
        io::ErrorKind::InvalidData if format == Format::Base64 => InputError::new(
            "format",
            format!("the subscription is neither a list of proxy URIs nor base64: {e}"),
        ),
        _ => InputError::new("io", format!("cannot read: {e}")),
    })?;
    Ok(Fetched {
        format,
        bytes: capped.read,
    })
}

fn too_large(max: u64) -> InputError {
    InputError::new(
        "too_large",
        format!(
            "the subscription is larger than the limit of {max} bytes (raise it with --max-bytes)"
        ),
    )
}

/// Reads the start of the input (up to 64 KiB), drops a BOM, and decides
/// the format: SIP008 for a JSON object with `servers` (and none of a
/// sing-box configuration's keys), a plain list if any line there has a URI
/// (`://`, which base64 text never contains; a first line may be a
/// provider's status text) or is a provider's note (`STATUS=...`: base64
/// has `=` only at its end; a list of notes alone is an expired
/// provider's), otherwise base64.
fn sniff(input: &mut impl Read, max_bytes: u64) -> Result<(Format, Vec<u8>), InputError> {
    let mut head = Vec::with_capacity(1 << 16);
    input
        .take(1 << 16)
        .read_to_end(&mut head)
        .map_err(|e| match e.kind() {
            io::ErrorKind::FileTooLarge => too_large(max_bytes),
            _ => InputError::new("io", format!("cannot read: {e}")),
        })?;
    if head.starts_with(BOM) {
        head.drain(..BOM.len());
    }
    let content = head
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .any(|l| !l.is_empty() && !l.starts_with(b"#"));
    if !content {
        Err(InputError::new("empty", "the subscription is empty"))
    } else if is_sip008(&head) {
        Ok((Format::Sip008, head))
    } else if let Some(other) = other_format(&head) {
        Err(InputError::new(
            "format",
            format!("the subscription is {other}, not a list of share links"),
        ))
    } else if head.windows(3).any(|w| w == b"://") || has_note(&head) {
        Ok((Format::Plain, head))
    } else {
        Ok((Format::Base64, head))
    }
}

/// Whether `key` (quoted) appears in `json` as a key: followed by `:`, not
/// inside a string value such as a server's name.
fn has_key(json: &str, key: &str) -> bool {
    json.match_indices(key)
        .any(|(at, _)| json[at + key.len()..].trim_start().starts_with(':'))
}

/// Whether a line of `head` is a provider's note with text other than `=`
/// after its first `=` (which base64, padded only at its end, cannot have).
fn has_note(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(|line| provider_note(line.trim()))
        .any(|note| {
            note.split_once('=')
                .is_some_and(|(_, text)| text.contains(|c| c != '='))
        })
}

/// A provider's note in a list of links: Shadowrocket's `STATUS=` line
/// (traffic left, expiry) or `REMARKS=` line (the provider's name), keys in
/// any case, spaces allowed before the `=` (`REMARKS = name`). `None` for
/// anything else, links included.
pub fn provider_note(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim_end();
    ["STATUS", "REMARKS"]
        .iter()
        .any(|note| key.eq_ignore_ascii_case(note))
        .then_some(line)
}

/// Keys of a sing-box configuration (a SIP008 document has none).
const SING_BOX_KEYS: [&str; 3] = ["\"outbounds\"", "\"inbounds\"", "\"route\""];

/// A JSON object that names a `servers` list and is not a sing-box
/// configuration.
fn is_sip008(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let start = text.trim_start();
    start.starts_with('{')
        && has_key(start, "\"servers\"")
        && !SING_BOX_KEYS.iter().any(|key| has_key(start, key))
}

/// Recognizes what providers send instead of share links: a whole client
/// configuration (converting those is not supported), or a web page.
fn other_format(head: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(head);
    let start = text.trim_start();
    let top_level_key = |key: &str| {
        text.lines().any(|line| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
        })
    };
    if start.starts_with('{') || start.starts_with('[') {
        return Some(match SING_BOX_KEYS.iter().any(|key| has_key(start, key)) {
            true => "a sing-box JSON configuration (converting it is not supported yet)",
            false => {
                "JSON that is neither a SIP008 document (an object with a `servers` list in its \
                 first 64 KiB) nor a sing-box configuration"
            }
        });
    }
    let lower = start
        .get(..start.len().min(64))
        .unwrap_or("")
        .to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return Some("an HTML page (a login or error page of the provider?)");
    }
    let clash = [
        "proxies",
        "proxy-groups",
        "proxy-providers",
        "mixed-port",
        "rules",
    ];
    if clash.iter().any(|key| top_level_key(key)) {
        return Some("a Clash YAML configuration (converting it is not supported yet)");
    }
    None
}

fn each_line(
    mut input: impl BufRead,
    line: &mut impl FnMut(Entry, Result<&str, String>),
) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let Some(length) = read_line_limited(&mut input, &mut buf)? else {
            return Ok(());
        };
        number += 1;
        // A byte order mark inside a base64 body (the text was encoded with
        // its BOM); the one before the body is dropped by `sniff`.
        if number == 1 && buf.starts_with(BOM) {
            buf.drain(..BOM.len());
        }
        if length > MAX_LINE_BYTES {
            line(
                Entry::Line(number),
                Err(format!(
                    "line is {length} bytes, longer than {MAX_LINE_BYTES}"
                )),
            );
            continue;
        }
        match std::str::from_utf8(&buf) {
            Ok(text) => {
                let text = text.trim();
                if !text.is_empty() && !text.starts_with('#') {
                    line(Entry::Line(number), Ok(text));
                }
            }
            Err(e) => line(
                Entry::Line(number),
                Err(format!("not UTF-8 text (byte {})", e.valid_up_to() + 1)),
            ),
        }
    }
}

/// One line into `buf` (without its newline) unless it is longer than
/// [`MAX_LINE_BYTES`], in which case it is consumed but not kept. Returns
/// the line's length, or `None` at the end.
fn read_line_limited(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut length = 0;
    let mut any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(length));
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        length += chunk.len();
        if length <= MAX_LINE_BYTES {
            buf.extend_from_slice(chunk);
        } else {
            buf.clear();
        }
        let consumed = chunk.len() + usize::from(done);
        input.consume(consumed);
        if done {
            return Ok(Some(length));
        }
    }
}

/// Fails with `FileTooLarge` once more than `max` bytes were read.
pub(super) struct Capped<R> {
    inner: R,
    read: u64,
    max: u64,
}

impl<R> Capped<R> {
    pub(super) fn new(inner: R, max: u64) -> Self {
        Capped {
            inner,
            read: 0,
            max,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "over the size limit",
            ));
        }
        Ok(n)
    }
}

/// Decodes base64 as it streams: both alphabets, whitespace anywhere,
/// padding optional (a `=` ends a group, so padded pieces may follow each
/// other).
struct Base64Decoder<R> {
    inner: R,
    /// Up to three characters of an unfinished group (as 6-bit values).
    group: Vec<u8>,
    out: Vec<u8>,
    at: usize,
    consumed: u64,
    done: bool,
}

impl<R: Read> Base64Decoder<R> {
    fn new(inner: R) -> Self {
        Base64Decoder {
            inner,
            group: Vec::with_capacity(4),
            out: Vec::new(),
            at: 0,
            consumed: 0,
            done: false,
        }
    }

    fn sextet(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }

    /// Emits the bytes of the group so far (2-4 characters).
    fn flush_group(&mut self) -> io::Result<()> {
        let g = &self.group;
        match g.len() {
            0 => {}
            1 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a group ends after one character near byte {}",
                        self.consumed
                    ),
                ));
            }
            n => {
                let bits =
                    g.iter().fold(0u32, |acc, &s| (acc << 6) | u32::from(s)) << (6 * (4 - n));
                let bytes = bits.to_be_bytes();
                self.out.extend_from_slice(&bytes[1..n]);
            }
        }
        self.group.clear();
        Ok(())
    }

    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.at = 0;
        let mut raw = [0u8; 1 << 14];
        while self.out.is_empty() && !self.done {
            let n = match self.inner.read(&mut raw) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.done = true;
                self.flush_group()?;
                break;
            }
            for &c in &raw[..n] {
                self.consumed += 1;
                if c.is_ascii_whitespace() {
                    continue;
                }
                if c == b'=' {
                    self.flush_group()?;
                    continue;
                }
                let s = Self::sextet(c).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("byte {} ({:?}) is not base64", self.consumed, char::from(c)),
                    )
                })?;
                self.group.push(s);
                if self.group.len() == 4 {
                    self.flush_group()?;
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Base64Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.out.len() {
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
