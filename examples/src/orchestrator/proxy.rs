//! Proxy URIs of a subscription: `ss://`, `vless://`, `trojan://`, `vmess://`.
//!
//! A subscription is a list of URIs, one per line, either plain or base64
//! encoded as a whole. Each line parses into a [`Server`] or an [`Invalid`]
//! entry that says why, with its line number.

use base64::Engine;
use base64::engine::general_purpose::{
    GeneralPurpose, STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
};
use percent_encoding::percent_decode_str;
use std::collections::BTreeMap;
use std::fmt;

/// One usable server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Display name (the URI's `#fragment`), may be empty.
    pub name: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port, 1-65535.
    pub port: u16,
    /// Protocol-specific settings.
    pub protocol: Protocol,
    /// Transport and TLS options from the query string (`security`, `sni`,
    /// `type`, `path`, `host`, `flow`...).
    pub options: BTreeMap<String, String>,
}

/// The protocol and its credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `ss://`
    Shadowsocks {
        /// Cipher, e.g. `aes-256-gcm`.
        method: String,
        /// Password.
        password: String,
    },
    /// `vless://`
    Vless {
        /// User id.
        uuid: String,
    },
    /// `trojan://`
    Trojan {
        /// Password.
        password: String,
    },
    /// `vmess://`
    Vmess {
        /// User id.
        uuid: String,
        /// Legacy alter id.
        alter_id: u32,
    },
}

impl Server {
    /// The protocol's short name, as sing-box spells it.
    pub fn kind(&self) -> &'static str {
        match self.protocol {
            Protocol::Shadowsocks { .. } => "shadowsocks",
            Protocol::Vless { .. } => "vless",
            Protocol::Trojan { .. } => "trojan",
            Protocol::Vmess { .. } => "vmess",
        }
    }
}

/// A line that is not a usable server, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// 1-based line number in the decoded subscription.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// How the subscription was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One URI per line.
    Plain,
    /// The list, base64 encoded as a whole.
    Base64,
}

impl Format {
    /// `plain` or `base64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Base64 => "base64",
        }
    }
}

/// Decodes a subscription body: plain if any line has `://`, else base64.
pub fn decode(content: &str) -> Result<(Format, String), String> {
    let trimmed = content.trim();
    if trimmed.is_empty() {
        return Err("the subscription is empty".to_owned());
    }
    if trimmed.contains("://") {
        return Ok((Format::Plain, trimmed.to_owned()));
    }
    let compact: String = trimmed.split_whitespace().collect();
    let bytes = base64_decode(&compact)
        .ok_or_else(|| "the subscription is neither a list of proxy URIs nor base64".to_owned())?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "the subscription's base64 does not decode to UTF-8 text".to_owned())?;
    Ok((Format::Base64, text))
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ENGINES: [GeneralPurpose; 4] = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD];
    ENGINES.iter().find_map(|engine| engine.decode(text).ok())
}

/// Parses every non-empty, non-comment line.
pub fn parse_list(text: &str) -> Vec<Result<Server, Invalid>> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(line, text)| parse_uri(text).map_err(|reason| Invalid { line, reason }))
        .collect()
}

/// Parses one proxy URI.
pub fn parse_uri(uri: &str) -> Result<Server, String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("not a URI: {:?}", shorten(uri)))?;
    match scheme {
        "ss" => parse_shadowsocks(rest),
        "vless" => parse_with_userinfo(rest, |user| {
            Ok(Protocol::Vless {
                uuid: check_uuid(user)?,
            })
        }),
        "trojan" => parse_with_userinfo(rest, |user| {
            if user.is_empty() {
                return Err("trojan password is empty".to_owned());
            }
            Ok(Protocol::Trojan {
                password: user.to_owned(),
            })
        }),
        "vmess" => parse_vmess(rest),
        other => Err(format!("unsupported scheme `{}://`", shorten(other))),
    }
}

/// `userinfo@host:port[/][?query][#name]`
struct Parts {
    user: String,
    host: String,
    port: u16,
    options: BTreeMap<String, String>,
    name: String,
}

fn split(rest: &str) -> Result<Parts, String> {
    let (rest, name) = match rest.split_once('#') {
        Some((rest, name)) => (rest, decode_component(name)?),
        None => (rest, String::new()),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, query),
        None => (rest, ""),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (user, address) = rest
        .rsplit_once('@')
        .ok_or_else(|| "missing `user@` before the host".to_owned())?;
    let (host, port) = split_host_port(address)?;
    let mut options = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        options.insert(decode_component(key)?, decode_component(value)?);
    }
    Ok(Parts {
        user: decode_component(user)?,
        host,
        port,
        options,
        name,
    })
}

fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = address.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "unclosed `[` in IPv6 address".to_owned())?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| "missing `:port` after the host".to_owned())?;
        (host, port)
    } else {
        address
            .rsplit_once(':')
            .ok_or_else(|| "missing `:port` after the host".to_owned())?
    };
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(c))
    {
        return Err(format!("invalid host {:?}", shorten(host)));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("invalid port {:?} (expected 1-65535)", shorten(port)))?;
    Ok((host.to_owned(), port))
}

fn parse_with_userinfo(
    rest: &str,
    protocol: impl FnOnce(&str) -> Result<Protocol, String>,
) -> Result<Server, String> {
    let parts = split(rest)?;
    Ok(Server {
        protocol: protocol(&parts.user)?,
        name: parts.name,
        host: parts.host,
        port: parts.port,
        options: parts.options,
    })
}

const SS_METHODS: [&str; 8] = [
    "aes-128-gcm",
    "aes-192-gcm",
    "aes-256-gcm",
    "chacha20-ietf-poly1305",
    "xchacha20-ietf-poly1305",
    "2022-blake3-aes-128-gcm",
    "2022-blake3-aes-256-gcm",
    "2022-blake3-chacha20-poly1305",
];

/// SIP002 (`ss://base64(method:password)@host:port#name`, or the userinfo
/// percent-encoded) and the legacy form (`ss://base64(method:password@host:port)#name`).
fn parse_shadowsocks(rest: &str) -> Result<Server, String> {
    let (body, fragment) = match rest.split_once('#') {
        Some((body, fragment)) => (body, Some(fragment)),
        None => (rest, None),
    };
    let sip002 = if body.contains('@') {
        rest.to_owned()
    } else {
        let decoded = base64_decode(body.trim_end_matches('/'))
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| "shadowsocks URI is neither SIP002 nor base64".to_owned())?;
        match fragment {
            Some(fragment) => format!("{decoded}#{fragment}"),
            None => decoded,
        }
    };
    let parts = split(&sip002)?;
    let credentials = if parts.user.contains(':') {
        parts.user.clone()
    } else {
        base64_decode(&parts.user)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| "shadowsocks user info is not `method:password` in base64".to_owned())?
    };
    let (method, password) = credentials
        .split_once(':')
        .ok_or_else(|| "shadowsocks user info is not `method:password`".to_owned())?;
    if !SS_METHODS.contains(&method) {
        return Err(format!(
            "unsupported shadowsocks method {:?}",
            shorten(method)
        ));
    }
    if password.is_empty() {
        return Err("shadowsocks password is empty".to_owned());
    }
    Ok(Server {
        protocol: Protocol::Shadowsocks {
            method: method.to_owned(),
            password: password.to_owned(),
        },
        name: parts.name,
        host: parts.host,
        port: parts.port,
        options: parts.options,
    })
}

/// `vmess://base64(json)` in the common v2rayN layout.
fn parse_vmess(rest: &str) -> Result<Server, String> {
    let bytes =
        base64_decode(rest.trim()).ok_or_else(|| "vmess payload is not base64".to_owned())?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("vmess payload is not JSON: {e}"))?;
    let text = |key: &str| -> String {
        match json.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    let host = text("add");
    if host.is_empty() {
        return Err("vmess `add` (server address) is missing".to_owned());
    }
    let port = text("port");
    let port: u16 = port.parse().ok().filter(|&p| p != 0).ok_or_else(|| {
        format!(
            "vmess port {:?} is invalid (expected 1-65535)",
            shorten(&port)
        )
    })?;
    let alter_id = match text("aid").as_str() {
        "" => 0,
        aid => aid
            .parse()
            .map_err(|_| format!("vmess `aid` {aid:?} is not a number"))?,
    };
    let mut options = BTreeMap::new();
    for (key, option) in [
        ("net", "type"),
        ("path", "path"),
        ("host", "host"),
        ("sni", "sni"),
        ("tls", "security"),
    ] {
        let value = text(key);
        if !value.is_empty() {
            options.insert(option.to_owned(), value);
        }
    }
    Ok(Server {
        protocol: Protocol::Vmess {
            uuid: check_uuid(&text("id"))?,
            alter_id,
        },
        name: text("ps"),
        host,
        port,
        options,
    })
}

