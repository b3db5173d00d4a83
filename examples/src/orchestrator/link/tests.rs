//! Share links written from the formats' public descriptions (SIP002, the
//! VMess/VLESS share-link proposal, v2rayN's vmess JSON), with documentation
//! addresses and example.com hosts. Each converted link is also checked
//! against sing-box's rules through the outbound it becomes.

use super::*;
use crate::orchestrator::singbox::{check_outbound, outbound};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

const UUID: &str = "6b1e3a0c-8e2b-4c59-9f2d-1a2b3c4d5e6f";

/// A REALITY public key (32 bytes, base64url without padding).
fn pbk() -> String {
    URL_SAFE_NO_PAD.encode([7u8; 32])
}

/// The sing-box outbound of a link that must convert, checked.
pub(super) fn converted(link: &str) -> Value {
    let server = parse_uri(link).unwrap_or_else(|e| panic!("{link}: {e}"));
    let out = outbound(&server, "t");
    if let Err(e) = check_outbound(&out) {
        panic!("{link} converts to an outbound sing-box refuses ({e}): {out}");
    }
    out
}

/// The reason a link is dropped; it must name `names`.
pub(super) fn dropped(link: &str, names: &str) -> String {
    let reason = parse_uri(link).expect_err(link);
    assert!(
        reason.contains(names),
        "{link}: {reason:?} should name {names:?}"
    );
    reason
}

fn vless(query: &str) -> String {
    format!("vless://{UUID}@203.0.113.5:443?{query}#V")
}

#[test]
fn vless_tls_with_sni_alpn_insecure_and_fingerprint() {
    let out = converted(&vless(
        "security=tls&sni=edge.example.com&alpn=h2%2Chttp%2F1.1&allowInsecure=1&fp=firefox",
    ));
    assert_eq!(
        out["tls"],
        json!({
            "enabled": true,
            "server_name": "edge.example.com",
            "insecure": true,
            "alpn": ["h2", "http/1.1"],
            "utls": { "enabled": true, "fingerprint": "firefox" }
        })
    );
    // A raw comma list and `insecure=1` work too.
    let out = converted(&vless("security=tls&alpn=h2,http/1.1&insecure=1"));
    assert_eq!(out["tls"]["alpn"], json!(["h2", "http/1.1"]));
    assert_eq!(out["tls"]["insecure"], true);
    assert!(out["tls"]["utls"].is_null());
    dropped(&vless("security=tls&fp=netscape"), "`fp=netscape`");
    dropped(
        &vless("security=tls&allowInsecure=maybe"),
        "`allowInsecure=maybe`",
    );
}

#[test]
fn vless_reality_keeps_key_short_id_and_gets_utls() {
    let link = vless(&format!(
        "security=reality&sni=www.example.com&pbk={}&sid=0123abcd&flow=xtls-rprx-vision",
        pbk()
    ));
    let out = converted(&link);
    assert_eq!(out["flow"], "xtls-rprx-vision");
    assert_eq!(out["tls"]["server_name"], "www.example.com");
    assert_eq!(
        out["tls"]["reality"],
        json!({ "enabled": true, "public_key": pbk(), "short_id": "0123abcd" })
    );
    assert_eq!(
        out["tls"]["utls"],
        json!({ "enabled": true, "fingerprint": "chrome" }),
        "REALITY without fp gets the documented default"
    );
    // An explicit fingerprint wins; a key in the standard alphabet with
    // padding is normalized to what sing-box reads.
    let std_key = STANDARD.encode([0xfbu8; 32]);
    let out = converted(&vless(&format!(
        "security=reality&sni=www.example.com&pbk={}&fp=safari",
        std_key
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    )));
    assert_eq!(out["tls"]["utls"]["fingerprint"], "safari");
    assert_eq!(
        out["tls"]["reality"]["public_key"],
        URL_SAFE_NO_PAD.encode([0xfbu8; 32])
    );
    assert_eq!(out["tls"]["reality"]["short_id"], "");

    dropped(&vless("security=reality&sni=www.example.com"), "`pbk`");
    dropped(
        &vless("security=reality&sni=www.example.com&pbk=short"),
        "`pbk=short`",
    );
    dropped(
        &vless(&format!(
            "security=reality&sni=www.example.com&pbk={}&sid=xyz",
            pbk()
        )),
        "`sid=xyz`",
    );
    dropped(&vless(&format!("security=reality&pbk={}", pbk())), "`sni`");
}

