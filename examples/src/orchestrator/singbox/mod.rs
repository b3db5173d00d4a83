//! A sing-box configuration from servers: one outbound per server, a
//! `selector` over them, `direct`, and a few routing rules.
//!
//! [`ConfigWriter`] streams the configuration: each outbound is checked and
//! written as its server is parsed, so memory holds the tags (for the
//! selector and de-duplication), never the servers or the whole document.
//! [`check_outbound`] applies the rules the real client (sing-box 1.14)
//! refuses a configuration for; nothing it rejects is written.

use super::link::{Protocol, Server, Tls, Transport};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::sync::Arc;

/// The selector's tag.
pub const SELECTOR: &str = "proxy";
/// The direct outbound's tag.
pub const DIRECT: &str = "direct";

/// The routing rules every configuration gets.
fn route() -> Value {
    json!({
        "rules": [
            { "action": "sniff" },
            { "protocol": "dns", "action": "hijack-dns" },
            { "ip_is_private": true, "outbound": DIRECT }
        ],
        "final": SELECTOR
    })
}

/// Number of routing rules in a configuration.
pub fn rules_count() -> u64 {
    route()["rules"].as_array().map_or(0, |r| r.len() as u64)
}

/// Writes a configuration outbound by outbound.
pub struct ConfigWriter<W: Write> {
    out: Counting<W>,
    tags: Vec<Arc<str>>,
    used: HashSet<Arc<str>>,
    /// For names seen more than once: the next `#n` suffix to try.
    next_suffix: HashMap<Arc<str>, u32>,
    capabilities: Capabilities,
    unfingerprinted: u64,
}

/// What the client a configuration is for can load (see
/// [`Client::capabilities`](crate::orchestrator::client::Client::capabilities)).
/// [`Capabilities::ALL`], the default, is an official build of sing-box
/// 1.14 or newer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Built with uTLS (the `with_utls` tag): REALITY, and TLS
    /// fingerprints (`fp`).
    pub utls: bool,
    /// Built with QUIC (the `with_quic` tag): Hysteria 1 and 2, TUIC.
    pub quic: bool,
    /// 1.12 or newer: AnyTLS, and Hysteria 1's port hopping.
    pub v1_12: bool,
    /// 1.14 or newer: Hysteria2's `gecko` obfuscation.
    pub gecko: bool,
}

impl Capabilities {
    /// Everything this writer can write.
    pub const ALL: Capabilities = Capabilities {
        utls: true,
        quic: true,
        v1_12: true,
        gecko: true,
    };
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::ALL
    }
}

/// Fits `outbound` to what the client can load: `Err` when the client
/// cannot use the server at all; `Ok(true)` when the server's uTLS
/// fingerprint was left out (a client without uTLS connects with Go's own
/// TLS handshake instead, which the server accepts alike; REALITY has no
/// such fallback).
fn adapt(outbound: &mut Value, capabilities: Capabilities) -> Result<bool, String> {
    let kind = outbound["type"].as_str().unwrap_or_default();
    if !capabilities.quic && ["hysteria", "hysteria2", "tuic"].contains(&kind) {
        return Err(format!(
            "{kind} needs QUIC, which this sing-box was built without (no `with_quic` tag)"
        ));
    }
    if !capabilities.v1_12 && kind == "anytls" {
        return Err("anytls needs sing-box 1.12 or newer".to_owned());
    }
    if !capabilities.v1_12 && kind == "hysteria" && !outbound["server_ports"].is_null() {
        return Err("Hysteria 1 port hopping needs sing-box 1.12 or newer".to_owned());
    }
    if !capabilities.gecko && outbound["obfs"]["type"] == "gecko" {
        return Err("`gecko` obfuscation needs sing-box 1.14 or newer".to_owned());
    }
    if capabilities.utls {
        return Ok(false);
    }
    let Some(tls) = outbound.get_mut("tls").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    if tls.contains_key("reality") {
        return Err(
            "REALITY needs uTLS, which this sing-box was built without (no `with_utls` tag)"
                .to_owned(),
        );
    }
    Ok(tls.remove("utls").is_some())
}

/// A point of a [`ConfigWriter`]'s document ([`ConfigWriter::mark`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    bytes: u64,
    servers: usize,
    unfingerprinted: u64,
}

/// An output that can be cut back to its first `len` bytes (and written on
/// from there).
pub trait Rewind: Write {
    /// Cuts the output back to `len` bytes.
    fn rewind_to(&mut self, len: u64) -> io::Result<()>;
}

