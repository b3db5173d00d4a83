//! Share links (`ss://`, `vless://`, `trojan://`, `vmess://`,
//! `hysteria://`, `hysteria2://` / `hy2://`, `tuic://`, `anytls://`,
//! `socks://` and its URI forms) turned into typed servers.
//!
//! The rule: every parameter that changes how a client connects is either
//! converted into a typed setting that sing-box has, or the link is refused
//! with a reason that names the parameter. A link is never kept with a
//! setting silently lost (a REALITY server turned into plain TLS, a gRPC
//! server into raw TCP): such a config loads and does not work.
//!
//! Parameters that do not change whether a connection works are ignored:
//! `spx` (REALITY spider path), gRPC `mode` (client-side multiplexing),
//! `ed` on `httpupgrade` (optional 0-RTT that sing-box does not offer there),
//! `v` in vmess JSON, and anything unknown to the link formats.

mod quic;
mod shadowsocks;
mod socks;
mod stream;
mod vmess;

pub use stream::{DEFAULT_FINGERPRINT, Reality, Tls, Transport};

use percent_encoding::percent_decode_str;
use std::collections::BTreeMap;
use std::fmt;

/// One usable server, with every setting it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Display name (the link's `#fragment`, or vmess `ps`), may be empty.
    pub name: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port, 1-65535.
    pub port: u16,
    /// Protocol and credentials.
    pub protocol: Protocol,
    /// TLS, when the link asks for it.
    pub tls: Option<Tls>,
    /// The transport, when not raw TCP.
    pub transport: Option<Transport>,
}

/// The protocol and its credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `ss://`
    Shadowsocks {
        /// Cipher, as sing-box spells it (`aes-256-gcm`, `2022-blake3-aes-128-gcm`...).
        method: String,
        /// Password (for 2022 methods: padded base64 keys, `:`-separated).
        password: String,
        /// A SIP003 plugin sing-box implements.
        plugin: Option<Plugin>,
    },
    /// `vless://`
    Vless {
        /// User id: a UUID, or a string of up to 30 bytes mapped to one.
        uuid: String,
        /// `xtls-rprx-vision`, the only flow sing-box accepts.
        flow: Option<&'static str>,
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
        /// Legacy alter id (0 for AEAD).
        alter_id: u32,
        /// Cipher (`auto`, `aes-128-gcm`, `chacha20-poly1305`, `none`, `zero`, `aes-128-cfb`).
        security: String,
    },
    /// `hysteria://` (Hysteria 1)
    Hysteria {
        /// The authentication string (`auth`; may be empty).
        auth: String,
        /// The `xplus` obfuscation's password.
        obfs: Option<String>,
        /// Port ranges to hop between (empty: only [`Server::port`]).
        ports: Vec<(u16, u16)>,
        /// Seconds between hops (sing-box's default when `None`).
        hop_interval: Option<u32>,
        /// Upload bandwidth in Mbps (required by Hysteria 1).
        up_mbps: u32,
        /// Download bandwidth in Mbps (required by Hysteria 1).
        down_mbps: u32,
    },
    /// `hysteria2://`, `hy2://`
    Hysteria2 {
        /// Password (may be empty).
        password: String,
        /// QUIC obfuscation.
        obfs: Option<Obfs>,
        /// Port ranges to hop between (empty: only [`Server::port`]).
        ports: Vec<(u16, u16)>,
        /// Seconds between hops (sing-box's default, 30 s, when `None`).
        hop_interval: Option<u32>,
        /// Upload bandwidth in Mbps (Hysteria's own congestion control).
        up_mbps: Option<u32>,
        /// Download bandwidth in Mbps.
        down_mbps: Option<u32>,
    },
    /// `tuic://` (v5)
    Tuic {
        /// User id (a UUID).
        uuid: String,
        /// Password.
        password: String,
        /// `cubic`, `new_reno` or `bbr` (sing-box's default, cubic, when `None`).
        congestion_control: Option<&'static str>,
        /// `native` or `quic`.
        udp_relay_mode: Option<&'static str>,
        /// 0-RTT handshake (`reduce_rtt`).
        zero_rtt: bool,
    },
    /// `anytls://`
    AnyTls {
        /// Password (may be empty).
        password: String,
    },
    /// `socks://` (v2rayN), `socks5://`, `socks5h://`, `socks4://`, `socks4a://`
    Socks {
        /// `5`, `4` or `4a`, as sing-box spells it.
        version: &'static str,
        /// User name (SOCKS4: the user id); empty for none.
        username: String,
        /// Password (SOCKS5 only); empty for none.
        password: String,
    },
}

/// hysteria2's QUIC obfuscation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obfs {
    /// `salamander` or `gecko`.
    pub kind: &'static str,
    /// Its password.
    pub password: String,
}

