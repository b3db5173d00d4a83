//! Fetching a subscription over HTTP(S), as subscription managers do:
//! certificate verification on (rustls, Mozilla's roots unless
//! `--ca-cert` names others), connect and total timeouts, a bounded number
//! of redirects, the size cap enforced while the body streams in, gzip,
//! and a cache of the last good body with its `ETag` / `Last-Modified`
//! (a `304` reuses it; an unreachable provider falls back to it, up to
//! `--max-stale` old).
//!
//! Nothing from the network is trusted: header values are parsed or
//! escaped before they are shown, and URLs are shown [redacted](redact).

mod cache;
mod provider;

pub use provider::{UserInfo, bytes, is_url, redact};

use super::input::Capped;
use cache::{CacheEntry, CacheMeta, unix_now};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How subscriptions are fetched.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Sent as `User-Agent` (providers choose the format by it).
    pub user_agent: String,
    /// For the TCP connection and the TLS handshake.
    pub connect_timeout: Duration,
    /// For the whole request, body included.
    pub timeout: Duration,
    /// Redirects followed before giving up.
    pub max_redirects: u32,
    /// The largest body accepted, checked as it streams in.
    pub max_bytes: u64,
    /// Where bodies are cached (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// How old a cached body may be to stand in for an unreachable provider.
    pub max_stale: Duration,
    /// Certificates trusted instead of Mozilla's roots (see
    /// [`read_certificates`]).
    pub ca_certs: Vec<ureq::tls::Certificate<'static>>,
}

/// A fetched body, on disk.
#[derive(Debug)]
pub struct Download {
    /// Where the body is (the cache file, or a temporary file).
    pub path: PathBuf,
    /// Removes a temporary body when dropped.
    _temporary: Option<tempfile::TempPath>,
    /// Served from the cache after a `304`, or because the provider could
    /// not be reached (then [`stale`](Download::stale) is set).
    pub cache_hit: bool,
    /// How old the cached copy used in place of an unreachable provider
    /// is, and why the provider failed.
    pub stale: Option<(Duration, FetchError)>,
    /// The response's media type, as sent (unparsed; escape it to show it).
    pub content_type: Option<String>,
    /// `subscription-userinfo`.
    pub userinfo: Option<UserInfo>,
    /// `profile-update-interval`, in hours.
    pub update_interval_hours: Option<u64>,
    /// A problem with the cache that did not stop the fetch.
    pub cache_warning: Option<String>,
}

/// Why a subscription could not be fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchError {
    /// `url`, `dns`, `connect`, `tls`, `timeout`, `http_status`,
    /// `redirects`, `too_large` or `io`.
    pub kind: &'static str,
    /// For people, without the URL (the caller names it).
    pub message: String,
}

impl FetchError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        FetchError {
            kind,
            message: message.into(),
        }
    }

    /// Whether the provider could not be reached (or answered with a server
    /// error): a cached copy may stand in.
    fn unreachable(&self) -> bool {
        matches!(self.kind, "dns" | "connect" | "tls" | "timeout" | "io")
            || (self.kind == "http_status" && self.message.starts_with("HTTP 5"))
    }
}

/// Fetches `url` (conditionally, when a cached copy exists).
pub fn fetch(url: &str, options: &FetchOptions) -> Result<Download, FetchError> {
    let agent = agent(options, url)?;
    let cache = options.cache_dir.as_deref().and_then(|dir| {
        std::fs::create_dir_all(dir).ok()?;
        Some(CacheEntry::open(dir, url))
    });
    let cache_warning = match (&options.cache_dir, &cache) {
        (Some(dir), None) => Some(format!("cannot use the cache {}", dir.display())),
        _ => None,
    };
    let result = request(&agent, url, options, cache.as_ref());
    let mut download = match result {
        Ok(download) => download,
        Err(error) => {
            let cached = cache
                .as_ref()
                .and_then(|c| Some((c, c.meta.as_ref()?, c.age()?)));
            match cached {
                Some((entry, meta, age)) if error.unreachable() && age <= options.max_stale => {
                    Download {
                        path: entry.body.clone(),
                        _temporary: None,
                        cache_hit: true,
                        stale: Some((age, error)),
                        content_type: meta.content_type.clone(),
                        userinfo: meta.userinfo,
                        update_interval_hours: meta.update_interval_hours,
                        cache_warning: None,
                    }
                }
                _ => return Err(error),
            }
        }
    };
    if download.cache_warning.is_none() {
        download.cache_warning = cache_warning;
    }
    Ok(download)
}

