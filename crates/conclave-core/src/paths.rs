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
    dirs.dedup();
    dirs
}

/// The `models/` folder of the source checkout this binary was built from, if it still exists.
fn checkout_models_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.parent()?;
    let dir = root.join("models");
    dir.is_dir().then_some(dir)
}

/// Writes `value` as pretty JSON to `path` through a temp file and a rename, so a crash or
/// a concurrent reader never sees half a file (the temp name carries the process id, so
/// two processes never write the same one). The folder is created when missing.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_is_replaced_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("settings.json");
        write_json_atomic(&path, &serde_json::json!({"a": 1})).unwrap();
        write_json_atomic(&path, &serde_json::json!({"a": 2})).unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["a"], 2);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["settings.json"]);
    }
}
