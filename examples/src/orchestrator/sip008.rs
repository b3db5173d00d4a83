//! SIP008 online configuration documents (`{"version": 1, "servers":
//! [...]}`), the JSON subscription format of Shadowsocks providers: read in
//! one pass, one server object held at a time (at most
//! [`MAX_SERVER_BYTES`] of its text), each written as the SIP002 link it
//! stands for, so that it goes through the same conversion and checks as a
//! `ss://` line.

use super::input::MAX_LINE_BYTES;
use super::link::{check_host, is_ipv6, shorten, shorten_to};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;
use std::io::{self, Read};
use std::rc::Rc;

/// The most text one server object may take; the document fails past it
/// (a server object is a few hundred bytes: anything near this is not one).
pub const MAX_SERVER_BYTES: u64 = 1 << 20;

/// Reads the document from `body`, calling `server` with each server's
/// 1-based position and its `ss://` link (or why the entry is unusable).
/// Fails when the document itself is not SIP008: not one JSON object, no
/// `servers` list, a `version` other than 1, or malformed JSON (the error
/// says where). An I/O error from `body` is returned as itself.
pub fn each_server(
    body: impl Read,
    server: &mut impl FnMut(usize, Result<String, String>),
) -> Result<(), Sip008Error> {
    let progress = Rc::new(Progress::default());
    let reader = Bounded {
        inner: io::BufReader::new(body),
        progress: Rc::clone(&progress),
    };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let document = Document { server, progress };
    let found = de::Deserializer::deserialize_map(&mut deserializer, document)
        .and_then(|found| deserializer.end().map(|()| found))
        .map_err(|e| match e.io_error_kind() {
            // The bound on one server's text (`Bounded`).
            Some(io::ErrorKind::InvalidData) => Sip008Error::Format(short_message(&e)),
            Some(kind) => Sip008Error::Io(io::Error::new(kind, e.to_string())),
            None => Sip008Error::Format(short_message(&e)),
        })?;
    match found {
        Found { servers: false, .. } => Err(Sip008Error::Format(
            "no `servers` list (a SIP008 document has one)".to_owned(),
        )),
        Found {
            version: Some(version),
            ..
        } if version != 1 => Err(Sip008Error::Format(
            unsupported::<serde_json::Error>(version).to_string(),
        )),
        Found { .. } => Ok(()),
    }
}

/// Why a document could not be read.
#[derive(Debug)]
pub enum Sip008Error {
    /// Reading failed (also: the size cap was reached).
    Io(io::Error),
    /// Not a SIP008 document, or not JSON.
    Format(String),
}

/// What the top level held.
struct Found {
    servers: bool,
    version: Option<u64>,
}

struct Document<'f, F> {
    server: &'f mut F,
    progress: Rc<Progress>,
}

impl<'de, F: FnMut(usize, Result<String, String>)> Visitor<'de> for Document<'_, F> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SIP008 document (a JSON object with a `servers` list)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let mut found = Found {
            servers: false,
            version: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "servers" if found.servers => {
                    return Err(de::Error::custom("`servers` appears twice"));
                }
                "servers" => {
                    if let Some(version) = found.version.filter(|&v| v != 1) {
                        return Err(unsupported(version));
                    }
                    map.next_value_seed(Servers {
                        server: &mut *self.server,
                        progress: &self.progress,
                    })?;
                    found.servers = true;
                }
                "version" => {
                    // Read raw: a read error stays one, and any value is
                    // shown (shortened) in the message.
                    let raw = map.next_value::<Box<RawValue>>()?;
                    let version = raw.get().trim().parse::<u64>().map_err(|_| {
                        de::Error::custom(format!(
                            "`version` {} is not a version number (SIP008 documents say 1)",
                            shorten(raw.get().trim())
                        ))
                    })?;
                    found.version = Some(version);
                }
                // Providers add their own fields (`bytes_used`...).
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

fn unsupported<E: de::Error>(version: u64) -> E {
    E::custom(format!(
        "SIP008 version {version} is not supported (version 1 is)"
    ))
}

/// serde_json's message, with a long value it quotes cut short (the
/// position it ends with is kept).
fn short_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let (text, position) = match message.rfind(" at line ") {
        Some(at) => message.split_at(at),
        None => (message.as_str(), ""),
    };
    format!("{}{position}", shorten_to(text, 200))
}

/// How far the document was read, and where the server being read
/// started (with its position), shared by the reader and the visitor.
#[derive(Default)]
struct Progress {
    read: Cell<u64>,
    server: Cell<Option<(u64, usize)>>,
}

/// The document's reader: fails (`InvalidData`) once the server being read
/// takes more than [`MAX_SERVER_BYTES`], so that no server is held past
/// that. (serde_json reads a reader byte by byte: the count is exact.)
struct Bounded<R> {
    inner: R,
    progress: Rc<Progress>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.progress.read.get();
        if let Some((start, position)) = self.progress.server.get()
            && read - start >= MAX_SERVER_BYTES
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("server {position} is larger than {MAX_SERVER_BYTES} bytes"),
            ));
        }
        let n = self.inner.read(buf)?;
        self.progress.read.set(read + n as u64);
        Ok(n)
    }
}

