//! The engine client: starts one `conclave-worker` process per loaded model, renders chat
//! templates, splits reasoning from answers, and turns the worker's protocol events into
//! typed [`ChatEvent`]s with measured metrics.
//!
//! A worker that dies (a `GGML_ASSERT` abort, an out-of-memory kill, a segfault on a hostile
//! file, a `kill -9`) fails only its own requests with `worker_crashed`; the next request to
//! that model starts a fresh worker.

mod measure;
mod prompt;
mod worker;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::events::{
    ChatEvent, ContextOverflow, Message, Metrics, SamplingParams, SpeculativeMode, StopReason,
    ThinkMode, Usage,
};
use crate::metrics::{self, EnergyMeter};
use crate::protocol::{
    self, BenchRequest, BenchResult, DoneInfo, GenerateRequest, WarmInfo, WarmRequest,
    WorkerErrorCode, WorkerEvent, WorkerRequest,
};
use crate::reasoning::{self, ReasoningFormat, Splitter};
use crate::settings::DEFAULT_N_CTX;
use crate::template::ChatTemplate;

use measure::{AnswerFacts, Timeline};
use prompt::{Prepared, WarmUntil};
use worker::{tail_hint, Worker, WorkerSpec};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the worker program (conclave-worker) was not found next to {0}; build it with `cargo build -p conclave-worker` or set CONCLAVE_WORKER")]
    WorkerNotFound(String),
    #[error("the worker program at {bin} speaks protocol {worker}, this app {app}: rebuild it (`cargo build -p conclave-worker`)")]
    ProtocolMismatch { bin: String, worker: u32, app: u32 },
    #[error("{0}")]
    InvalidModel(#[from] crate::gguf::GgufError),
    #[error("could not load {path}: {reason}")]
    LoadFailed {
        path: String,
        reason: String,
        last_stderr: String,
    },
    #[error("the worker for {model} crashed ({cause}){}", tail_hint(.last_stderr))]
    WorkerCrashed {
        model: String,
        cause: String,
        signal: Option<i32>,
        last_stderr: String,
    },
    #[error("the conversation does not fit the context: {detail}")]
    ContextOverflow { detail: String },
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error("{code}: {message}")]
    Worker {
        code: WorkerErrorCode,
        message: String,
    },
    #[error("the RPC server {} stopped answering while {model} had layers on it ({cause}); this answer is lost. Load the model again without it (leave it out of --rpc / Remote devices), or restart `conclave rpc-server` there", .hosts.join(", "))]
    RpcLost {
        model: String,
        hosts: Vec<String>,
        cause: String,
    },
    #[error("could not list devices: {0}")]
    Devices(String),
    #[error("could not talk to the worker: {0}")]
    Io(#[from] std::io::Error),
}

impl crate::error::ErrorCode for EngineError {
    fn code(&self) -> &'static str {
        match self {
            EngineError::WorkerNotFound(_) => "worker_not_found",
            EngineError::ProtocolMismatch { .. } => "worker_mismatch",
            EngineError::InvalidModel(_) => "invalid_model",
            // The same names as the worker's codes for the same failures: clients match
            // one spelling whether the engine or the worker noticed.
            EngineError::LoadFailed { .. } => WorkerErrorCode::LoadFailed.as_str(),
            EngineError::WorkerCrashed { .. } => WorkerErrorCode::WorkerCrashed.as_str(),
            EngineError::ContextOverflow { .. } => WorkerErrorCode::ContextOverflow.as_str(),
            EngineError::Template(e) => crate::error::ErrorCode::code(e),
            EngineError::Worker { code, .. } => code.as_str(),
            EngineError::RpcLost { .. } => WorkerErrorCode::RpcLost.as_str(),
            EngineError::Devices(_) => "devices_failed",
            EngineError::Io(_) => "io",
        }
    }
}

