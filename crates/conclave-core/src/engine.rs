//! The engine client: starts one `conclave-worker` process per loaded model, renders chat
//! templates, splits reasoning from answers, and turns the worker's protocol events into
//! typed [`ChatEvent`]s with measured metrics.
//!
//! A worker that dies (a `GGML_ASSERT` abort, an out-of-memory kill, a segfault on a hostile
//! file, a `kill -9`) fails only its own requests with `worker_crashed`; the next request to
//! that model starts a fresh worker.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use crate::events::{
    ChatEvent, Message, Metrics, Role, SamplingParams, StopReason, ThinkMode, Usage,
};
use crate::metrics::{self, EnergyMeter};
use crate::protocol::{
    self, BenchRequest, BenchResult, DoneInfo, GenerateRequest, ReadyInfo, ThinkBudget,
    WorkerEvent, WorkerRequest,
};
use crate::reasoning::{self, PromptPlan, ReasoningFormat, Segment, Splitter};
use crate::template::{ChatTemplate, RenderInput};

/// Lines of the worker's stderr kept for crash reports.
const STDERR_TAIL: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the worker program (conclave-worker) was not found next to {0}; build it with `cargo build -p conclave-worker` or set CONCLAVE_WORKER")]
    WorkerNotFound(String),
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
    Worker { code: String, message: String },
    #[error("could not talk to the worker: {0}")]
    Io(#[from] std::io::Error),
}

fn tail_hint(tail: &str) -> String {
    match tail.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => format!("; last log line: {}", last.trim()),
        None => String::new(),
    }
}