#[test]
fn vless_flow_only_where_sing_box_accepts_it() {
    let out = converted(&vless("security=tls&flow=xtls-rprx-vision-udp443"));
    assert_eq!(
        out["flow"], "xtls-rprx-vision",
        "the same flow, server side"
    );
    dropped(
        &vless("security=tls&flow=xtls-rprx-direct"),
        "`flow=xtls-rprx-direct`",
    );
    dropped(&vless("flow=xtls-rprx-vision"), "needs `security=tls`");
    dropped(
        &vless("security=tls&flow=xtls-rprx-vision&type=ws"),
        "only over raw TCP",
    );
    dropped(
        &vless("encryption=mlkem768x25519plus.native.0rtt.x"),
        "`encryption=",
    );
    assert!(converted(&vless("encryption=none"))["tls"].is_null());
}

#[test]
fn values_are_case_insensitive_and_vmess_ipv6_may_be_bracketed() {
    let out = converted(&vless("security=TLS&type=WS&path=/w"));
    assert_eq!(
        (&out["tls"]["enabled"], &out["transport"]["type"]),
        (&json!(true), &json!("ws"))
    );
    let out = converted(&vmess(
        json!({ "add": "[2001:db8::5]", "port": 443, "id": UUID }),
    ));
    assert_eq!(out["server"], "2001:db8::5");
}

#[test]
fn unknown_security_is_dropped_never_plain() {
    dropped(&vless("security=xtls"), "`security=xtls`");
    assert!(converted(&vless("security=none"))["tls"].is_null());
}

#[test]
fn websocket_path_host_and_early_data() {
    let out = converted(&vless(
        "security=tls&type=ws&host=cdn.example.com&path=%2Fws%3Fed%3D2048",
    ));
    assert_eq!(
        out["transport"],
        json!({
            "type": "ws",
            "path": "/ws",
            "headers": { "Host": "cdn.example.com" },
            "max_early_data": 2048,
            "early_data_header_name": "Sec-WebSocket-Protocol"
        })
    );
    assert_eq!(
        out["tls"]["server_name"], "cdn.example.com",
        "SNI falls back to Host"
    );
    // `ed` as its own parameter, and other path parameters kept.
    let out = converted(&vless("type=ws&path=/ws?token=abc&ed=1024"));
    assert_eq!(out["transport"]["path"], "/ws?token=abc");
    assert_eq!(out["transport"]["max_early_data"], 1024);
    let out = converted(&vless("type=ws"));
    assert_eq!(out["transport"], json!({ "type": "ws", "path": "/" }));
    dropped(&vless("type=ws&path=/ws?ed=lots"), "`ed=lots`");
}

#[test]
fn grpc_httpupgrade_and_http2() {
    let out = converted(&vless(
        "security=tls&type=grpc&serviceName=tunnel&mode=multi",
    ));
    assert_eq!(
        out["transport"],
        json!({ "type": "grpc", "service_name": "tunnel" })
    );
    let out = converted(&vless(
        "type=httpupgrade&path=/up%3Fed%3D2048&host=up.example.com",
    ));
    assert_eq!(
        out["transport"],
        json!({ "type": "httpupgrade", "path": "/up", "host": "up.example.com" })
    );
    for kind in ["h2", "http"] {
        let out = converted(&vless(&format!(
            "security=tls&type={kind}&path=/h2&host=a.example.com,b.example.com"
        )));
        assert_eq!(
            out["transport"],
            json!({ "type": "http", "path": "/h2", "host": ["a.example.com", "b.example.com"] })
        );
    }
}

#[test]
fn transports_sing_box_lacks_are_dropped_never_tcp() {
    dropped(&vless("type=xhttp&path=/x"), "`type=xhttp`");
    dropped(&vless("type=splithttp"), "`type=splithttp`");
    dropped(&vless("type=kcp"), "`type=kcp`");
    dropped(&vless("type=quic"), "`type=quic`");
    dropped(&vless("type=carrier-pigeon"), "`type=carrier-pigeon`");
    dropped(
        &vless("type=tcp&headerType=http&host=a.example.com"),
        "`headerType=http`",
    );
    assert!(converted(&vless("type=tcp&headerType=none"))["transport"].is_null());
    assert!(converted(&vless("type=raw"))["transport"].is_null());
}

#[test]
fn trojan_is_tls_by_default_with_peer_as_sni() {
    let out = converted("trojan://p%40ss@198.51.100.7:443?peer=t.example.com&alpn=h2#T");
    assert_eq!(out["password"], "p@ss");
    assert_eq!(
        out["tls"],
        json!({ "enabled": true, "server_name": "t.example.com", "alpn": ["h2"] })
    );
    let out = converted("trojan://pw@198.51.100.7:443?security=none");
    assert!(out["tls"].is_null(), "explicitly plain");
    let out = converted("trojan://pw@198.51.100.7:443?type=grpc&serviceName=g&sni=t.example.com");
    assert_eq!(out["transport"]["service_name"], "g");
    dropped("trojan://pw@198.51.100.7:443?type=xhttp", "`type=xhttp`");
    dropped("trojan://@198.51.100.7:443", "password is empty");
}

