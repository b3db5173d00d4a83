//! SIP008 online configuration documents (`{"version": 1, "servers":
//! [...]}`), the JSON subscription format of Shadowsocks providers: read in
//! one pass, one server object held at a time, each written as the SIP002
//! link it stands for, so that it goes through the same conversion and
//! checks as a `ss://` line.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::io::{self, Read};

/// Reads the document from `body`, calling `server` with each server's
/// 1-based position and its `ss://` link (or why the entry is unusable).
/// Fails when the document itself is not SIP008: not one JSON object, no
/// `servers` list, a `version` other than 1, or malformed JSON (the error
/// says where). An I/O error from `body` is returned as itself.
pub fn each_server(
    body: impl Read,
    server: &mut impl FnMut(usize, Result<String, String>),
) -> Result<(), Sip008Error> {
    let mut deserializer = serde_json::Deserializer::from_reader(io::BufReader::new(body));
    let found = de::Deserializer::deserialize_map(&mut deserializer, Document { server })
        .and_then(|found| deserializer.end().map(|()| found))
        .map_err(|e| match e.io_error_kind() {
            Some(kind) => Sip008Error::Io(io::Error::new(kind, e.to_string())),
            None => Sip008Error::Format(e.to_string()),
        })?;
    match found {
        Found { servers: false, .. } => Err(Sip008Error::Format(
            "no `servers` list (a SIP008 document has one)".to_owned(),
        )),
        Found {
            version: Some(version),
            ..
        } if version != 1 => Err(Sip008Error::Format(format!(
            "SIP008 version {version} is not supported (version 1 is)"
        ))),
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
                    map.next_value_seed(Servers {
                        server: &mut *self.server,
                    })?;
                    found.servers = true;
                }
                "version" => {
                    found.version = Some(map.next_value::<u64>().map_err(|_| {
                        de::Error::custom("`version` is not a number (SIP008 documents say 1)")
                    })?);
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

/// The `servers` list, handed out one object at a time.
struct Servers<'f, F> {
    server: &'f mut F,
}

impl<'de, F: FnMut(usize, Result<String, String>)> DeserializeSeed<'de> for Servers<'_, F> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(usize, Result<String, String>)> Visitor<'de> for Servers<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`servers` as a list of server objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut position = 0;
        while let Some(value) = seq.next_element::<Value>()? {
            position += 1;
            let link = match value {
                Value::Object(fields) => to_link(&fields),
                other => Err(format!("not a server object but {}", kind(&other))),
            };
            (self.server)(position, link);
        }
        Ok(())
    }
}

/// The SIP002 link of one server object: `ss://method:password@host:port`
/// percent-encoded, with its plugin and its name (`remarks`).
pub fn to_link(fields: &Map<String, Value>) -> Result<String, String> {
    let host = required(fields, "server")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port(fields)?;
    let method = required(fields, "method")?;
    let password = match fields.get("password") {
        Some(Value::String(password)) => password.as_str(),
        Some(other) => return Err(format!("`password` is {}, not a string", kind(other))),
        None => return Err("`password` is missing".to_owned()),
    };
    let plugin = optional(fields, "plugin")?;
    let plugin_opts = optional(fields, "plugin_opts")?;
    let name = optional(fields, "remarks")?;
    let encode = |text: &str| utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
    // An IPv6 address goes in brackets; anything else the link's checks
    // judge (a host with `/`, `@`... is refused there, named).
    let address = match host.contains(':') {
        true if host.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{host}]"),
        true => {
            return Err(format!(
                "`server` {:?} is neither a host name nor an IP address (the port goes in \
                 `server_port`)",
                super::link::shorten(host)
            ));
        }
        false => host.to_owned(),
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
    } else if !plugin_opts.is_empty() {
        return Err("`plugin_opts` without a `plugin`".to_owned());
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
                super::link::shorten(&shown.unwrap_or_default())
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
