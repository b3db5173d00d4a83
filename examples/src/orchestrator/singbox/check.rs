//! The rules sing-box (1.14) refuses an outbound or a configuration for,
//! checked before anything is written. Each was confirmed against the real
//! client (`sing-box check`) where its build allows (the PyPI build lacks
//! uTLS, so the REALITY and uTLS rules follow sing-box's documentation and
//! source instead).

use super::rules::{FINGERPRINTS, VMESS_SECURITY, ss_key_length};
use super::{DIRECT, SELECTOR};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use std::collections::HashSet;

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

/// Whether sing-box would accept this server outbound.
pub fn check_outbound(outbound: &Value) -> Result<(), String> {
    let kind = text(outbound, "type");
    if text(outbound, "tag").is_empty() {
        return Err(format!("a {kind} outbound has no tag"));
    }
    if text(outbound, "server").is_empty() {
        return Err("no server address".to_owned());
    }
    match outbound["server_port"].as_u64() {
        Some(1..=65535) => {}
        _ => return Err("server_port is not 1-65535".to_owned()),
    }
    match kind {
        "shadowsocks" => check_shadowsocks(outbound)?,
        "vless" => {
            if text(outbound, "uuid").is_empty() {
                return Err("vless uuid is empty".to_owned());
            }
            match text(outbound, "flow") {
                "" => {}
                "xtls-rprx-vision" => {
                    if outbound["tls"].is_null() || !outbound["transport"].is_null() {
                        return Err("flow xtls-rprx-vision needs TLS over raw TCP".to_owned());
                    }
                }
                flow => return Err(format!("unsupported flow: {flow}")),
            }
        }
        "vmess" => {
            if text(outbound, "uuid").is_empty() {
                return Err("vmess uuid is empty".to_owned());
            }
            let security = text(outbound, "security");
            if !security.is_empty() && !VMESS_SECURITY.contains(&security) {
                return Err(format!("vmess: unsupported security type: {security}"));
            }
        }
        "trojan" => {
            if text(outbound, "password").is_empty() {
                return Err("trojan password is empty".to_owned());
            }
        }
        "hysteria" => check_hysteria(outbound)?,
        "hysteria2" => check_hysteria2(outbound)?,
        "tuic" => check_tuic(outbound)?,
        "anytls" => {
            if outbound["tls"]["enabled"] != true {
                return Err("TLS required".to_owned());
            }
            if !outbound["transport"].is_null() {
                return Err("anytls has no transport".to_owned());
            }
        }
        // Confirmed with `sing-box check` 1.14.4: an unknown version, and
        // `tls` or `transport` (unknown fields of this outbound), are
        // refused; a SOCKS4 password is accepted (and not sent).
        "socks" => {
            if !["", "4", "4a", "5"].contains(&text(outbound, "version")) {
                return Err(format!(
                    "unknown socks version: {}",
                    text(outbound, "version")
                ));
            }
            for field in ["tls", "transport"] {
                if !outbound[field].is_null() {
                    return Err(format!("socks: unknown field {field:?}"));
                }
            }
        }
        other => return Err(format!("unknown outbound type {other:?}")),
    }
    if !outbound["tls"].is_null() {
        check_tls(&outbound["tls"])?;
    }
    if !outbound["transport"].is_null() {
        check_transport(&outbound["transport"])?;
    }
    Ok(())
}

/// sing-box's Hysteria 1 outbound (`protocol/hysteria`; confirmed with
/// `sing-box check` 1.14.4): TLS required, upload and download bandwidths
/// required; port ranges as hysteria2's.
fn check_hysteria(outbound: &Value) -> Result<(), String> {
    if outbound["tls"]["enabled"] != true {
        return Err("TLS required".to_owned());
    }
    if !matches!(outbound["up_mbps"].as_u64(), Some(1..)) {
        return Err("missing upload speed".to_owned());
    }
    if !matches!(outbound["down_mbps"].as_u64(), Some(1..)) {
        return Err("missing download speed".to_owned());
    }
    check_port_ranges(outbound)
}

/// sing-box's hysteria2 outbound (`protocol/hysteria2`, sing-quic's
/// `ParsePorts`; confirmed with `sing-box check` 1.14.4): TLS required;
/// obfs salamander or gecko, with a password; each port range
/// `start:end`. Stricter than sing-box: start ≤ end (it accepts a reversed
/// range, which leaves nothing to hop to).
fn check_hysteria2(outbound: &Value) -> Result<(), String> {
    if outbound["tls"]["enabled"] != true {
        return Err("TLS required".to_owned());
    }
    let obfs = &outbound["obfs"];
    if !obfs.is_null() {
        if text(obfs, "password").is_empty() {
            return Err("missing obfs password".to_owned());
        }
        if !["salamander", "gecko"].contains(&text(obfs, "type")) {
            return Err(format!("unknown obfs type: {}", text(obfs, "type")));
        }
    }
    check_port_ranges(outbound)
}

/// Each of `server_ports` is `start:end`, start ≤ end.
fn check_port_ranges(outbound: &Value) -> Result<(), String> {
    for range in outbound["server_ports"].as_array().into_iter().flatten() {
        let range = range.as_str().unwrap_or_default();
        let bounds = range
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)));
        match bounds {
            Some((start, end)) if start <= end => {}
            _ => return Err(format!("bad port range: {range}")),
        }
    }
    Ok(())
}

