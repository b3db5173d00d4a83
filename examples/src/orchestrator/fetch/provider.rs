//! What providers send and what is shown of them: `subscription-userinfo`,
//! byte counts, and URLs with their secrets redacted.

use serde::{Deserialize, Serialize};
use std::time::{Duration, UNIX_EPOCH};

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