/// A shadowsocks SIP003 plugin, as sing-box names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plugin {
    /// `obfs-local` or `v2ray-plugin`.
    pub name: &'static str,
    /// The options after the plugin's name (`obfs=http;obfs-host=...`).
    pub opts: String,
}

impl Server {
    /// The protocol's short name, as sing-box spells it.
    pub fn kind(&self) -> &'static str {
        match self.protocol {
            Protocol::Shadowsocks { .. } => "shadowsocks",
            Protocol::Vless { .. } => "vless",
            Protocol::Trojan { .. } => "trojan",
            Protocol::Vmess { .. } => "vmess",
            Protocol::Hysteria { .. } => "hysteria",
            Protocol::Hysteria2 { .. } => "hysteria2",
            Protocol::Tuic { .. } => "tuic",
            Protocol::AnyTls { .. } => "anytls",
            Protocol::Socks { .. } => "socks",
        }
    }
}

/// A line that is not a usable server, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Where the entry is: its line in the decoded list, or its position
    /// in a SIP008 document's servers.
    pub at: crate::orchestrator::input::Entry,
    /// What is wrong, naming the parameter when one is the cause.
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

/// Parses one share link.
pub fn parse_uri(uri: &str) -> Result<Server, String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("not a URI: {:?}", shorten(uri)))?;
    match &*scheme.to_ascii_lowercase() {
        "ss" => shadowsocks::parse(rest),
        "vless" => parse_vless(rest),
        "trojan" => parse_trojan(rest),
        "vmess" => vmess::parse(rest),
        "hysteria" => quic::parse_hysteria(rest),
        "hysteria2" | "hy2" => quic::parse_hysteria2(rest),
        "tuic" => quic::parse_tuic(rest),
        "anytls" => parse_anytls(rest),
        scheme @ ("socks" | "socks5" | "socks5h" | "socks4" | "socks4a") => {
            socks::parse(scheme, rest)
        }
        _ => Err(format!(
            "unsupported scheme `{}://` (ss, vless, trojan, vmess, hysteria, hysteria2, tuic, \
             anytls and socks are converted)",
            shorten(scheme)
        )),
    }
}

fn parse_vless(rest: &str) -> Result<Server, String> {
    let parts = split(rest)?;
    let uuid = check_user_id(&decode_component(&parts.user, "the user id")?)?;
    let params = &parts.params;
    match param(params, "encryption") {
        "" | "none" => {}
        other => {
            return Err(format!(
                "`encryption={}`: sing-box's vless has no encryption (only `none`)",
                shorten(other)
            ));
        }
    }
    let (tls, transport) = stream::settings(params, false)?;
    let flow = stream::vless_flow(param(params, "flow"), tls.as_ref(), transport.as_ref())?;
    Ok(Server {
        name: parts.name,
        host: parts.host,
        port: parts.port,
        protocol: Protocol::Vless { uuid, flow },
        tls,
        transport,
    })
}

fn parse_trojan(rest: &str) -> Result<Server, String> {
    let parts = split(rest)?;
    let password = decode_component(&parts.user, "the password")?;
    if password.is_empty() {
        return Err("trojan password is empty".to_owned());
    }
    // Trojan is TLS unless the link says `security=none`.
    let (tls, transport) = stream::settings(&parts.params, true)?;
    Ok(Server {
        name: parts.name,
        host: parts.host,
        port: parts.port,
        protocol: Protocol::Trojan { password },
        tls,
        transport,
    })
}

/// `anytls://[password@]host[:port]/?sni=...&insecure=1` (anytls-go's URI
/// scheme; no port means 443, no password an empty one): always TLS, with the TLS parameters of the
/// other links (`sni`, `insecure` or `allowInsecure`, `alpn`, `fp`,
/// `security=reality` with `pbk` and `sid`). sing-box's anytls has no
/// transport: a link with `type` other than `tcp` is refused.
fn parse_anytls(rest: &str) -> Result<Server, String> {
    let rest = with_port(rest, 443);
    // The password is optional (`[auth@]`): none is an empty one.
    let head_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let parts = match rest[..head_end].contains('@') {
        true => split(&rest)?,
        false => split(&format!("@{rest}"))?,
    };
    let password = decode_component(&parts.user, "the password")?;
    let params = &parts.params;
    if param(params, "security").eq_ignore_ascii_case("none") {
        return Err("`security=none`: AnyTLS always runs over TLS".to_owned());
    }
    match param(params, "type") {
        "" | "tcp" => {}
        other => {
            return Err(format!(
                "`type={}`: sing-box's anytls has no transport (only raw TCP)",
                shorten(other)
            ));
        }
    }
    let (tls, _) = stream::settings(params, true)?;
    Ok(Server {
        name: parts.name,
        host: parts.host,
        port: parts.port,
        protocol: Protocol::AnyTls { password },
        tls,
        transport: None,
    })
}

