//! SOCKS links, to sing-box's `socks` outbound:
//!
//! - `socks://` as v2rayN writes it: `socks://base64(user:pass)@host:port#name`
//!   (the user info may also be percent-encoded `user:pass`, or absent), and
//!   the older form with everything before the query in base64,
//!   `socks://base64([user:pass@]host:port)#name`. SOCKS5.
//! - The URI forms `socks5://`, `socks5h://` (SOCKS5), `socks4://` and
//!   `socks4a://`, with the user info percent-encoded (`user:pass`; SOCKS4
//!   has a user id and no password).
//!
//! No port means 1080. SOCKS has no TLS or transport in sing-box: a link
//! asking for one is refused.

use super::shadowsocks::base64_lenient;
use super::{
    Params, Protocol, Server, decode_component, decode_name, param, parse_query, shorten, split,
    split_host_port, with_port,
};

/// RFC 1929: a SOCKS5 user name or password is 1 to 255 bytes.
const MAX_CREDENTIAL: usize = 255;

/// The link after `scheme://`; `scheme` is lowercased.
pub(super) fn parse(scheme: &str, rest: &str) -> Result<Server, String> {
    let version = match scheme {
        "socks" | "socks5" | "socks5h" => "5",
        "socks4" => "4",
        "socks4a" => "4a",
        _ => return Err(format!("`{}://` is not a SOCKS scheme", shorten(scheme))),
    };
    let head_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let head = rest[..head_end].trim_end_matches('/');
    if scheme == "socks"
        && !head.contains(['@', ':'])
        && let Some(decoded) = base64_lenient(head).and_then(|b| String::from_utf8(b).ok())
        && decoded.contains(':')
    {
        return legacy(version, &decoded, &rest[head_end..]);
    }
    let rest = with_port(rest, 1080);
    let has_user = rest[..rest.find(['?', '#']).unwrap_or(rest.len())].contains('@');
    let parts = match has_user {
        true => split(&rest)?,
        false => split(&format!("@{rest}"))?,
    };
    let (username, password) = match scheme {
        "socks" => v2rayn_user(&parts.user)?,
        _ => uri_user(&parts.user)?,
    };
    server(
        version,
        username,
        password,
        parts.host,
        parts.port,
        &parts.params,
        parts.name,
    )
}

/// The older v2rayN form: `decoded` is `[user:pass@]host:port` (the
/// password raw: the address starts after the last `@`), `tail` the query
/// and name after it.
fn legacy(version: &'static str, decoded: &str, tail: &str) -> Result<Server, String> {
    let (credentials, address) = match decoded.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address),
        None => (None, decoded),
    };
    let (username, password) = match credentials {
        Some(credentials) => credentials
            .split_once(':')
            .map(|(user, pass)| (user.to_owned(), pass.to_owned()))
            .ok_or_else(|| "SOCKS user info is not `user:pass`".to_owned())?,
        None => Default::default(),
    };
    let (host, port) = split_host_port(address.trim())?;
    let (tail, name) = match tail.split_once('#') {
        Some((tail, name)) => (tail, decode_name(name)),
        None => (tail, String::new()),
    };
    let params = parse_query(tail.trim_start_matches('?'))?;
    server(version, username, password, host, port, &params, name)
}

/// v2rayN's user info: base64 of `user:pass`, or `user:pass`
/// percent-encoded.
fn v2rayn_user(raw: &str) -> Result<(String, String), String> {
    if raw.contains(':') {
        return uri_user(raw);
    }
    if raw.is_empty() {
        return Ok(Default::default());
    }
    let decoded = base64_lenient(&decode_component(raw, "the user info")?)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| "SOCKS user info is neither `user:pass` nor its base64".to_owned())?;
    let (user, pass) = decoded
        .split_once(':')
        .ok_or_else(|| "SOCKS user info is not `user:pass` in base64".to_owned())?;
    Ok((user.to_owned(), pass.to_owned()))
}

/// `user[:pass]`, each part percent-encoded.
fn uri_user(raw: &str) -> Result<(String, String), String> {
    let (user, pass) = raw.split_once(':').unwrap_or((raw, ""));
    Ok((
        decode_component(user, "the user name")?,
        decode_component(pass, "the password")?,
    ))
}

