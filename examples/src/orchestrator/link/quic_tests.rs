//! Hysteria 1 and 2 and TUIC links, parameter by parameter (the Hysteria
//! URI schemes, and the TUIC links clients share), each converted outbound
//! checked against sing-box's rules.

use super::tests::{converted, dropped};
use serde_json::json;

const UUID: &str = "6b1e3a0c-8e2b-4c59-9f2d-1a2b3c4d5e6f";

#[test]
fn hysteria2_password_sni_insecure_alpn_and_bandwidth() {
    let out = converted(
        "hysteria2://letme%3Ain@hy.example.com:8443/?sni=cdn.example.com&insecure=1&alpn=h3&up=50%20mbps&down=200#Hy%20One",
    );
    assert_eq!(out["type"], "hysteria2");
    assert_eq!(out["server"], "hy.example.com");
    assert_eq!(out["server_port"], 8443);
    assert_eq!(out["password"], "letme:in", "userpass is sent whole");
    assert_eq!(
        out["tls"],
        json!({"enabled": true, "server_name": "cdn.example.com", "insecure": true, "alpn": ["h3"]})
    );
    assert_eq!(
        (out["up_mbps"].clone(), out["down_mbps"].clone()),
        (json!(50), json!(200))
    );
    assert!(out["server_ports"].is_null() && out["obfs"].is_null());
    // hy2:// is the same; no port means 443; no password is allowed.
    let short = converted("hy2://hy.example.com?sni=hy.example.com");
    assert_eq!(short["server_port"], 443);
    assert!(short["password"].is_null());
    assert_eq!(short["tls"]["enabled"], true, "always TLS");
}

#[test]
fn hysteria2_obfs_is_salamander_or_gecko_with_its_password() {
    let out = converted("hysteria2://pw@198.51.100.7:443?obfs=salamander&obfs-password=s3cret");
    assert_eq!(
        out["obfs"],
        json!({"type": "salamander", "password": "s3cret"})
    );
    dropped(
        "hysteria2://pw@198.51.100.7:443?obfs=salamander",
        "obfs-password",
    );
    let gecko = converted("hysteria2://pw@198.51.100.7:443?obfs=gecko&obfs-password=x");
    assert_eq!(gecko["obfs"], json!({"type": "gecko", "password": "x"}));
    dropped(
        "hysteria2://pw@198.51.100.7:443?obfs=foo&obfs-password=x",
        "obfs=foo",
    );
}

#[test]
fn hysteria2_port_hopping_from_the_address_or_mport() {
    let out = converted("hysteria2://pw@hy.example.com:443,20000-30000/?hop_interval=15");
    assert_eq!(out["server_port"], 443);
    assert_eq!(out["server_ports"], json!(["443:443", "20000:30000"]));
    assert_eq!(out["hop_interval"], "15s");
    let out = converted("hysteria2://pw@hy.example.com:443?mport=1000-2000,3000&hopInterval=30s");
    assert_eq!(
        out["server_ports"],
        json!(["443:443", "1000:2000", "3000:3000"])
    );
    assert_eq!(out["hop_interval"], "30s");
    let out = converted("hysteria2://pw@[2001:db8::1]:5000-6000");
    assert_eq!(out["server"], "2001:db8::1");
    assert_eq!(
        (out["server_port"].clone(), out["server_ports"].clone()),
        (json!(5000), json!(["5000:6000"]))
    );
    assert!(out["hop_interval"].is_null(), "sing-box's default");
    // One port: nothing to hop between, the interval is moot.
    assert!(
        converted("hysteria2://pw@h.example.com:443?hop_interval=10")["hop_interval"].is_null()
    );
    dropped(
        "hysteria2://pw@h.example.com:3000-2000",
        "ends before it starts",
    );
    dropped("hysteria2://pw@h.example.com:443,0-10", "invalid port");
    dropped(
        "hysteria2://pw@h.example.com:1000-2000?hop_interval=soon",
        "hop_interval=soon",
    );
}

#[test]
fn hysteria2_refuses_what_sing_box_cannot_do() {
    dropped(
        "hysteria2://pw@h.example.com:443?insecure=1&pinSHA256=ab:cd",
        "pinSHA256",
    );
    dropped("hysteria2://pw@h.example.com:443?up=fast", "up=fast");
    dropped(
        "hysteria2://pw@[h.example.com]:443",
        "only an IPv6 address goes in `[...]`",
    );
    dropped("hy2://pw@[2001:db8::1:443", "unclosed `[`");
    dropped("hy2://pw@[2001:db8::1]8443", "`8443` after `]`");
    dropped(
        "hysteria2://pw@h.example.com:443?insecure=maybe",
        "insecure=maybe",
    );
}

