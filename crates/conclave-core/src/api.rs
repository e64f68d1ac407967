//! A local OpenAI-compatible HTTP API over the core: `GET /v1/models`,
//! `POST /v1/chat/completions` (streaming and not), `GET /health`.
//!
//! The same server runs behind `conclave serve` and behind the desktop app's settings
//! switch ([`ApiServer::start`] / [`ApiServer::shutdown`]).
//!
//! Security decisions:
//! - It binds 127.0.0.1 unless told otherwise; any non-loopback address requires an API key
//!   ([`ApiServeError::KeyRequired`]), since the models and (optionally) the history are
//!   private.
//! - With a key set, every `/v1` request needs `Authorization: Bearer KEY` (compared in
//!   constant time); `/health` stays open so supervisors can probe it.
//! - Browsers: without a key, only pages served from loopback origins (`http://localhost:*`,
//!   `http://127.0.0.1:*`, `http://[::1]:*`), the app's own web view (`tauri://localhost`,
//!   `http://tauri.localhost`) and the origins listed in [`ApiConfig::cors_origins`] may
//!   call the API; other `NAME.localhost` origins need the key, since any local server can
//!   claim one. A request carrying any other `Origin` is refused with 403, not merely left
//!   unreadable by CORS, so a web page the user happens to visit cannot spend their CPU on
//!   generations; so is one the browser marks `Sec-Fetch-Site: cross-site` without an
//!   `Origin` (an `<img>` or `<script>` pointed at the API). POST bodies must be
//!   `application/json` (415 otherwise), which forces a CORS preflight on any browser page.
//!   With a key set, any origin is allowed: the key is the gate. On a loopback bind the
//!   `Host` header must name a loopback host too, which defeats DNS-rebinding pages.
//! - Request bodies are capped ([`ApiConfig::max_body_bytes`], 413 beyond it) and timed
//!   ([`ApiConfig::body_timeout`], 408); request heads must arrive within
//!   [`ApiConfig::header_read_timeout`]; open connections are capped
//!   ([`ApiConfig::max_connections`]). Stopping or dropping the server ends its connections
//!   and so cancels the generations they were streaming (see `serve`).
//! - No error message carries a file path, a worker log line or a backtrace: core errors
//!   are mapped to fixed messages and stable codes in [`error`].

mod chat;
mod error;
mod grammar;
mod guard;
mod models;
mod record;
mod serve;
mod types;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::session::Conclave;

pub use error::ApiError;
pub use grammar::{json_object_grammar, schema_to_gbnf, SchemaError};

/// How long a shutdown waits for answers still streaming before it drops them (which
/// cancels their generations).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How the API server runs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address or host name to bind; loopback unless the user chooses otherwise.
    pub host: String,
    /// 0 picks a free port (see [`ApiServer::addr`]).
    pub port: u16,
    /// Required on non-loopback addresses; when set, `/v1` needs `Authorization: Bearer`.
    pub api_key: Option<String>,
    /// Save API exchanges to the history (off by default: API traffic is often scripted).
    pub save_history: bool,
    /// Models served in addition to the library's catalogue (`conclave serve --model`),
    /// addressable by file name; the first is used when a request's `model` is empty.
    pub models: Vec<PathBuf>,
    /// Draft models for speculative decoding: `(served model, its draft model)` (`conclave
    /// serve --model M --draft-model D`). A model loaded elsewhere in the process (the app)
    /// keeps the draft model it was loaded with.
    pub draft_models: Vec<(PathBuf, PathBuf)>,
    /// Context length models are loaded with; 0 = the engine's default.
    pub n_ctx: u32,
    pub threads: Option<u32>,
    /// llama.cpp RPC servers the served models are spread over.
    pub rpc: Vec<String>,
    pub gpu_layers: crate::protocol::GpuLayers,
    pub max_body_bytes: usize,
    /// Requests waiting on or running in one model beyond this get 429.
    pub max_queue_per_model: usize,
    /// `max_tokens` when a request sets none (generation also ends when the context fills).
    pub default_max_tokens: u32,
    /// Extra browser origins allowed without an API key (e.g. `https://my-ui.example`).
    pub cors_origins: Vec<String>,
    /// Open connections; at the limit the oldest one that has sent no request is closed.
    pub max_connections: usize,
    /// A request's head (line and headers) must arrive within this, also for the next
    /// request on a kept-alive connection: a trickling client cannot hold a socket.
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this (408 otherwise).
    pub body_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            save_history: false,
            models: Vec::new(),
            draft_models: Vec::new(),
            n_ctx: 0,
            threads: None,
            rpc: Vec::new(),
            gpu_layers: crate::protocol::GpuLayers::Auto,
            max_body_bytes: 4 * 1024 * 1024,
            max_queue_per_model: 16,
            default_max_tokens: 4096,
            cors_origins: Vec::new(),
            // Well under the usual 1024 file descriptors a process starts with.
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiServeError {
    #[error("refusing to listen on {0} without an API key: anyone on the network could use your models. Set --api-key (or bind 127.0.0.1)")]
    KeyRequired(SocketAddr),
    #[error("the API key must not be empty")]
    EmptyKey,
    #[error("the API key is too weak: use at least {MIN_KEY_LEN} characters, {MIN_KEY_DISTINCT} of them different, or a generated key (`conclave serve --generate-api-key`, or Generate in the app's settings)")]
    WeakKey,
    #[error("cannot resolve host {0}")]
    BadHost(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server stopped: {0}")]
    Server(#[from] std::io::Error),
}

impl crate::error::ErrorCode for ApiServeError {
    fn code(&self) -> &'static str {
        match self {
            ApiServeError::KeyRequired(_) => "api_key_required",
            ApiServeError::EmptyKey => "api_key_empty",
            ApiServeError::WeakKey => "api_key_weak",
            ApiServeError::BadHost(_) => "api_bad_host",
            ApiServeError::Bind { .. } => "api_bind_failed",
            ApiServeError::Server(_) => "api_server_failed",
        }
    }
}

/// The shortest API key accepted. A key guards the user's models (and possibly their
/// history) from the network; it is compared in constant time but can be guessed if short.
pub const MIN_KEY_LEN: usize = 16;
/// Distinct characters a key needs: "aaaaaaaaaaaaaaaa" is long and guessable.
pub const MIN_KEY_DISTINCT: usize = 8;

/// A new API key: 128 bits from a cryptographically secure generator (rand's ThreadRng,
/// seeded from the OS), as 32 lowercase hex digits.
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// Refuses keys that are blank or too weak to stand between the network and the models.
pub fn check_api_key(key: &str) -> Result<(), ApiServeError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(ApiServeError::EmptyKey);
    }
    let distinct: std::collections::HashSet<char> = key.chars().collect();
    if key.chars().count() < MIN_KEY_LEN || distinct.len() < MIN_KEY_DISTINCT {
        return Err(ApiServeError::WeakKey);
    }
    Ok(())
}