/// Every certificate of a PEM file; fails on a malformed file or one
/// without a certificate.
pub fn read_certificates(pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certificates.push(cert),
            Ok(_) => {} // a key beside them, say
            Err(e) => return Err(format!("not PEM: {e}")),
        }
    }
    match certificates.is_empty() {
        true => Err("no PEM certificate in it".to_owned()),
        false => Ok(certificates),
    }
}

fn agent(options: &FetchOptions, url: &str) -> Result<ureq::Agent, FetchError> {
    use ureq::tls::{RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if !options.ca_certs.is_empty() {
        tls = tls.root_certs(RootCerts::new_with_certs(&options.ca_certs));
    }
    // A subscription asked for over https is never fetched over http: every
    // redirect hop is checked (its body holds every server's credentials).
    let https = url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    let config = ureq::Agent::config_builder()
        .https_only(https)
        .http_status_as_error(false)
        .max_redirects(options.max_redirects)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_global(Some(options.timeout))
        .user_agent(options.user_agent.as_str())
        .tls_config(tls.build())
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

fn request(
    agent: &ureq::Agent,
    url: &str,
    options: &FetchOptions,
    cache: Option<&CacheEntry>,
) -> Result<Download, FetchError> {
    let mut request = agent.get(url);
    if let Some(meta) = cache.and_then(|c| c.meta.as_ref()) {
        if let Some(etag) = &meta.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(modified) = &meta.last_modified {
            request = request.header("If-Modified-Since", modified);
        }
    }
    let response = request.call().map_err(classify)?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect::<String>())
    };
    if status.as_u16() == 304
        && let Some(entry) = cache
        && let Some(meta) = &entry.meta
    {
        let refreshed = CacheMeta {
            fetched_at: unix_now(),
            userinfo: header("subscription-userinfo")
                .and_then(|h| UserInfo::parse(&h))
                .or(meta.userinfo),
            url: meta.url.clone(),
            etag: header("etag").or(meta.etag.clone()),
            last_modified: header("last-modified").or(meta.last_modified.clone()),
            content_type: meta.content_type.clone(),
            update_interval_hours: meta.update_interval_hours,
        };
        let warning = entry
            .save_meta(&refreshed)
            .err()
            .map(|e| format!("cannot update the cache {}: {e}", entry.meta_path.display()));
        return Ok(Download {
            path: entry.body.clone(),
            _temporary: None,
            cache_hit: true,
            stale: None,
            content_type: refreshed.content_type,
            userinfo: refreshed.userinfo,
            update_interval_hours: refreshed.update_interval_hours,
            cache_warning: warning,
        });
    }
    if !status.is_success() {
        let reason = status.canonical_reason().unwrap_or("");
        return Err(FetchError::new(
            "http_status",
            format!("HTTP {} {reason}", status.as_u16())
                .trim_end()
                .to_owned(),
        ));
    }
    let meta = CacheMeta {
        url: redact(url),
        etag: header("etag"),
        last_modified: header("last-modified"),
        content_type: header("content-type"),
        userinfo: header("subscription-userinfo").and_then(|h| UserInfo::parse(&h)),
        update_interval_hours: header("profile-update-interval")
            .and_then(|h| h.trim().parse::<u64>().ok()),
        fetched_at: unix_now(),
    };
    // Stream the body to a file next to its cache slot (or a temporary
    // one), under the cap.
    let dir = match cache {
        Some(entry) => entry.body.parent().map(Path::to_path_buf),
        None => None,
    }
    .unwrap_or_else(std::env::temp_dir);
    let mut file = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| FetchError::new("io", format!("cannot store the body: {e}")))?;
    let mut body = Capped::new(response.into_body().into_reader(), options.max_bytes);
    copy(&mut body, file.as_file_mut()).map_err(|e| body_error(e, options.max_bytes))?;
    let mut download = Download {
        path: PathBuf::new(),
        _temporary: None,
        cache_hit: false,
        stale: None,
        content_type: meta.content_type.clone(),
        userinfo: meta.userinfo,
        update_interval_hours: meta.update_interval_hours,
        cache_warning: None,
    };
    match cache {
        Some(entry) => {
            let _ = file.as_file().sync_all();
            match file.persist(&entry.body) {
                Ok(_) => {
                    download.path = entry.body.clone();
                    if let Err(e) = entry.save_meta(&meta) {
                        // Without its metadata the body is never used again.
                        download.cache_warning = Some(format!(
                            "cannot write the cache {}: {e}",
                            entry.meta_path.display()
                        ));
                        let _ = std::fs::remove_file(&entry.meta_path);
                    }
                }
                Err(e) => {
                    // Read this run's body from where it is; the cache keeps
                    // its previous entry.
                    download.cache_warning = Some(format!(
                        "cannot write the cache {}: {}",
                        entry.body.display(),
                        e.error
                    ));
                    let temporary = e.file.into_temp_path();
                    download.path = temporary.to_path_buf();
                    download._temporary = Some(temporary);
                }
            }
        }
        None => {
            let temporary = file.into_temp_path();
            download.path = temporary.to_path_buf();
            download._temporary = Some(temporary);
        }
    }
    Ok(download)
}

fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    io::copy(from, to)
}

fn body_error(error: io::Error, max_bytes: u64) -> FetchError {
    if error.kind() == io::ErrorKind::FileTooLarge {
        return FetchError::new(
            "too_large",
            format!(
                "the body is larger than the limit of {max_bytes} bytes (raise it with --max-bytes)"
            ),
        );
    }
    classify(ureq::Error::from(error))
}

/// Names the cause of a failed request.
fn classify(error: ureq::Error) -> FetchError {
    use ureq::Error;
    let text = error.to_string();
    match error {
        Error::HostNotFound => FetchError::new("dns", "host not found (DNS)"),
        Error::Timeout(_) => FetchError::new("timeout", format!("timed out ({text})")),
        Error::TooManyRedirects | Error::RedirectFailed => {
            FetchError::new("redirects", format!("redirects: {text}"))
        }
        // Its text names the URL (secrets and all).
        Error::RequireHttpsOnly(_) => FetchError::new(
            "redirects",
            "redirects: a redirect from https to http was refused",
        ),
        Error::Tls(_) | Error::Pem(_) | Error::Rustls(_) => {
            FetchError::new("tls", format!("TLS: {text}"))
        }
        // Their text would repeat the URL, secrets and all.
        Error::BadUri(_) | Error::Http(_) => FetchError::new("url", "not a valid http(s) URL"),
        Error::ConnectionFailed => FetchError::new("connect", "cannot connect"),
        Error::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
            FetchError::new("tls", format!("TLS: {e}"))
        }
        Error::Io(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable => {
                FetchError::new("connect", format!("connect: {e}"))
            }
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                FetchError::new("timeout", format!("timed out: {e}"))
            }
            // std reports a failed lookup as an uncategorized error.
            _ if e.to_string().contains("lookup address") => {
                FetchError::new("dns", format!("host not found (DNS): {e}"))
            }
            _ => FetchError::new("io", format!("network: {e}")),
        },
        _ => FetchError::new("io", text),
    }
}
