//! `GET /v1/models`, turning a request's `model` into a loaded model, and the per-model
//! request queue bound.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use axum::extract::{Path as UrlPath, State};
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, ApiState};
use crate::engine::{LoadOptions, LoadedModel};
use crate::models::{display_name, Catalog, ModelEntry};

/// Requests holding each model (waiting or generating).
pub(crate) type Queues = Mutex<HashMap<PathBuf, Arc<AtomicUsize>>>;

/// One place in a model's queue; dropping it frees the place.
pub(crate) struct QueueSlot(Arc<AtomicUsize>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A model a request may use.
pub(crate) struct Served {
    pub id: String,
    pub path: PathBuf,
}

pub(crate) async fn list(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let catalog = catalog(&state).await?;
    let loaded = loaded_paths(&state).await;
    let mut data: Vec<Value> = catalog
        .models
        .iter()
        .filter(|m| m.error.is_none())
        .map(|m| entry_json(m, loaded.contains(&m.path)))
        .collect();
    for p in pinned_outside(&state, &catalog) {
        data.push(pinned_json(&p, loaded.contains(&p)));
    }
    Ok(Json(json!({ "object": "list", "data": data })))
}

pub(crate) async fn retrieve(
    State(state): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let served = resolve(&state, &id).await?;
    let catalog = catalog(&state).await?;
    let loaded = loaded_paths(&state).await;
    let entry = catalog.models.iter().find(|m| m.path == served.path);
    Ok(Json(match entry {
        Some(m) => entry_json(m, loaded.contains(&m.path)),
        None => pinned_json(&served.path, loaded.contains(&served.path)),
    }))
}

fn entry_json(m: &ModelEntry, loaded: bool) -> Value {
    let meta = m.meta.as_ref();
    json!({
        "id": m.id,
        "object": "model",
        "created": mtime(&m.path),
        "owned_by": "local",
        // Extensions; no paths, which would tell a remote client about this machine.
        "name": m.display_name,
        "file_name": m.file_name,
        "size_bytes": m.size,
        "architecture": meta.and_then(|x| x.architecture.clone()),
        "quantization": meta.and_then(|x| x.quantization.clone()),
        "context_length": meta.and_then(|x| x.context_length),
        "reasoning_format": meta.and_then(|x| x.reasoning_format.map(|f| f.name())),
        "loaded": loaded,
    })
}

/// A model served from outside the library: no rename can exist for it.
fn pinned_json(p: &Path, loaded: bool) -> Value {
    let name = file_name(p);
    json!({
        "id": name,
        "object": "model",
        "created": mtime(p),
        "owned_by": "local",
        "name": display_name(p, None),
        "file_name": name,
        "loaded": loaded,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn mtime(p: &Path) -> u64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

async fn catalog(state: &ApiState) -> Result<Catalog, ApiError> {
    // Scanning reads every model's header: off the async threads.
    let library = state.app.library.clone();
    tokio::task::spawn_blocking(move || library.catalog())
        .await
        .map_err(|_| ApiError::internal("internal_error", "Listing the models failed."))
}

async fn loaded_paths(state: &ApiState) -> Vec<PathBuf> {
    state
        .app
        .loaded()
        .await
        .into_iter()
        .map(|i| i.path)
        .collect()
}

/// `--model` files that the catalogue does not already list.
fn pinned_outside(state: &ApiState, catalog: &Catalog) -> Vec<PathBuf> {
    state
        .config
        .models
        .iter()
        .filter(|p| {
            let canon = p.canonicalize().ok();
            !catalog.models.iter().any(|m| {
                &m.path == *p
                    || canon
                        .as_ref()
                        .is_some_and(|c| m.path.canonicalize().ok().as_ref() == Some(c))
            })
        })
        .cloned()
        .collect()
}

/// The model a request names: a pinned model's file name (or stem), else a catalogue id,
/// file name or display name. An empty name means the first pinned model.
pub(crate) async fn resolve(state: &ApiState, name: &str) -> Result<Served, ApiError> {
    let pinned = &state.config.models;
    if name.is_empty() {
        return match pinned.first() {
            Some(p) => Ok(Served {
                id: file_name(p),
                path: p.clone(),
            }),
            None => Err(ApiError::invalid_value(
                "model",
                "`model` must name a model; GET /v1/models lists them.",
            )),
        };
    }
    if let Some(p) = pinned.iter().find(|p| {
        let f = file_name(p);
        f == name || f.strip_suffix(".gguf") == Some(name)
    }) {
        return Ok(Served {
            id: name.to_owned(),
            path: p.clone(),
        });
    }
    // A client must not make the server open arbitrary files: names only, never paths.
    if name.contains('/') || name.contains('\\') {
        return Err(ApiError::model_not_found(name));
    }
    let catalog = catalog(state).await?;
    let entry = catalog
        .resolve(name)
        .map_err(|e| ApiError::from_models(&e, name))?;
    if entry.error.is_some() {
        tracing::warn!(model = %entry.file_name, issue = ?entry.error, "requested model is unusable");
        return Err(ApiError::internal(
            "model_unusable",
            format!("The model `{name}` cannot be used: its file is damaged or unsupported."),
        ));
    }
    Ok(Served {
        id: name.to_owned(),
        path: entry.path.clone(),
    })
}

/// Takes a place in the model's queue, or refuses with 429 when it is full.
pub(crate) fn enqueue(state: &ApiState, served: &Served) -> Result<QueueSlot, ApiError> {
    let counter = state
        .queues
        .lock()
        .map_err(|_| ApiError::internal("internal_error", "The request queue is unavailable."))?
        .entry(served.path.clone())
        .or_default()
        .clone();
    let before = counter.fetch_add(1, Ordering::SeqCst);
    let slot = QueueSlot(counter);
    if before >= state.config.max_queue_per_model {
        return Err(ApiError::overloaded(&served.id));
    }
    Ok(slot)
}

/// Loads the model on first use, with the server's context length and the draft model
/// configured for it.
pub(crate) async fn load(state: &ApiState, served: &Served) -> Result<LoadedModel, ApiError> {
    let same = |p: &Path| {
        p == served.path
            || (p.canonicalize().ok()).is_some_and(|c| Some(c) == served.path.canonicalize().ok())
    };
    let draft_model = match state.config.draft_models.iter().find(|(m, _)| same(m)) {
        Some((_, d)) => Some(d.clone()),
        // Reloading a model the app holds just to drop its draft model would cost a load
        // for every API request in between two chats.
        None => state.app.loaded_draft(&served.path).await,
    };
    let opts = LoadOptions {
        n_ctx: state.config.n_ctx,
        threads: state.config.threads,
        rpc: state.config.rpc.clone(),
        gpu_layers: state.config.gpu_layers,
        draft_model,
        ..Default::default()
    };
    state
        .app
        .load(&served.path, opts, |_| {})
        .await
        .map_err(|e| ApiError::from_core(&e, &served.id))
}