impl crate::error::ErrorCode for EngineError {
    fn code(&self) -> &'static str {
        match self {
            EngineError::WorkerNotFound(_) => "worker_not_found",
            EngineError::InvalidModel(_) => "invalid_model",
            EngineError::LoadFailed { .. } => "load_failed",
            EngineError::WorkerCrashed { .. } => "worker_crashed",
            EngineError::ContextOverflow { .. } => "context_overflow",
            EngineError::Template(e) => crate::error::ErrorCode::code(e),
            EngineError::Worker { .. } => "worker_error",
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
}

#[derive(Clone)]
pub struct Engine {
    worker_bin: Arc<PathBuf>,
    cancels: Arc<Mutex<HashMap<u64, CancelHandle>>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Engine {
    pub fn new() -> Result<Self, EngineError> {
        Ok(Self::with_worker(find_worker()?))
    }

    pub fn with_worker(worker_bin: PathBuf) -> Self {
        Self {
            worker_bin: Arc::new(worker_bin),
            cancels: Arc::default(),
        }
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
        let n_ctx = match opts.n_ctx {
            0 => header.context_length().map_or(4096, |c| c.min(4096) as u32),
            n => n,
        };
        let threads = opts
            .threads
            .unwrap_or_else(|| metrics::threads_per_worker(1));
        let spec = WorkerSpec {
            bin: self.worker_bin.clone(),
            path,
            n_ctx,
            threads,
        };
        let worker = Worker::spawn(&spec, Box::new(progress)).await?;
        Ok(LoadedModel {
            inner: Arc::new(ModelInner {
                spec,
                worker: tokio::sync::Mutex::new(worker),
                engine: self.clone(),
            }),
        })
    }

    /// Stops a running answer within one token. Unknown or finished ids are ignored.
    pub fn cancel(&self, request_id: u64) {
        let handle = self
            .cancels
            .lock()
            .ok()
            .and_then(|m| m.get(&request_id).cloned());
        if let Some(h) = handle {
            h.cancel();
        }
    }
}

struct WorkerSpec {
    bin: Arc<PathBuf>,
    path: PathBuf,
    n_ctx: u32,
    threads: u32,
}

type Routes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<WorkerEvent>>>>;

/// One running worker process. Clones share the process; the model's slot holds the
/// current one, so callers never keep the slot locked while an answer streams.
#[derive(Clone)]
struct Worker {
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    routes: Routes,
    ready: ReadyInfo,
    /// Set when the process has exited; holds why.
    dead: Arc<Mutex<Option<Crash>>>,
    child: Arc<tokio::sync::Mutex<Child>>,
}

#[derive(Clone, Debug)]
struct Crash {
    cause: String,
    signal: Option<i32>,
    last_stderr: String,
}

impl Worker {
    async fn spawn(
        spec: &WorkerSpec,
        mut progress: Box<dyn FnMut(f32) + Send>,
    ) -> Result<Self, EngineError> {
        let mut child = Command::new(spec.bin.as_path())
            .arg(protocol::ARG_MODEL)
            .arg(&spec.path)
            .arg(protocol::ARG_N_CTX)
            .arg(spec.n_ctx.to_string())
            .arg(protocol::ARG_THREADS)
            .arg(spec.threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    EngineError::WorkerNotFound(spec.bin.display().to_string())
                }
                _ => EngineError::Io(e),
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(EngineError::Io(std::io::Error::other(
                "worker pipes missing",
            )));
        };

        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "conclave_worker", "{line}");
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == STDERR_TAIL {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
            });
        }

        let routes: Routes = Arc::default();
        let dead: Arc<Mutex<Option<Crash>>> = Arc::default();
        let child = Arc::new(tokio::sync::Mutex::new(child));
        let (ready_tx, ready_rx) = oneshot::channel::<Result<ReadyInfo, (String, String)>>();
        {
            let routes = routes.clone();
            let dead = dead.clone();
            let child = child.clone();
            let tail = tail.clone();
            let model = spec.path.display().to_string();
            tokio::spawn(async move {
                let mut ready_tx = Some(ready_tx);
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let event = match serde_json::from_str::<WorkerEvent>(&line) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!("unreadable line from worker: {e}: {line}");
                            continue;
                        }
                    };
                    match event {
                        WorkerEvent::LoadProgress { fraction } => progress(fraction),
                        WorkerEvent::Ready(info) => {
                            if let Some(tx) = ready_tx.take() {
                                let _ = tx.send(Ok(info));
                            }
                        }
                        WorkerEvent::Error {
                            id: None,
                            code,
                            message,
                            ..
                        } => {
                            if let Some(tx) = ready_tx.take() {
                                let _ = tx.send(Err((code, message)));
                            } else {
                                tracing::warn!("worker error: {code}: {message}");
                            }
                        }
                        other => {
                            let id = event_id(&other);
                            let sender = routes
                                .lock()
                                .ok()
                                .and_then(|r| id.and_then(|id| r.get(&id).cloned()));
                            if let Some(s) = sender {
                                let _ = s.send(other);
                            }
                        }
                    }
                }
                // stdout closed: the process is exiting or gone. Find out how it ended.
                let status = child.lock().await.wait().await;
                // Give the stderr reader a moment to collect the last lines (an abort message).
                tokio::time::sleep(Duration::from_millis(50)).await;
                let last_stderr = tail
                    .lock()
                    .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default();
                let (cause, signal) = describe_exit(status);
                tracing::warn!(model, cause, "worker exited");
                let crash = Crash {
                    cause,
                    signal,
                    last_stderr,
                };
                if let Ok(mut d) = dead.lock() {
                    *d = Some(crash.clone());
                }
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(Err((
                        "load_failed".into(),
                        format!("the worker exited while loading ({})", crash.cause),
                    )));
                }
                let pending: Vec<_> = routes
                    .lock()
                    .map(|mut r| r.drain().collect())
                    .unwrap_or_default();
                for (id, s) in pending {
                    let _ = s.send(WorkerEvent::Error {
                        id: Some(id),
                        code: "worker_crashed".into(),
                        message: crash.cause.clone(),
                        prompt_tokens: None,
                    });
                }
            });
        }

        let ready = match ready_rx.await {
            Ok(Ok(info)) => info,
            Ok(Err((_, message))) => {
                let last_stderr = tail
                    .lock()
                    .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default();
                let reason = match last_error_line(&last_stderr) {
                    Some(line) => format!("{message}; llama.cpp said: {line}"),
                    None => message,
                };
                return Err(EngineError::LoadFailed {
                    path: spec.path.display().to_string(),
                    reason,
                    last_stderr,
                });
            }
            Err(_) => {
                return Err(EngineError::LoadFailed {
                    path: spec.path.display().to_string(),
                    reason: "the worker stopped before reporting".into(),
                    last_stderr: String::new(),
                })
            }
        };
        Ok(Self {
            stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
            routes,
            ready,
            dead,
            child,
        })
    }

    fn crash(&self) -> Option<Crash> {
        self.dead.lock().ok().and_then(|d| d.clone())
    }

    async fn send(&self, req: &WorkerRequest) -> Result<(), std::io::Error> {
        let line = protocol::to_line(req);
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(line.as_bytes()).await?;
        stdin.flush().await
    }

    fn route(&self, id: u64) -> mpsc::UnboundedReceiver<WorkerEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut r) = self.routes.lock() {
            r.insert(id, tx);
        }
        // The process may have died between the caller's check and now: fail at once.
        if let Some(crash) = self.crash() {
            if let Some(tx) = self.routes.lock().ok().and_then(|mut r| r.remove(&id)) {
                let _ = tx.send(WorkerEvent::Error {
                    id: Some(id),
                    code: "worker_crashed".into(),
                    message: crash.cause,
                    prompt_tokens: None,
                });
            }
        }
        rx
    }

    fn unroute(&self, id: u64) {
        if let Ok(mut r) = self.routes.lock() {
            r.remove(&id);
        }
    }
}