impl Rewind for Vec<u8> {
    fn rewind_to(&mut self, len: u64) -> io::Result<()> {
        self.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }
}

impl Rewind for io::BufWriter<&mut std::fs::File> {
    fn rewind_to(&mut self, len: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        self.flush()?;
        let file = self.get_mut();
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len)).map(drop)
    }
}

/// What [`ConfigWriter::finish`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Server outbounds.
    pub servers: u64,
    /// Bytes of the whole document.
    pub bytes: u64,
}

impl<W: Write> ConfigWriter<W> {
    /// Starts the document.
    pub fn new(out: W) -> io::Result<Self> {
        let mut out = Counting {
            inner: out,
            bytes: 0,
        };
        out.write_all(b"{\n  \"log\": {\"level\": \"info\"},\n  \"outbounds\": [\n")?;
        Ok(ConfigWriter {
            out,
            tags: Vec::new(),
            used: HashSet::new(),
            next_suffix: HashMap::new(),
            capabilities: Capabilities::ALL,
            unfingerprinted: 0,
        })
    }

    /// Writes only what a client with `capabilities` can load: servers it
    /// cannot use are refused by [`add`](ConfigWriter::add) with the
    /// reason, and uTLS fingerprints left out for a client without uTLS
    /// (counted by [`unfingerprinted`](ConfigWriter::unfingerprinted)).
    pub fn for_client(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Servers written without the uTLS fingerprint their link asked for
    /// (the client has no uTLS).
    pub fn unfingerprinted(&self) -> u64 {
        self.unfingerprinted
    }

    /// Checks `server`'s outbound and writes it. `Ok(Err(reason))`: the
    /// check refused it, nothing was written; `Err`: writing failed.
    pub fn add(&mut self, server: &Server) -> io::Result<Result<(), String>> {
        let base = base_tag(server);
        let tag = self.unique_tag(&base);
        let mut outbound = outbound(server, &tag);
        let fitted = adapt(&mut outbound, self.capabilities)
            .and_then(|unfingerprinted| check_outbound(&outbound).map(|()| unfingerprinted));
        let unfingerprinted = match fitted {
            Ok(unfingerprinted) => unfingerprinted,
            Err(reason) => {
                self.used.remove(&*tag);
                return Ok(Err(reason));
            }
        };
        self.out.write_all(b"    ")?;
        serde_json::to_writer(&mut self.out, &outbound)?;
        self.out.write_all(b",\n")?;
        self.tags.push(tag);
        self.unfingerprinted += u64::from(unfingerprinted);
        Ok(Ok(()))
    }

    /// Servers added so far.
    pub fn servers(&self) -> usize {
        self.tags.len()
    }

    /// Where the document is now, to [roll back](ConfigWriter::rollback) to.
    pub fn mark(&self) -> Mark {
        Mark {
            bytes: self.out.bytes,
            servers: self.tags.len(),
            unfingerprinted: self.unfingerprinted,
        }
    }

    /// Forgets every server added since `mark`: their bytes (the output is
    /// cut back) and their tags (free for later servers).
    pub fn rollback(&mut self, mark: Mark) -> io::Result<()>
    where
        W: Rewind,
    {
        self.out.inner.rewind_to(mark.bytes)?;
        self.out.bytes = mark.bytes;
        self.unfingerprinted = mark.unfingerprinted;
        for tag in self.tags.drain(mark.servers..) {
            self.used.remove(&tag);
        }
        Ok(())
    }

    /// Ends the document: the selector over every server, `direct`, the
    /// route. Returns the writer and what was written.
    pub fn finish(mut self) -> io::Result<(W, Written)> {
        // The selector is written tag by tag: a `Value` of it would copy
        // every tag once more.
        write!(
            self.out,
            "    {{\"type\": \"selector\", \"tag\": \"{SELECTOR}\", \"outbounds\": ["
        )?;
        for (i, tag) in self.tags.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b", ")?;
            }
            serde_json::to_writer(&mut self.out, &**tag)?;
        }
        self.out.write_all(b"], \"default\": ")?;
        serde_json::to_writer(&mut self.out, &self.tags.first().map(|t| &**t))?;
        self.out.write_all(b"},\n    ")?;
        serde_json::to_writer(&mut self.out, &json!({ "type": "direct", "tag": DIRECT }))?;
        self.out.write_all(b"\n  ],\n  \"route\": ")?;
        serde_json::to_writer(&mut self.out, &route())?;
        self.out.write_all(b"\n}\n")?;
        self.out.flush()?;
        let written = Written {
            servers: self.tags.len() as u64,
            bytes: self.out.bytes,
        };
        Ok((self.out.inner, written))
    }

    /// `base`, or `base #2`, `base #3`... whichever is free first. Linear
    /// overall: each name remembers where its suffixes stopped.
    fn unique_tag(&mut self, base: &str) -> Arc<str> {
        if !reserved(base) && !self.used.contains(base) {
            let tag: Arc<str> = Arc::from(base);
            self.used.insert(Arc::clone(&tag));
            return tag;
        }
        let next = self.next_suffix.entry(Arc::from(base)).or_insert(2);
        loop {
            let candidate = format!("{base} #{next}");
            *next += 1;
            if !self.used.contains(candidate.as_str()) {
                let tag: Arc<str> = Arc::from(candidate);
                self.used.insert(Arc::clone(&tag));
                return tag;
            }
        }
    }
}

