//! `ss://` links: SIP002 (`ss://base64url(method:password)@host:port/?plugin=...#name`,
//! or the userinfo percent-encoded) and the legacy form
//! (`ss://base64(method:password@host:port)#name`).

use super::stream::ss2022_password;
use super::{
    Params, Plugin, Protocol, Server, decode_component, decode_name, param, parse_query, shorten,
    split, split_host_port,
};
use crate::orchestrator::singbox::rules::{SS_METHODS, ss_key_length};
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

pub(super) fn parse(rest: &str) -> Result<Server, String> {
    let (body, fragment) = match rest.split_once('#') {
        Some((body, fragment)) => (body, Some(fragment)),
        None => (rest, None),
    };
    let (before_query, query) = match body.split_once('?') {
        Some((before, query)) => (before, query),
        None => (body, ""),
    };
    if !before_query.contains('@') {
        return legacy(before_query, query, fragment);
    }
    let parts = split(rest)?;
    let user = decode_component(&parts.user, "the user info")?;
    let credentials = if user.contains(':') {
        user
    } else {
        base64_lenient(&user)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| "shadowsocks user info is not `method:password` in base64".to_owned())?
    };
    server(
        &credentials,
        parts.host,
        parts.port,
        &parts.params,
        parts.name,
    )
}

/// The legacy form: everything before the query is base64 of
/// `method:password@host:port`, with the password raw, so it may hold any
/// character (`@`, `:`, `?`, `#`, `%`): the method ends at the first `:`
/// and the address starts after the last `@`. Never re-parsed as a URI.
fn legacy(encoded: &str, query: &str, fragment: Option<&str>) -> Result<Server, String> {
    let decoded = base64_lenient(encoded.trim_end_matches('/'))
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| "shadowsocks link is neither SIP002 nor base64".to_owned())?;
    let (credentials, address) = decoded.rsplit_once('@').ok_or_else(|| {
        "legacy shadowsocks link has no `@host:port` after its password".to_owned()
    })?;
    let (host, port) = split_host_port(address.trim_end_matches('/'))?;
    let params = parse_query(query)?;
    let name = fragment.map(decode_name).unwrap_or_default();
    server(credentials, host, port, &params, name)
}

/// The server of `method:password` at `host:port`, with the link's
/// parameters (a plugin) and name.
fn server(
    credentials: &str,
    host: String,
    port: u16,
    params: &Params,
    name: String,
) -> Result<Server, String> {
    let (method, password) = credentials
        .split_once(':')
        .ok_or_else(|| "shadowsocks user info is not `method:password`".to_owned())?;
    let method = method.to_ascii_lowercase();
    let key_len = ss_key_length(&method).ok_or_else(|| {
        format!(
            "unsupported shadowsocks method {:?} (sing-box has {})",
            shorten(&method),
            SS_METHODS.map(|(m, _)| m).join(", ")
        )
    })?;
    let password = match key_len {
        Some(len) => ss2022_password(password, &method, len)?,
        None if password.is_empty() && method != "none" => {
            return Err("shadowsocks password is empty".to_owned());
        }
        None => password.to_owned(),
    };
    let plugin = plugin(param(params, "plugin"))?;
    Ok(Server {
        protocol: Protocol::Shadowsocks {
            method,
            password,
            plugin,
        },
        name,
        host,
        port,
        tls: None,
        transport: None,
    })
}

/// SIP003 `plugin=name;opt=value;...`: the two plugins sing-box implements.
fn plugin(spec: &str) -> Result<Option<Plugin>, String> {
    if spec.is_empty() {
        return Ok(None);
    }
    let (name, opts) = spec.split_once(';').unwrap_or((spec, ""));
    let option = |key: &str| {
        opts.split(';')
            .find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == key))
            .map(|(_, v)| v)
    };
    match name {
        "obfs-local" | "simple-obfs" => match option("obfs") {
            Some("http" | "tls") => Ok(Some(Plugin {
                name: "obfs-local",
                opts: opts.to_owned(),
            })),
            other => Err(format!(
                "`plugin={name}` with obfs={:?}: sing-box's obfs-local needs obfs=http or obfs=tls",
                other.unwrap_or("")
            )),
        },
        "v2ray-plugin" => match option("mode") {
            None | Some("websocket") => Ok(Some(Plugin {
                name: "v2ray-plugin",
                opts: opts.to_owned(),
            })),
            Some(mode) => Err(format!(
                "`plugin=v2ray-plugin` with mode={}: sing-box's v2ray-plugin is websocket only",
                shorten(mode)
            )),
        },
        other => Err(format!(
            "`plugin={}`: sing-box implements only obfs-local and v2ray-plugin",
            shorten(other)
        )),
    }
}

/// Base64 in either alphabet, padded or not (subscriptions use all four).
pub(crate) fn base64_lenient(text: &str) -> Option<Vec<u8>> {
    const ENGINES: [GeneralPurpose; 2] = [STANDARD_NO_PAD, URL_SAFE_NO_PAD];
    let text = text.trim().trim_end_matches('=');
    ENGINES.iter().find_map(|engine| engine.decode(text).ok())
}