fn vmess(json: Value) -> String {
    format!("vmess://{}", STANDARD.encode(json.to_string()))
}

#[test]
fn vmess_json_fields_with_ports_as_strings_or_numbers() {
    let out = converted(&vmess(json!({
        "v": "2", "ps": "VM 1", "add": "vm.example.com", "port": "8443", "id": UUID,
        "aid": "0", "scy": "chacha20-poly1305", "net": "ws", "type": "none",
        "host": "cdn.example.com", "path": "/v?ed=2560", "tls": "tls",
        "sni": "sni.example.com", "alpn": "h2,http/1.1", "fp": "chrome"
    })));
    assert_eq!(
        (&out["server_port"], &out["alter_id"], &out["security"]),
        (&json!(8443), &json!(0), &json!("chacha20-poly1305"))
    );
    assert_eq!(out["transport"]["max_early_data"], 2560);
    assert_eq!(out["transport"]["headers"]["Host"], "cdn.example.com");
    assert_eq!(out["tls"]["server_name"], "sni.example.com");
    assert_eq!(out["tls"]["alpn"], json!(["h2", "http/1.1"]));
    assert_eq!(out["tls"]["utls"]["fingerprint"], "chrome");

    let out = converted(&vmess(json!({
        "ps": "VM 2", "add": "192.0.2.9", "port": 443, "id": UUID, "aid": 4, "net": "grpc",
        "path": "svc", "tls": "tls"
    })));
    assert_eq!(out["server_port"], 443);
    assert_eq!(out["alter_id"], 4);
    assert_eq!(out["security"], "auto", "no scy means auto");
    assert_eq!(
        out["transport"],
        json!({ "type": "grpc", "service_name": "svc" })
    );

    let out = converted(&vmess(json!({
        "add": "192.0.2.9", "port": 80, "id": UUID, "net": "h2", "host": "h.example.com",
        "path": "/p", "tls": "tls"
    })));
    assert_eq!(out["transport"]["type"], "http");
}

#[test]
fn vmess_problems_name_their_field() {
    let base = json!({ "add": "192.0.2.9", "port": 443, "id": UUID });
    let with = |key: &str, value: Value| {
        let mut json = base.clone();
        json[key] = value;
        vmess(json)
    };
    dropped(&with("scy", json!("aes-256-cfb")), "`scy=aes-256-cfb`");
    dropped(&with("net", json!("kcp")), "`type=kcp`");
    dropped(&with("net", json!("xhttp")), "`type=xhttp`");
    dropped(&with("type", json!("http")), "`headerType=http`");
    dropped(&with("tls", json!("xtls")), "`security=xtls`");
    dropped(&with("port", json!("0")), "vmess `port`");
    dropped(&with("add", json!("")), "vmess `add`");
    dropped(&with("aid", json!("x")), "`aid`");
    dropped("vmess://!!!", "not base64");
}

fn ss(userinfo: &str, rest: &str) -> String {
    format!("ss://{userinfo}@192.0.2.20:8388{rest}")
}

#[test]
fn shadowsocks_every_method_sing_box_has() {
    for method in [
        "none",
        "aes-128-gcm",
        "aes-192-gcm",
        "aes-256-gcm",
        "chacha20-ietf-poly1305",
        "xchacha20-ietf-poly1305",
        "aes-128-ctr",
        "aes-192-ctr",
        "aes-256-ctr",
        "aes-128-cfb",
        "aes-192-cfb",
        "aes-256-cfb",
        "rc4-md5",
        "chacha20-ietf",
        "xchacha20",
    ] {
        let userinfo = URL_SAFE_NO_PAD.encode(format!("{method}:secret"));
        let out = converted(&ss(&userinfo, "#S"));
        assert_eq!(
            (&out["method"], &out["password"]),
            (&json!(method), &json!("secret"))
        );
    }
    dropped(&ss(&STANDARD.encode("chacha20:pw"), ""), "\"chacha20\"");
    dropped(
        &ss(&STANDARD.encode("aes-256-gcm:"), ""),
        "password is empty",
    );
}

