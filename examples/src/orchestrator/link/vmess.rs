//! `vmess://base64(json)` in the v2rayN layout: `ps` name, `add` address,
//! `port`, `id`, `aid`, `scy` cipher, `net` transport, `type` header type,
//! `host`, `path` (the service name for gRPC), `tls`, `sni`, `alpn`, `fp`.
//! Numbers may be JSON numbers or strings.

use super::shadowsocks::base64_lenient;
use super::{Params, Protocol, Server, check_host, check_port, check_user_id, shorten, stream};
use crate::orchestrator::singbox::rules::VMESS_SECURITY;
use serde_json::Value;

pub(super) fn parse(rest: &str) -> Result<Server, String> {
    let payload = rest.split('#').next().unwrap_or_default();
    let bytes = base64_lenient(payload).ok_or_else(|| "vmess payload is not base64".to_owned())?;
    let json: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("vmess payload is not JSON: {e}"))?;
    if !json.is_object() {
        return Err("vmess payload is not a JSON object".to_owned());
    }
    let text = |key: &str| -> String {
        match json.get(key) {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        }
    };
    // Some generators bracket IPv6 addresses in `add`.
    let add = text("add");
    let add = add
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(&add);
    let host = check_host(add).map_err(|e| format!("vmess `add`: {e}"))?;
    let port = check_port(&text("port")).map_err(|e| format!("vmess `port`: {e}"))?;
    let alter_id = match text("aid").as_str() {
        "" => 0,
        aid => aid
            .parse()
            .map_err(|_| format!("vmess `aid` {:?} is not a number", shorten(aid)))?,
    };
    let security = match text("scy").to_ascii_lowercase().as_str() {
        "" => "auto".to_owned(),
        scy if VMESS_SECURITY.contains(&scy) => scy.to_owned(),
        scy => {
            return Err(format!(
                "vmess `scy={}`: sing-box's vmess has {}",
                shorten(scy),
                VMESS_SECURITY.join(", ")
            ));
        }
    };

    // The same keys as a vless link's query, so one conversion serves both.
    let mut params = Params::new();
    let net = text("net");
    for (key, param) in [
        ("net", "type"),
        ("type", "headerType"),
        ("host", "host"),
        ("path", "path"),
        ("tls", "security"),
        ("sni", "sni"),
        ("alpn", "alpn"),
        ("fp", "fp"),
        ("pbk", "pbk"),
        ("sid", "sid"),
        ("allowInsecure", "allowInsecure"),
        ("insecure", "insecure"),
    ] {
        let value = text(key);
        if !value.is_empty() {
            params.insert(param.to_owned(), value);
        }
    }
    if net == "grpc" {
        // v2rayN keeps the gRPC service name in `path`.
        let service = match text("serviceName") {
            name if !name.is_empty() => name,
            _ => text("path"),
        };
        params.insert("serviceName".to_owned(), service);
    }
    if matches!(net.as_str(), "grpc" | "ws" | "httpupgrade" | "h2" | "http") {
        // `type` is the header type for TCP (and kcp/quic) only.
        params.remove("headerType");
    }
    let (tls, transport) = stream::settings(&params, false)?;
    Ok(Server {
        protocol: Protocol::Vmess {
            uuid: check_user_id(&text("id"))?,
            alter_id,
            security,
        },
        name: text("ps"),
        host,
        port,
        tls,
        transport,
    })
}