/// `rest` with `:port` added after the host when it has none. The host is
/// what follows the last `@` before the query (a password may hold a `/`),
/// up to a `/`.
fn with_port(rest: &str, port: u16) -> std::borrow::Cow<'_, str> {
    let head_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let head = &rest[..head_end];
    let host_start = head.rfind('@').map_or(0, |at| at + 1);
    let host_end = head[host_start..]
        .find('/')
        .map_or(head_end, |slash| host_start + slash);
    let host = &rest[host_start..host_end];
    let has_port = match host.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .is_some_and(|(_, after)| !after.is_empty()),
        None => host.contains(':'),
    };
    if has_port || host.is_empty() {
        return rest.into();
    }
    format!("{}:{port}{}", &rest[..host_end], &rest[host_end..]).into()
}

/// Query parameters, percent-decoded; a repeated key keeps its last value.
pub(crate) type Params = BTreeMap<String, String>;

/// A parameter's value, `""` when absent.
pub(crate) fn param<'a>(params: &'a Params, key: &str) -> &'a str {
    params.get(key).map_or("", String::as_str)
}

/// `userinfo@host:port[/][?query][#name]`, with the userinfo still
/// percent-encoded (shadowsocks needs to see it raw).
struct Parts {
    user: String,
    host: String,
    port: u16,
    params: Params,
    name: String,
}

fn split(rest: &str) -> Result<Parts, String> {
    let (rest, name) = match rest.split_once('#') {
        Some((rest, name)) => (rest, decode_name(name)),
        None => (rest, String::new()),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (user, address) = rest
        .rsplit_once('@')
        .ok_or_else(|| "missing `user@` before the host".to_owned())?;
    let (host, port) = split_host_port(address)?;
    Ok(Parts {
        user: user.to_owned(),
        host,
        port,
        params: parse_query(query)?,
        name,
    })
}

pub(crate) fn parse_query(query: &str) -> Result<Params, String> {
    let mut params = Params::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(key, "a parameter name")?;
        let value = decode_component(value, &format!("parameter `{key}`"))?;
        params.insert(key, value);
    }
    Ok(params)
}

pub(crate) fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = address.strip_prefix('[') {
        let (host, after) = bracketed(v6)?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| "missing `:port` after the host".to_owned())?;
        (host, port)
    } else {
        address
            .rsplit_once(':')
            .ok_or_else(|| "missing `:port` after the host".to_owned())?
    };
    Ok((check_host(host)?, check_port(port)?))
}

pub(crate) fn check_host(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/?#@[]".contains(c))
    {
        return Err(format!("invalid host {:?}", shorten(host)));
    }
    if host.contains(':') && !is_ipv6(host) {
        return Err(format!(
            "invalid host {:?} (a host with `:` must be an IPv6 address)",
            shorten(host)
        ));
    }
    Ok(host.to_owned())
}

/// `[v6]...` after its `[`: the IPv6 address, and what follows the `]`.
pub(crate) fn bracketed(inside: &str) -> Result<(&str, &str), String> {
    let (host, after) = inside
        .split_once(']')
        .ok_or_else(|| "unclosed `[` in IPv6 address".to_owned())?;
    if !is_ipv6(host) {
        return Err(format!(
            "invalid host {:?} (only an IPv6 address goes in `[...]`)",
            shorten(host)
        ));
    }
    Ok((host, after))
}

/// An IPv6 address, with or without a zone (`fe80::1%eth0`).
pub(crate) fn is_ipv6(host: &str) -> bool {
    let address = host.split_once('%').map_or(host, |(address, _)| address);
    address.parse::<std::net::Ipv6Addr>().is_ok()
}

pub(crate) fn check_port(port: &str) -> Result<u16, String> {
    port.trim()
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("invalid port {:?} (expected 1-65535)", shorten(port)))
}

/// A vless/vmess user id: a UUID (lowercased), or, as Xray and sing-box
/// accept, a string of 1 to 30 bytes that both sides map to a UUID.
pub(crate) fn check_user_id(value: &str) -> Result<String, String> {
    let is_uuid = value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if is_uuid {
        Ok(value.to_ascii_lowercase())
    } else if !value.is_empty() && value.len() <= 30 && !value.chars().any(char::is_control) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "invalid user id {:?} (expected a UUID, or a string of 1-30 bytes)",
            shorten(value)
        ))
    }
}

/// Percent-decodes a value that must be text (a password, a path).
pub(crate) fn decode_component(text: &str, what: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            format!(
                "{what} {:?} is not valid UTF-8 once percent-decoded",
                shorten(text)
            )
        })
}

/// A server's display name: invalid UTF-8 after percent-decoding is
/// replaced (U+FFFD), since the name only labels the server.
fn decode_name(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Keeps error messages short when a line is garbage; `{:?}` of the result
/// escapes control characters.
pub(crate) fn shorten(text: &str) -> String {
    shorten_to(text, 40)
}

/// `text` cut after `max` characters (marked `…`).
pub(crate) fn shorten_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod quic_tests;
#[cfg(test)]
mod tests;