#[test]
fn shadowsocks_2022_keys_are_checked_and_normalized() {
    let key16 = STANDARD.encode([1u8; 16]);
    let key32 = STANDARD.encode([2u8; 32]);
    // SIP002 allows the 2022 userinfo percent-encoded instead of base64.
    let plain = |method: &str, password: &str| {
        ss(
            &format!(
                "{method}:{}",
                password.replace('+', "%2B").replace('/', "%2F")
            ),
            "",
        )
    };
    let out = converted(&plain("2022-blake3-aes-128-gcm", &key16));
    assert_eq!(out["password"], key16);
    let out = converted(&plain(
        "2022-blake3-aes-256-gcm",
        &format!("{key32}:{key32}"),
    ));
    assert_eq!(
        out["password"],
        format!("{key32}:{key32}"),
        "multi-user keys"
    );
    // Unpadded keys are padded, as sing-box needs.
    let out = converted(&plain(
        "2022-blake3-chacha20-poly1305",
        key32.trim_end_matches('='),
    ));
    assert_eq!(out["password"], key32);
    dropped(&plain("2022-blake3-aes-256-gcm", &key16), "32-byte keys");
    dropped(
        &plain("2022-blake3-aes-128-gcm", "not-a-key!"),
        "base64 keys",
    );
}

#[test]
fn shadowsocks_plugins() {
    let userinfo = URL_SAFE_NO_PAD.encode("aes-256-gcm:pw");
    let out = converted(&ss(
        &userinfo,
        "/?plugin=obfs-local%3Bobfs%3Dhttp%3Bobfs-host%3Dcdn.example.com#O",
    ));
    assert_eq!(
        (&out["plugin"], &out["plugin_opts"]),
        (
            &json!("obfs-local"),
            &json!("obfs=http;obfs-host=cdn.example.com")
        )
    );
    let out = converted(&ss(&userinfo, "/?plugin=simple-obfs%3Bobfs%3Dtls"));
    assert_eq!(out["plugin"], "obfs-local", "simple-obfs is obfs-local");
    let out = converted(&ss(
        &userinfo,
        "/?plugin=v2ray-plugin%3Bmode%3Dwebsocket%3Bhost%3Dv.example.com%3Bpath%3D%2Fv",
    ));
    assert_eq!(
        (&out["plugin"], &out["plugin_opts"]),
        (
            &json!("v2ray-plugin"),
            &json!("mode=websocket;host=v.example.com;path=/v")
        )
    );
    dropped(
        &ss(&userinfo, "/?plugin=kcptun%3Bkey%3Dx"),
        "`plugin=kcptun`",
    );
    dropped(
        &ss(&userinfo, "/?plugin=v2ray-plugin%3Bmode%3Dquic"),
        "mode=quic",
    );
    dropped(
        &ss(&userinfo, "/?plugin=obfs-local%3Bobfs%3Dwhat"),
        "obfs=\"what\"",
    );
}

#[test]
fn shadowsocks_legacy_and_sip002_forms() {
    let legacy = format!(
        "ss://{}#old",
        STANDARD.encode("aes-256-gcm:pw@example.com:443")
    );
    let out = converted(&legacy);
    assert_eq!(
        (&out["server"], &out["server_port"]),
        (&json!("example.com"), &json!(443))
    );
    let server = parse_uri(&legacy).expect("legacy");
    assert_eq!(server.name, "old");
}

#[test]
fn legacy_shadowsocks_passwords_may_hold_any_character() {
    // Whole-base64 links carry the password raw: `?`, `#`, `@`, `:`, `%`
    // and `/` are all part of it.
    for password in ["pa?ss", "pa#ss", "p@ss", "p@ss:w#rd?x=1", "100%/2", "@@"] {
        let legacy = format!(
            "ss://{}#Legacy%20{}",
            STANDARD.encode(format!(
                "chacha20-ietf-poly1305:{password}@198.51.100.7:8388"
            )),
            password.len()
        );
        let out = converted(&legacy);
        assert_eq!(out["password"], json!(password), "{legacy}");
        assert_eq!(
            (&out["server"], &out["server_port"]),
            (&json!("198.51.100.7"), &json!(8388)),
            "{legacy}"
        );
        let server = parse_uri(&legacy).expect("legacy");
        assert_eq!(server.name, format!("Legacy {}", password.len()));
    }
    // A plugin after the base64 still applies.
    let with_plugin = format!(
        "ss://{}?plugin=obfs-local%3Bobfs%3Dhttp#P",
        URL_SAFE_NO_PAD.encode("aes-128-gcm:a?b#c@[2001:db8::1]:443")
    );
    let out = converted(&with_plugin);
    assert_eq!(out["password"], json!("a?b#c"));
    assert_eq!(out["server"], json!("2001:db8::1"));
    assert_eq!(out["plugin"], json!("obfs-local"));
}

