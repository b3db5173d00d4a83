//! What sing-box (1.14) accepts, in one place: the converter (`link`) keeps
//! only these values, and `check` refuses anything else before writing.

/// Shadowsocks methods, with the key length of the 2022 ones.
pub const SS_METHODS: [(&str, Option<usize>); 18] = [
    ("2022-blake3-aes-128-gcm", Some(16)),
    ("2022-blake3-aes-256-gcm", Some(32)),
    ("2022-blake3-chacha20-poly1305", Some(32)),
    ("none", None),
    ("aes-128-gcm", None),
    ("aes-192-gcm", None),
    ("aes-256-gcm", None),
    ("chacha20-ietf-poly1305", None),
    ("xchacha20-ietf-poly1305", None),
    ("aes-128-ctr", None),
    ("aes-192-ctr", None),
    ("aes-256-ctr", None),
    ("aes-128-cfb", None),
    ("aes-192-cfb", None),
    ("aes-256-cfb", None),
    ("rc4-md5", None),
    ("chacha20-ietf", None),
    ("xchacha20", None),
];

/// A shadowsocks method sing-box implements: `Some(Some(n))` when its
/// password is keys of `n` bytes (2022 methods), `Some(None)` for a password
/// of any length, `None` for a method sing-box lacks.
pub fn ss_key_length(method: &str) -> Option<Option<usize>> {
    SS_METHODS
        .iter()
        .find(|(known, _)| *known == method)
        .map(|(_, key)| *key)
}

/// vmess ciphers.
pub const VMESS_SECURITY: [&str; 6] = [
    "auto",
    "none",
    "zero",
    "aes-128-gcm",
    "chacha20-poly1305",
    "aes-128-cfb",
];

/// uTLS fingerprints.
pub const FINGERPRINTS: [&str; 10] = [
    "chrome",
    "firefox",
    "edge",
    "safari",
    "360",
    "qq",
    "ios",
    "android",
    "random",
    "randomized",
];
