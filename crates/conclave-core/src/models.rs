//! The model library: which GGUF files Conclave knows about (the catalog), importing and
//! downloading new ones, deleting/renaming/tagging them, and estimating whether one fits in
//! memory before it is loaded.
//!
//! Everything hangs off a [`Library`], which knows its data root (settings, the sha256
//! cache, the models folder) and the folders to scan. [`Library::open_default`] uses
//! [`crate::paths`]; tests point a library at a temporary folder with
//! [`Library::with_root`] so that nothing depends on process-wide environment variables.

mod catalog;
mod download;
mod fit;
mod import;
mod store;

use std::path::{Path, PathBuf};

pub use catalog::{Catalog, ModelEntry, ModelIssue, ModelMeta};
pub use download::{CancelToken, DownloadOptions, DownloadProgress, DownloadedModel, Sha256Source};
pub use fit::{estimate_fit, mem_available_bytes, Fit, FitEstimate, FitRequest, KvCacheType};
pub use import::{ImportMode, ImportReport};
pub use store::{ModelOverrides, Settings};

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("no model matches \"{0}\" (try `conclave models list`)")]
    NotFound(String),
    #[error("\"{query}\" matches several models: {}", candidates.join(", "))]
    Ambiguous {
        query: String,
        candidates: Vec<String>,
    },
    // The GGUF error is part of the message, not a `source`, so that reporters that print
    // the cause chain (anyhow) do not say it twice.
    #[error("{path} is not a usable GGUF model: {cause}")]
    NotGguf {
        path: PathBuf,
        cause: crate::gguf::GgufError,
    },
    #[error("{path} is already in the library as {existing} (same sha256 {sha256})")]
    Duplicate {
        path: PathBuf,
        existing: PathBuf,
        sha256: String,
    },
    #[error("{0} already exists; remove it first or pick another name")]
    AlreadyExists(PathBuf),
    #[error("split model part {missing} is missing (expected next to {path})")]
    MissingSplitPart { path: PathBuf, missing: String },
    #[error("{path} is part {no} of a split model; import part 1 ({first}) instead")]
    NotFirstSplitPart {
        path: PathBuf,
        no: u32,
        first: String,
    },
    #[error("no .gguf files found in {0}")]
    NothingToImport(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remote device: {0}")]
    BadRemoteDevice(String),
    #[error("settings file {path} is corrupt: {reason}")]
    Settings { path: PathBuf, reason: String },
    #[error("invalid download URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid sha256 \"{0}\": expected 64 hexadecimal characters")]
    InvalidSha256(String),
    #[error("download failed: HTTP {status} {reason} for {url}")]
    HttpStatus {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("download of {url} failed: {message}")]
    Network { url: String, message: String },
    #[error("download of {url} ended early: got {got} of {expected} bytes")]
    Incomplete {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("checksum mismatch for {url}: expected sha256 {expected} ({from}), got {actual}; the download was discarded")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
        /// Where the expected sum came from.
        from: Sha256Source,
    },
    #[error("refusing to follow the redirect from {url} to {to}: downloads use https only (plain http only within this machine)")]
    InsecureRedirect { url: String, to: String },
    #[error("{part} is being written by another download of the same file; wait for it to finish or cancel it")]
    InProgress { part: PathBuf },
    #[error("not enough free space in {dir}: the download needs {needed} more bytes, {available} are free")]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("download cancelled (partial file kept for resume: {part})")]
    Cancelled { part: PathBuf },
    #[error("{0}")]
    Unsupported(String),
}

impl ModelsError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelsError {
        let path = path.into();
        move |source| ModelsError::Io { path, source }
    }
}

impl crate::error::ErrorCode for ModelsError {
    fn code(&self) -> &'static str {
        match self {
            ModelsError::NotFound(_) => "model_not_found",
            ModelsError::Ambiguous { .. } => "model_ambiguous",
            ModelsError::NotGguf { .. } => "model_not_gguf",
            ModelsError::Duplicate { .. } => "model_duplicate",
            ModelsError::AlreadyExists(_) => "model_exists",
            ModelsError::MissingSplitPart { .. } => "model_split_part_missing",
            ModelsError::NotFirstSplitPart { .. } => "model_not_first_split_part",
            ModelsError::NothingToImport(_) => "model_nothing_to_import",
            ModelsError::Io { .. } => "model_io",
            ModelsError::Settings { .. } => "model_settings_corrupt",
            ModelsError::BadRemoteDevice(_) => "bad_remote_device",
            ModelsError::InvalidUrl { .. } => "download_invalid_url",
            ModelsError::InvalidSha256(_) => "download_invalid_sha256",
            ModelsError::HttpStatus { .. } => "download_http_status",
            ModelsError::Network { .. } => "download_network",
            ModelsError::Incomplete { .. } => "download_incomplete",
            ModelsError::ChecksumMismatch { .. } => "download_checksum_mismatch",
            ModelsError::InsecureRedirect { .. } => "download_insecure_redirect",
            ModelsError::InProgress { .. } => "download_in_progress",
            ModelsError::NoSpace { .. } => "download_no_space",
            ModelsError::Cancelled { .. } => "download_cancelled",
            ModelsError::Unsupported(_) => "unsupported",
        }
    }
}

