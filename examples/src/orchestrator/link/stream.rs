//! TLS, REALITY and transport settings from a link's parameters (the query
//! of vless/trojan links; vmess JSON is mapped to the same keys first).

use super::{Params, param, shorten};
use crate::orchestrator::singbox::rules::FINGERPRINTS;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// TLS settings of an outbound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// SNI: `sni`, else `peer`, else the transport's host header; `None`
    /// lets sing-box use the server address.
    pub server_name: Option<String>,
    /// Skip certificate verification (`allowInsecure=1` / `insecure=1`).
    pub insecure: bool,
    /// ALPN protocols, in order.
    pub alpn: Vec<String>,
    /// uTLS fingerprint (`fp`); REALITY without `fp` gets [`DEFAULT_FINGERPRINT`].
    pub fingerprint: Option<&'static str>,
    /// REALITY, for `security=reality`.
    pub reality: Option<Reality>,
    /// Send no SNI (TUIC's `disable_sni`).
    pub disable_sni: bool,
}

/// REALITY settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reality {
    /// The server's X25519 public key (`pbk`), base64url without padding.
    pub public_key: String,
    /// Short id (`sid`): 0 to 16 hex digits, even count.
    pub short_id: String,
}

/// The transport of an outbound, when not raw TCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket.
    Ws {
        /// Request path, without the `?ed=` that links use for early data.
        path: String,
        /// `Host` header.
        host: Option<String>,
        /// Early data bytes (`ed`), sent in `Sec-WebSocket-Protocol`; 0 for none.
        max_early_data: u32,
    },
    /// gRPC.
    Grpc {
        /// `serviceName`.
        service_name: String,
    },
    /// HTTPUpgrade.
    HttpUpgrade {
        /// Request path.
        path: String,
        /// `Host` header.
        host: Option<String>,
    },
    /// HTTP/2 (`type=http` or `type=h2`), sing-box's `http` transport.
    Http {
        /// Request path.
        path: String,
        /// Host names, one picked per request.
        hosts: Vec<String>,
    },
}

/// The uTLS fingerprint used for REALITY links without `fp`: sing-box
/// refuses REALITY without uTLS, and `chrome` is what Xray clients default
/// to.
pub const DEFAULT_FINGERPRINT: &str = "chrome";

/// TLS and transport from `params`. `tls_by_default`: TLS when `security`
/// is absent (trojan).
pub(crate) fn settings(
    params: &Params,
    tls_by_default: bool,
) -> Result<(Option<Tls>, Option<Transport>), String> {
    let transport = transport(params)?;
    let security = param(params, "security").to_ascii_lowercase();
    let tls = match security.as_str() {
        "" if tls_by_default => Some(tls(params, transport.as_ref(), false)?),
        "" | "none" => None,
        "tls" => Some(tls(params, transport.as_ref(), false)?),
        "reality" => Some(tls(params, transport.as_ref(), true)?),
        other => {
            return Err(format!(
                "`security={}`: unknown security (sing-box has none, tls and reality)",
                shorten(other)
            ));
        }
    };
    Ok((tls, transport))
}

fn tls(params: &Params, transport: Option<&Transport>, reality: bool) -> Result<Tls, String> {
    let transport_host = match transport {
        Some(Transport::Ws { host, .. } | Transport::HttpUpgrade { host, .. }) => host.as_deref(),
        Some(Transport::Http { hosts, .. }) => hosts.first().map(String::as_str),
        _ => None,
    };
    let server_name = [param(params, "sni"), param(params, "peer")]
        .into_iter()
        .find(|s| !s.is_empty())
        .or(transport_host)
        .map(str::to_owned);
    let insecure = flag(params, "allowInsecure")? || flag(params, "insecure")?;
    let alpn = param(params, "alpn")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let fingerprint = match param(params, "fp") {
        "" => None,
        fp => Some(
            FINGERPRINTS
                .into_iter()
                .find(|known| known.eq_ignore_ascii_case(fp))
                .ok_or_else(|| {
                    format!(
                        "`fp={}`: sing-box has no such uTLS fingerprint (it has {})",
                        shorten(fp),
                        FINGERPRINTS.join(", ")
                    )
                })?,
        ),
    };
    let (fingerprint, reality) = if reality {
        if server_name.is_none() {
            return Err(
                "`security=reality` without `sni`: REALITY needs the server name it \
                        borrows"
                    .to_owned(),
            );
        }
        let reality = Reality {
            public_key: public_key(param(params, "pbk"))?,
            short_id: short_id(param(params, "sid"))?,
        };
        (
            Some(fingerprint.unwrap_or(DEFAULT_FINGERPRINT)),
            Some(reality),
        )
    } else {
        (fingerprint, None)
    };
    Ok(Tls {
        server_name,
        insecure,
        alpn,
        fingerprint,
        reality,
        disable_sni: false,
    })
}

/// `1`/`true` or `0`/`false` (absent: false).
fn flag(params: &Params, key: &str) -> Result<bool, String> {
    match param(params, key) {
        "" | "0" | "false" => Ok(false),
        "1" | "true" => Ok(true),
        other => Err(format!(
            "`{key}={}`: expected 1, 0, true or false",
            shorten(other)
        )),
    }
}