/// Shared by every request.
pub(crate) struct ApiState {
    pub app: Arc<Conclave>,
    pub config: ApiConfig,
    pub queues: models::Queues,
    pub loopback: bool,
}

/// A running server. Dropping it without [`shutdown`](Self::shutdown) ends it at once,
/// connections and the answers they are streaming included.
pub struct ApiServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Binds (port 0 picks a free one) and starts serving in the background.
    pub async fn start(config: ApiConfig, app: Arc<Conclave>) -> Result<Self, ApiServeError> {
        if let Some(key) = config.api_key.as_deref() {
            check_api_key(key)?;
        }
        let addr = resolve(&config.host, config.port).await?;
        let loopback = addr.ip().is_loopback();
        if !loopback {
            if config.api_key.is_none() {
                return Err(ApiServeError::KeyRequired(addr));
            }
            tracing::warn!(%addr, "the API server listens beyond this machine; requests need the API key");
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ApiServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ApiState {
            app,
            config,
            queues: Default::default(),
            loopback,
        });
        let limits = serve::ConnLimits {
            max_connections: state.config.max_connections.max(1),
            header_read_timeout: state.config.header_read_timeout,
            shutdown_grace: SHUTDOWN_GRACE,
        };
        let router = router(state);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve::run(listener, router, limits, stopped));
        tracing::info!(%addr, "API server listening");
        Ok(Self {
            addr,
            stop,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v1`, what OpenAI clients take as their base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stops accepting connections, gives answers in flight [`SHUTDOWN_GRACE`] to end,
    /// then ends their connections (cancelling their generations). Returns once they are
    /// gone.
    pub async fn shutdown(mut self) -> Result<(), ApiServeError> {
        let _ = self.stop.send(true);
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        // The task ends the connections itself after the grace; this is a backstop.
        if tokio::time::timeout(SHUTDOWN_GRACE * 2, &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
        Ok(())
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        // Aborting the server task drops its set of connections, which aborts them.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves until Ctrl-C (or SIGTERM), then shuts down.
pub async fn serve(config: ApiConfig, app: Arc<Conclave>) -> Result<(), ApiServeError> {
    let server = ApiServer::start(config, app).await?;
    wait_for_signal().await;
    tracing::info!("shutting down the API server");
    server.shutdown().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ApiServeError> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| ApiServeError::BadHost(host.to_owned()))?;
    addrs
        .next()
        .ok_or_else(|| ApiServeError::BadHost(host.to_owned()))
}

fn router(state: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route("/models", get(models::list))
        .route("/models/{*id}", get(models::retrieve))
        .route("/chat/completions", post(chat::completions))
        .route_layer(axum::middleware::from_fn(guard::require_json))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::require_key,
        ));
    Router::new()
        .route("/health", get(health))
        .nest("/v1", v1)
        .fallback(guard::unknown_route)
        .method_not_allowed_fallback(guard::method_not_allowed)
        // Layers run outside-in from the last added: the limit's plain-text 413 passes
        // through the reshaping layer added after it.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            state.config.max_body_bytes,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            guard::shape_limit_errors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check_origin_and_host,
        ))
        .layer(guard::cors(&state))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn health(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
) -> axum::Json<serde_json::Value> {
    let loaded = state.app.loaded().await.len();
    axum::Json(serde_json::json!({ "status": "ok", "models_loaded": loaded }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_have_a_minimum_strength() {
        for weak in [
            "secret",
            "sekrit",
            "test-key-0f3a",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababab",
        ] {
            assert!(
                matches!(check_api_key(weak), Err(ApiServeError::WeakKey)),
                "{weak}"
            );
        }
        assert!(matches!(check_api_key("   "), Err(ApiServeError::EmptyKey)));
        check_api_key("correct-horse-battery-staple").unwrap();
        let err = check_api_key("hunter2").unwrap_err().to_string();
        assert!(
            err.contains("16 characters") && err.contains("--generate-api-key"),
            "{err}"
        );
    }

    #[test]
    fn generated_keys_are_128_bits_and_pass() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        check_api_key(&a).unwrap();
    }
}
