//! The IPC commands. Each one converts its arguments, calls one `conclave-core` function
//! and converts the result; anything more belongs in the core.

use std::sync::Arc;

use conclave_core::engine::LoadOptions;
use conclave_core::history::{
    ExportFileReport, ExportFormat, ExportScope, ImportReport, Preset, SearchQuery,
};
use conclave_core::models::{ImportMode, Library, ModelEntry, ModelsError};
use conclave_core::protocol::WorkerErrorCode;
use conclave_core::session::{ChatHandle, ChatSettings, Conclave, ReplayReport, SendRequest};
use conclave_core::{frames, ChatEvent};
use tauri::ipc::Channel;
use tauri::{AppHandle, Emitter, State};

use crate::dto::{
    parse_rfc3339, AppInfoDto, ChatRequestDto, ConversationSummaryDto, ConversationViewDto,
    LoadProgress, LoadedModelDto, ModelDto, ModelLoadedEvent, SearchHitDto, WarmReportDto,
    WorkerCrashedEvent,
};
use crate::error::{join_error, ApiError, ApiResult};

pub const EVENT_WORKER_CRASHED: &str = "worker-crashed";
pub const EVENT_MODEL_LOADED: &str = "model-loaded";

/// What every command shares. The library is held on its own so that the model list and
/// the app info still work when the engine or the history could not be opened; the
/// window then shows that error instead of failing to start.
pub struct Shell {
    conclave: Result<Arc<Conclave>, ApiError>,
    library: Library,
    /// This machine's GPUs and their free memory, listed by a worker on the first Models
    /// screen request and kept for the fit estimates.
    devices: conclave_core::engine::DeviceCache,
}

impl Shell {
    pub fn new(conclave: Result<Arc<Conclave>, ApiError>, library: Library) -> Self {
        Self {
            conclave,
            library,
            devices: Default::default(),
        }
    }

    /// The local devices (listed once, then cached).
    pub(crate) async fn devices(&self) -> ApiResult<conclave_core::protocol::DeviceList> {
        let core = self.core()?;
        self.devices
            .get(&core.engine)
            .await
            .map_err(|e| conclave_core::CoreError::from(e).into())
    }

    pub fn library(&self) -> &Library {
        &self.library
    }

    pub(crate) fn core(&self) -> ApiResult<&Arc<Conclave>> {
        self.conclave.as_ref().map_err(Clone::clone)
    }

    /// Scanning reads every model's header: keep it off the async threads.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Library) -> Result<T, ModelsError> + Send + 'static,
    ) -> ApiResult<T> {
        let lib = self.library.clone();
        Ok(tauri::async_runtime::spawn_blocking(move || f(lib))
            .await
            .map_err(join_error)??)
    }

    async fn model(&self, id: String) -> ApiResult<ModelEntry> {
        self.blocking(move |lib| lib.catalog().resolve(&id).cloned())
            .await
    }
}

/// Where the user wants a model to run: the remote devices of Settings and the model's
/// own GPU layers (both kept in the library's settings file).
fn placement(shell: &Shell, path: &std::path::Path) -> LoadOptions {
    LoadOptions {
        rpc: shell.library().rpc_servers(),
        gpu_layers: shell.library().gpu_layers(path),
        ..LoadOptions::default()
    }
}

#[tauri::command]
pub async fn list_models(shell: State<'_, Shell>) -> ApiResult<Vec<ModelDto>> {
    shell
        .blocking(|lib| Ok(lib.catalog().models.iter().map(ModelDto::from).collect()))
        .await
}

/// A file picked in the open dialog: used in place (a link in the models folder) unless
/// the library already has it.
#[tauri::command]
pub async fn open_model_file(shell: State<'_, Shell>, path: String) -> ApiResult<ModelDto> {
    shell
        .blocking(move |lib| {
            if let Ok(known) = lib.catalog().resolve(&path) {
                return Ok(ModelDto::from(known));
            }
            let entry = match lib.import(&path, ImportMode::Link) {
                Ok(report) => report.imported.into_iter().next(),
                Err(ModelsError::Duplicate { existing, .. }) => lib
                    .catalog()
                    .resolve(&existing.display().to_string())
                    .ok()
                    .cloned(),
                Err(e) => return Err(e),
            };
            entry
                .map(|e| ModelDto::from(&e))
                .ok_or_else(|| ModelsError::NothingToImport(path.into()))
        })
        .await
}