/// The name a model is shown under, everywhere: the user's rename when there is one, else
/// the file name without `.gguf`. Not `general.name`: converters fill that with
/// training-run labels ("Smollm2 135M 8k Lc100K Mix1 Ep2") and drop the quantisation users
/// choose by. Where a [`Library`] is at hand, [`Library::display_name`] finds the rename.
pub fn display_name(file: &Path, rename: Option<&str>) -> String {
    if let Some(name) = rename.map(str::trim).filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    match file_name.strip_suffix(".gguf") {
        Some(stem) => stem.to_owned(),
        None => file_name,
    }
}

/// A model library rooted at one data folder.
#[derive(Debug, Clone)]
pub struct Library {
    root: PathBuf,
    models_dir: PathBuf,
    base_dirs: Vec<PathBuf>,
}

impl Library {
    /// The user's library: [`crate::paths::data_dir`], scanning
    /// [`crate::paths::model_search_dirs`] plus the folders the user added.
    pub fn open_default() -> Self {
        // Best effort: a library under a root that cannot be made private still works.
        if let Err(e) = crate::paths::ensure_data_dir() {
            tracing::warn!("could not make the data folder private: {e}");
        }
        Self {
            root: crate::paths::data_dir(),
            models_dir: crate::paths::models_dir(),
            base_dirs: crate::paths::model_search_dirs(),
        }
    }

    /// A library whose data root is `root` (models in `root/models`), scanning only that
    /// folder plus user-added folders.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let models_dir = root.join("models");
        Self {
            base_dirs: vec![models_dir.clone()],
            models_dir,
            root,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where imports and downloads land.
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    pub(crate) fn settings_path(&self) -> PathBuf {
        self.root.join("models-settings.json")
    }

    pub(crate) fn sha_cache_path(&self) -> PathBuf {
        self.root.join("models-sha256-cache.json")
    }

    pub fn settings(&self) -> Result<Settings, ModelsError> {
        store::load_settings(&self.settings_path())
    }

    /// Every folder scanned, in order: the base folders then the user-added ones.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.base_dirs.clone();
        match self.settings() {
            Ok(s) => dirs.extend(s.folders),
            Err(e) => tracing::warn!(error = %e, "ignoring unreadable model settings"),
        }
        let mut seen = std::collections::HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        dirs
    }

    /// Adds a folder to scan (persisted).
    pub fn add_folder(&self, dir: impl AsRef<Path>) -> Result<(), ModelsError> {
        let dir = dir.as_ref();
        let canon = dir.canonicalize().map_err(ModelsError::io(dir))?;
        store::update_settings(&self.settings_path(), |s| {
            if !s.folders.contains(&canon) {
                s.folders.push(canon.clone());
            }
        })
    }

    pub fn remove_folder(&self, dir: impl AsRef<Path>) -> Result<(), ModelsError> {
        let dir = dir.as_ref();
        let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        store::update_settings(&self.settings_path(), |s| {
            s.folders.retain(|f| f != &canon && f != dir);
        })
    }

