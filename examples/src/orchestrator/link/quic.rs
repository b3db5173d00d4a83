//! The QUIC protocols: `hysteria://`, `hysteria2://` (and `hy2://`) and
//! `tuic://`. All always run TLS (sing-box refuses them without it), so
//! every TLS parameter is converted or the link refused.
//!
//! Hysteria 1 (its URI scheme): `auth` (sent as a string), `peer` or `sni`,
//! `insecure`, `alpn` (sing-box sends `hysteria` without one, as the
//! official client does), `upmbps` / `downmbps` (or `up` / `down`; both
//! required, as Hysteria 1 needs them), `obfs=xplus` with `obfsParam`, and
//! port hopping like hysteria2's (`host:443,20000-30000` or `mport`, with
//! `hop_interval`). Only the `udp` protocol: `wechat-video` and `faketcp`
//! are refused (sing-box has neither).
//!
//! hysteria2: password (the user info; `user:pass` is sent whole, as
//! sing-box expects for the official userpass auth), `sni`, `insecure`,
//! `obfs=salamander` (or `gecko`, sing-box 1.14) with `obfs-password`, ports with hopping
//! (`host:443,20000-30000`, or `mport`) with `hop_interval` (also
//! `hopInterval`, `hop-interval`; seconds), `alpn`, `up` / `down` (also
//! `upmbps` / `downmbps`; Mbps). `pinSHA256` is refused: sing-box cannot
//! pin a certificate, and dropping the pin (or the `insecure` that usually
//! goes with it) would change whom the client trusts.
//!
//! TUIC (v5): `uuid:password`, `congestion_control` (`cubic`, `new_reno`,
//! `bbr`), `udp_relay_mode` (`native`, `quic`), `alpn`, `sni`,
//! `allow_insecure`, `disable_sni`, `reduce_rtt` (sing-box's
//! `zero_rtt_handshake`). A v4 token link is refused (sing-box speaks v5).

use super::stream::Tls;
use super::{
    Obfs, Params, Protocol, Server, bracketed, check_host, check_port, check_user_id,
    decode_component, param, parse_query, shorten,
};
use percent_encoding::percent_decode_str;

/// A parameter under any of its spellings (the first present wins).
fn any_param<'a>(params: &'a Params, keys: &[&str]) -> Option<(&'a str, String)> {
    keys.iter()
        .find_map(|key| params.get(*key).map(|v| (v.as_str(), (*key).to_owned())))
}

/// `1`/`true` or `0`/`false` under any spelling (absent: false).
fn any_flag(params: &Params, keys: &[&str]) -> Result<bool, String> {
    match any_param(params, keys) {
        None => Ok(false),
        Some(("" | "0" | "false", _)) => Ok(false),
        Some(("1" | "true", _)) => Ok(true),
        Some((other, key)) => Err(format!(
            "`{key}={}`: expected 1, 0, true or false",
            shorten(other)
        )),
    }
}

/// The TLS of a QUIC link: always on.
fn quic_tls(params: &Params, insecure_keys: &[&str]) -> Result<Tls, String> {
    if let Some((_, key)) = any_param(params, &["pinSHA256", "pinsha256", "pin-sha256"]) {
        return Err(format!(
            "`{key}`: sing-box cannot pin a certificate (the link would trust a \
             different set of servers)"
        ));
    }
    let server_name = any_param(params, &["sni", "peer"])
        .map(|(v, _)| v.to_owned())
        .filter(|v| !v.is_empty());
    let alpn = param(params, "alpn")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Tls {
        server_name,
        insecure: any_flag(params, insecure_keys)?,
        alpn,
        fingerprint: None,
        reality: None,
        disable_sni: false,
    })
}

/// `hysteria2://` and `hy2://`, after the scheme.
pub(super) fn parse_hysteria2(rest: &str) -> Result<Server, String> {
    let uri = split_uri(rest)?;
    let params = uri.params;
    let password = match uri.user {
        Some(user) => decode_component(user, "the password")?,
        None => String::new(),
    };
    let hops = hops(uri.address, &params, Some(443))?;
    let obfs = match param(&params, "obfs").to_ascii_lowercase().as_str() {
        "" | "none" => None,
        kind @ ("salamander" | "gecko") => match param(&params, "obfs-password") {
            "" => return Err(format!("`obfs={kind}` without `obfs-password`")),
            password => Some(Obfs {
                kind: if kind == "gecko" {
                    "gecko"
                } else {
                    "salamander"
                },
                password: password.to_owned(),
            }),
        },
        other => {
            return Err(format!(
                "`obfs={}`: sing-box's hysteria2 has salamander and gecko",
                shorten(other)
            ));
        }
    };
    let up_mbps = any_param(&params, &["up", "upmbps"])
        .map(|(v, key)| mbps(v, &key))
        .transpose()?;
    let down_mbps = any_param(&params, &["down", "downmbps"])
        .map(|(v, key)| mbps(v, &key))
        .transpose()?;
    let tls = quic_tls(&params, &["insecure", "allowInsecure", "allow_insecure"])?;
    Ok(Server {
        name: uri.name,
        host: hops.host,
        port: hops.port,
        protocol: Protocol::Hysteria2 {
            password,
            obfs,
            ports: hops.ranges,
            hop_interval: hops.interval,
            up_mbps,
            down_mbps,
        },
        tls: Some(tls),
        transport: None,
    })
}