fn tuic(query: &str) -> String {
    format!("tuic://{UUID}:p%40ss@tuic.example.com:443?{query}#T")
}

#[test]
fn tuic_uuid_password_and_every_parameter() {
    let out = converted(&tuic(
        "congestion_control=bbr&udp_relay_mode=quic&alpn=h3,spdy/3.1&sni=t.example.com&allow_insecure=1&disable_sni=1&reduce_rtt=1",
    ));
    assert_eq!(out["type"], "tuic");
    assert_eq!(
        (out["uuid"].clone(), out["password"].clone()),
        (json!(UUID), json!("p@ss"))
    );
    assert_eq!(out["congestion_control"], "bbr");
    assert_eq!(out["udp_relay_mode"], "quic");
    assert_eq!(out["zero_rtt_handshake"], true);
    assert_eq!(
        out["tls"],
        json!({"enabled": true, "server_name": "t.example.com", "insecure": true, "disable_sni": true, "alpn": ["h3", "spdy/3.1"]})
    );
    let plain = converted(&tuic(""));
    assert!(plain["congestion_control"].is_null() && plain["zero_rtt_handshake"].is_null());
    assert_eq!(
        converted(&tuic("congestion-control=NEW-RENO"))["congestion_control"],
        "new_reno"
    );
}

#[test]
fn tuic_refuses_what_sing_box_would() {
    dropped(
        &tuic("congestion_control=reno2"),
        "congestion_control=reno2",
    );
    dropped(&tuic("udp_relay_mode=tcp"), "udp_relay_mode=tcp");
    dropped("tuic://0123456789abcdef@tuic.example.com:443", "TUIC v5");
    dropped("tuic://not-a-uuid:pw@tuic.example.com:443", "needs a UUID");
    dropped(&tuic("pinSHA256=ab"), "pinSHA256");
}

#[test]
fn hysteria1_auth_bandwidth_obfs_tls_and_hopping() {
    let out = converted(
        "hysteria://hy1.example.com:36712?protocol=udp&auth=s%26cret&peer=cdn.example.com&insecure=1&upmbps=20&downmbps=100&alpn=hysteria&obfs=xplus&obfsParam=obf#Hy1",
    );
    assert_eq!(out["type"], "hysteria");
    assert_eq!(out["server_port"], 36712);
    assert_eq!(out["auth_str"], "s&cret");
    assert_eq!(out["obfs"], "obf");
    assert_eq!(
        (out["up_mbps"].clone(), out["down_mbps"].clone()),
        (json!(20), json!(100))
    );
    assert_eq!(
        out["tls"],
        json!({"enabled": true, "server_name": "cdn.example.com", "insecure": true, "alpn": ["hysteria"]})
    );
    // No auth, `up`/`down` spellings with units, hopping over `mport`.
    let hop = converted(
        "hysteria://[2001:db8::7]:4000?mport=4000-4100&hop_interval=15&up=10%20mbps&down=1gbps",
    );
    assert!(hop["auth_str"].is_null() && hop["obfs"].is_null());
    assert_eq!(hop["server"], "2001:db8::7");
    assert_eq!(hop["server_ports"], json!(["4000:4000", "4000:4100"]));
    assert_eq!(hop["hop_interval"], "15s");
    assert_eq!(
        (hop["up_mbps"].clone(), hop["down_mbps"].clone()),
        (json!(10), json!(1000))
    );
    assert_eq!(hop["tls"]["enabled"], true, "always TLS");
}

#[test]
fn hysteria1_refuses_what_sing_box_would() {
    let link = |query: &str| format!("hysteria://hy1.example.com:443?{query}");
    dropped(&link("downmbps=100"), "no `upmbps`");
    dropped(&link("upmbps=10"), "no `downmbps`");
    dropped(&link("upmbps=fast&downmbps=1"), "`upmbps=fast`");
    dropped(
        &link("upmbps=10&downmbps=50&protocol=faketcp"),
        "`protocol=faketcp`",
    );
    dropped(
        &link("upmbps=10&downmbps=50&obfs=xplus"),
        "without `obfsParam`",
    );
    dropped(
        &link("upmbps=10&downmbps=50&obfs=salamander&obfsParam=x"),
        "xplus only",
    );
    dropped(&link("upmbps=10&downmbps=50&pinSHA256=ab"), "pinSHA256");
    dropped(
        "hysteria://hy1.example.com?upmbps=10&downmbps=50",
        "missing `:port`",
    );
}