#[tauri::command]
pub async fn load_model(
    app: AppHandle,
    shell: State<'_, Shell>,
    model_id: String,
    on_progress: Channel<LoadProgress>,
) -> ApiResult<LoadedModelDto> {
    let core = shell.core()?;
    let entry = shell.model(model_id.clone()).await?;
    let opts = placement(&shell, &entry.path);
    let model = core
        .load(&entry.path, opts, move |fraction| {
            // A closed window drops the channel; loading goes on regardless.
            let _ = on_progress.send(LoadProgress { fraction });
        })
        .await?;
    let info = model.info().await;
    let _ = app.emit(
        EVENT_MODEL_LOADED,
        ModelLoadedEvent {
            model_id: model_id.clone(),
        },
    );
    Ok(LoadedModelDto::new(model_id, entry.display_name, &info))
}

#[tauri::command]
pub async fn start_chat(
    app: AppHandle,
    shell: State<'_, Shell>,
    request: ChatRequestDto,
    on_event: Channel<ChatEvent>,
) -> ApiResult<ChatHandle> {
    let core = shell.core()?;
    let entry = shell.model(request.model_id.clone()).await?;
    // Already loaded (the UI loads first): this returns the running worker.
    let opts = answer_load_options(&shell, &entry.path, &request);
    let model = core.load(&entry.path, opts, |_| {}).await?;
    let threads = match request.settings.threads {
        Some(t) => t,
        None => model.info().await.threads,
    };
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let model_id = request.model_id.clone();
    let send = send_request(request);
    let page = frames::per_frame(
        frames::ui_frame_for(threads, cpus),
        move |event: ChatEvent| {
            if let ChatEvent::Error { code, message } = &event {
                if code == WorkerErrorCode::WorkerCrashed.as_str() {
                    let crashed = WorkerCrashedEvent {
                        model_id: model_id.clone(),
                        message: message.clone(),
                    };
                    let _ = app.emit(EVENT_WORKER_CRASHED, crashed);
                }
            }
            if let Err(e) = on_event.send(event) {
                tracing::debug!("chat channel closed: {e}");
            }
        },
    );
    let handle = core
        .send(&model, send, move |event| page.send(event))
        .await?;
    Ok(handle)
}

/// How the model answering `request` is loaded.
fn answer_load_options(
    shell: &Shell,
    path: &std::path::Path,
    request: &ChatRequestDto,
) -> LoadOptions {
    LoadOptions {
        n_ctx: request.settings.n_ctx,
        threads: request.settings.threads,
        // A different draft model than the running worker's starts a new model pair.
        draft_model: request.settings.draft_model.clone(),
        ..placement(shell, path)
    }
}

fn send_request(request: ChatRequestDto) -> SendRequest {
    SendRequest {
        conversation_id: request.conversation_id,
        parent_id: request.parent_id,
        content: request.content,
        settings: request.settings,
        regenerate_of: request.regenerate_of,
        edit_of: request.edit_of,
        ..SendRequest::default()
    }
}

/// Reads the message being typed into the loaded model's cache (one call in flight at a
/// time, from the UI), so that sending it starts answering sooner; `whole_turn` once
/// typing has paused, to read the turn's end too. Loads nothing: a model that is not
/// loaded the way `start_chat` would use it is left alone.
#[tauri::command]
pub async fn warm_prompt(
    shell: State<'_, Shell>,
    request: ChatRequestDto,
    whole_turn: Option<bool>,
) -> ApiResult<WarmReportDto> {
    let core = shell.core()?;
    let entry = shell.model(request.model_id.clone()).await?;
    let opts = answer_load_options(&shell, &entry.path, &request);
    let Some(model) = core.loaded_as(&entry.path, &opts).await else {
        return Ok(WarmReportDto::default());
    };
    let request = send_request(request);
    let w = if whole_turn.unwrap_or(false) {
        core.warm_whole(&model, &request).await?
    } else {
        core.warm(&model, &request).await?
    };
    Ok(WarmReportDto {
        prompt_tokens: w.prompt_tokens,
        cached_tokens: w.cached_tokens,
        decoded_tokens: w.decoded_tokens,
        complete: w.complete,
    })
}

/// Answers a saved question again with the saved answer's model (checked by sha256),
/// template, sampler and seed; the new text streams to `on_event`, and the comparison with
/// the saved answer is returned at the end. Nothing is saved.
#[tauri::command]
pub async fn replay_answer(
    shell: State<'_, Shell>,
    message_id: String,
    on_event: Channel<ChatEvent>,
) -> ApiResult<ReplayReport> {
    let core = shell.core()?;
    let report = core
        .replay(&message_id, None, move |event| {
            if let Err(e) = on_event.send(event.clone()) {
                tracing::debug!("replay channel closed: {e}");
            }
        })
        .await?;
    Ok(report)
}

#[tauri::command]
pub async fn cancel(shell: State<'_, Shell>, request_id: String) -> ApiResult<()> {
    shell.core()?.cancel(&request_id);
    Ok(())
}

