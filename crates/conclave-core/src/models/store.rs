//! The two small JSON files the library keeps under the data root: user settings (added
//! folders, display-name overrides, tags, links made by imports) and the sha256 cache.
//! Both are rewritten atomically (temp file + rename) under a process-wide lock so that a
//! crash or a concurrent writer never leaves half a file.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ModelsError;

static LOCK: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// Extra folders to scan, canonical paths.
    #[serde(default)]
    pub folders: Vec<PathBuf>,
    /// Per-model overrides, keyed by the model file's canonical path (stable across the id
    /// changing from a path hash to a content hash once the sha256 is known).
    #[serde(default)]
    pub models: BTreeMap<String, ModelOverrides>,
    /// Symlinks created by `import --link`: the catalog follows these even though they lead
    /// outside the scanned folder (it follows no other such link).
    #[serde(default)]
    pub links: Vec<PathBuf>,
    /// llama.cpp RPC servers (`host:port`) the app spreads models over (Settings → Remote
    /// devices).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rpc_servers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Layers on GPU and RPC devices when this model loads: absent = auto (the fit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_layers: Option<u32>,
}

pub(crate) fn settings_key(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding the lock cannot leave the files half-written (writes are
    // atomic), so a poisoned lock is safe to reuse.
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn load_settings(path: &Path) -> Result<Settings, ModelsError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ModelsError::Settings {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(ModelsError::io(path)(e)),
    }
}

/// Read-modify-write of the settings file. A corrupt file is an error rather than silently
/// replaced, so the user's folders and tags are never thrown away.
pub(crate) fn update_settings(
    path: &Path,
    f: impl FnOnce(&mut Settings),
) -> Result<(), ModelsError> {
    let _g = lock();
    let mut s = load_settings(path)?;
    f(&mut s);
    write_json_atomic(path, &s)
}

/// Settings and caches: private (0600) and flushed before the rename, see [`crate::files`].
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), ModelsError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ModelsError::Settings {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::files::write_private_atomic(path, &bytes).map_err(ModelsError::io(path))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ShaEntry {
    pub size: u64,
    pub mtime_ns: u64,
    pub sha256: String,
}

pub(crate) type ShaCache = BTreeMap<String, ShaEntry>;

/// A missing or unreadable cache is just empty: it only saves time.
pub(crate) fn load_sha_cache(path: &Path) -> ShaCache {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// (canonical path, size, mtime) of a file: the cache key and its freshness check.
pub(crate) fn file_stamp(path: &Path) -> Result<(PathBuf, u64, u64), ModelsError> {
    let canon = path.canonicalize().map_err(ModelsError::io(path))?;
    let md = std::fs::metadata(&canon).map_err(ModelsError::io(&canon))?;
    let mtime_ns = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Ok((canon, md.len(), mtime_ns))
}

pub(crate) fn cached_sha(cache: &ShaCache, path: &Path) -> Option<String> {
    let (canon, size, mtime_ns) = file_stamp(path).ok()?;
    cache
        .get(&settings_key(&canon))
        .filter(|e| e.size == size && e.mtime_ns == mtime_ns)
        .map(|e| e.sha256.clone())
}

pub(crate) fn record_sha(cache_path: &Path, path: &Path, sha256: &str) -> Result<(), ModelsError> {
    let (canon, size, mtime_ns) = file_stamp(path)?;
    let _g = lock();
    let mut cache = load_sha_cache(cache_path);
    cache.insert(
        settings_key(&canon),
        ShaEntry {
            size,
            mtime_ns,
            sha256: sha256.to_string(),
        },
    );
    write_json_atomic(cache_path, &cache)
}

pub(crate) fn ensure_sha256(cache_path: &Path, path: &Path) -> Result<String, ModelsError> {
    if let Some(sha) = cached_sha(&load_sha_cache(cache_path), path) {
        return Ok(sha);
    }
    let started = std::time::Instant::now();
    let sha = sha256_file(path)?;
    tracing::info!(path = %path.display(), elapsed = ?started.elapsed(), "sha256 computed");
    record_sha(cache_path, path, &sha)?;
    Ok(sha)
}

pub(crate) fn sha256_file(path: &Path) -> Result<String, ModelsError> {
    let mut f = std::fs::File::open(path).map_err(ModelsError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(ModelsError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// First 16 hex digits of the sha256 of a string: ids for models whose content hash is not
/// known yet.
pub(crate) fn short_hash(s: &str) -> String {
    let mut h = hex::encode(Sha256::digest(s.as_bytes()));
    h.truncate(16);
    h
}