/// `hysteria://`, after the scheme.
pub(super) fn parse_hysteria(rest: &str) -> Result<Server, String> {
    let uri = split_uri(rest)?;
    let params = uri.params;
    // The authentication is a parameter; user info is read as it too.
    let user = uri
        .user
        .map(|user| decode_component(user, "the user info"))
        .transpose()?;
    let auth = match any_param(&params, &["auth", "auth_str", "auth-str"]) {
        Some((auth, _)) => auth.to_owned(),
        None => user.unwrap_or_default(),
    };
    match param(&params, "protocol").to_ascii_lowercase().as_str() {
        "" | "udp" => {}
        other => {
            return Err(format!(
                "`protocol={}`: sing-box's hysteria runs over UDP only",
                shorten(other)
            ));
        }
    }
    let hops = hops(uri.address, &params, None)?;
    let obfs = match param(&params, "obfs").to_ascii_lowercase().as_str() {
        "" | "none" => None,
        "xplus" => match any_param(&params, &["obfsParam", "obfs-password", "obfs_password"]) {
            Some((password, _)) if !password.is_empty() => Some(password.to_owned()),
            _ => return Err("`obfs=xplus` without `obfsParam`".to_owned()),
        },
        other => {
            return Err(format!(
                "`obfs={}`: sing-box's hysteria has xplus only",
                shorten(other)
            ));
        }
    };
    let bandwidth = |keys: &[&str], what: &str| match any_param(&params, keys) {
        Some((value, key)) => mbps(value, &key),
        None => Err(format!(
            "no `{}`: Hysteria 1 needs the {what} bandwidth",
            keys[0]
        )),
    };
    let up_mbps = bandwidth(&["upmbps", "up"], "upload")?;
    let down_mbps = bandwidth(&["downmbps", "down"], "download")?;
    let tls = quic_tls(&params, &["insecure", "allowInsecure", "allow_insecure"])?;
    Ok(Server {
        name: uri.name,
        host: hops.host,
        port: hops.port,
        protocol: Protocol::Hysteria {
            auth,
            obfs,
            ports: hops.ranges,
            hop_interval: hops.interval,
            up_mbps,
            down_mbps,
        },
        tls: Some(tls),
        transport: None,
    })
}

/// `[user@]address[/][?query][#name]`, the shape of the Hysteria URI
/// schemes (1 and 2).
struct Uri<'a> {
    /// The user info, still percent-encoded.
    user: Option<&'a str>,
    address: &'a str,
    params: Params,
    name: String,
}

fn split_uri(rest: &str) -> Result<Uri<'_>, String> {
    let (rest, name) = match rest.split_once('#') {
        Some((rest, name)) => (
            rest,
            percent_decode_str(name).decode_utf8_lossy().into_owned(),
        ),
        None => (rest, String::new()),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (user, address) = match rest.rsplit_once('@') {
        Some((user, address)) => (Some(user), address),
        None => (None, rest),
    };
    Ok(Uri {
        user,
        address,
        params: parse_query(query)?,
        name,
    })
}

/// Where a Hysteria server listens: its host, its first port, and the
/// ranges to hop between with the interval (none when it has one port).
struct Hops {
    host: String,
    port: u16,
    ranges: Vec<(u16, u16)>,
    interval: Option<u32>,
}

/// The host and ports of `address` plus `mport`; without any port,
/// `default` (or an error when there is none).
fn hops(address: &str, params: &Params, default: Option<u16>) -> Result<Hops, String> {
    let (host, mut ranges) = host_and_ports(address)?;
    if let Some((mport, _)) = any_param(params, &["mport"]) {
        ranges.extend(port_ranges(mport, "mport")?);
    }
    if ranges.is_empty() {
        let port = default.ok_or_else(|| "missing `:port` after the host".to_owned())?;
        ranges.push((port, port));
    }
    let port = ranges[0].0;
    if ranges.len() == 1 && ranges[0].0 == ranges[0].1 {
        // One port: nothing to hop between.
        return Ok(Hops {
            host,
            port,
            ranges: Vec::new(),
            interval: None,
        });
    }
    let interval = match any_param(params, &["hop_interval", "hopInterval", "hop-interval"]) {
        None => None,
        Some((value, key)) => Some(seconds(value, &key)?),
    };
    Ok(Hops {
        host,
        port,
        ranges,
        interval,
    })
}