fn event_id(e: &WorkerEvent) -> Option<u64> {
    match e {
        WorkerEvent::Started { id, .. }
        | WorkerEvent::Delta { id, .. }
        | WorkerEvent::Tokenized { id, .. } => Some(*id),
        WorkerEvent::Done(d) => Some(d.id),
        WorkerEvent::BenchResult(b) => Some(b.id),
        WorkerEvent::Error { id, .. } => *id,
        WorkerEvent::LoadProgress { .. } | WorkerEvent::Ready(_) => None,
    }
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> (String, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match s.signal() {
            Some(sig) => (
                format!("killed by signal {sig} ({})", signal_name(sig)),
                Some(sig),
            ),
            None => (
                format!("exited with status {}", s.code().unwrap_or(-1)),
                None,
            ),
        },
        Err(e) => (format!("could not wait for it: {e}"), None),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL, often the out-of-memory killer",
        libc::SIGABRT => "SIGABRT, an assertion in llama.cpp",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS, the model file changed or vanished while mapped",
        libc::SIGTERM => "SIGTERM",
        libc::SIGILL => "SIGILL, a CPU instruction this machine lacks",
        _ => "signal",
    }
}

fn last_error_line(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.contains("error") || l.contains("failed"))
        .map(str::trim)
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
}

#[derive(Clone)]
pub struct LoadedModel {
    inner: Arc<ModelInner>,
}

struct ModelInner {
    spec: WorkerSpec,
    worker: tokio::sync::Mutex<Worker>,
    engine: Engine,
}