fn reserved(tag: &str) -> bool {
    tag == SELECTOR || tag == DIRECT
}

fn base_tag(server: &Server) -> String {
    match server.name.trim() {
        "" => format!("{}-{}:{}", server.kind(), server.host, server.port),
        name => name.to_owned(),
    }
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The sing-box outbound of one server.
pub fn outbound(server: &Server, tag: &str) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), json!(server.kind()));
    out.insert("tag".into(), json!(tag));
    out.insert("server".into(), json!(server.host));
    out.insert("server_port".into(), json!(server.port));
    match &server.protocol {
        Protocol::Shadowsocks {
            method,
            password,
            plugin,
        } => {
            out.insert("method".into(), json!(method));
            out.insert("password".into(), json!(password));
            if let Some(plugin) = plugin {
                out.insert("plugin".into(), json!(plugin.name));
                out.insert("plugin_opts".into(), json!(plugin.opts));
            }
        }
        Protocol::Vless { uuid, flow } => {
            out.insert("uuid".into(), json!(uuid));
            if let Some(flow) = flow {
                out.insert("flow".into(), json!(flow));
            }
        }
        Protocol::Trojan { password } => {
            out.insert("password".into(), json!(password));
        }
        Protocol::Vmess {
            uuid,
            alter_id,
            security,
        } => {
            out.insert("uuid".into(), json!(uuid));
            out.insert("alter_id".into(), json!(alter_id));
            out.insert("security".into(), json!(security));
        }
        Protocol::Hysteria {
            auth,
            obfs,
            ports,
            hop_interval,
            up_mbps,
            down_mbps,
        } => {
            if !auth.is_empty() {
                out.insert("auth_str".into(), json!(auth));
            }
            if let Some(obfs) = obfs {
                out.insert("obfs".into(), json!(obfs));
            }
            insert_ports(&mut out, ports, *hop_interval);
            out.insert("up_mbps".into(), json!(up_mbps));
            out.insert("down_mbps".into(), json!(down_mbps));
        }
        Protocol::AnyTls { password } => {
            out.insert("password".into(), json!(password));
        }
        Protocol::Socks {
            version,
            username,
            password,
        } => {
            out.insert("version".into(), json!(version));
            if !username.is_empty() {
                out.insert("username".into(), json!(username));
            }
            if !password.is_empty() {
                out.insert("password".into(), json!(password));
            }
        }
        Protocol::Hysteria2 {
            password,
            obfs,
            ports,
            hop_interval,
            up_mbps,
            down_mbps,
        } => {
            if !password.is_empty() {
                out.insert("password".into(), json!(password));
            }
            if let Some(obfs) = obfs {
                out.insert(
                    "obfs".into(),
                    json!({ "type": obfs.kind, "password": obfs.password }),
                );
            }
            insert_ports(&mut out, ports, *hop_interval);
            if let Some(up) = up_mbps {
                out.insert("up_mbps".into(), json!(up));
            }
            if let Some(down) = down_mbps {
                out.insert("down_mbps".into(), json!(down));
            }
        }
        Protocol::Tuic {
            uuid,
            password,
            congestion_control,
            udp_relay_mode,
            zero_rtt,
        } => {
            out.insert("uuid".into(), json!(uuid));
            out.insert("password".into(), json!(password));
            if let Some(cc) = congestion_control {
                out.insert("congestion_control".into(), json!(cc));
            }
            if let Some(mode) = udp_relay_mode {
                out.insert("udp_relay_mode".into(), json!(mode));
            }
            if *zero_rtt {
                out.insert("zero_rtt_handshake".into(), json!(true));
            }
        }
    }
    if let Some(tls) = &server.tls {
        out.insert("tls".into(), tls_json(tls));
    }
    if let Some(transport) = &server.transport {
        out.insert("transport".into(), transport_json(transport));
    }
    Value::Object(out)
}

