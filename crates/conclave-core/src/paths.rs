//! Where Conclave keeps its files. One data root holds the history database, the models
//! folder, settings and logs; `CONCLAVE_DATA_DIR` overrides it (tests, portable installs).

use std::path::{Path, PathBuf};

/// The data root: `CONCLAVE_DATA_DIR`, else the platform's data directory
/// (`~/.local/share/conclave` on Linux).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONCLAVE_DATA_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("org", "conclave", "conclave")
        .map(|p| p.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("conclave"))
}

/// The data root, created if needed and made owner-only (0700): it holds the history, the
/// API key and the library's settings.
pub fn ensure_data_dir() -> std::io::Result<PathBuf> {
    let dir = data_dir();
    crate::files::ensure_private_dir(&dir)?;
    Ok(dir)
}

pub fn database_path() -> PathBuf {
    data_dir().join("history.sqlite3")
}

/// The models folder under the data root, where imports and downloads land.
pub fn models_dir() -> PathBuf {
    data_dir().join("models")
}

/// Every folder searched for models, in order: `CONCLAVE_MODELS_DIR` (colon-separated),
/// the data root's models folder, and the checkout's `models/` when running from a clone
/// (so `make run` finds the fetched test models with no set-up).
pub fn model_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(v) = std::env::var_os("CONCLAVE_MODELS_DIR") {
        dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs.push(models_dir());
    if let Some(dir) = checkout_models_dir() {
        dirs.push(dir);
    }
    // One folder named two ways (`tests/../models` and `models`) would list every model
    // twice and make names ambiguous: compare folders by their canonical path.
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    dirs
}

/// The `models/` folder of the source checkout this binary was built from, if it still exists.
fn checkout_models_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.parent()?;
    let dir = root.join("models");
    dir.is_dir().then_some(dir)
}