/// The `servers` list, handed out one object at a time.
struct Servers<'f, 'p, F> {
    server: &'f mut F,
    progress: &'p Progress,
}

impl<'de, F: FnMut(usize, Result<String, String>)> DeserializeSeed<'de> for Servers<'_, '_, F> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(usize, Result<String, String>)> Visitor<'de> for Servers<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`servers` as a list of server objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut position = 0;
        loop {
            position += 1;
            let progress = self.progress;
            progress.server.set(Some((progress.read.get(), position)));
            let raw = seq.next_element::<Box<RawValue>>();
            progress.server.set(None);
            let Some(raw) = raw? else {
                return Ok(());
            };
            // Read as text first (a bad string in it fails this server
            // only), then as an object.
            let link = match serde_json::from_str::<Value>(raw.get()) {
                Ok(Value::Object(fields)) => to_link(&fields),
                Ok(other) => Err(format!("not a server object but {}", kind(&other))),
                Err(e) => Err(format!(
                    "not valid JSON: {}",
                    short_message(&e)
                        .split(" at line ")
                        .next()
                        .unwrap_or_default()
                )),
            };
            (self.server)(position, link);
        }
    }
}

/// The SIP002 link of one server object: `ss://method:password@host:port`
/// percent-encoded, with its plugin and its name (`remarks`).
pub fn to_link(fields: &Map<String, Value>) -> Result<String, String> {
    for key in [
        "server",
        "method",
        "password",
        "plugin",
        "plugin_opts",
        "remarks",
    ] {
        if let Some(Value::String(text)) = fields.get(key)
            && text.len() > MAX_LINE_BYTES
        {
            return Err(format!(
                "`{key}` is {} bytes, longer than {MAX_LINE_BYTES}",
                text.len()
            ));
        }
    }
    let host = required(fields, "server")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.contains(':') && !is_ipv6(host) {
        return Err(format!(
            "`server` {:?} is neither a host name nor an IP address (the port goes in \
             `server_port`)",
            shorten(host)
        ));
    }
    let host = check_host(host).map_err(|e| format!("`server`: {e}"))?;
    let port = port(fields)?;
    let method = required(fields, "method")?;
    if method.contains(':') {
        return Err(format!(
            "`method` {:?} is not a shadowsocks method",
            shorten(method)
        ));
    }
    let password = match fields.get("password") {
        Some(Value::String(password)) => password.as_str(),
        Some(other) => return Err(format!("`password` is {}, not a string", kind(other))),
        None => return Err("`password` is missing".to_owned()),
    };
    let plugin = optional(fields, "plugin")?;
    let plugin_opts = optional(fields, "plugin_opts")?;
    let name = optional(fields, "remarks")?;
    let encode = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
    // An IPv6 address goes in brackets (a zone, `%eth0`, as it is).
    let address = match host.contains(':') {
        true => format!("[{host}]"),
        false => host,
    };
    let mut link = format!(
        "ss://{}:{}@{address}:{port}/",
        encode(method),
        encode(password)
    );
    if !plugin.is_empty() {
        let spec = match plugin_opts.is_empty() {
            true => plugin.to_owned(),
            false => format!("{plugin};{plugin_opts}"),
        };
        link.push_str("?plugin=");
        link.push_str(&encode(&spec));
    }
    if !name.is_empty() {
        link.push('#');
        link.push_str(&encode(name));
    }
    Ok(link)
}

fn required<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match fields.get(key) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) => Err(format!("`{key}` is empty")),
        Some(other) => Err(format!("`{key}` is {}, not a string", kind(other))),
        None => Err(format!("`{key}` is missing")),
    }
}

/// An optional string field: absent, `null` and `""` are all "none".
fn optional<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match fields.get(key) {
        Some(Value::String(text)) => Ok(text),
        None | Some(Value::Null) => Ok(""),
        Some(other) => Err(format!("`{key}` is {}, not a string", kind(other))),
    }
}

/// `server_port`: a number, or a string of digits (some providers quote it).
fn port(fields: &Map<String, Value>) -> Result<u16, String> {
    let port = match fields.get("server_port") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        Some(other) => {
            return Err(format!(
                "`server_port` is {}, not a port number",
                kind(other)
            ));
        }
        None => return Err("`server_port` is missing".to_owned()),
    };
    port.and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or_else(|| {
            let shown = fields.get("server_port").map(Value::to_string);
            format!(
                "`server_port` {} is not a port number (1-65535)",
                shorten(&shown.unwrap_or_default())
            )
        })
}

/// What a JSON value is, for messages (never its text: it may be long).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