/// REALITY `pbk`: 32 bytes in base64url (padding or the standard alphabet
/// are accepted and normalized to what sing-box reads).
fn public_key(pbk: &str) -> Result<String, String> {
    if pbk.is_empty() {
        return Err("`security=reality` without `pbk` (the server's public key)".to_owned());
    }
    let normalized: String = pbk
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    match URL_SAFE_NO_PAD.decode(&normalized) {
        Ok(key) if key.len() == 32 => Ok(normalized),
        _ => Err(format!(
            "`pbk={}`: not a REALITY public key (32 bytes in base64url)",
            shorten(pbk)
        )),
    }
}

/// REALITY `sid`: up to 8 bytes in hex.
fn short_id(sid: &str) -> Result<String, String> {
    let ok = sid.len() <= 16
        && sid.len().is_multiple_of(2)
        && sid.chars().all(|c| c.is_ascii_hexdigit());
    if ok {
        Ok(sid.to_ascii_lowercase())
    } else {
        Err(format!(
            "`sid={}`: not a REALITY short id (0-16 hex digits, an even count)",
            shorten(sid)
        ))
    }
}

fn transport(params: &Params) -> Result<Option<Transport>, String> {
    let host = || Some(param(params, "host").to_owned()).filter(|h| !h.is_empty());
    let kind = param(params, "type").to_ascii_lowercase();
    let kind = kind.as_str();
    match kind {
        "" | "tcp" | "raw" => match param(params, "headerType") {
            "" | "none" => Ok(None),
            other => Err(format!(
                "`headerType={}` on TCP: sing-box has no TCP header obfuscation",
                shorten(other)
            )),
        },
        "ws" | "websocket" => {
            let (path, path_ed) = split_early_data(param(params, "path"))?;
            let max_early_data = match param(params, "ed") {
                "" => path_ed,
                ed => parse_early_data(ed)?,
            };
            Ok(Some(Transport::Ws {
                path,
                host: host(),
                max_early_data,
            }))
        }
        "grpc" | "gun" => Ok(Some(Transport::Grpc {
            service_name: param(params, "serviceName").to_owned(),
        })),
        "httpupgrade" => {
            // sing-box's httpupgrade has no early data; without it the
            // client simply does not send 0-RTT data, which servers accept.
            let (path, _) = split_early_data(param(params, "path"))?;
            Ok(Some(Transport::HttpUpgrade { path, host: host() }))
        }
        "http" | "h2" => Ok(Some(Transport::Http {
            path: path_or_root(param(params, "path")),
            hosts: param(params, "host")
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect(),
        })),
        "xhttp" | "splithttp" => Err(format!(
            "`type={kind}`: sing-box has no XHTTP/SplitHTTP transport"
        )),
        "kcp" | "mkcp" => Err(format!("`type={kind}`: sing-box has no mKCP transport")),
        "quic" => Err(
            "`type=quic`: the V2Ray QUIC transport (removed from Xray) is not converted".to_owned(),
        ),
        other => Err(format!("`type={}`: unknown transport", shorten(other))),
    }
}

/// `/path?ed=2048` → (`/path`, 2048). Other query parameters of the path
/// stay in it.
fn split_early_data(path: &str) -> Result<(String, u32), String> {
    let Some((base, query)) = path.split_once('?') else {
        return Ok((path_or_root(path), 0));
    };
    let mut ed = 0;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("ed", value)) => ed = parse_early_data(value)?,
            _ => kept.push(pair),
        }
    }
    let mut path = path_or_root(base);
    if !kept.is_empty() {
        path.push('?');
        path.push_str(&kept.join("&"));
    }
    Ok((path, ed))
}

fn parse_early_data(value: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|_| format!("`ed={}`: early data must be a byte count", shorten(value)))
}

fn path_or_root(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// vless `flow`: only Vision, which sing-box accepts as `xtls-rprx-vision`
/// (`-udp443` is the same flow, a server-side variant), and only over raw
/// TCP with TLS or REALITY, as Vision requires.
pub(crate) fn vless_flow(
    flow: &str,
    tls: Option<&Tls>,
    transport: Option<&Transport>,
) -> Result<Option<&'static str>, String> {
    match flow {
        "" | "none" => Ok(None),
        "xtls-rprx-vision" | "xtls-rprx-vision-udp443" => {
            if tls.is_none() {
                Err(format!("`flow={flow}` needs `security=tls` or `reality`"))
            } else if transport.is_some() {
                Err(format!(
                    "`flow={flow}` works only over raw TCP (`type=tcp`)"
                ))
            } else {
                Ok(Some("xtls-rprx-vision"))
            }
        }
        other => Err(format!(
            "`flow={}`: sing-box supports only xtls-rprx-vision",
            shorten(other)
        )),
    }
}

/// A shadowsocks 2022 password: each `:`-separated key must be base64 of
/// `len` bytes; returned in padded standard base64, which sing-box reads.
pub(crate) fn ss2022_password(password: &str, method: &str, len: usize) -> Result<String, String> {
    let keys: Result<Vec<String>, String> = password
        .split(':')
        .map(|key| {
            let decoded = super::shadowsocks::base64_lenient(key);
            match decoded {
                Some(bytes) if bytes.len() == len => Ok(STANDARD.encode(bytes)),
                Some(bytes) => Err(format!(
                    "`{method}` needs {len}-byte keys, the password has a {}-byte key",
                    bytes.len()
                )),
                None => Err(format!("`{method}` needs base64 keys as its password")),
            }
        })
        .collect();
    Ok(keys?.join(":"))
}