/// Finds the worker binary: `CONCLAVE_WORKER`, else next to the running executable (or one
/// folder up, which is where cargo puts binaries relative to test executables in `deps/`).
pub fn find_worker() -> Result<PathBuf, EngineError> {
    if let Some(p) = std::env::var_os("CONCLAVE_WORKER") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let name = format!("conclave-worker{}", std::env::consts::EXE_SUFFIX);
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(&name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(EngineError::WorkerNotFound(exe.display().to_string()))
}

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Context length in tokens; 0 = the smaller of 4096 and the model's training context.
    pub n_ctx: u32,
    /// Threads; None = all physical cores.
    pub threads: Option<u32>,
    /// A smaller model with the same vocabulary that drafts tokens for this one
    /// (speculative decoding). It loads in the same worker; a model with another
    /// vocabulary is refused with a clear error.
    pub draft_model: Option<PathBuf>,
    /// TCP ports the worker may connect to, for llama.cpp RPC servers (#14). Empty (the
    /// default): the worker has no network at all. Given: its sandbox allows TCP stream
    /// sockets and, where the kernel has Landlock ABI 4, connects to these ports only (to
    /// any address: neither seccomp nor Landlock can filter by address); UDP, raw sockets
    /// and so DNS stay denied, so endpoints must be given as IP addresses.
    pub allow_tcp_ports: Vec<u16>,
    /// llama.cpp RPC servers (`host:port`) whose devices take layers of the model.
    pub rpc: Vec<String>,
    /// How long a worker with layers on RPC servers may go without a word while an answer
    /// is due before it is stopped and the answer fails naming the servers; None: two
    /// minutes, or `CONCLAVE_RPC_STALL_SECS`.
    pub rpc_stall: Option<std::time::Duration>,
    /// Layers on GPU and RPC devices: auto (llama.cpp's fit), a count, or 0 for the CPU.
    pub gpu_layers: protocol::GpuLayers,
}

/// What a loaded model reports about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub name: String,
    pub architecture: String,
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    pub n_params: u64,
    pub size_bytes: u64,
    pub threads: u32,
    pub load_ms: f64,
    pub has_chat_template: bool,
    /// The template used when a request names none.
    pub template_name: String,
    /// The reasoning format detected from the chat template.
    pub reasoning_format: String,
    /// Whether thinking Off can be honoured with this template; the UI offers Off only
    /// then, and shows `thinking_off_reason` otherwise.
    pub thinking_off_available: bool,
    pub thinking_off_reason: Option<String>,
    pub pid: u32,
    /// The draft model's name, when one is loaded with this model.
    pub draft_model: Option<String>,
    /// What confines the worker process (see `conclave-worker`'s sandbox module).
    pub sandbox: crate::protocol::SandboxStatus,
    /// Where the layers went (CPU first), as llama.cpp reported while loading.
    pub devices: Vec<protocol::DeviceLayers>,
    /// Layers on GPU and RPC devices.
    pub gpu_layers: u32,
    /// How that count was chosen ("fit", "set", "cpu only"…).
    pub gpu_layers_source: String,
    /// Weights, KV cache and compute buffers per device: host RAM apart from VRAM and
    /// the memory of RPC servers.
    pub memory: Vec<protocol::MemoryUse>,
}

/// `CPU: 16 layers, rpc 127.0.0.1:50052: 15 layers`: where a model runs, for cost lines,
/// bench and `models info`. Empty when the CPU holds every layer (nothing to point out).
pub fn placement_label(devices: &[protocol::DeviceLayers]) -> String {
    if devices.iter().all(|d| d.device.kind == "cpu") {
        return String::new();
    }
    devices
        .iter()
        .map(|d| format!("{}: {} layers", d.device.label(), d.layers))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The RPC servers as `ip:port`. The worker's sandbox allows TCP to the servers' ports but
/// no name lookups (no DNS, no /etc/hosts), so host names are resolved here, by the app.
async fn resolve_rpc(rpc: &[String]) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::with_capacity(rpc.len());
    for endpoint in rpc {
        let (host, port) = protocol::parse_endpoint(endpoint).map_err(EngineError::Devices)?;
        if host.parse::<std::net::IpAddr>().is_ok() {
            out.push(format!("{host}:{port}"));
            continue;
        }
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.find(|a| a.is_ipv4()))
            .ok_or_else(|| {
                EngineError::Devices(format!(
                    "the RPC server {endpoint}: `{host}` has no IPv4 address (llama.cpp's RPC \
                     takes IPv4 only)"
                ))
            })?;
        out.push(addr.to_string());
    }
    Ok(out)
}

