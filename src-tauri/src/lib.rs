//! The Conclave desktop shell: a window, the IPC commands and nothing else. All behaviour
//! lives in `conclave-core`, which knows nothing about Tauri.

pub mod api_commands;
pub mod bindings;
pub mod commands;
pub mod compare_commands;
pub mod dto;
pub mod error;
pub mod models_commands;
pub mod rendering;

use conclave_core::models::Library;
use conclave_core::session::Conclave;

use tauri::Manager;

use crate::api_commands::ApiServerState;
use crate::commands::Shell;
use crate::error::ApiError;

/// Expands to the handler list; a macro so that `run` and the tests share one list.
#[macro_export]
macro_rules! conclave_handlers {
    () => {
        tauri::generate_handler![
            $crate::commands::list_models,
            $crate::commands::open_model_file,
            $crate::commands::load_model,
            $crate::commands::start_chat,
            $crate::commands::warm_prompt,
            $crate::commands::cancel,
            $crate::commands::replay_answer,
            $crate::commands::list_conversations,
            $crate::commands::get_conversation,
            $crate::commands::set_current_leaf,
            $crate::commands::delete_message,
            $crate::commands::delete_conversation,
            $crate::commands::rename_conversation,
            $crate::commands::search,
            $crate::commands::export_conversation,
            $crate::commands::export_history_file,
            $crate::commands::import_history_file,
            $crate::commands::list_presets,
            $crate::commands::save_preset,
            $crate::commands::rename_preset,
            $crate::commands::delete_preset,
            $crate::commands::app_info,
            $crate::compare_commands::start_compare,
            $crate::compare_commands::cancel_compare,
            $crate::compare_commands::vote_compare,
            $crate::compare_commands::compare_diff,
            $crate::compare_commands::leaderboard,
            $crate::compare_commands::leaderboard_csv,
            $crate::models_commands::model_details,
            $crate::models_commands::import_model,
            $crate::models_commands::download_model,
            $crate::models_commands::cancel_download,
            $crate::models_commands::resume_download,
            $crate::models_commands::partial_downloads,
            $crate::models_commands::delete_partial_download,
            $crate::models_commands::remove_model,
            $crate::models_commands::rename_model,
            $crate::models_commands::set_model_gpu_layers,
            $crate::models_commands::remote_devices,
            $crate::models_commands::set_remote_devices,
            $crate::api_commands::api_server_status,
            $crate::api_commands::set_api_server,
        ]
    };
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Opens the data root. A failure (no worker binary, a damaged database) is kept and
/// reported by every command that needs the core, so the window still opens and says why.
fn open_core() -> Shell {
    let conclave = tauri::async_runtime::block_on(Conclave::open_default()).map_err(|e| {
        tracing::error!("could not open Conclave's data: {e}");
        ApiError::from(e)
    });
    Shell::new(conclave, Library::open_default())
}

/// When the process started, for the start-up figure (`bench/app-startup.sh`).
pub fn started_at() -> std::time::Instant {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *START.get_or_init(std::time::Instant::now)
}

pub fn run() {
    rendering::paint_without_gl_when_there_is_no_gpu();
    started_at();
    init_tracing();
    let shell = open_core();
    tracing::info!(data = %shell.library().root().display(), "Conclave started");
    let api_server = ApiServerState::load(shell.library().root());
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .manage(shell)
        .manage(std::sync::Arc::new(compare_commands::CompareRuns::default()))
        .manage(std::sync::Arc::new(models_commands::Downloads::default()))
        .manage(api_server)
        .setup(|app| {
            // The API server left switched on starts again with the app, in the background
            // so a slow bind never holds up the window.
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                let core = handle.state::<Shell>().core().cloned();
                handle.state::<ApiServerState>().resume(core).await;
            });
            Ok(())
        })
        .invoke_handler(conclave_handlers!())
        .run(tauri::generate_context!());
    if let Err(e) = result {
        tracing::error!("the window could not start: {e}");
        std::process::exit(1);
    }
}