/// `host`, `host:443`, `host:443,20000-30000`, `[v6]:1000-2000`: the host
/// and the port ranges (empty when no port is given).
fn host_and_ports(address: &str) -> Result<(String, Vec<(u16, u16)>), String> {
    let (host, ports) = if let Some(v6) = address.strip_prefix('[') {
        let (host, after) = bracketed(v6)?;
        let ports = match after.strip_prefix(':') {
            None if !after.is_empty() => {
                return Err(format!(
                    "`{}` after `]` (a port comes after `:`)",
                    shorten(after)
                ));
            }
            ports => ports,
        };
        (host, ports)
    } else {
        match address.split_once(':') {
            Some((host, ports)) => (host, Some(ports)),
            None => (address, None),
        }
    };
    let ranges = match ports {
        Some(ports) => port_ranges(ports, "the port")?,
        None => Vec::new(),
    };
    Ok((check_host(host)?, ranges))
}

/// `443`, `20000-30000`, `443,20000-30000` (ranges may also be `a:b`).
fn port_ranges(text: &str, what: &str) -> Result<Vec<(u16, u16)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (start, end) = part.split_once(['-', ':']).unwrap_or((part, part));
            let (start, end) = (check_port(start)?, check_port(end)?);
            if start > end {
                return Err(format!("{what}: range {part:?} ends before it starts"));
            }
            Ok((start, end))
        })
        .collect()
}

/// Whole seconds: `30` or `30s`, at least 1.
fn seconds(value: &str, key: &str) -> Result<u32, String> {
    value
        .trim()
        .trim_end_matches('s')
        .parse::<u32>()
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("`{key}={}`: expected seconds (e.g. 30)", shorten(value)))
}

/// Mbps: `100`, `100 mbps`, `100Mbps`, `1 gbps`.
fn mbps(value: &str, key: &str) -> Result<u32, String> {
    let lower = value.trim().to_ascii_lowercase();
    let (digits, factor) = match lower.strip_suffix("gbps") {
        Some(digits) => (digits, 1000),
        None => (lower.strip_suffix("mbps").unwrap_or(&lower), 1),
    };
    digits
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            format!(
                "`{key}={}`: expected a bandwidth in Mbps (e.g. 100 or 100 mbps)",
                shorten(value)
            )
        })
}

/// `tuic://`, after the scheme.
pub(super) fn parse_tuic(rest: &str) -> Result<Server, String> {
    let parts = super::split(rest)?;
    let user = decode_component(&parts.user, "the user info")?;
    let Some((uuid, password)) = user.split_once(':') else {
        return Err(
            "no `uuid:password` before the host (a TUIC v4 token link? sing-box speaks TUIC v5)"
                .to_owned(),
        );
    };
    let uuid = check_user_id(uuid)?;
    if uuid.len() != 36 {
        return Err(format!("TUIC needs a UUID, not {:?}", shorten(&uuid)));
    }
    let params = &parts.params;
    let congestion_control = match any_param(params, &["congestion_control", "congestion-control"])
    {
        None => None,
        Some((value, key)) => Some(one_of(value, &key, &["cubic", "new_reno", "bbr"])?),
    };
    let udp_relay_mode = match any_param(params, &["udp_relay_mode", "udp-relay-mode"]) {
        None => None,
        Some((value, key)) => Some(one_of(value, &key, &["native", "quic"])?),
    };
    let zero_rtt = any_flag(params, &["reduce_rtt", "reduce-rtt", "zero_rtt_handshake"])?;
    let mut tls = quic_tls(params, &["allow_insecure", "allowInsecure", "insecure"])?;
    tls.disable_sni = any_flag(params, &["disable_sni", "disable-sni"])?;
    Ok(Server {
        name: parts.name,
        host: parts.host,
        port: parts.port,
        protocol: Protocol::Tuic {
            uuid,
            password: password.to_owned(),
            congestion_control,
            udp_relay_mode,
            zero_rtt,
        },
        tls: Some(tls),
        transport: None,
    })
}

/// `value` if it is one of `allowed` (case-insensitive; `-` read as `_`).
fn one_of(value: &str, key: &str, allowed: &[&'static str]) -> Result<&'static str, String> {
    let wanted = value.trim().to_ascii_lowercase().replace('-', "_");
    allowed
        .iter()
        .find(|a| **a == wanted)
        .copied()
        .ok_or_else(|| {
            format!(
                "`{key}={}`: sing-box has {}",
                shorten(value),
                allowed.join(", ")
            )
        })
}