    /// Scans every folder and reads every model's header. Never fails on a bad model file:
    /// those are listed with their error.
    pub fn catalog(&self) -> Catalog {
        let settings = self.settings().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring unreadable model settings");
            Settings::default()
        });
        let cache = store::load_sha_cache(&self.sha_cache_path());
        catalog::scan(&self.search_dirs(), &settings, &cache)
    }

    /// The sha256 of `path`, computed once and cached by (canonical path, size, mtime).
    pub fn ensure_sha256(&self, path: impl AsRef<Path>) -> Result<String, ModelsError> {
        store::ensure_sha256(&self.sha_cache_path(), path.as_ref())
    }

    /// Hashes, on a background thread, every catalogued model whose sha256 is not cached
    /// yet, so that ids become content-based and duplicate checks are instant.
    pub fn hash_missing_in_background(&self) -> std::thread::JoinHandle<usize> {
        let lib = self.clone();
        std::thread::spawn(move || {
            let mut done = 0;
            for m in lib.catalog().models {
                if m.sha256.is_none() && m.error.is_none() {
                    match lib.ensure_sha256(&m.path) {
                        Ok(_) => done += 1,
                        Err(e) => tracing::warn!(error = %e, "hashing model failed"),
                    }
                }
            }
            done
        })
    }

    /// Deletes a model's file(s) (every part of a split model; for an imported symlink,
    /// the link only) and forgets its overrides.
    pub fn remove(&self, id_or_path: &str) -> Result<ModelEntry, ModelsError> {
        let catalog = self.catalog();
        let entry = catalog.resolve(id_or_path)?.clone();
        for part in &entry.parts {
            std::fs::remove_file(part).map_err(ModelsError::io(part))?;
        }
        let key = store::settings_key(&entry.path);
        store::update_settings(&self.settings_path(), |s| {
            s.models.remove(&key);
            s.links.retain(|l| !entry.parts.contains(l));
        })?;
        tracing::info!(path = %entry.path.display(), "model removed");
        Ok(entry)
    }

    /// [`display_name`] of a model file, with the rename the user gave it here, if any.
    pub fn display_name(&self, path: &Path) -> String {
        let settings = self.settings().unwrap_or_default();
        let rename =
            catalog::overrides_for(&settings, path).and_then(|o| o.display_name.as_deref());
        display_name(path, rename)
    }

    /// Sets (or, with `None`, clears) the display name shown instead of the file's own.
    pub fn rename(&self, id_or_path: &str, name: Option<String>) -> Result<(), ModelsError> {
        let entry = self.catalog().resolve(id_or_path)?.clone();
        let key = store::settings_key(&entry.path);
        store::update_settings(&self.settings_path(), |s| {
            s.models.entry(key).or_default().display_name = name.filter(|n| !n.trim().is_empty());
        })
    }

    /// Sets (or, with `Auto`, clears) the GPU layers a model is loaded with.
    pub fn set_gpu_layers(
        &self,
        id_or_path: &str,
        layers: crate::protocol::GpuLayers,
    ) -> Result<(), ModelsError> {
        let entry = self.catalog().resolve(id_or_path)?.clone();
        let key = store::settings_key(&entry.path);
        store::update_settings(&self.settings_path(), |s| {
            s.models.entry(key).or_default().gpu_layers = match layers {
                crate::protocol::GpuLayers::Auto => None,
                crate::protocol::GpuLayers::Count(n) => Some(n),
            };
        })
    }

    /// The GPU layers the user chose for the model at `path` (auto when none).
    pub fn gpu_layers(&self, path: &Path) -> crate::protocol::GpuLayers {
        let settings = self.settings().unwrap_or_default();
        match catalog::overrides_for(&settings, path).and_then(|o| o.gpu_layers) {
            Some(n) => crate::protocol::GpuLayers::Count(n),
            None => crate::protocol::GpuLayers::Auto,
        }
    }

    /// The RPC servers models are spread over (Settings → Remote devices).
    pub fn rpc_servers(&self) -> Vec<String> {
        self.settings().map(|s| s.rpc_servers).unwrap_or_default()
    }

    /// Replaces the RPC servers, each checked as `host:port` (deduplicated, order kept).
    pub fn set_rpc_servers(&self, servers: Vec<String>) -> Result<Vec<String>, ModelsError> {
        let clean = crate::protocol::parse_rpc_list(&servers.join(","))
            .map_err(ModelsError::BadRemoteDevice)?;
        let saved = clean.clone();
        store::update_settings(&self.settings_path(), |s| s.rpc_servers = saved)?;
        Ok(clean)
    }

    /// Replaces a model's tags (deduplicated, order kept).
    pub fn set_tags(&self, id_or_path: &str, tags: Vec<String>) -> Result<(), ModelsError> {
        let entry = self.catalog().resolve(id_or_path)?.clone();
        let key = store::settings_key(&entry.path);
        let mut clean: Vec<String> = Vec::new();
        for t in tags {
            let t = t.trim().to_string();
            if !t.is_empty() && !clean.contains(&t) {
                clean.push(t);
            }
        }
        store::update_settings(&self.settings_path(), |s| {
            s.models.entry(key).or_default().tags = clean;
        })
    }

    /// Copies (or links) a GGUF file, or every GGUF file in a folder, into the models folder.
    pub fn import(
        &self,
        src: impl AsRef<Path>,
        mode: ImportMode,
    ) -> Result<ImportReport, ModelsError> {
        import::import(self, src.as_ref(), mode)
    }

    /// Downloads a model into the models folder; see [`download`](download::download).
    pub async fn download(
        &self,
        opts: DownloadOptions,
        on_progress: impl FnMut(&DownloadProgress) + Send,
        cancel: &CancelToken,
    ) -> Result<DownloadedModel, ModelsError> {
        download::download(self, opts, on_progress, cancel).await
    }
}

/// [`Library::ensure_sha256`] on the default library.
pub fn ensure_sha256(path: impl AsRef<Path>) -> Result<String, ModelsError> {
    Library::open_default().ensure_sha256(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_name_is_the_rename_else_the_file_stem() {
        let p = Path::new("/m/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert_eq!(display_name(p, None), "SmolLM2-135M-Instruct.Q4_1");
        assert_eq!(display_name(p, Some("Small one")), "Small one");
        assert_eq!(display_name(p, Some("  ")), "SmolLM2-135M-Instruct.Q4_1");
        assert_eq!(display_name(Path::new("plain.bin"), None), "plain.bin");
    }
}