/// sing-box's TUIC outbound (`protocol/tuic`, sing-quic's client;
/// confirmed with `sing-box check` 1.14.4): TLS required, a UUID, a known
/// congestion control. Stricter than sing-box: a known UDP relay mode (it
/// reads an unknown one as `native`).
fn check_tuic(outbound: &Value) -> Result<(), String> {
    if outbound["tls"]["enabled"] != true {
        return Err("TLS required".to_owned());
    }
    let uuid = text(outbound, "uuid");
    let is_uuid = uuid.len() == 36
        && uuid.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !is_uuid {
        return Err(format!("invalid uuid: {uuid}"));
    }
    match text(outbound, "congestion_control") {
        "" | "cubic" | "new_reno" | "bbr" => {}
        other => return Err(format!("unknown congestion control algorithm: {other}")),
    }
    match text(outbound, "udp_relay_mode") {
        "" | "native" | "quic" => Ok(()),
        other => Err(format!("unknown udp relay mode: {other}")),
    }
}

fn check_shadowsocks(outbound: &Value) -> Result<(), String> {
    let method = text(outbound, "method");
    let Some(key_length) = ss_key_length(method) else {
        return Err(format!("unknown method: {method}"));
    };
    let password = text(outbound, "password");
    if let Some(len) = key_length {
        for key in password.split(':') {
            match STANDARD.decode(key) {
                Ok(bytes) if bytes.len() == len => {}
                Ok(bytes) => {
                    return Err(format!(
                        "bad key length, required {len}, got {}",
                        bytes.len()
                    ));
                }
                Err(e) => return Err(format!("decode key: {e}")),
            }
        }
    } else if password.is_empty() && method != "none" {
        return Err("missing password".to_owned());
    }
    let opts = text(outbound, "plugin_opts");
    let option = |key: &str| {
        opts.split(';')
            .find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == key))
            .map(|(_, v)| v)
    };
    match text(outbound, "plugin") {
        "" => Ok(()),
        "obfs-local" => match option("obfs") {
            Some("http" | "tls") => Ok(()),
            mode => Err(format!("unknown obfs mode {}", mode.unwrap_or(""))),
        },
        "v2ray-plugin" => match option("mode") {
            None | Some("websocket") => Ok(()),
            Some(_) => Err("v2ray-plugin: only websocket mode without TLS setup".to_owned()),
        },
        plugin => Err(format!("plugin not found: {plugin}")),
    }
}

fn check_tls(tls: &Value) -> Result<(), String> {
    let utls = &tls["utls"];
    if !utls.is_null() {
        let fingerprint = text(utls, "fingerprint");
        if !FINGERPRINTS.contains(&fingerprint) {
            return Err(format!("unknown uTLS fingerprint: {fingerprint}"));
        }
    }
    let reality = &tls["reality"];
    if !reality.is_null() {
        if utls["enabled"] != true {
            return Err("REALITY requires uTLS".to_owned());
        }
        match URL_SAFE_NO_PAD.decode(text(reality, "public_key")) {
            Ok(key) if key.len() == 32 => {}
            _ => return Err("invalid REALITY public_key".to_owned()),
        }
        let short_id = text(reality, "short_id");
        if short_id.len() > 16
            || !short_id.len().is_multiple_of(2)
            || !short_id.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(format!("invalid REALITY short_id: {short_id}"));
        }
    }
    Ok(())
}

fn check_transport(transport: &Value) -> Result<(), String> {
    match text(transport, "type") {
        "ws" => match &transport["max_early_data"] {
            Value::Null => Ok(()),
            n if n.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)) => Ok(()),
            _ => Err("ws max_early_data is not a byte count".to_owned()),
        },
        "grpc" | "httpupgrade" | "http" => Ok(()),
        other => Err(format!("unknown transport type: {other}")),
    }
}

/// Every problem sing-box would refuse the whole configuration for.
pub fn check_config(config: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(outbounds) = config["outbounds"].as_array() else {
        return vec!["no outbounds".to_owned()];
    };
    let mut tags = HashSet::new();
    for (i, outbound) in outbounds.iter().enumerate() {
        let tag = text(outbound, "tag");
        if !tag.is_empty() && !tags.insert(tag) {
            errors.push(format!("duplicate outbound tag {tag:?}"));
        }
        let checked = match text(outbound, "type") {
            "selector" | "direct" if !tag.is_empty() => Ok(()),
            _ => check_outbound(outbound),
        };
        if let Err(e) = checked {
            errors.push(format!("outbound[{i}] {tag:?}: {e}"));
        }
    }
    for outbound in outbounds.iter().filter(|o| o["type"] == "selector") {
        for member in outbound["outbounds"].as_array().into_iter().flatten() {
            let member = member.as_str().unwrap_or_default();
            if !tags.contains(member) {
                errors.push(format!("selector refers to missing outbound {member:?}"));
            }
        }
    }
    let route_final = config["route"]["final"].as_str().unwrap_or_default();
    if !tags.contains(route_final) {
        errors.push(format!(
            "route.final refers to missing outbound {route_final:?}"
        ));
    }
    for reserved in [SELECTOR, DIRECT] {
        if !tags.contains(reserved) {
            errors.push(format!("no {reserved:?} outbound"));
        }
    }
    errors
}
