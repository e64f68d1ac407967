//! The local OpenAI-compatible API server, switched on and off from the app's settings.
//! The server itself is `conclave_core::api::ApiServer` (what `conclave serve` runs); here it
//! runs on the app's own `Arc<Conclave>`, so a model loaded in the window is the one the
//! API answers with, and vice versa.
//!
//! Persistence is on this side, not in the UI's localStorage: the switch lives in
//! `app-settings.json` under the data root, and `resume` starts the server as the app
//! starts, before (and whether or not) the window opens its settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conclave_core::api::{ApiConfig, ApiServeError, ApiServer};
use conclave_core::session::Conclave;
use serde::{Deserialize, Serialize};
use tauri::State;
use tokio::sync::Mutex;
use ts_rs::TS;

use crate::commands::Shell;
use crate::error::{ApiError, ApiResult};

/// The file, under the data root, that holds the app's own (not per-chat) settings.
pub const APP_SETTINGS_FILE: &str = "app-settings.json";

/// What the user chose for the server. Off by default: nothing listens unless asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct ApiServerSettings {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// None = no key (allowed on loopback only; the core enforces it).
    pub api_key: Option<String>,
    pub save_history: bool,
}

impl Default for ApiServerSettings {
    fn default() -> Self {
        let core = ApiConfig::default();
        Self {
            enabled: false,
            host: core.host,
            port: core.port,
            api_key: None,
            save_history: core.save_history,
        }
    }
}

/// The whole `app-settings.json`; a struct so later app-wide settings join without a
/// format change. Unknown keys are ignored, missing ones take their defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct AppSettings {
    api_server: ApiServerSettings,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "ApiServerStatus")]
pub struct ApiServerStatusDto {
    pub running: bool,
    /// `http://HOST:PORT/v1` while running.
    pub base_url: Option<String>,
    /// Why the server is not running although it is switched on (port in use, no key…).
    pub error: Option<ApiError>,
    /// The saved choices, so the settings form shows them after a restart.
    pub settings: ApiServerSettings,
}

struct Inner {
    server: Option<ApiServer>,
    settings: ApiServerSettings,
    error: Option<ApiError>,
}

/// Managed state: the running server, if any. A tokio mutex because starting and stopping
/// await, and two quick toggles must not race to bind the same port.
pub struct ApiServerState {
    inner: Mutex<Inner>,
    file: PathBuf,
}

impl ApiServerState {
    /// Reads the saved settings from `data_root`. A damaged file is logged and replaced by
    /// defaults (server off) rather than stopping the app from opening.
    pub fn load(data_root: &Path) -> Self {
        let file = data_root.join(APP_SETTINGS_FILE);
        // It holds the API key: owner-only, also when an older version wrote it 0644.
        if let Err(e) = conclave_core::files::restrict_file(&file) {
            tracing::warn!(file = %file.display(), "could not make the app settings private: {e}");
        }
        let settings = match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<AppSettings>(&bytes) {
                Ok(s) => s.api_server,
                Err(e) => {
                    tracing::warn!(file = %file.display(), "ignoring unreadable app settings: {e}");
                    ApiServerSettings::default()
                }
            },
            Err(_) => ApiServerSettings::default(),
        };
        Self {
            inner: Mutex::new(Inner {
                server: None,
                settings,
                error: None,
            }),
            file,
        }
    }

    /// Starts the server at app start when it was left switched on.
    pub async fn resume(&self, core: Result<Arc<Conclave>, ApiError>) {
        let mut inner = self.inner.lock().await;
        if !inner.settings.enabled {
            return;
        }
        let settings = inner.settings.clone();
        apply(&mut inner, settings, core).await;
        if let Some(e) = &inner.error {
            tracing::warn!("the API server did not start again: {}", e.message);
        }
    }

    fn save(&self, settings: &ApiServerSettings) -> ApiResult<()> {
        let body = serde_json::to_vec_pretty(&AppSettings {
            api_server: settings.clone(),
        })
        .map_err(|e| ApiError::new("settings_write_failed", e.to_string()))?;
        conclave_core::files::write_private_atomic(&self.file, &body).map_err(|e| {
            ApiError::new(
                "settings_write_failed",
                format!("could not save {}: {e}", self.file.display()),
            )
        })
    }
}