impl LoadedModel {
    pub async fn info(&self) -> ModelInfo {
        let w = self.inner.worker.lock().await;
        let r = &w.ready;
        let template = ChatTemplate::resolve(r.chat_template.as_deref(), &r.architecture, None);
        let (format, support) = match &template {
            Ok(t) => {
                let format = format_for(t);
                (
                    format,
                    reasoning::thinking_control(format, &t.source).support(),
                )
            }
            Err(_) => (
                ReasoningFormat::None,
                reasoning::thinking_control(ReasoningFormat::None, "").support(),
            ),
        };
        ModelInfo {
            path: self.inner.spec.path.clone(),
            // The file name, as the catalog shows it; `general.name` is often a training label.
            name: file_stem(&self.inner.spec.path)
                .trim_end_matches(".gguf")
                .to_owned(),
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
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.spec.path
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
        if let Ok(mut c) = self.inner.engine.cancels.lock() {
            c.insert(id, cancel.clone());
        }
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
            if let Ok(mut c) = model.inner.engine.cancels.lock() {
                c.remove(&id);
            }
        });
        Ok(ChatStream { id, rx, cancel })
    }

    async fn run_chat(
        &self,
        id: u64,
        mut req: ChatRequest,
        t_request: Instant,
        tx: &mpsc::UnboundedSender<ChatEvent>,
        cancel: &CancelHandle,
    ) -> Result<(), EngineError> {
        let worker = self.live_worker().await?;
        let ready = worker.ready.clone();
        let template = ChatTemplate::resolve(
            ready.chat_template.as_deref(),
            &ready.architecture,
            req.template.as_deref(),
        )?;
        // How the thinking mode is reached with this template (a flag, a slash command, a
        // prefilled or closed block), or why it cannot be; see reasoning::PromptPlan.
        let plan = PromptPlan::new(
            format_for(&template),
            &template.source,
            req.think,
            &mut req.messages,
        );
        let format = plan.format;
        let mut extra_vars = plan.template_vars();
        extra_vars.extend(
            req.template_vars
                .iter()
                .map(|(k, v)| (k.clone(), minijinja::Value::from_serialize(v))),
        );

        // Earlier turns' thinking is not sent back unless the conversation keeps it.
        let mut dropped_thoughts = String::new();
        for m in req
            .messages
            .iter_mut()
            .filter(|m| m.role == Role::Assistant)
        {
            if let Some(r) = m.reasoning.take() {
                if req.keep_thoughts {
                    m.reasoning = Some(r.clone());
                    if !template.source.contains("reasoning_content") {
                        // A template without markers of its own gets the generic block
                        // the engine opens for it, so kept thoughts are never dropped.
                        let mk = format
                            .markers()
                            .or_else(|| ReasoningFormat::DeepseekR1.markers());
                        if let Some(mk) = mk {
                            m.content = format!("{}{}{}{}", mk.open, r, mk.close, m.content);
                        }
                    }
                } else {
                    dropped_thoughts.push_str(&r);
                }
            }
        }
        let threads = req.threads.unwrap_or(self.inner.spec.threads);
        let seed = req.params.seed.unwrap_or_else(rand::random);
        let mut messages = req.messages.clone();
        let mut dropped_messages = 0u32;
        let mut route = worker.route(id);

        let (started, starts_in_thinking) = loop {
            // The template is the model file's code: it runs on a thread of its own, under
            // limits (template::RenderLimits), never on the runtime's threads.
            let rendered = template
                .render_async(&RenderInput {
                    messages: &messages,
                    add_generation_prompt: true,
                    bos_token: &ready.bos_token,
                    eos_token: &ready.eos_token,
                    enable_thinking: plan.enable_thinking,
                    extra: &extra_vars,
                })
                .await?;
            let prompt = plan.finish(&rendered);
            let starts_in_thinking = reasoning::prompt_ends_in_thinking(format, &prompt);
            let add_bos = ready.add_bos
                && !(ready.bos_token.is_empty() || prompt.starts_with(&ready.bos_token));
            let budget = format.markers().map(|mk| ThinkBudget {
                max_tokens: req.think_budget.unwrap_or(u32::MAX),
                starts_in_thinking,
                open: mk.open.trim().to_owned(),
                close: detection_marker(mk.close),
                inject: format!("{}{}", mk.budget_lead_in, mk.close),
            });
            let gen = GenerateRequest {
                id,
                prompt,
                add_bos,
                params: req.params.clone(),
                seed,
                threads,
                budget,
                grammar: req.grammar.clone(),
            };
            worker
                .send(&WorkerRequest::Generate(gen))
                .await
                .map_err(|e| self.io_or_crash(&worker, e))?;
            match route.recv().await {
                Some(WorkerEvent::Started {
                    prompt_tokens,
                    cached_tokens,
                    prompt_ms,
                    ..
                }) => {
                    break (
                        (prompt_tokens, cached_tokens, prompt_ms),
                        starts_in_thinking,
                    )
                }
                Some(WorkerEvent::Error {
                    code,
                    message,
                    prompt_tokens,
                    ..
                }) if code == "context_overflow" => {
                    if !drop_oldest_exchange(&mut messages, &mut dropped_messages) {
                        worker.unroute(id);
                        return Err(EngineError::ContextOverflow {
                            detail: format!("{message}; even the last message alone is too long (prompt {} tokens). Raise the context length or shorten the message.", prompt_tokens.unwrap_or(0)),
                        });
                    }
                }
                Some(WorkerEvent::Error { code, message, .. }) => {
                    worker.unroute(id);
                    return Err(self.worker_error(&worker, code, message));
                }
                Some(WorkerEvent::Done(d)) if d.stop_reason == StopReason::Cancelled => {
                    worker.unroute(id);
                    let _ = tx.send(ChatEvent::Done {
                        stop_reason: StopReason::Cancelled,
                        usage: Usage::default(),
                        metrics: Metrics::default(),
                    });
                    return Ok(());
                }
                Some(other) => tracing::warn!("unexpected worker event before start: {other:?}"),
                None => {
                    worker.unroute(id);
                    return Err(self.crashed(&worker));
                }
            }
        };
        let pid = ready.pid;
        let meter = EnergyMeter::start(pid);

        let (prompt_tokens, cached_tokens, prompt_ms) = started;
        let _ = tx.send(ChatEvent::Started {
            request_id: id.to_string(),
            model: file_stem(&self.inner.spec.path),
            seed,
            reasoning_format: format.name().to_owned(),
            prompt_tokens,
            cached_prompt_tokens: cached_tokens,
        });

        // A template without markers may still belong to a model that thinks: let the
        // splitter look for an opening marker at the start of the output.
        let split_format = if format == ReasoningFormat::None {
            ReasoningFormat::Auto
        } else {
            format
        };
        let mut splitter = Splitter::new(split_format, starts_in_thinking);
        let mut first_output: Option<Duration> = None;
        let mut reasoning_started: Option<Duration> = None;
        let mut answer_started: Option<Duration> = None;
        let mut thinking_energy = None;
        let mut saw_reasoning = false;
        let mut receiver_gone = false;
        let done: DoneInfo = loop {
            let Some(event) = route.recv().await else {
                return Err(self.crashed(&worker));
            };
            match event {
                WorkerEvent::Delta { text, tokens, .. } => {
                    // Counted by the side the text falls on (reasoning::TokenTally), also
                    // for a delta whose bytes are still an unfinished character.
                    for seg in splitter.push_tokens(&text, tokens) {
                        // One reading per segment, so that the first output and the first
                        // of its kind are the same instant.
                        let at = t_request.elapsed();
                        let ev = match seg {
                            Segment::Reasoning(t) if !t.is_empty() => {
                                saw_reasoning = true;
                                reasoning_started.get_or_insert(at);
                                ChatEvent::Reasoning { text: t }
                            }
                            Segment::Answer(t) if !t.is_empty() => {
                                if answer_started.is_none() {
                                    answer_started = Some(at);
                                    if saw_reasoning {
                                        thinking_energy = Some(meter.read().0);
                                    }
                                }
                                ChatEvent::Token { text: t }
                            }
                            _ => continue,
                        };
                        first_output.get_or_insert(at);
                        if tx.send(ev).is_err() && !receiver_gone {
                            // Nobody listens any more: stop the worker within a token.
                            receiver_gone = true;
                            cancel.cancel();
                        }
                    }
                }
                WorkerEvent::Done(d) => break d,
                WorkerEvent::Error { code, message, .. } => {
                    worker.unroute(id);
                    return Err(self.worker_error(&worker, code, message));
                }
                _ => {}
            }
        };
        worker.unroute(id);
        let fin = splitter.finish();
        for seg in fin.segments {
            let at = t_request.elapsed();
            let ev = match seg {
                Segment::Reasoning(t) if !t.is_empty() => {
                    saw_reasoning = true;
                    reasoning_started.get_or_insert(at);
                    ChatEvent::Reasoning { text: t }
                }
                Segment::Answer(t) if !t.is_empty() => {
                    answer_started.get_or_insert(at);
                    ChatEvent::Token { text: t }
                }
                _ => continue,
            };
            first_output.get_or_insert(at);
            let _ = tx.send(ev);
        }

        let wall = t_request.elapsed();
        let (energy_wh, cpu_seconds) = meter.read();
        let sample = metrics::sample_process(pid);
        // The splitter's count, not the worker's: the worker counts thinking only under a
        // budget, and the thinking may have been found by the auto splitter alone. The
        // worker's total stays the reference (a cancelled answer's last token may never
        // have come out as text).
        let reasoning_tokens = fin.tokens.reasoning.min(done.completion_tokens);
        let thinking_ms = if saw_reasoning || reasoning_tokens > 0 {
            answer_started.unwrap_or(wall).as_secs_f64() * 1000.0
        } else {
            0.0
        };
        let energy_thinking = if thinking_ms > 0.0 {
            thinking_energy.unwrap_or(energy_wh)
        } else {
            0.0
        };
        let thoughts_dropped_tokens = if dropped_thoughts.is_empty() {
            0
        } else {
            self.count_tokens(&dropped_thoughts).await.unwrap_or(0)
        };
        let usage = Usage {
            prompt_tokens: done.prompt_tokens,
            cached_prompt_tokens: done.cached_tokens,
            completion_tokens: done.completion_tokens,
            reasoning_tokens,
            answer_tokens: done.completion_tokens - reasoning_tokens,
        };
        let evaluated = done.prompt_tokens.saturating_sub(done.cached_tokens);
        let metrics = Metrics {
            ttft_ms: first_output.unwrap_or(wall).as_secs_f64() * 1000.0,
            prompt_eval_ms: prompt_ms,
            prompt_tps: rate(evaluated, prompt_ms),
            gen_ms: done.gen_ms,
            gen_tps: rate(done.completion_tokens, done.gen_ms),
            wall_ms: wall.as_secs_f64() * 1000.0,
            thinking_ms,
            answer_ms: (wall.as_secs_f64() * 1000.0 - thinking_ms).max(0.0),
            threads: done.threads,
            peak_rss_bytes: sample.peak_rss_bytes,
            cpu_seconds,
            energy_wh,
            energy_thinking_wh: energy_thinking,
            energy_answer_wh: (energy_wh - energy_thinking).max(0.0),
            energy_method: meter.method().as_str().to_owned(),
            dropped_messages,
            seed,
            template: template.name.clone(),
            reasoning_format: fin.format.name().to_owned(),
            thinking: req.think,
            budget_cut_at: done.budget_cut_at,
            reasoning_cut_off: fin.cut_off,
            thoughts_dropped_tokens,
            first_reasoning_ms: reasoning_started.map(|d| d.as_secs_f64() * 1000.0),
            first_answer_ms: answer_started.map(|d| d.as_secs_f64() * 1000.0),
        };
        let _ = tx.send(ChatEvent::Done {
            stop_reason: done.stop_reason,
            usage,
            metrics,
        });
        Ok(())
    }

    fn io_or_crash(&self, worker: &Worker, e: std::io::Error) -> EngineError {
        match worker.crash() {
            Some(c) => self.crashed_from(Some(c)),
            None => EngineError::Io(e),
        }
    }

    fn crashed(&self, worker: &Worker) -> EngineError {
        self.crashed_from(worker.crash())
    }

    fn crashed_from(&self, crash: Option<Crash>) -> EngineError {
        let c = crash.unwrap_or(Crash {
            cause: "its output ended".into(),
            signal: None,
            last_stderr: String::new(),
        });
        EngineError::WorkerCrashed {
            model: file_stem(&self.inner.spec.path),
            cause: c.cause,
            signal: c.signal,
            last_stderr: c.last_stderr,
        }
    }

    fn worker_error(&self, worker: &Worker, code: String, message: String) -> EngineError {
        if code == "worker_crashed" {
            // The reader saw the process die; give the crash a moment to be recorded.
            return self.crashed(worker);
        }
        EngineError::Worker { code, message }
    }

    /// Tokens a text takes in this model's prompt.
    pub async fn count_tokens(&self, text: &str) -> Result<u32, EngineError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let worker = self.live_worker().await?;
        let mut route = worker.route(id);
        worker
            .send(&WorkerRequest::Tokenize {
                id,
                text: text.to_owned(),
            })
            .await
            .map_err(|e| self.io_or_crash(&worker, e))?;
        let res = match route.recv().await {
            Some(WorkerEvent::Tokenized { tokens, .. }) => Ok(tokens),
            Some(WorkerEvent::Error { code, message, .. }) => {
                Err(EngineError::Worker { code, message })
            }
            _ => Err(self.crashed(&worker)),
        };
        worker.unroute(id);
        res
    }

    /// Raw llama.cpp speed inside the worker (no template, no sampling, no streaming).
    pub async fn bench_raw(
        &self,
        prompt_tokens: u32,
        gen_tokens: u32,
        reps: u32,
        threads: u32,
    ) -> Result<BenchResult, EngineError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let worker = self.live_worker().await?;
        let mut route = worker.route(id);
        worker
            .send(&WorkerRequest::Bench(BenchRequest {
                id,
                prompt_tokens,
                gen_tokens,
                reps,
                threads,
            }))
            .await
            .map_err(|e| self.io_or_crash(&worker, e))?;
        let res = match route.recv().await {
            Some(WorkerEvent::BenchResult(r)) => Ok(r),
            Some(WorkerEvent::Error { code, message, .. }) => {
                Err(EngineError::Worker { code, message })
            }
            _ => Err(self.crashed(&worker)),
        };
        worker.unroute(id);
        res
    }

    /// Changes the worker's thread count from its next token on, also in the middle of an
    /// answer (the cache is kept). Used to hand the cores of a finished side-by-side column
    /// to the columns still generating.
    pub async fn set_threads(&self, threads: u32) -> Result<(), EngineError> {
        let worker = self.inner.worker.lock().await.clone();
        worker
            .send(&WorkerRequest::SetThreads {
                threads: threads.max(1),
            })
            .await
            .map_err(|e| self.io_or_crash(&worker, e))
    }

    /// Ends the worker process (the model is unloaded).
    pub async fn unload(&self) {
        let w = self.inner.worker.lock().await;
        let mut child = w.child.lock().await;
        let _ = child.start_kill();
    }
}