/// The TCP ports the worker's sandbox lets it connect to: its RPC servers' and any asked for.
fn worker_tcp_ports(allowed: &[u16], rpc: &[String]) -> Vec<u16> {
    let mut ports = allowed.to_vec();
    for port in rpc
        .iter()
        .filter_map(|e| protocol::parse_endpoint(e).ok().map(|(_, p)| p))
    {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// The devices a worker sees, with those of the given RPC servers: starts a worker that
/// lists them and exits.
pub async fn list_devices(
    worker_bin: &Path,
    rpc: &[String],
) -> Result<protocol::DeviceList, EngineError> {
    let rpc = resolve_rpc(rpc).await?;
    let rpc = rpc.as_slice();
    let mut cmd = tokio::process::Command::new(worker_bin);
    cmd.arg(protocol::ARG_LIST_DEVICES)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if !rpc.is_empty() {
        cmd.arg(protocol::ARG_RPC).arg(rpc.join(","));
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| EngineError::Devices("the worker did not answer within 60 s".into()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                EngineError::WorkerNotFound(worker_bin.display().to_string())
            }
            _ => EngineError::Io(e),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(list) = serde_json::from_str::<protocol::DeviceList>(line) {
            return Ok(list);
        }
        if let Ok(WorkerEvent::Error { message, .. }) = serde_json::from_str(line) {
            return Err(EngineError::Devices(message));
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(EngineError::Devices(format!(
        "the worker {}{}",
        match out.status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed".to_owned(),
        },
        tail_hint(&stderr)
    )))
}

/// This machine's devices (no RPC servers), listed by a worker the first time they are
/// asked for and kept: the Models screen estimates where each model's layers go from them
/// without starting a worker per model. Free memory is as it was at that listing. A failed
/// listing is not kept, so the next request tries again.
#[derive(Default)]
pub struct DeviceCache {
    list: tokio::sync::OnceCell<protocol::DeviceList>,
}

impl DeviceCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub async fn get(&self, engine: &Engine) -> Result<protocol::DeviceList, EngineError> {
        self.list
            .get_or_try_init(|| engine.devices(&[]))
            .await
            .cloned()
    }
}

/// Starts workers. Cancelling an answer goes through its [`CancelHandle`] (or dropping its
/// [`ChatStream`]); the engine keeps no list of answers.
#[derive(Clone)]
pub struct Engine {
    worker_bin: Arc<PathBuf>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Engine {
    pub fn new() -> Result<Self, EngineError> {
        Ok(Self::with_worker(find_worker()?))
    }

    pub fn with_worker(worker_bin: PathBuf) -> Self {
        Self {
            worker_bin: Arc::new(worker_bin),
        }
    }

    /// Runs `conclave-worker --sandbox-check`: the worker applies its sandbox as it would
    /// before loading `model`, then tries to read a file outside it, create one, connect to
    /// a loopback port that is listening, and open a UDP socket. Says what held.
    pub async fn sandbox_check(
        &self,
        model: Option<&Path>,
    ) -> Result<crate::protocol::SandboxCheck, EngineError> {
        // A listener, so a refused connect means the sandbox and not an empty port.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut cmd = tokio::process::Command::new(self.worker_bin.as_path());
        cmd.env_clear()
            .arg(crate::protocol::ARG_SANDBOX_CHECK)
            .arg(crate::protocol::ARG_CHECK_CONNECT)
            .arg(addr.to_string())
            .kill_on_drop(true);
        if let Some(m) = model {
            cmd.arg(crate::protocol::ARG_MODEL).arg(m);
        }
        let out = tokio::time::timeout(std::time::Duration::from_secs(20), cmd.output())
            .await
            .map_err(|_| std::io::Error::other("the sandbox check did not finish in 20 s"))??;
        drop(listener);
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.trim()).map_err(|e| {
            EngineError::Io(std::io::Error::other(format!(
                "the sandbox check printed no report ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        })
    }

    /// The worker program this engine starts.
    pub fn worker_bin(&self) -> &Path {
        &self.worker_bin
    }

    /// The devices a worker sees, with those of `rpc` servers.
    pub async fn devices(&self, rpc: &[String]) -> Result<protocol::DeviceList, EngineError> {
        list_devices(&self.worker_bin, rpc).await
    }

    /// Validates the GGUF header in Rust (no worker starts for a broken file), then starts
    /// a worker and waits for it to report the model loaded. `progress` gets 0.0..=1.0.
    pub async fn load(
        &self,
        path: impl AsRef<Path>,
        opts: LoadOptions,
        progress: impl FnMut(f32) + Send + 'static,
    ) -> Result<LoadedModel, EngineError> {
        let path = path.as_ref().to_path_buf();
        let header = crate::gguf::read_header(&path)?;
        if let Some(draft) = &opts.draft_model {
            crate::gguf::read_header(draft)?;
        }
        let n_ctx = match opts.n_ctx {
            0 => header.context_length().map_or(DEFAULT_N_CTX, |c| {
                u32::try_from(c.min(u64::from(DEFAULT_N_CTX))).unwrap_or(DEFAULT_N_CTX)
            }),
            n => n,
        };
        let threads = opts
            .threads
            .unwrap_or_else(|| metrics::threads_per_worker(1));
        let rpc = resolve_rpc(&opts.rpc).await?;
        let spec = WorkerSpec {
            bin: self.worker_bin.clone(),
            path,
            n_ctx,
            threads,
            draft_model: opts.draft_model.clone(),
            tcp_ports: worker_tcp_ports(&opts.allow_tcp_ports, &rpc),
            rpc,
            gpu_layers: opts.gpu_layers,
            rpc_stall: opts.rpc_stall,
        };
        let worker = Worker::spawn(&spec, Box::new(progress)).await?;
        Ok(LoadedModel {
            inner: Arc::new(ModelInner {
                spec,
                worker: tokio::sync::Mutex::new(worker),
            }),
        })
    }
}

/// A request to answer the last message of a conversation.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The conversation so far, system prompt first when there is one.
    pub messages: Vec<Message>,
    pub params: SamplingParams,
    /// A built-in's name, "model", or Jinja source; None = the model's own or the fallback.
    pub template: Option<String>,
    pub think: ThinkMode,
    /// At most this many thinking tokens before the answer is forced.
    pub think_budget: Option<u32>,
    /// Send earlier turns' thinking back to the model.
    pub keep_thoughts: bool,
    pub threads: Option<u32>,
    /// A GBNF grammar constraining the answer.
    pub grammar: Option<String>,
    /// Extra chat-template variables (the API's `chat_template_kwargs`); they win over
    /// the ones the thinking mode sets.
    pub template_vars: Vec<(String, serde_json::Value)>,
    /// Speculative decoding (the text is the same in every mode; only the speed changes).
    pub speculative: SpeculativeMode,
    /// What to leave out when the conversation does not fit the context.
    pub overflow: ContextOverflow,
}

#[derive(Clone)]
pub struct LoadedModel {
    inner: Arc<ModelInner>,
}

struct ModelInner {
    spec: WorkerSpec,
    worker: tokio::sync::Mutex<Worker>,
}

impl LoadedModel {
    pub async fn info(&self) -> ModelInfo {
        let w = self.inner.worker.lock().await;
        let r = &w.ready;
        let template = ChatTemplate::resolve(r.chat_template.as_deref(), &r.architecture, None);
        let (format, source) = match &template {
            Ok(t) => (prompt::format_for(t), t.source.as_str()),
            Err(_) => (ReasoningFormat::None, ""),
        };
        let support = reasoning::thinking_control(format, source).support();
        ModelInfo {
            path: self.inner.spec.path.clone(),
            name: model_name(&self.inner.spec.path),
            architecture: r.architecture.clone(),
            n_ctx: r.n_ctx,
            n_ctx_train: r.n_ctx_train,
            n_params: r.n_params,
            size_bytes: r.size_bytes,
            threads: r.threads,
            load_ms: r.load_ms,
            has_chat_template: r.chat_template.is_some(),
            template_name: template
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            reasoning_format: format.name().to_owned(),
            thinking_off_available: support.off_available,
            thinking_off_reason: support.off_reason,
            pid: r.pid,
            draft_model: r.draft_model.clone(),
            sandbox: r.sandbox.clone(),
            devices: r.devices.clone(),
            gpu_layers: r.gpu_layers,
            gpu_layers_source: r.gpu_layers_source.clone(),
            memory: r.memory.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.spec.path
    }

    /// The draft model loaded with this one, if any.
    pub fn draft_path(&self) -> Option<&Path> {
        self.inner.spec.draft_model.as_deref()
    }

    /// Whether this model runs where `opts` asks. Options that ask for no RPC server and
    /// auto layers take the model as it is loaded (a chat sent to a model loaded earlier).
    pub fn placement_matches(&self, opts: &LoadOptions) -> bool {
        let spec = &self.inner.spec;
        (opts.rpc.is_empty() && opts.gpu_layers == protocol::GpuLayers::Auto)
            || (spec.rpc == opts.rpc && spec.gpu_layers == opts.gpu_layers)
    }

    /// The live worker, restarted first if the last one died.
    async fn live_worker(&self) -> Result<Worker, EngineError> {
        let mut w = self.inner.worker.lock().await;
        if let Some(crash) = w.crash() {
            tracing::info!(cause = crash.cause, "restarting crashed worker");
            *w = Worker::spawn(&self.inner.spec, Box::new(|_| {})).await?;
        }
        Ok(w.clone())
    }

    /// The worker's process id (for tests and resource figures).
    pub async fn pid(&self) -> u32 {
        self.inner.worker.lock().await.ready.pid
    }

    /// Starts answering. Events arrive on the returned stream; dropping the stream cancels.
    pub async fn chat(&self, req: ChatRequest) -> Result<ChatStream, EngineError> {
        let t_request = Instant::now();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let model = self.clone();
        let cancel = CancelHandle {
            id,
            model: Arc::downgrade(&self.inner),
            flag: Arc::default(),
        };
        let cancel_for_task = cancel.clone();
        tokio::spawn(async move {
            let result = model
                .run_chat(id, req, t_request, &tx, &cancel_for_task)
                .await;
            if let Err(e) = result {
                let _ = tx.send(ChatEvent::Error {
                    code: crate::error::ErrorCode::code(&e).into(),
                    message: e.to_string(),
                });
            }
        });
        Ok(ChatStream { id, rx, cancel })
    }

    /// One answer: prepare the prompt, start generating (dropping old turns until it fits),
    /// stream the split output, then report what it cost.
    async fn run_chat(
        &self,
        id: u64,
        req: ChatRequest,
        t_request: Instant,
        tx: &mpsc::UnboundedSender<ChatEvent>,
        cancel: &CancelHandle,
    ) -> Result<(), EngineError> {
        let worker = self.live_worker().await?;
        let plan = prepare(&worker, &req)?;
        let mut route = worker.route(id);
        let answer = Answer {
            worker: &worker,
            id,
            threads: req.threads.unwrap_or(self.inner.spec.threads),
            tx,
            cancel,
            t_request,
        };
        let result = match answer.start(&mut route, &req, &plan).await {
            Ok(Some(started)) => (answer.stream(&mut route, &plan, &started).await)
                .map(|finished| Some((started, finished))),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        worker.unroute(id);
        let Some((started, finished)) = result? else {
            return Ok(());
        };

        let thoughts_dropped_tokens = if plan.dropped_thoughts.is_empty() {
            0
        } else {
            self.count_tokens(&plan.dropped_thoughts).await.unwrap_or(0)
        };
        let (usage, metrics) = measure::assemble(
            &finished.timeline,
            AnswerFacts {
                done: &finished.done,
                prompt_ms: started.prompt_ms,
                wall: t_request.elapsed(),
                reasoning_tokens: finished.reasoning_tokens,
                energy_wh: finished.energy_wh,
                cpu_seconds: finished.cpu_seconds,
                energy_method: finished.energy_method,
                peak_rss_bytes: metrics::sample_process(worker.ready.pid).peak_rss_bytes,
                dropped_messages: started.dropped_messages,
                context_overflow: req.overflow,
                seed: started.seed,
                template: plan.template.name.clone(),
                reasoning_format: finished.format,
                reasoning_cut_off: finished.cut_off,
                thinking: req.think,
                thoughts_dropped_tokens,
            },
        );
        let metrics = Metrics {
            devices: placement_label(&worker.ready.devices),
            ..metrics
        };
        let _ = tx.send(ChatEvent::Done {
            stop_reason: finished.done.stop_reason,
            usage,
            metrics,
        });
        Ok(())
    }

    /// Decodes the prompt `req` would have, up to the end of its last message's text,
    /// into the worker's cache, and returns when that is done: called while the user is
    /// still typing that message, so that sending it decodes only what was typed since
    /// (and, in a conversation whose cache is gone, not the whole history either).
    /// Nothing is generated. The worker drops a warm-up as soon as any other request
    /// waits, so an answer never waits for one.
    pub async fn warm(&self, req: &ChatRequest) -> Result<WarmInfo, EngineError> {
        self.warm_until(req, WarmUntil::EndOfText).await
    }

    /// Like [`warm`](Self::warm) once typing has stopped: the whole prompt the send would
    /// have is read, end-of-turn markup and generation prompt included, so that sending the
    /// text as it is decodes only the prompt's last token again (for its logits). Typing
    /// on costs those few markup tokens again, which is why it waits for a pause.
    pub async fn warm_whole(&self, req: &ChatRequest) -> Result<WarmInfo, EngineError> {
        self.warm_until(req, WarmUntil::EndOfPrompt).await
    }

    /// Like [`warm`](Self::warm) when nothing is typed yet (a conversation just opened, an
    /// answer just ended): the last message's text is ignored, and the history and the new
    /// turn's header are read, so that a message pasted and sent at once decodes only its
    /// own text and the end-of-turn markup.
    pub async fn warm_before_text(&self, req: &ChatRequest) -> Result<WarmInfo, EngineError> {
        // Any text does: the template needs one to write the turn, and it is cut off.
        const PLACEHOLDER: &str = "Hello";
        let mut req = req.clone();
        if let Some(last) = req.messages.last_mut() {
            last.content = PLACEHOLDER.to_owned();
        }
        self.warm_until(&req, WarmUntil::StartOfText(PLACEHOLDER))
            .await
    }

    async fn warm_until(
        &self,
        req: &ChatRequest,
        until: WarmUntil<'_>,
    ) -> Result<WarmInfo, EngineError> {
        let worker = self.live_worker().await?;
        let plan = prepare(&worker, req)?;
        let rendered = plan.render(&plan.messages, &worker.ready).await?;
        let Some(segments) = Prepared::warm_segments(&rendered, until) else {
            return Ok(WarmInfo::default());
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut route = worker.route(id);
        let request = WorkerRequest::Warm(WarmRequest {
            id,
            segments,
            add_bos: rendered.add_bos,
            threads: req.threads.unwrap_or(self.inner.spec.threads),
        });
        let result = match worker.request(&request).await {
            Ok(()) => loop {
                match route.recv().await {
                    Some(WorkerEvent::Warmed(info)) => break Ok(info),
                    Some(WorkerEvent::Error { code, message, .. }) => {
                        break Err(worker.error(code, message))
                    }
                    Some(_) => {}
                    None => break Err(worker.crashed()),
                }
            },
            Err(e) => Err(e),
        };
        worker.unroute(id);
        result
    }

    /// Tokens a text takes in this model's prompt.
    pub async fn count_tokens(&self, text: &str) -> Result<u32, EngineError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let worker = self.live_worker().await?;
        let req = WorkerRequest::Tokenize {
            id,
            text: text.to_owned(),
        };
        match worker.ask(id, &req).await? {
            WorkerEvent::Tokenized { tokens, .. } => Ok(tokens),
            _ => Err(worker.crashed()),
        }
    }

    /// Raw llama.cpp speed inside the worker (no template, no sampling, no streaming).
    pub async fn bench_raw(
        &self,
        prompt_tokens: u32,
        gen_tokens: u32,
        reps: u32,
        threads: u32,
    ) -> Result<BenchResult, EngineError> {
        self.bench_raw_at(prompt_tokens, gen_tokens, reps, threads, 0)
            .await
    }

    /// [`Self::bench_raw`] with `depth` tokens already in the cache before the timed
    /// prompt, as a follow-up's new tokens sit on the conversation before them.
    pub async fn bench_raw_at(
        &self,
        prompt_tokens: u32,
        gen_tokens: u32,
        reps: u32,
        threads: u32,
        depth: u32,
    ) -> Result<BenchResult, EngineError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let worker = self.live_worker().await?;
        let req = WorkerRequest::Bench(BenchRequest {
            id,
            prompt_tokens,
            gen_tokens,
            reps,
            threads,
            depth,
        });
        match worker.ask(id, &req).await? {
            WorkerEvent::BenchResult(r) => Ok(r),
            _ => Err(worker.crashed()),
        }
    }

    /// Changes the worker's thread count from its next token on, also in the middle of an
    /// answer (the cache is kept). Used to hand the cores of a finished side-by-side column
    /// to the columns still generating.
    pub async fn set_threads(&self, threads: u32) -> Result<(), EngineError> {
        let worker = self.inner.worker.lock().await.clone();
        worker
            .request(&WorkerRequest::SetThreads {
                threads: threads.max(1),
            })
            .await
    }

    /// Ends the worker process (the model is unloaded).
    pub async fn unload(&self) {
        let w = self.inner.worker.lock().await;
        let mut child = w.child.lock().await;
        let _ = child.start_kill();
    }
}

/// How generation began.
struct Started {
    prompt_ms: f64,
    starts_in_thinking: bool,
    dropped_messages: u32,
    seed: u32,
}

/// How the output ended.
struct Finished {
    done: DoneInfo,
    timeline: Timeline,
    format: ReasoningFormat,
    cut_off: bool,
    /// Generated tokens on the thinking side, as the splitter counted them.
    reasoning_tokens: u32,
    energy_wh: f64,
    cpu_seconds: f64,
    energy_method: &'static str,
}

/// One answer in flight on one worker.
struct Answer<'a> {
    worker: &'a Worker,
    id: u64,
    threads: u32,
    tx: &'a mpsc::UnboundedSender<ChatEvent>,
    cancel: &'a CancelHandle,
    t_request: Instant,
}

impl Answer<'_> {
    /// Sends the prompt, dropping the oldest turns while the worker says it does not fit.
    /// `None`: cancelled before generation began (the `Done` is already sent).
    async fn start(
        &self,
        route: &mut mpsc::UnboundedReceiver<WorkerEvent>,
        req: &ChatRequest,
        plan: &Prepared,
    ) -> Result<Option<Started>, EngineError> {
        let ready = &self.worker.ready;
        let seed = req.params.seed.unwrap_or_else(rand::random);
        let mut messages = plan.messages.clone();
        let mut dropped_messages = 0u32;
        loop {
            let rendered = plan.render(&messages, ready).await?;
            let starts_in_thinking = rendered.starts_in_thinking;
            let gen = GenerateRequest {
                id: self.id,
                segments: rendered.segments,
                add_bos: rendered.add_bos,
                params: req.params.clone(),
                seed,
                threads: self.threads,
                budget: plan.budget(req.think_budget, starts_in_thinking),
                grammar: req.grammar.clone(),
                speculative: req.speculative,
            };
            self.worker
                .request(&WorkerRequest::Generate(Box::new(gen)))
                .await?;
            if self.cancel.is_cancelled() {
                // Cancelled before the request reached the worker: that cancel line may
                // have come first, and the worker ignores a cancel for a request it has
                // not seen. Said again, it is now certainly after the request (a cancel
                // from now on writes its own line after this one).
                let _ = self
                    .worker
                    .send(&WorkerRequest::Cancel { id: self.id })
                    .await;
            }
            // Only an answer to this request ends the wait: anything else read here must
            // not reach the end of this loop, which sends the request again.
            let reply = loop {
                match route.recv().await {
                    // Long prompts report their chunks; the reader counts them as signs of
                    // life.
                    Some(WorkerEvent::PromptProgress { .. }) => {}
                    Some(
                        e @ (WorkerEvent::Started { .. }
                        | WorkerEvent::Error { .. }
                        | WorkerEvent::Done(_)),
                    ) => break Some(e),
                    Some(other) => {
                        tracing::warn!("unexpected worker event before start: {other:?}");
                    }
                    None => break None,
                }
            };
            match reply {
                Some(WorkerEvent::Started {
                    prompt_tokens,
                    cached_tokens,
                    prompt_ms,
                    ..
                }) => {
                    let _ = self.tx.send(ChatEvent::Started {
                        request_id: self.id.to_string(),
                        model: self.worker.model().to_owned(),
                        seed,
                        reasoning_format: plan.format().name().to_owned(),
                        prompt_tokens,
                        cached_prompt_tokens: cached_tokens,
                    });
                    return Ok(Some(Started {
                        prompt_ms,
                        starts_in_thinking,
                        dropped_messages,
                        seed,
                    }));
                }
                Some(WorkerEvent::Error {
                    code: WorkerErrorCode::ContextOverflow,
                    message,
                    prompt_tokens,
                    ..
                }) => {
                    let dropped = match req.overflow {
                        ContextOverflow::Stop => {
                            return Err(EngineError::ContextOverflow {
                                detail: format!("{message} (prompt {} tokens). The conversation's policy is 'stop', so nothing was left out and nothing is lost: start a new conversation, raise the context length, or choose drop_oldest or truncate_middle.", prompt_tokens.unwrap_or(0)),
                            });
                        }
                        ContextOverflow::DropOldest => {
                            prompt::drop_oldest_exchange(&mut messages, &mut dropped_messages)
                        }
                        ContextOverflow::TruncateMiddle => {
                            prompt::drop_middle_exchange(&mut messages, &mut dropped_messages)
                        }
                    };
                    if !dropped {
                        return Err(EngineError::ContextOverflow {
                            detail: format!("{message}; even the last message alone is too long (prompt {} tokens). Raise the context length or shorten the message.", prompt_tokens.unwrap_or(0)),
                        });
                    }
                }
                Some(WorkerEvent::Error { code, message, .. }) => {
                    return Err(self.worker.error(code, message))
                }
                Some(WorkerEvent::Done(d)) if d.stop_reason == StopReason::Cancelled => {
                    let _ = self.tx.send(ChatEvent::Done {
                        stop_reason: StopReason::Cancelled,
                        usage: Usage::default(),
                        metrics: Metrics::default(),
                    });
                    return Ok(None);
                }
                Some(other) => {
                    return Err(self.worker.error(
                        WorkerErrorCode::BadOutput,
                        format!("the worker ended a request it had not started: {other:?}"),
                    ))
                }
                None => return Err(self.worker.crashed()),
            }
        }
    }

    /// Streams the output, split into thinking and answer, until the worker's `Done`.
    async fn stream(
        &self,
        route: &mut mpsc::UnboundedReceiver<WorkerEvent>,
        plan: &Prepared,
        started: &Started,
    ) -> Result<Finished, EngineError> {
        let meter = EnergyMeter::start(self.worker.ready.pid);
        // A template without markers may still belong to a model that thinks: let the
        // splitter look for an opening marker at the start of the output.
        let split_format = match plan.format() {
            ReasoningFormat::None => ReasoningFormat::Auto,
            f => f,
        };
        let mut splitter = Splitter::new(split_format, started.starts_in_thinking);
        let mut timeline = Timeline::new(self.t_request);
        let mut receiver_gone = false;
        let done = loop {
            match route.recv().await {
                Some(WorkerEvent::Delta { text, tokens, .. }) => {
                    // Counted by the side the text falls on (reasoning::TokenTally), also
                    // for a delta whose bytes are still an unfinished character.
                    for segment in splitter.push_tokens(&text, tokens) {
                        let Some(event) = timeline.event(segment, &meter) else {
                            continue;
                        };
                        if self.tx.send(event).is_err() && !receiver_gone {
                            // Nobody listens any more: stop the worker within a token.
                            receiver_gone = true;
                            self.cancel.cancel();
                        }
                    }
                }
                Some(WorkerEvent::Done(d)) => break d,
                Some(WorkerEvent::Error { code, message, .. }) => {
                    return Err(self.worker.error(code, message))
                }
                Some(_) => {}
                None => return Err(self.worker.crashed()),
            }
        };
        let fin = splitter.finish();
        for segment in fin.segments {
            if let Some(event) = timeline.event(segment, &meter) {
                let _ = self.tx.send(event);
            }
        }
        let (energy_wh, cpu_seconds) = meter.read();
        Ok(Finished {
            done,
            timeline,
            format: fin.format,
            cut_off: fin.cut_off,
            reasoning_tokens: fin.tokens.reasoning,
            energy_wh,
            cpu_seconds,
            energy_method: meter.method().as_str(),
        })
    }
}

/// A request's conversation with the worker's model's template (or the one it asks for).
fn prepare(worker: &Worker, req: &ChatRequest) -> Result<Prepared, EngineError> {
    let ready = &worker.ready;
    let template = ChatTemplate::resolve(
        ready.chat_template.as_deref(),
        &ready.architecture,
        req.template.as_deref(),
    )?;
    Ok(prompt::prepare(
        template,
        req.messages.clone(),
        req.think,
        req.keep_thoughts,
        &req.template_vars,
    ))
}

/// The name a model is reported under while it runs (in `ChatEvent::Started`, crash
/// reports and [`ModelInfo`]). The engine does not read the library's settings, so a
/// user's rename is not applied here; front ends show the library's name
/// ([`crate::models::Library::display_name`]).
fn model_name(p: &Path) -> String {
    crate::models::display_name(p, None)
}

/// Stops one answer. Cheap to clone; safe to use after the answer ended.
#[derive(Clone)]
pub struct CancelHandle {
    id: u64,
    model: std::sync::Weak<ModelInner>,
    flag: Arc<std::sync::atomic::AtomicBool>,
}

impl CancelHandle {
    pub fn request_id(&self) -> u64 {
        self.id
    }

    fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    pub fn cancel(&self) {
        if self.flag.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(model) = self.model.upgrade() else {
            return;
        };
        let id = self.id;
        // Written straight to the worker's stdin: the worker reads cancels between tokens.
        tokio::spawn(async move {
            let stdin = model.worker.lock().await.stdin.clone();
            drop(model);
            let line = protocol::to_line(&WorkerRequest::Cancel { id });
            let mut s = stdin.lock().await;
            let _ = s.write_all(line.as_bytes()).await;
            let _ = s.flush().await;
        });
    }
}

/// The events of one answer. Dropping it cancels the answer.
pub struct ChatStream {
    id: u64,
    rx: mpsc::UnboundedReceiver<ChatEvent>,
    cancel: CancelHandle,
}

impl ChatStream {
    pub fn request_id(&self) -> u64 {
        self.id
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    pub async fn next_event(&mut self) -> Option<ChatEvent> {
        self.rx.recv().await
    }
}

impl Stream for ChatStream {
    type Item = ChatEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChatEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        // Close first so the task sees a gone receiver even if no cancel arrives.
        self.rx.close();
        if tokio::runtime::Handle::try_current().is_ok() {
            self.cancel.cancel();
        }
    }
}
