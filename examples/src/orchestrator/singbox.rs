//! A sing-box configuration from servers: one outbound per server, a
//! `selector` over them, `direct`, and a few routing rules.

use super::proxy::{Protocol, Server};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The selector's tag.
pub const SELECTOR: &str = "proxy";

/// Builds the configuration. Tags are the servers' names, made unique.
pub fn build(servers: &[Server]) -> Value {
    let mut used = BTreeSet::new();
    let mut outbounds = Vec::with_capacity(servers.len() + 2);
    let mut tags = Vec::with_capacity(servers.len());
    for server in servers {
        let tag = unique_tag(&mut used, server);
        outbounds.push(outbound(server, &tag));
        tags.push(tag);
    }
    let mut all = vec![
        json!({ "type": "selector", "tag": SELECTOR, "outbounds": tags, "default": tags.first() }),
    ];
    all.extend(outbounds);
    all.push(json!({ "type": "direct", "tag": "direct" }));
    json!({
        "log": { "level": "info" },
        "outbounds": all,
        "route": {
            "rules": [
                { "action": "sniff" },
                { "protocol": "dns", "action": "hijack-dns" },
                { "ip_is_private": true, "outbound": "direct" }
            ],
            "final": SELECTOR
        }
    })
}

/// Number of routing rules in a built configuration.
pub fn rules_count(config: &Value) -> u64 {
    config["route"]["rules"]
        .as_array()
        .map_or(0, |r| r.len() as u64)
}

/// Checks what sing-box would reject: duplicate tags, a selector or route
/// naming a missing outbound, a server without address or port.
pub fn validate(config: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let empty = Vec::new();
    let outbounds = config["outbounds"].as_array().unwrap_or(&empty);
    let mut tags = BTreeSet::new();
    for outbound in outbounds {
        let tag = outbound["tag"].as_str().unwrap_or_default();
        if tag.is_empty() {
            errors.push("an outbound has no tag".to_owned());
        } else if !tags.insert(tag) {
            errors.push(format!("duplicate outbound tag {tag:?}"));
        }
        let kind = outbound["type"].as_str().unwrap_or_default();
        if !matches!(kind, "selector" | "direct")
            && (outbound["server"].as_str().unwrap_or_default().is_empty()
                || !outbound["server_port"].is_u64())
        {
            errors.push(format!("outbound {tag:?} has no server address or port"));
        }
    }
    for outbound in outbounds.iter().filter(|o| o["type"] == "selector") {
        for member in outbound["outbounds"].as_array().unwrap_or(&empty) {
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
    errors
}

fn unique_tag(used: &mut BTreeSet<String>, server: &Server) -> String {
    let base = if server.name.trim().is_empty() {
        format!("{}-{}:{}", server.kind(), server.host, server.port)
    } else {
        server.name.trim().to_owned()
    };
    let mut tag = base.clone();
    let mut n = 2;
    while used.contains(&tag) || tag == SELECTOR || tag == "direct" {
        tag = format!("{base} #{n}");
        n += 1;
    }
    used.insert(tag.clone());
    tag
}

fn outbound(server: &Server, tag: &str) -> Value {
    let mut out = json!({
        "type": server.kind(),
        "tag": tag,
        "server": server.host,
        "server_port": server.port,
    });
    match &server.protocol {
        Protocol::Shadowsocks { method, password } => {
            out["method"] = json!(method);
            out["password"] = json!(password);
        }
        Protocol::Vless { uuid } => {
            out["uuid"] = json!(uuid);
            if let Some(flow) = server.options.get("flow").filter(|f| !f.is_empty()) {
                out["flow"] = json!(flow);
            }
        }
        Protocol::Trojan { password } => out["password"] = json!(password),
        Protocol::Vmess { uuid, alter_id } => {
            out["uuid"] = json!(uuid);
            out["alter_id"] = json!(alter_id);
            out["security"] = json!("auto");
        }
    }
    let option = |key: &str| {
        server
            .options
            .get(key)
            .map(String::as_str)
            .unwrap_or_default()
    };
    // Trojan is TLS by definition; the others say so in `security`.
    let tls = matches!(server.protocol, Protocol::Trojan { .. })
        || matches!(option("security"), "tls" | "reality");
    if tls {
        let sni = [option("sni"), option("peer"), option("host")]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or(&server.host);
        out["tls"] = json!({ "enabled": true, "server_name": sni });
    }
    match option("type") {
        "ws" => {
            let mut transport = json!({ "type": "ws", "path": if option("path").is_empty() { "/" } else { option("path") } });
            if !option("host").is_empty() {
                transport["headers"] = json!({ "Host": option("host") });
            }
            out["transport"] = transport;
        }
        "grpc" => {
            out["transport"] = json!({ "type": "grpc", "service_name": option("serviceName") })
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::proxy::parse_uri;
    use super::*;

    #[test]
    fn builds_a_valid_config_with_unique_tags() {
        let servers: Vec<Server> = [
            "trojan://pw@a.example:443#Edge",
            "trojan://pw@b.example:443#Edge",
            "vless://6b1e3a0c-8e2b-4c59-9f2d-1a2b3c4d5e6f@c.example:443?security=tls&type=ws&path=/x&host=cdn.example",
        ]
        .iter()
        .map(|u| parse_uri(u).expect("valid"))
        .collect();
        let config = build(&servers);
        assert_eq!(validate(&config), Vec::<String>::new());
        let tags: Vec<&str> = config["outbounds"]
            .as_array()
            .expect("outbounds")
            .iter()
            .map(|o| o["tag"].as_str().expect("tag"))
            .collect();
        assert_eq!(
            tags,
            ["proxy", "Edge", "Edge #2", "vless-c.example:443", "direct"]
        );
        assert_eq!(config["outbounds"][3]["tls"]["server_name"], "cdn.example");
        assert_eq!(
            config["outbounds"][3]["transport"]["headers"]["Host"],
            "cdn.example"
        );
        assert_eq!(rules_count(&config), 3);
    }

    #[test]
    fn validation_finds_dangling_references() {
        let mut config = build(&[]);
        config["route"]["final"] = json!("nowhere");
        config["outbounds"][0]["outbounds"] = json!(["ghost"]);
        assert_eq!(
            validate(&config),
            [
                "selector refers to missing outbound \"ghost\"",
                "route.final refers to missing outbound \"nowhere\""
            ]
        );
    }
}