#[test]
fn names_keep_their_text_or_become_lossy_never_dropped() {
    let server = parse_uri(&format!(
        "vless://{UUID}@192.0.2.1:443#Tokyo%20%E6%9D%B1%E4%BA%AC"
    ))
    .expect("valid");
    assert_eq!(server.name, "Tokyo 東京");
    let server = parse_uri(&format!("vless://{UUID}@192.0.2.1:443#bad%FF%FEname")).expect("kept");
    assert_eq!(server.name, "bad\u{fffd}\u{fffd}name");
}

#[test]
fn user_ids_are_uuids_or_short_strings() {
    let out = converted(&format!("vless://{}@192.0.2.1:443", UUID.to_uppercase()));
    assert_eq!(out["uuid"], UUID);
    let out = converted("vless://my-user-name@192.0.2.1:443");
    assert_eq!(
        out["uuid"], "my-user-name",
        "sing-box maps it to a UUID, as Xray does"
    );
    dropped(
        "vless://a-string-that-is-much-longer-than-thirty-bytes@192.0.2.1:443",
        "invalid user id",
    );
}

#[test]
fn explains_bad_lines() {
    let cases = [
        ("http://example.com", "unsupported scheme `http://`"),
        ("hello", "not a URI: \"hello\""),
        (
            "trojan://pw@host.example.com:70000",
            "invalid port \"70000\" (expected 1-65535)",
        ),
        (
            "trojan://pw@host.example.com",
            "missing `:port` after the host",
        ),
        ("ss://YWVzLTI1Ni1nY206c2VjcmV0@:8388", "the host is empty"),
        ("vless://@[2001:db8::1:443", "unclosed `[`"),
        (
            "trojan://pw@host.example.com:8443:443",
            "invalid host \"host.example.com:8443\" (a host with `:` must be an IPv6 address)",
        ),
        (
            "trojan://pw@[host.example.com]:443",
            "invalid host \"host.example.com\" (only an IPv6 address goes in `[...]`)",
        ),
    ];
    for (uri, reason) in cases {
        let got = parse_uri(uri).expect_err(uri);
        assert!(got.starts_with(reason), "{uri}: {got:?}");
    }
}

#[test]
fn anytls_password_tls_and_default_port() {
    let out = converted(
        "anytls://p%40ss@any.example.com:8443/?sni=cdn.example.com&insecure=1&fp=chrome&alpn=h2#Any",
    );
    assert_eq!(out["type"], "anytls");
    assert_eq!(out["server_port"], 8443);
    assert_eq!(out["password"], "p@ss");
    assert_eq!(
        out["tls"],
        json!({"enabled": true, "server_name": "cdn.example.com", "insecure": true,
               "alpn": ["h2"], "utls": {"enabled": true, "fingerprint": "chrome"}})
    );
    assert!(out["transport"].is_null());
    for (link, host) in [
        ("anytls://pw@any.example.com", "any.example.com"),
        (
            "anytls://pw@any.example.com/?sni=x.example.com",
            "any.example.com",
        ),
        ("anytls://pw@[2001:db8::1]#v6", "2001:db8::1"),
        (
            "anytls://p/w@any.example.com?sni=a.example.com",
            "any.example.com",
        ),
    ] {
        let out = converted(link);
        assert_eq!(
            (out["server"].as_str(), out["server_port"].as_u64()),
            (Some(host), Some(443)),
            "{link}"
        );
        assert_eq!(out["tls"]["enabled"], true, "always TLS: {link}");
    }
    let reality = converted(
        "anytls://pw@203.0.113.9:443?security=reality&sni=www.microsoft.com&pbk=jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0&sid=01",
    );
    assert_eq!(reality["tls"]["reality"]["short_id"], "01");
}

#[test]
fn anytls_refuses_what_sing_box_would() {
    dropped(
        "anytls://pw@any.example.com:443?security=none",
        "always runs over TLS",
    );
    dropped(
        "anytls://pw@any.example.com:443?type=ws&path=/x",
        "no transport",
    );
    dropped(
        "anytls://pw@any.example.com:443?fp=netscape",
        "`fp=netscape`",
    );
    dropped("anytls://pw@any.example.com:0", "invalid port");
    dropped("anytls://pw@:443", "the host is empty");
    let no_password = converted("anytls://any.example.com:443?sni=any.example.com");
    assert_eq!(no_password["password"], "", "`[auth@]` is optional");
}