fn check_uuid(value: &str) -> Result<String, String> {
    let ok = value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(format!(
            "invalid user id {:?} (expected a UUID)",
            shorten(value)
        ))
    }
}

fn decode_component(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            format!(
                "{:?} is not valid UTF-8 once percent-decoded",
                shorten(text)
            )
        })
}

/// Keeps error messages short when a line is garbage.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme() {
        let ss = parse_uri("ss://YWVzLTI1Ni1nY206c2VjcmV0@1.2.3.4:8388#Tokyo%20SS").expect("ss");
        assert_eq!(
            (ss.kind(), ss.name.as_str(), ss.host.as_str(), ss.port),
            ("shadowsocks", "Tokyo SS", "1.2.3.4", 8388)
        );
        assert_eq!(
            ss.protocol,
            Protocol::Shadowsocks {
                method: "aes-256-gcm".into(),
                password: "secret".into()
            }
        );
        let legacy = parse_uri("ss://YWVzLTI1Ni1nY206c2VjcmV0QGV4YW1wbGUuY29tOjQ0Mw#old")
            .expect("legacy ss");
        assert_eq!(
            (legacy.host.as_str(), legacy.port, legacy.name.as_str()),
            ("example.com", 443, "old")
        );

        let vless = parse_uri(
            "vless://6B1E3A0C-8E2B-4C59-9F2D-1A2B3C4D5E6F@[2001:db8::1]:443?security=tls&sni=cdn.example&type=ws&path=%2Fws#Frankfurt",
        )
        .expect("vless");
        assert_eq!((vless.host.as_str(), vless.port), ("2001:db8::1", 443));
        assert_eq!(vless.options["path"], "/ws");
        assert_eq!(
            vless.protocol,
            Protocol::Vless {
                uuid: "6b1e3a0c-8e2b-4c59-9f2d-1a2b3c4d5e6f".into()
            }
        );

        let trojan =
            parse_uri("trojan://p%40ss@trojan.example:443?sni=trojan.example#T").expect("trojan");
        assert_eq!(
            trojan.protocol,
            Protocol::Trojan {
                password: "p@ss".into()
            }
        );

        let vmess_json = r#"{"v":"2","ps":"VM","add":"vm.example","port":"8443","id":"6b1e3a0c-8e2b-4c59-9f2d-1a2b3c4d5e6f","aid":"0","net":"ws","path":"/v","tls":"tls"}"#;
        let vmess = parse_uri(&format!("vmess://{}", STANDARD.encode(vmess_json))).expect("vmess");
        assert_eq!(
            (
                vmess.name.as_str(),
                vmess.port,
                vmess.options["type"].as_str()
            ),
            ("VM", 8443, "ws")
        );
    }

    #[test]
    fn explains_bad_lines() {
        let cases = [
            ("http://example.com", "unsupported scheme `http://`"),
            ("hello", "not a URI: \"hello\""),
            (
                "vless://not-a-uuid@h:1",
                "invalid user id \"not-a-uuid\" (expected a UUID)",
            ),
            (
                "trojan://pw@host:70000",
                "invalid port \"70000\" (expected 1-65535)",
            ),
            ("trojan://pw@host", "missing `:port` after the host"),
            ("trojan://@host:443", "trojan password is empty"),
            ("ss://YWVzLTI1Ni1nY206c2VjcmV0@:8388", "the host is empty"),
            (
                "ss://cmM0LW1kNTpwdw@h:1",
                "unsupported shadowsocks method \"rc4-md5\"",
            ),
            ("vmess://!!!", "vmess payload is not base64"),
        ];
        for (uri, reason) in cases {
            assert_eq!(parse_uri(uri).expect_err(uri), reason, "{uri}");
        }
    }

    #[test]
    fn decodes_plain_and_base64_lists_and_numbers_lines() {
        let list = "trojan://a@h:1#x\n\n# comment\nbogus\n";
        assert_eq!(decode(list).expect("plain").0, Format::Plain);
        let (format, text) = decode(&STANDARD.encode(list)).expect("base64");
        assert_eq!((format, text.as_str()), (Format::Base64, list));
        let parsed = parse_list(&text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1],
            Err(Invalid {
                line: 4,
                reason: "not a URI: \"bogus\"".into()
            })
        );
        assert_eq!(
            decode("  \n").expect_err("empty"),
            "the subscription is empty"
        );
        assert_eq!(
            decode("%%% not base64 %%%").expect_err("garbage"),
            "the subscription is neither a list of proxy URIs nor base64"
        );
    }
}