#[tauri::command]
pub async fn list_conversations(
    shell: State<'_, Shell>,
    limit: u32,
    before: Option<String>,
) -> ApiResult<Vec<ConversationSummaryDto>> {
    let before = before.as_deref().map(parse_rfc3339).transpose()?;
    let rows = shell
        .core()?
        .history
        .list_conversations(limit, before)
        .await?;
    // bench/app-startup.sh reads this line: the first list is what makes the window usable.
    static FIRST: std::sync::Once = std::sync::Once::new();
    FIRST.call_once(|| {
        let ms = crate::started_at().elapsed().as_secs_f64() * 1000.0;
        eprintln!("conclave-app: conversation list served {ms:.0} ms after start");
    });
    Ok(rows.into_iter().map(Into::into).collect())
}

#[tauri::command]
pub async fn get_conversation(
    shell: State<'_, Shell>,
    id: String,
) -> ApiResult<ConversationViewDto> {
    Ok(shell.core()?.history.get_conversation(&id).await?.into())
}

#[tauri::command]
pub async fn set_current_leaf(
    shell: State<'_, Shell>,
    conversation_id: String,
    message_id: String,
) -> ApiResult<()> {
    let history = &shell.core()?.history;
    history
        .set_current_leaf(&conversation_id, &message_id)
        .await?;
    Ok(())
}

/// Deletes the message and every reply below it.
#[tauri::command]
pub async fn delete_message(shell: State<'_, Shell>, id: String) -> ApiResult<()> {
    shell.core()?.history.delete_branch(&id).await?;
    Ok(())
}

#[tauri::command]
pub async fn delete_conversation(shell: State<'_, Shell>, id: String) -> ApiResult<()> {
    shell.core()?.history.delete_conversation(&id).await?;
    Ok(())
}

#[tauri::command]
pub async fn rename_conversation(
    shell: State<'_, Shell>,
    id: String,
    title: String,
) -> ApiResult<()> {
    shell.core()?.history.rename(&id, &title).await?;
    Ok(())
}

#[tauri::command]
pub async fn search(
    shell: State<'_, Shell>,
    query: String,
    include_reasoning: bool,
) -> ApiResult<Vec<SearchHitDto>> {
    let q = SearchQuery {
        include_reasoning,
        ..SearchQuery::new(query)
    };
    let hits = shell.core()?.history.search(&q).await?;
    Ok(hits.into_iter().map(Into::into).collect())
}

#[tauri::command]
pub async fn export_conversation(
    shell: State<'_, Shell>,
    id: String,
    format: String,
) -> ApiResult<String> {
    let format: ExportFormat = format.parse().map_err(ApiError::invalid_input)?;
    let history = &shell.core()?.history;
    Ok(history
        .export(&ExportScope::Conversation(id), format)
        .await?)
}

/// Writes one conversation (or all, when `id` is absent) to the file the user picked.
#[tauri::command]
pub async fn export_history_file(
    shell: State<'_, Shell>,
    id: Option<String>,
    format: String,
    path: String,
) -> ApiResult<ExportFileReport> {
    let format: ExportFormat = format.parse().map_err(ApiError::invalid_input)?;
    let scope = id.map_or(ExportScope::All, ExportScope::Conversation);
    let history = &shell.core()?.history;
    Ok(history
        .export_to_file(&scope, format, std::path::Path::new(&path))
        .await?)
}

#[tauri::command]
pub async fn import_history_file(shell: State<'_, Shell>, path: String) -> ApiResult<ImportReport> {
    let history = &shell.core()?.history;
    Ok(history.import_file(std::path::Path::new(&path)).await?)
}

#[tauri::command]
pub async fn list_presets(shell: State<'_, Shell>) -> ApiResult<Vec<Preset>> {
    Ok(shell.core()?.history.list_presets().await?)
}

/// Creates the preset or replaces the settings of the one with that name.
#[tauri::command]
pub async fn save_preset(
    shell: State<'_, Shell>,
    name: String,
    settings: ChatSettings,
) -> ApiResult<Preset> {
    Ok(shell.core()?.history.save_preset(&name, &settings).await?)
}

#[tauri::command]
pub async fn rename_preset(shell: State<'_, Shell>, from: String, to: String) -> ApiResult<()> {
    Ok(shell.core()?.history.rename_preset(&from, &to).await?)
}

#[tauri::command]
pub async fn delete_preset(shell: State<'_, Shell>, name: String) -> ApiResult<()> {
    Ok(shell.core()?.history.delete_preset(&name).await?)
}

#[tauri::command]
pub async fn app_info(shell: State<'_, Shell>) -> ApiResult<AppInfoDto> {
    let lib = &shell.library;
    Ok(AppInfoDto {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        data_dir: lib.root().display().to_string(),
        models_dirs: lib
            .search_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect(),
    })
}