/// Port hopping: `server_ports` (`"start:end"`) and `hop_interval`.
fn insert_ports(out: &mut Map<String, Value>, ports: &[(u16, u16)], hop_interval: Option<u32>) {
    if !ports.is_empty() {
        let ranges: Vec<String> = ports.iter().map(|(a, b)| format!("{a}:{b}")).collect();
        out.insert("server_ports".into(), json!(ranges));
        if let Some(seconds) = hop_interval {
            out.insert("hop_interval".into(), json!(format!("{seconds}s")));
        }
    }
}

fn tls_json(tls: &Tls) -> Value {
    let mut out = json!({ "enabled": true });
    if let Some(name) = &tls.server_name {
        out["server_name"] = json!(name);
    }
    if tls.insecure {
        out["insecure"] = json!(true);
    }
    if tls.disable_sni {
        out["disable_sni"] = json!(true);
    }
    if !tls.alpn.is_empty() {
        out["alpn"] = json!(tls.alpn);
    }
    if let Some(fingerprint) = tls.fingerprint {
        out["utls"] = json!({ "enabled": true, "fingerprint": fingerprint });
    }
    if let Some(reality) = &tls.reality {
        out["reality"] = json!({
            "enabled": true,
            "public_key": reality.public_key,
            "short_id": reality.short_id,
        });
    }
    out
}

fn transport_json(transport: &Transport) -> Value {
    match transport {
        Transport::Ws {
            path,
            host,
            max_early_data,
        } => {
            let mut out = json!({ "type": "ws", "path": path });
            if let Some(host) = host {
                out["headers"] = json!({ "Host": host });
            }
            if *max_early_data > 0 {
                out["max_early_data"] = json!(max_early_data);
                out["early_data_header_name"] = json!("Sec-WebSocket-Protocol");
            }
            out
        }
        Transport::Grpc { service_name } => json!({ "type": "grpc", "service_name": service_name }),
        Transport::HttpUpgrade { path, host } => {
            let mut out = json!({ "type": "httpupgrade", "path": path });
            if let Some(host) = host {
                out["host"] = json!(host);
            }
            out
        }
        Transport::Http { path, hosts } => {
            let mut out = json!({ "type": "http", "path": path });
            if !hosts.is_empty() {
                out["host"] = json!(hosts);
            }
            out
        }
    }
}

mod check;
pub mod rules;

pub use check::{check_config, check_outbound};

#[cfg(test)]
mod tests {
    use super::{Capabilities, ConfigWriter};
    use crate::orchestrator::link::parse_uri;

    fn add(capabilities: Capabilities, link: &str) -> Result<(), String> {
        let mut writer = ConfigWriter::new(Vec::new())
            .unwrap()
            .for_client(capabilities);
        writer.add(&parse_uri(link).unwrap()).unwrap()
    }

    #[test]
    fn what_the_client_cannot_load_is_refused_with_the_reason() {
        let old = Capabilities {
            v1_12: false,
            gecko: false,
            ..Capabilities::ALL
        };
        let anytls = "anytls://pw@a.example.com:443";
        assert!(add(Capabilities::ALL, anytls).is_ok());
        assert_eq!(
            add(old, anytls).unwrap_err(),
            "anytls needs sing-box 1.12 or newer"
        );
        let hopping = "hysteria://h.example.com:443?upmbps=1&downmbps=1&mport=443-500";
        assert!(
            add(old, hopping)
                .unwrap_err()
                .contains("port hopping needs sing-box 1.12")
        );
        assert!(add(old, "hysteria://h.example.com:443?upmbps=1&downmbps=1").is_ok());
        let gecko = "hy2://pw@h.example.com:443?obfs=gecko&obfs-password=x";
        assert!(add(old, gecko).unwrap_err().contains("1.14"));
        let no_quic = Capabilities {
            quic: false,
            ..Capabilities::ALL
        };
        for link in [
            "hy2://pw@h.example.com:443",
            gecko,
            "tuic://6b1e3a0c-8e2b-4c59-9f2d-1a2b3c4d5e6f:p@t.example.com:443",
        ] {
            assert!(
                add(no_quic, link).unwrap_err().contains("`with_quic`"),
                "{link}"
            );
        }
        assert!(add(no_quic, anytls).is_ok());
    }
}
