//! IPC commands of the Models screen: details with a memory-fit estimate, import,
//! download with progress and cancel, delete and rename. All of it is `Library` in the
//! core; this converts ids and shapes only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use conclave_core::models::{
    CancelToken, DownloadOptions, FitEstimate, FitRequest, ImportMode, ModelEntry,
};
use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;
use ts_rs::TS;

use crate::commands::Shell;
use crate::dto::ModelDto;
use crate::error::{ApiError, ApiResult};

/// Downloads in flight, so `cancel_download` can reach them.
#[derive(Default)]
pub struct Downloads {
    next: AtomicU64,
    running: Mutex<HashMap<String, CancelToken>>,
}

impl Downloads {
    fn start(&self) -> (String, CancelToken) {
        let id = format!("dl-{}", self.next.fetch_add(1, Ordering::SeqCst) + 1);
        let token = CancelToken::new();
        if let Ok(mut map) = self.running.lock() {
            map.insert(id.clone(), token.clone());
        }
        (id, token)
    }

    fn finish(&self, id: &str) {
        if let Ok(mut map) = self.running.lock() {
            map.remove(id);
        }
    }
}

/// Everything the details pane shows: the catalog row, the header's figures and whether
/// it fits in memory at the asked context.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "ModelDetails")]
pub struct ModelDetailsDto {
    pub model: ModelDto,
    pub file_name: String,
    pub folder: String,
    pub parts: Vec<String>,
    pub sha256: Option<String>,
    pub tags: Vec<String>,
    /// `general.name` from the header (often a training label).
    pub general_name: Option<String>,
    pub license: Option<String>,
    pub layer_count: Option<u64>,
    pub embedding_length: Option<u64>,
    pub head_count: Option<u64>,
    pub head_count_kv: Option<u64>,
    pub gguf_version: Option<u32>,
    pub split_count: Option<u32>,
    pub weights_bytes: Option<u64>,
    pub fit: Option<FitEstimate>,
    /// Why there is no estimate (a broken file).
    pub fit_error: Option<ApiError>,
}

impl ModelDetailsDto {
    fn new(entry: &ModelEntry, fit: Result<FitEstimate, ApiError>) -> Self {
        let meta = entry.meta.as_ref();
        let (fit, fit_error) = match fit {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e)),
        };
        Self {
            model: ModelDto::from(entry),
            file_name: entry.file_name.clone(),
            folder: entry.folder.display().to_string(),
            parts: entry
                .parts
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            sha256: entry.sha256.clone(),
            tags: entry.tags.clone(),
            general_name: meta.and_then(|m| m.name.clone()),
            license: meta.and_then(|m| m.license.clone()),
            layer_count: meta.and_then(|m| m.layer_count),
            embedding_length: meta.and_then(|m| m.embedding_length),
            head_count: meta.and_then(|m| m.head_count),
            head_count_kv: meta.and_then(|m| m.head_count_kv),
            gguf_version: meta.map(|m| m.gguf_version),
            split_count: meta.map(|m| m.split_count),
            weights_bytes: meta.map(|m| m.weights_bytes),
            fit,
            fit_error,
        }
    }
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "SkippedFile")]
pub struct SkippedFileDto {
    pub path: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "ImportResult")]
pub struct ImportResultDto {
    pub imported: Vec<ModelDto>,
    pub skipped: Vec<SkippedFileDto>,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "DownloadProgress")]
pub struct DownloadProgressDto {
    /// Sent with every event, first with a zero-byte event before any network traffic, so
    /// the UI can cancel from the start.
    pub download_id: String,
    pub bytes_done: u64,
    pub total: Option<u64>,
    pub bytes_per_sec: f64,
    pub eta_secs: Option<f64>,
    pub resumed_from: u64,
    pub attempt: u32,
    pub done: bool,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "DownloadResult")]
pub struct DownloadResultDto {
    pub download_id: String,
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Who vouched for the sha256 it was checked against: `user`, `hugging_face`, or
    /// `unverified` (nobody).
    pub sha256_source: String,
    pub resumed: bool,
    /// The catalog row of the new file (None if the scan cannot see it).
    pub model: Option<ModelDto>,
}

/// Metadata plus the fit estimate at `n_ctx` (0 = the model's trained context).
#[tauri::command]
pub async fn model_details(
    shell: State<'_, Shell>,
    model_id: String,
    n_ctx: Option<u64>,
) -> ApiResult<ModelDetailsDto> {
    shell
        .blocking(move |lib| {
            let catalog = lib.catalog();
            let entry = catalog.resolve(&model_id)?;
            let req = FitRequest {
                n_ctx: n_ctx.unwrap_or(0),
                ..FitRequest::default()
            };
            let fit = entry.estimate_fit(&req).map_err(ApiError::from);
            Ok(ModelDetailsDto::new(entry, fit))
        })
        .await
}

