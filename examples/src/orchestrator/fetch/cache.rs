//! The cache of fetched bodies: one body and its metadata per URL.

use super::UserInfo;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the cache keeps beside a body.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct CacheMeta {
    /// The redacted URL (for people reading the cache directory).
    pub(super) url: String,
    pub(super) etag: Option<String>,
    pub(super) last_modified: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) userinfo: Option<UserInfo>,
    pub(super) update_interval_hours: Option<u64>,
    /// When the body was last confirmed by the provider (Unix seconds).
    pub(super) fetched_at: u64,
}

/// The cache entry of one URL: a body and its [`CacheMeta`].
pub(super) struct CacheEntry {
    pub(super) body: PathBuf,
    pub(super) meta_path: PathBuf,
    pub(super) meta: Option<CacheMeta>,
}

impl CacheEntry {
    pub(super) fn open(dir: &Path, url: &str) -> CacheEntry {
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

    pub(super) fn age(&self) -> Option<Duration> {
        let meta = self.meta.as_ref()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some(now.saturating_sub(Duration::from_secs(meta.fetched_at)))
    }

    pub(super) fn save_meta(&self, meta: &CacheMeta) -> io::Result<()> {
        let dir = self.meta_path.parent().unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut file, meta)?;
        file.as_file().sync_all()?;
        file.persist(&self.meta_path).map_err(|e| e.error)?;
        Ok(())
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