fn server(
    version: &'static str,
    username: String,
    password: String,
    host: String,
    port: u16,
    params: &Params,
    name: String,
) -> Result<Server, String> {
    match param(params, "security") {
        "" | "none" => {}
        other => {
            return Err(format!(
                "`security={}`: sing-box's socks outbound has no TLS",
                shorten(other)
            ));
        }
    }
    match param(params, "type") {
        "" | "tcp" => {}
        other => {
            return Err(format!(
                "`type={}`: sing-box's socks outbound has no transport",
                shorten(other)
            ));
        }
    }
    if version != "5" && !password.is_empty() {
        return Err(format!(
            "SOCKS{version} has a user id and no password (use `socks5://` for a password)"
        ));
    }
    if username.is_empty() && !password.is_empty() {
        return Err("a SOCKS password without a user name (SOCKS5 needs both)".to_owned());
    }
    for (what, value) in [("user name", &username), ("password", &password)] {
        if value.len() > MAX_CREDENTIAL {
            return Err(format!(
                "the SOCKS {what} is {} bytes (at most {MAX_CREDENTIAL})",
                value.len()
            ));
        }
    }
    Ok(Server {
        name,
        host,
        port,
        protocol: Protocol::Socks {
            version,
            username,
            password,
        },
        tls: None,
        transport: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{converted, dropped};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    #[test]
    fn v2rayn_links_with_base64_user_info() {
        let user = STANDARD.encode("user:p@ss:word");
        let out = converted(&format!("socks://{user}@198.51.100.2:1080#Socks%20A"));
        assert_eq!(out["type"], "socks");
        assert_eq!(out["version"], "5");
        assert_eq!(out["server"], "198.51.100.2");
        assert_eq!(out["server_port"], 1080);
        assert_eq!(out["username"], "user");
        assert_eq!(out["password"], "p@ss:word");
        // v2rayN writes `base64(":")` for no authentication.
        let out = converted("socks://Og==@[2001:db8::2]:1081#B");
        assert_eq!(out["server"], "2001:db8::2");
        assert!(
            out.get("username").is_none() && out.get("password").is_none(),
            "{out}"
        );
        // Percent-encoded user info, and none at all.
        assert_eq!(
            converted("socks://u%40x:p%3Aw@h.example:1")["password"],
            "p:w"
        );
        let out = converted("socks://proxy.example#C");
        assert_eq!(out["server_port"], 1080);
        assert!(out.get("username").is_none(), "{out}");
    }

    #[test]
    fn the_older_all_base64_form() {
        let body = STANDARD.encode("user:p@ss@203.0.113.9:7890");
        let out = converted(&format!("socks://{body}#Old"));
        assert_eq!(
            (
                &out["username"],
                &out["password"],
                &out["server"],
                &out["server_port"]
            ),
            (
                &json!("user"),
                &json!("p@ss"),
                &json!("203.0.113.9"),
                &json!(7890)
            )
        );
        let body = STANDARD.encode("203.0.113.9:7890");
        assert!(
            converted(&format!("socks://{body}"))
                .get("username")
                .is_none()
        );
    }

    #[test]
    fn uri_forms_and_their_versions() {
        let out = converted("socks5://alice:s%23cret@192.0.2.7:1080#S5");
        assert_eq!(
            (&out["version"], &out["password"]),
            (&json!("5"), &json!("s#cret"))
        );
        assert_eq!(converted("socks5h://192.0.2.7")["version"], "5");
        let out = converted("SOCKS4A://id@192.0.2.7:1080");
        assert_eq!(
            (&out["version"], &out["username"]),
            (&json!("4a"), &json!("id"))
        );
        assert_eq!(converted("socks4://192.0.2.7:1080")["version"], "4");
        // A name only: authentication with an empty password.
        let out = converted("socks5://alice@192.0.2.7");
        assert_eq!(out["username"], "alice");
        assert!(out.get("password").is_none(), "{out}");
    }

    #[test]
    fn what_sing_box_or_socks_cannot_do_is_refused() {
        dropped(
            "socks4://id:pw@192.0.2.7:1080",
            "SOCKS4 has a user id and no password",
        );
        dropped("socks5://:pw@192.0.2.7:1080", "without a user name");
        dropped("socks5://u:p@192.0.2.7:1080?security=tls", "`security=tls`");
        dropped("socks://192.0.2.7:1080?type=ws", "`type=ws`");
        dropped(
            &format!("socks5://{}:p@192.0.2.7", "u".repeat(256)),
            "256 bytes",
        );
        dropped(
            "socks://bm90IGNyZWRlbnRpYWxz@192.0.2.7:1080",
            "not `user:pass`",
        );
        dropped("socks://%ZZ%@192.0.2.7:1080", "user info");
        dropped("socks5://u:p@192.0.2.7:0", "invalid port");
        dropped("socks5://u:p@[1.2.3.4]:1080", "only an IPv6 address");
    }

    #[test]
    fn the_client_refuses_an_unknown_version_and_tls() {
        use crate::orchestrator::singbox::check_outbound;
        let base = converted("socks5://u:p@192.0.2.7");
        let mut out = base.clone();
        out["version"] = json!("6");
        let reason = check_outbound(&out).expect_err("version 6");
        assert!(reason.contains("unknown socks version: 6"), "{reason}");
        let mut out = base;
        out["tls"] = json!({ "enabled": true });
        let reason = check_outbound(&out).expect_err("tls");
        assert!(reason.contains("\"tls\""), "{reason}");
    }
}
