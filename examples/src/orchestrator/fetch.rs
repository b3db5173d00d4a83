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

use super::input::Capped;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// PEM certificates trusted instead of Mozilla's roots.
    pub ca_certs: Vec<Vec<u8>>,
}

/// The usage a provider reports in `subscription-userinfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Bytes uploaded.
    pub upload: u64,
    /// Bytes downloaded.
    pub download: u64,
    /// The quota in bytes (0: none given).
    pub total: u64,
    /// When the subscription expires, in Unix seconds (0: never or not given).
    pub expire: u64,
}

impl UserInfo {
    /// Parses `upload=1; download=2; total=3; expire=4` (any order, any
    /// subset; unknown keys ignored). `None` if no known key has a number.
    pub fn parse(header: &str) -> Option<UserInfo> {
        let mut info = UserInfo::default();
        let mut any = false;
        for pair in header.split([';', ',']) {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            // Some providers send decimals ("1.0e10") or floats: keep the
            // integer part of a plain decimal only.
            let value = value.trim();
            let digits = value.split('.').next().unwrap_or(value);
            let Ok(number) = digits.parse::<u64>() else {
                continue;
            };
            let slot = match key.trim().to_ascii_lowercase().as_str() {
                "upload" => &mut info.upload,
                "download" => &mut info.download,
                "total" => &mut info.total,
                "expire" => &mut info.expire,
                _ => continue,
            };
            *slot = number;
            any = true;
        }
        any.then_some(info)
    }

    /// Bytes used (upload + download).
    pub fn used(&self) -> u64 {
        self.upload.saturating_add(self.download)
    }

    /// "12.3 GiB of 100 GiB used, expires 2027-01-31".
    pub fn summary(&self) -> String {
        let mut text = match self.total {
            0 => format!("{} used", bytes(self.used())),
            total => format!("{} of {} used", bytes(self.used()), bytes(total)),
        };
        if self.expire > 0 {
            let when = UNIX_EPOCH + Duration::from_secs(self.expire);
            let day = humantime::format_rfc3339_seconds(when).to_string();
            text.push_str(", expires ");
            text.push_str(day.get(..10).unwrap_or(&day));
        }
        text
    }
}

/// `12.3 GiB`, `100 GiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match (unit, value.fract() == 0.0) {
        (0, _) | (_, true) => format!("{value:.0} {}", UNITS[unit]),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
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

/// Whether `text` names an `http://` or `https://` URL.
pub fn is_url(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// `url` with its secrets replaced by `***`: user info, the values of
/// query parameters whose names suggest a secret (token, key, password,
/// secret, auth, sig, uuid, sub), and path segments that look like tokens
/// (16 or more letters, digits, `-` or `_`, with letters and digits). A
/// provider that hides its token elsewhere is not recognized.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, _)) => (rest, "#***"),
        None => (rest, ""),
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    let path: Vec<String> = path
        .split('/')
        .map(|segment| {
            let tokenish = segment.len() >= 16
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && segment.bytes().any(|b| b.is_ascii_digit())
                && segment.bytes().any(|b| b.is_ascii_alphabetic());
            match tokenish {
                true => "***".to_owned(),
                false => segment.to_owned(),
            }
        })
        .collect();
    let mut out = format!("{scheme}://{host}{}", path.join("/"));
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if secret_name(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out.push_str(fragment);
    out
}

fn secret_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "token", "key", "pass", "secret", "auth", "sig", "uuid", "sub", "id",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// What the cache keeps beside a body.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheMeta {
    /// The redacted URL (for people reading the cache directory).
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    content_type: Option<String>,
    userinfo: Option<UserInfo>,
    update_interval_hours: Option<u64>,
    /// When the body was last confirmed by the provider (Unix seconds).
    fetched_at: u64,
}

/// The cache entry of one URL: a body and its [`CacheMeta`].
struct CacheEntry {
    body: PathBuf,
    meta_path: PathBuf,
    meta: Option<CacheMeta>,
}

impl CacheEntry {
    fn open(dir: &Path, url: &str) -> CacheEntry {
        // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in url.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let body = dir.join(format!("{hash:016x}.body"));
        let meta_path = dir.join(format!("{hash:016x}.json"));
        let meta = std::fs::read(&meta_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheMeta>(&bytes).ok())
            .filter(|_| body.is_file());
        CacheEntry {
            body,
            meta_path,
            meta,
        }
    }

    fn age(&self) -> Option<Duration> {
        let meta = self.meta.as_ref()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some(now.saturating_sub(Duration::from_secs(meta.fetched_at)))
    }

    fn save_meta(&self, meta: &CacheMeta) -> io::Result<()> {
        let dir = self.meta_path.parent().unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut file, meta)?;
        file.as_file().sync_all()?;
        file.persist(&self.meta_path).map_err(|e| e.error)?;
        Ok(())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Fetches `url` (conditionally, when a cached copy exists).
pub fn fetch(url: &str, options: &FetchOptions) -> Result<Download, FetchError> {
    let agent = agent(options)?;
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

fn agent(options: &FetchOptions) -> Result<ureq::Agent, FetchError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if !options.ca_certs.is_empty() {
        let mut roots = Vec::new();
        for pem in &options.ca_certs {
            let cert = Certificate::from_pem(pem)
                .map_err(|e| FetchError::new("tls", format!("bad --ca-cert: {e}")))?;
            roots.push(cert);
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&roots));
    }
    let config = ureq::Agent::config_builder()
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
        Error::Tls(_) | Error::Pem(_) | Error::Rustls(_) => {
            FetchError::new("tls", format!("TLS: {text}"))
        }
        Error::BadUri(_) | Error::Http(_) => FetchError::new("url", format!("bad URL: {text}")),
        Error::ConnectionFailed => FetchError::new("connect", "cannot connect"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_parses_what_providers_send() {
        let info = UserInfo::parse(
            "upload=1073741824; download=12133238374; total=107374182400; expire=1801353600",
        )
        .expect("parsed");
        assert_eq!(info.used(), 1_073_741_824 + 12_133_238_374);
        assert_eq!(
            info.summary(),
            "12.3 GiB of 100 GiB used, expires 2027-01-31"
        );
        assert_eq!(
            UserInfo::parse("upload=0;download=512;total=0").map(|i| i.summary()),
            Some("512 B used".to_owned())
        );
        assert_eq!(UserInfo::parse("garbage; =; upload=x"), None);
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact(
                "https://user:pa55@sub.example.com/api/v1/client/subscribe?token=abc&flag=clash"
            ),
            "https://***@sub.example.com/api/v1/client/subscribe?token=***&flag=clash"
        );
        assert_eq!(
            redact("http://127.0.0.1:8080/link/Ab3dEf6hIj9kLm2n?sub=3#frag"),
            "http://127.0.0.1:8080/link/***?sub=***#***"
        );
        assert_eq!(
            redact("https://example.com/sub.txt"),
            "https://example.com/sub.txt"
        );
    }
}