/// Copies (or, with `link`, symlinks) a file or every GGUF file of a folder into the
/// models folder.
#[tauri::command]
pub async fn import_model(
    shell: State<'_, Shell>,
    path: String,
    link: bool,
) -> ApiResult<ImportResultDto> {
    let mode = if link {
        ImportMode::Link
    } else {
        ImportMode::Copy
    };
    shell
        .blocking(move |lib| {
            let report = lib.import(&path, mode)?;
            Ok(ImportResultDto {
                imported: report.imported.iter().map(ModelDto::from).collect(),
                skipped: report
                    .skipped
                    .into_iter()
                    .map(|(path, code, message)| SkippedFileDto {
                        path: path.display().to_string(),
                        code,
                        message,
                    })
                    .collect(),
            })
        })
        .await
}

#[tauri::command]
pub async fn download_model(
    shell: State<'_, Shell>,
    downloads: State<'_, Arc<Downloads>>,
    url: String,
    sha256: Option<String>,
    on_progress: Channel<DownloadProgressDto>,
) -> ApiResult<DownloadResultDto> {
    let (id, token) = downloads.start();
    let first = DownloadProgressDto {
        download_id: id.clone(),
        bytes_done: 0,
        total: None,
        bytes_per_sec: 0.0,
        eta_secs: None,
        resumed_from: 0,
        attempt: 0,
        done: false,
    };
    let _ = on_progress.send(first);
    let opts = DownloadOptions {
        sha256: sha256
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        ..DownloadOptions::new(url.trim())
    };
    let progress_id = id.clone();
    let result = shell
        .library()
        .download(
            opts,
            move |p| {
                // A closed window drops the channel; the download goes on regardless.
                let _ = on_progress.send(DownloadProgressDto {
                    download_id: progress_id.clone(),
                    bytes_done: p.bytes_done,
                    total: p.total,
                    bytes_per_sec: p.bytes_per_sec,
                    eta_secs: p.eta_secs,
                    resumed_from: p.resumed_from,
                    attempt: p.attempt,
                    done: p.done,
                });
            },
            &token,
        )
        .await;
    downloads.finish(&id);
    let done = result?;
    let path = done.path.display().to_string();
    let lookup = path.clone();
    // Not finding the new file in the catalog is not a failed download: the file is there.
    let model = shell
        .blocking(move |lib| Ok(lib.catalog().resolve(&lookup).map(ModelDto::from).ok()))
        .await
        .ok()
        .flatten();
    let sha256_source = serde_json::to_value(done.sha256_source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(DownloadResultDto {
        download_id: id,
        path,
        sha256: done.sha256,
        size: done.size,
        sha256_source,
        resumed: done.resumed,
        model,
    })
}

#[tauri::command]
pub async fn cancel_download(
    downloads: State<'_, Arc<Downloads>>,
    download_id: String,
) -> ApiResult<()> {
    if let Some(token) = downloads
        .running
        .lock()
        .ok()
        .and_then(|m| m.get(&download_id).cloned())
    {
        token.cancel();
    }
    Ok(())
}

/// Deletes the model's file(s) from disk (a linked import: the link only).
#[tauri::command]
pub async fn remove_model(shell: State<'_, Shell>, model_id: String) -> ApiResult<ModelDto> {
    shell
        .blocking(move |lib| lib.remove(&model_id).map(|e| ModelDto::from(&e)))
        .await
}

/// Sets the display name; an empty name goes back to the file's own.
#[tauri::command]
pub async fn rename_model(
    shell: State<'_, Shell>,
    model_id: String,
    name: Option<String>,
) -> ApiResult<()> {
    shell.blocking(move |lib| lib.rename(&model_id, name)).await
}

/// Layers on GPU and RPC devices when this model loads: a count, or None for auto (the
/// fit). Applies from the next load.
#[tauri::command]
pub async fn set_model_gpu_layers(
    shell: State<'_, Shell>,
    model_id: String,
    layers: Option<u32>,
) -> ApiResult<()> {
    let layers = match layers {
        Some(n) => conclave_core::protocol::GpuLayers::Count(n),
        None => conclave_core::protocol::GpuLayers::Auto,
    };
    shell
        .blocking(move |lib| lib.set_gpu_layers(&model_id, layers))
        .await
}

/// The llama.cpp RPC servers (`host:port`) models are spread over.
#[tauri::command]
pub async fn remote_devices(shell: State<'_, Shell>) -> ApiResult<Vec<String>> {
    shell.blocking(|lib| Ok(lib.rpc_servers())).await
}

/// Replaces the remote devices; each must be `host:port`. Returns the list as saved.
#[tauri::command]
pub async fn set_remote_devices(
    shell: State<'_, Shell>,
    servers: Vec<String>,
) -> ApiResult<Vec<String>> {
    shell
        .blocking(move |lib| lib.set_rpc_servers(servers))
        .await
}
