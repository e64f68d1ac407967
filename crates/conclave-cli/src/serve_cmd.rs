//! `conclave serve`: the local OpenAI-compatible API.

use std::io::Write;
use std::path::PathBuf;

use conclave_core::api::{ApiConfig, ApiServer};
use conclave_core::engine::LoadOptions;
use conclave_core::session::Conclave;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback requires --api-key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port; 0 picks a free one (the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every /v1 request.
    /// At least 16 characters; see --generate-api-key.
    #[arg(long, env = "CONCLAVE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Generate a random 128-bit key for this run and print it on stderr (instead of
    /// --api-key).
    #[arg(long, conflicts_with = "api_key")]
    pub generate_api_key: bool,
    /// Models to load now and serve by file name (repeatable; a path or a name in the model
    /// folders). The first answers requests whose `model` is empty. Every model in the
    /// library is served either way, loaded on first use.
    #[arg(long)]
    pub model: Vec<String>,
    /// A draft model for speculative decoding (same vocabulary), loaded with the `--model`
    /// in the same position: the first `--draft-model` drafts for the first `--model`.
    /// Requests choose `"speculative": "draft"` (or `auto`, greedy answers) to use it.
    #[arg(long)]
    pub draft_model: Vec<String>,
    /// Save API exchanges to the chat history (off by default).
    #[arg(long)]
    pub save_history: bool,
    /// Context length models are loaded with (default: min(4096, the model's)).
    #[arg(long, default_value_t = 0)]
    pub ctx: u32,
    #[arg(long)]
    pub threads: Option<u32>,
    /// A browser origin allowed to call the API without a key (repeatable), beyond the
    /// localhost ones.
    #[arg(long)]
    pub cors_origin: Vec<String>,
    /// Requests waiting on one model beyond this are refused with 429.
    #[arg(long, default_value_t = 16)]
    pub max_queue: usize,
    #[command(flatten)]
    pub placement: crate::PlacementArgs,
}

pub async fn run(mut args: ServeArgs) -> anyhow::Result<()> {
    if args.generate_api_key {
        let key = conclave_core::api::generate_api_key();
        eprintln!(
            "conclave serve: API key for this run (send it as `Authorization: Bearer KEY`): {key}"
        );
        args.api_key = Some(key);
    }
    args.api_key = args.api_key.filter(|k| !k.is_empty());
    // Refused before any model loads, not after.
    if let Some(key) = &args.api_key {
        conclave_core::api::check_api_key(key)?;
    }
    let models: Vec<PathBuf> = args
        .model
        .iter()
        .map(|m| crate::resolve_model(m))
        .collect::<anyhow::Result<_>>()?;
    if args.draft_model.len() > models.len() {
        anyhow::bail!(
            "{} --draft-model for {} --model: each draft model drafts for the --model in the same position",
            args.draft_model.len(),
            models.len()
        );
    }
    let draft_models: Vec<(PathBuf, PathBuf)> = models
        .iter()
        .zip(&args.draft_model)
        .map(|(m, d)| Ok((m.clone(), crate::resolve_model(d)?)))
        .collect::<anyhow::Result<_>>()?;
    let app = Conclave::open_default().await?;
    for path in &models {
        let opts = args.placement.apply(LoadOptions {
            n_ctx: args.ctx,
            threads: args.threads,
            draft_model: draft_models
                .iter()
                .find(|(m, _)| m == path)
                .map(|(_, d)| d.clone()),
            ..LoadOptions::default()
        });
        app.load(path, opts, |_| {}).await?;
    }
    let config = ApiConfig {
        host: args.host,
        port: args.port,
        api_key: args.api_key,
        save_history: args.save_history,
        models,
        draft_models,
        n_ctx: args.ctx,
        threads: args.threads,
        rpc: args.placement.rpc.clone(),
        gpu_layers: args.placement.gpu_layers.unwrap_or_default(),
        max_queue_per_model: args.max_queue.max(1),
        cors_origins: args.cors_origin,
        ..ApiConfig::default()
    };
    let auth = config.api_key.is_some();
    let server = ApiServer::start(config, app.clone()).await?;
    if !server.addr().ip().is_loopback() {
        eprintln!(
            "conclave serve: warning: listening on {} — reachable from other machines (API key required)",
            server.addr()
        );
    }
    // One line on stdout, so scripts (and the tests) can start on port 0 and read the
    // address back.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.base_url())?;
        out.flush()?;
    }
    eprintln!(
        "conclave serve: OpenAI-compatible API at {}{}; history saving {}; Ctrl-C stops",
        server.base_url(),
        if auth { " (API key required)" } else { "" },
        if args.save_history { "on" } else { "off" },
    );
    wait_for_signal().await;
    eprintln!("conclave serve: stopping");
    server.shutdown().await?;
    for info in app.loaded().await {
        app.unload(&info.path).await;
    }
    app.history.close().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
