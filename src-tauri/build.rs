// Every IPC command the UI may call. Each gets an `allow-<name>` permission generated from
// this list; `tests/ipc_contract.rs` keeps it equal to `generate_handler!`, the capability
// file and the UI's wrappers.
const COMMANDS: &[&str] = &[
    "list_models",
    "open_model_file",
    "load_model",
    "start_chat",
    "warm_prompt",
    "cancel",
    "replay_answer",
    "list_conversations",
    "get_conversation",
    "set_current_leaf",
    "delete_message",
    "delete_conversation",
    "rename_conversation",
    "search",
    "export_conversation",
    "export_history_file",
    "import_history_file",
    "list_presets",
    "save_preset",
    "rename_preset",
    "delete_preset",
    "app_info",
    "start_compare",
    "cancel_compare",
    "vote_compare",
    "compare_diff",
    "leaderboard",
    "leaderboard_csv",
    "model_details",
    "import_model",
    "download_model",
    "cancel_download",
    "resume_download",
    "partial_downloads",
    "delete_partial_download",
    "remove_model",
    "rename_model",
    "set_model_gpu_layers",
    "remote_devices",
    "set_remote_devices",
    "api_server_status",
    "set_api_server",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri build script failed");
}
