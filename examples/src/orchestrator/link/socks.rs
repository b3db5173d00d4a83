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
    // The older form's base64 may have its padding percent-encoded.
    let head = decode_component(rest[..head_end].trim_end_matches('/'), "the link");
    if let Ok(head) = head
        && !head.contains(['@', ':'])
        && let Some(decoded) = base64_text(&head)
        && decoded.contains(['.', ':'])
    {
        return legacy(version, &decoded, &rest[head_end..]);
    }
    let rest = with_port(rest, 1080);
    let has_user = rest[..rest.find(['?', '#']).unwrap_or(rest.len())].contains('@');
    let parts = match has_user {
        true => split(&rest)?,
        false => split(&format!("@{rest}"))?,
    };
    let (username, password) = user_info(&parts.user)?;
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

/// The older v2rayN form: `decoded` is `[user:pass@]host[:port]` (the
/// password raw: the address starts after the last `@`), `tail` the query
/// and name after it.
fn legacy(version: &'static str, decoded: &str, tail: &str) -> Result<Server, String> {
    let (credentials, address) = match decoded.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address.trim()),
        None => (None, decoded.trim()),
    };
    let (username, password) = match credentials {
        Some(credentials) => credentials
            .split_once(':')
            .map(|(user, pass)| (user.to_owned(), pass.to_owned()))
            .unwrap_or_else(|| (credentials.to_owned(), String::new())),
        None => Default::default(),
    };
    let has_port = match address.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .is_some_and(|(_, after)| !after.is_empty()),
        None => address.contains(':'),
    };
    let (host, port) = match has_port {
        true => split_host_port(address)?,
        false => split_host_port(&format!("{address}:1080"))?,
    };
    let (tail, name) = match tail.split_once('#') {
        Some((tail, name)) => (tail, decode_name(name)),
        None => (tail, String::new()),
    };
    let params = parse_query(tail.trim_start_matches('?'))?;
    server(version, username, password, host, port, &params, name)
}

/// Base64 (standard or URL-safe, padded or not) of printable text.
fn base64_text(encoded: &str) -> Option<String> {
    base64_lenient(encoded)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| !text.is_empty() && !text.chars().any(char::is_control))
}

/// The user info, as NekoBox reads it for every SOCKS scheme: `user:pass`
/// percent-encoded; else base64 of `user:pass` (v2rayN); else a user name
/// alone.
fn user_info(raw: &str) -> Result<(String, String), String> {
    if let Some((user, pass)) = raw.split_once(':') {
        return Ok((
            decode_component(user, "the user name")?,
            decode_component(pass, "the password")?,
        ));
    }
    let user = decode_component(raw, "the user info")?;
    match base64_text(&user).and_then(|text| {
        text.split_once(':')
            .map(|(user, pass)| (user.to_owned(), pass.to_owned()))
    }) {
        Some(credentials) => Ok(credentials),
        None => Ok((user, String::new())),
    }
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
    let security = param(params, "security");
    if !security.is_empty() && !security.eq_ignore_ascii_case("none") {
        return Err(format!(
            "`security={}`: sing-box's socks outbound has no TLS",
            shorten(security)
        ));
    }
    // NekoBox writes SOCKS over TLS as `tls=true` with an `sni`.
    let tls = param(params, "tls");
    if tls.eq_ignore_ascii_case("true") || tls == "1" {
        return Err(format!(
            "`tls={}`: sing-box's socks outbound has no TLS",
            shorten(tls)
        ));
    }
    if !param(params, "sni").is_empty() {
        return Err("`sni`: sing-box's socks outbound has no TLS".to_owned());
    }
    let transport = param(params, "type");
    if !transport.is_empty() && !transport.eq_ignore_ascii_case("tcp") {
        return Err(format!(
            "`type={}`: sing-box's socks outbound has no transport",
            shorten(transport)
        ));
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
        // Base64 user info (NekoBox reads it for every scheme), and a user
        // name that is not base64 of `user:pass`.
        let out = converted("socks5://dXNlcjpwYXNz@198.51.100.2:1080");
        assert_eq!(
            (&out["username"], &out["password"]),
            (&json!("user"), &json!("pass"))
        );
        let out = converted("socks://alice@198.51.100.2:1080?type=TCP&security=NONE");
        assert_eq!(out["username"], "alice");
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
            "socks5://u:p@192.0.2.7:1080?tls=true&sni=s.example",
            "`tls=true`",
        );
        dropped("socks5://u:p@192.0.2.7:1080?sni=s.example", "`sni`");
        dropped(
            &format!("socks5://{}:p@192.0.2.7", "u".repeat(256)),
            "256 bytes",
        );
        dropped("socks://%FF@192.0.2.7:1080", "the user info");
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