/// The part of a closing marker that the model itself writes first: whitespace trimmed, and
/// without the next turn's header that the engine adds when it forces the answer.
fn detection_marker(close: &str) -> String {
    let close = close.trim();
    let cut = ["<|start|>", "<|START_RESPONSE|>"]
        .iter()
        .filter_map(|h| close.find(h))
        .filter(|&i| i > 0)
        .min();
    close[..cut.unwrap_or(close.len())].to_owned()
}

fn rate(tokens: u32, ms: f64) -> f64 {
    if ms > 0.0 {
        f64::from(tokens) * 1000.0 / ms
    } else {
        0.0
    }
}

fn file_stem(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The reasoning format a template implies: detected from the model's own template, or
/// known for the built-ins.
fn format_for(t: &ChatTemplate) -> ReasoningFormat {
    match t.name.as_str() {
        "deepseek-r1" => ReasoningFormat::DeepseekR1,
        _ => reasoning::detect_from_template(&t.source),
    }
}

/// The context rule: keep every system message and the last user message; drop the oldest
/// other turn together with the assistant replies that follow it. Returns false when
/// nothing more can be dropped.
fn drop_oldest_exchange(messages: &mut Vec<Message>, dropped: &mut u32) -> bool {
    let last_user = messages.iter().rposition(|m| m.role == Role::User);
    let Some(first) = messages.iter().position(|m| m.role != Role::System) else {
        return false;
    };
    if Some(first) == last_user || last_user.is_none() && first + 1 >= messages.len() {
        return false;
    }
    messages.remove(first);
    *dropped += 1;
    // The replies to the dropped message go with it.
    while let Some(i) = messages.iter().position(|m| m.role != Role::System) {
        if messages[i].role == Role::Assistant
            && Some(i) != messages.iter().rposition(|m| m.role == Role::User)
        {
            messages.remove(i);
            *dropped += 1;
        } else {
            break;
        }
    }
    true
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, c: &str) -> Message {
        Message::new(role, c)
    }

    #[test]
    fn context_rule_keeps_system_and_last_user() {
        let mut msgs = vec![
            m(Role::System, "sys"),
            m(Role::User, "u1"),
            m(Role::Assistant, "a1"),
            m(Role::User, "u2"),
            m(Role::Assistant, "a2"),
            m(Role::User, "u3"),
        ];
        let mut dropped = 0;
        assert!(drop_oldest_exchange(&mut msgs, &mut dropped));
        assert_eq!(
            msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["sys", "u2", "a2", "u3"]
        );
        assert_eq!(dropped, 2);
        assert!(drop_oldest_exchange(&mut msgs, &mut dropped));
        assert_eq!(
            msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["sys", "u3"]
        );
        assert!(!drop_oldest_exchange(&mut msgs, &mut dropped));
        assert_eq!(dropped, 4);
    }
}