fn status(inner: &Inner) -> ApiServerStatusDto {
    ApiServerStatusDto {
        running: inner.server.is_some(),
        base_url: inner.server.as_ref().map(ApiServer::base_url),
        error: inner.error.clone(),
        settings: inner.settings.clone(),
    }
}

/// The core's refusal names the CLI flag; in the app the key is a field.
fn start_error(err: ApiServeError) -> ApiError {
    match err {
        ApiServeError::KeyRequired(addr) => ApiError::new(
            "api_key_required",
            format!(
                "Refusing to listen on {addr} without an API key: anyone on the network could \
                 use your models. Set an API key, or bind 127.0.0.1."
            ),
        ),
        other => ApiError::from(other),
    }
}

/// Stops whatever runs, then starts with `settings` if they say so. Failures to start are
/// kept in `inner.error` (shown next to the switch), not returned: the choice still stands.
async fn apply(
    inner: &mut Inner,
    settings: ApiServerSettings,
    core: Result<Arc<Conclave>, ApiError>,
) {
    if let Some(server) = inner.server.take() {
        if let Err(e) = server.shutdown().await {
            tracing::warn!("the API server stopped with an error: {e}");
        }
    }
    inner.error = None;
    inner.settings = settings.clone();
    if !settings.enabled {
        return;
    }
    let core = match core {
        Ok(c) => c,
        Err(e) => {
            inner.error = Some(e);
            return;
        }
    };
    let config = ApiConfig {
        host: settings.host,
        port: settings.port,
        api_key: settings.api_key,
        save_history: settings.save_history,
        ..ApiConfig::default()
    };
    match ApiServer::start(config, core).await {
        Ok(server) => inner.server = Some(server),
        Err(e) => inner.error = Some(start_error(e)),
    }
}

#[tauri::command]
pub async fn api_server_status(state: State<'_, ApiServerState>) -> ApiResult<ApiServerStatusDto> {
    Ok(status(&*state.inner.lock().await))
}

/// Saves the choice and (re)starts or stops the server to match it. `port` is taken wide so
/// that an out-of-range number is our `invalid_input`, not a deserialisation error.
#[tauri::command]
pub async fn set_api_server(
    shell: State<'_, Shell>,
    state: State<'_, ApiServerState>,
    enabled: bool,
    host: String,
    port: i64,
    api_key: Option<String>,
    save_history: bool,
) -> ApiResult<ApiServerStatusDto> {
    let host = host.trim().to_owned();
    if host.is_empty() {
        return Err(ApiError::invalid_input(
            "the bind address must not be empty",
        ));
    }
    if host.parse::<SocketAddr>().is_ok() || host.contains('/') {
        return Err(ApiError::invalid_input(
            "give the address without a port or path (the port has its own field)",
        ));
    }
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::invalid_input("the port must be between 1 and 65535"))?;
    // A blank key field means "no key"; the core refuses a key that is only spaces.
    let api_key = api_key
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());
    let settings = ApiServerSettings {
        enabled,
        host,
        port,
        api_key,
        save_history,
    };
    let mut inner = state.inner.lock().await;
    state.save(&settings)?;
    apply(&mut inner, settings, shell.core().cloned()).await;
    Ok(status(&inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_off_on_loopback_8080() {
        let s = ApiServerSettings::default();
        assert!(!s.enabled);
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 8080));
        assert!(s.api_key.is_none() && !s.save_history);
    }

    #[test]
    fn settings_round_trip_through_the_file_and_survive_damage(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir =
            std::env::temp_dir().join(format!("conclave-app-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let state = ApiServerState::load(&dir);
        let chosen = ApiServerSettings {
            enabled: true,
            host: "0.0.0.0".into(),
            port: 9123,
            api_key: Some("k".into()),
            save_history: true,
        };
        state.save(&chosen)?;
        // The file holds the key: owner-only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.join(APP_SETTINGS_FILE);
            assert_eq!(
                std::fs::metadata(&file)?.permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
            ApiServerState::load(&dir);
            assert_eq!(
                std::fs::metadata(&file)?.permissions().mode() & 0o777,
                0o600
            );
        }
        let again = ApiServerState::load(&dir);
        assert_eq!(again.inner.try_lock()?.settings, chosen);
        std::fs::write(dir.join(APP_SETTINGS_FILE), b"{not json")?;
        let damaged = ApiServerState::load(&dir);
        assert_eq!(
            damaged.inner.try_lock()?.settings,
            ApiServerSettings::default()
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
