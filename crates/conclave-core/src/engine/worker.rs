//! One `conclave-worker` process and its supervision: starting it and waiting for its model,
//! routing its events to the request they answer, and telling how it died.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use super::EngineError;
use crate::protocol::{self, ReadyInfo, WorkerErrorCode, WorkerEvent, WorkerRequest};

/// Lines of the worker's stderr kept for crash reports.
const STDERR_TAIL: usize = 40;

/// How long a loading worker may report nothing (no progress, no `Ready`) before the load
/// is given up. llama.cpp reports progress every few percent of the weights, so even a big
/// model on a slow disk speaks more often than this; a silent worker is stuck, or is not a
/// conclave-worker at all.
const LOAD_STALL: Duration = Duration::from_secs(60);

/// Overrides [`LOAD_STALL`], in seconds (tests use a short one).
pub const STALL_ENV: &str = "CONCLAVE_WORKER_LOAD_STALL_SECS";
/// How long a worker with layers on RPC servers may stay silent while it owes an answer.
/// llama.cpp's RPC client waits on its sockets without a timeout, so a server whose
/// machine is switched off, or whose process hangs, would hold the answer forever. The
/// worker reports every prompt chunk and every token, so silence this long is a stall: a
/// token of a 70B model over a slow link is seconds, a prompt chunk tens of seconds.
pub const RPC_STALL: Duration = Duration::from_secs(120);
/// Overrides [`RPC_STALL`], in seconds.
pub const RPC_STALL_ENV: &str = "CONCLAVE_RPC_STALL_SECS";

/// `off` starts workers without their sandbox (for debugging llama.cpp only).
pub const SANDBOX_ENV: &str = "CONCLAVE_WORKER_SANDBOX";

/// The only variables a worker inherits: it starts with an empty environment, so nothing
/// of the user's session (tokens, proxies, paths) reaches the process that parses GGUFs.
/// The GPU backends' own device selection passes, so a worker loads on the same devices
/// `conclave devices` lists: llama.cpp's Vulkan backend only uses devices of the CPU type
/// (Mesa's lavapipe) when GGML_VK_VISIBLE_DEVICES names them.
const PASSED_ENV: &[&str] = &[
    "CONCLAVE_WORKER_LOG",
    "LD_LIBRARY_PATH",
    protocol::FIT_FREE_MIB_ENV,
    "GGML_VK_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES",
];

/// The longest line read from a worker. Events are small; the largest is `Ready`, which
/// carries the model's chat template (the template guard refuses sources over a megabyte).
pub(super) const MAX_EVENT_LINE: usize = 8 << 20;

/// How long a worker that closed its stdout may take to exit on its own before it is killed
/// (a process that closed its output but kept running would otherwise be waited on forever).
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How to start a worker; kept so a crashed one can be started again the same way.
pub(super) struct WorkerSpec {
    pub bin: Arc<PathBuf>,
    pub path: PathBuf,
    pub n_ctx: u32,
    pub threads: u32,
    /// A model drafting tokens for this one, loaded in the same worker.
    pub draft_model: Option<PathBuf>,
    /// TCP ports the worker may connect to (llama.cpp RPC servers); empty: no network.
    pub tcp_ports: Vec<u16>,
    pub rpc: Vec<String>,
    pub gpu_layers: protocol::GpuLayers,
    /// Silence with a request in flight after which an RPC worker is given up; None:
    /// [`RPC_STALL`] or [`RPC_STALL_ENV`].
    pub rpc_stall: Option<Duration>,
}

type Routes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<WorkerEvent>>>>;

/// One running worker process. Clones share the process; the model's slot holds the
/// current one, so callers never keep the slot locked while an answer streams.
#[derive(Clone)]
pub(super) struct Worker {
    pub stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    routes: Routes,
    pub ready: ReadyInfo,
    /// The model's name, for crash reports.
    model: String,
    /// Set when the process has exited; holds why.
    dead: Arc<Mutex<Option<Crash>>>,
    pub child: Arc<tokio::sync::Mutex<Child>>,
}

#[derive(Clone, Debug)]
pub(super) struct Crash {
    pub cause: String,
    signal: Option<i32>,
    last_stderr: String,
    /// RPC servers the model had layers on that no longer answer: llama.cpp aborts the
    /// worker when one goes away, so these name the cause.
    rpc_lost: Vec<String>,
}

impl Worker {
    pub async fn spawn(
        spec: &WorkerSpec,
        mut progress: Box<dyn FnMut(f32) + Send>,
    ) -> Result<Self, EngineError> {
        let mut cmd = Command::new(spec.bin.as_path());
        cmd.env_clear();
        for name in PASSED_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        if std::env::var(SANDBOX_ENV).is_ok_and(|v| v.trim() == "off") {
            tracing::warn!("{SANDBOX_ENV}=off: the worker runs without its sandbox");
            cmd.arg(protocol::ARG_SANDBOX).arg("off");
        }
        for port in &spec.tcp_ports {
            cmd.arg(protocol::ARG_ALLOW_TCP_CONNECT)
                .arg(port.to_string());
        }
        cmd.arg(protocol::ARG_MODEL)
            .arg(&spec.path)
            .arg(protocol::ARG_N_CTX)
            .arg(spec.n_ctx.to_string())
            .arg(protocol::ARG_THREADS)
            .arg(spec.threads.to_string());
        // Only when set, so a worker from before these options still loads plain models.
        if !spec.rpc.is_empty() {
            cmd.arg(protocol::ARG_RPC).arg(spec.rpc.join(","));
        }
        if spec.gpu_layers != protocol::GpuLayers::Auto {
            cmd.arg(protocol::ARG_GPU_LAYERS)
                .arg(spec.gpu_layers.to_string());
        }
        if let Some(draft) = &spec.draft_model {
            cmd.arg(protocol::ARG_DRAFT_MODEL).arg(draft);
        }
        let mut child = cmd
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
        let stdin = Arc::new(tokio::sync::Mutex::new(stdin));
        let (load_tx, mut load_rx) = mpsc::unbounded_channel();
        tokio::spawn(
            Reader {
                routes: routes.clone(),
                dead: dead.clone(),
                child: child.clone(),
                stdin: stdin.clone(),
                tail: tail.clone(),
                model: spec.path.display().to_string(),
                rpc: spec.rpc.clone(),
                stall: (!spec.rpc.is_empty()).then(|| spec.rpc_stall.unwrap_or_else(rpc_stall)),
                stalled: None,
                loading: Some(load_tx),
            }
            .run(stdout),
        );

        let stall = load_stall();
        let failed = |reason: String| EngineError::LoadFailed {
            path: spec.path.display().to_string(),
            reason,
            last_stderr: tail_text(&tail),
        };
        let outcome = loop {
            match tokio::time::timeout(stall, load_rx.recv()).await {
                Ok(Some(Loading::Progress(fraction))) => progress(fraction),
                Ok(Some(Loading::Ready(info))) if info.protocol == protocol::PROTOCOL_VERSION => {
                    break Ok(*info)
                }
                Ok(Some(Loading::Ready(info))) => break Err(mismatch(spec, info.protocol)),
                Ok(Some(Loading::Failed { message })) => {
                    let last_stderr = tail_text(&tail);
                    let reason = match last_error_line(&last_stderr) {
                        Some(line) => format!("{message}; llama.cpp said: {line}"),
                        None => message,
                    };
                    break Err(EngineError::LoadFailed {
                        path: spec.path.display().to_string(),
                        reason,
                        last_stderr,
                    });
                }
                Ok(Some(Loading::Unreadable { line })) => {
                    break Err(match ready_version(&line) {
                        Some(version) => mismatch(spec, version),
                        None => failed(format!(
                            "the worker program at {} wrote a line this app cannot read: {}; \
                             it is probably an older or foreign build: rebuild it with \
                             `cargo build -p conclave-worker`",
                            spec.bin.display(),
                            line_start(&line)
                        )),
                    })
                }
                Ok(None) => break Err(failed("the worker stopped before reporting".into())),
                Err(_) => {
                    break Err(failed(format!(
                        "the worker reported no progress for {} s and was stopped \
                         ({STALL_ENV} sets this limit)",
                        stall.as_secs_f64()
                    )))
                }
            }
        };
        let ready = match outcome {
            Ok(ready) => ready,
            Err(e) => {
                // It may still be running (stalled, or talking another protocol): the reader
                // holds the process, so dropping ours would not end it.
                let _ = child.lock().await.start_kill();
                return Err(e);
            }
        };
        Ok(Self {
            stdin,
            routes,
            ready,
            model: super::model_name(&spec.path),
            dead,
            child,
        })
    }

    /// The model's name, as answers and crash reports give it.
    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn crash(&self) -> Option<Crash> {
        self.dead.lock().ok().and_then(|d| d.clone())
    }

    pub async fn send(&self, req: &WorkerRequest) -> Result<(), std::io::Error> {
        let line = protocol::to_line(req);
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(line.as_bytes()).await?;
        stdin.flush().await
    }

    /// Where the events of request `id` go until [`Worker::unroute`].
    pub fn route(&self, id: u64) -> mpsc::UnboundedReceiver<WorkerEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut r) = self.routes.lock() {
            r.insert(id, tx);
        }
        // The process may have died between the caller's check and now: fail at once.
        if let Some(crash) = self.crash() {
            if let Some(tx) = self.routes.lock().ok().and_then(|mut r| r.remove(&id)) {
                let _ = tx.send(WorkerEvent::Error {
                    id: Some(id),
                    code: WorkerErrorCode::WorkerCrashed,
                    message: crash.cause,
                    prompt_tokens: None,
                });
            }
        }
        rx
    }

    pub fn unroute(&self, id: u64) {
        if let Ok(mut r) = self.routes.lock() {
            r.remove(&id);
        }
    }

    /// Sends a request; a write that fails because the process died reports the crash.
    pub async fn request(&self, req: &WorkerRequest) -> Result<(), EngineError> {
        self.send(req).await.map_err(|e| match self.crash() {
            Some(c) => self.crashed_from(Some(c)),
            None => EngineError::Io(e),
        })
    }

    /// The error for a request whose route ended without an answer.
    pub fn crashed(&self) -> EngineError {
        self.crashed_from(self.crash())
    }

    fn crashed_from(&self, crash: Option<Crash>) -> EngineError {
        let c = crash.unwrap_or(Crash {
            cause: "its output ended".into(),
            signal: None,
            last_stderr: String::new(),
            rpc_lost: Vec::new(),
        });
        if !c.rpc_lost.is_empty() {
            return EngineError::RpcLost {
                model: self.model.clone(),
                hosts: c.rpc_lost,
                cause: c.cause,
            };
        }
        EngineError::WorkerCrashed {
            model: self.model.clone(),
            cause: c.cause,
            signal: c.signal,
            last_stderr: c.last_stderr,
        }
    }

    /// The error for a request the worker refused or failed.
    pub fn error(&self, code: WorkerErrorCode, message: String) -> EngineError {
        if code == WorkerErrorCode::WorkerCrashed {
            // The reader saw the process die; give the crash a moment to be recorded.
            return self.crashed();
        }
        EngineError::Worker { code, message }
    }

    /// One request that expects a single answer event.
    pub async fn ask(&self, id: u64, req: &WorkerRequest) -> Result<WorkerEvent, EngineError> {
        let mut route = self.route(id);
        let res = match self.request(req).await {
            Ok(()) => match route.recv().await {
                Some(WorkerEvent::Error { code, message, .. }) => Err(self.error(code, message)),
                Some(event) => Ok(event),
                None => Err(self.crashed()),
            },
            Err(e) => Err(e),
        };
        self.unroute(id);
        res
    }
}

/// What a loading worker reports, passed from the reader to [`Worker::spawn`].
enum Loading {
    Progress(f32),
    Ready(Box<ReadyInfo>),
    Failed {
        message: String,
    },
    /// A line that is not an event of this protocol.
    Unreadable {
        line: String,
    },
}

/// Reads a worker's stdout: load reports go to the loader, events to the request they
/// answer; once the output ends, records how the process ended and fails what was pending.
struct Reader {
    routes: Routes,
    dead: Arc<Mutex<Option<Crash>>>,
    child: Arc<tokio::sync::Mutex<Child>>,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    model: String,
    /// RPC servers of this worker, probed when it dies.
    rpc: Vec<String>,
    /// Silence after which a worker that owes an answer is stopped (RPC workers only).
    stall: Option<Duration>,
    /// Set when it was stopped for that.
    stalled: Option<Duration>,
    /// Until the worker is ready (or its load failed).
    loading: Option<mpsc::UnboundedSender<Loading>>,
}

impl Reader {
    async fn run(mut self, stdout: ChildStdout) {
        let mut reader = BufReader::new(stdout);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the worker last said something, or last had nothing to say (idle time is
        // not silence).
        let mut heard = tokio::time::Instant::now();
        loop {
            // The read is kept across ticks: a line half read when a tick fires must not
            // be lost.
            let read = read_capped_line(&mut reader, MAX_EVENT_LINE);
            tokio::pin!(read);
            let result = loop {
                tokio::select! {
                    r = &mut read => break r,
                    _ = tick.tick(), if self.stall.is_some() && self.stalled.is_none() => {
                        if !self.owes_answer() {
                            heard = tokio::time::Instant::now();
                        } else if let Some(limit) = self.stall.filter(|l| heard.elapsed() >= *l) {
                            tracing::warn!(
                                model = self.model,
                                rpc = ?self.rpc,
                                "no word from the worker for {} s with an answer due: stopping it",
                                limit.as_secs_f64()
                            );
                            self.stalled = Some(limit);
                            // Its output then ends, and `ended` reports the stall.
                            let _ = self.child.lock().await.start_kill();
                        }
                    }
                }
            };
            heard = tokio::time::Instant::now();
            let line = match result {
                Ok(CappedLine::Text(line)) => line,
                Ok(CappedLine::TooLong { len }) => {
                    let what =
                        format!("a line of {len} or more bytes (the limit is {MAX_EVENT_LINE})");
                    self.unreadable(what, "too long".into()).await;
                    // A worker that writes that much is broken or hostile: its output can no
                    // longer be trusted, and reading on would only feed it memory.
                    break;
                }
                Ok(CappedLine::Eof) | Err(_) => break,
            };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<WorkerEvent>(&line) {
                Ok(event) => self.event(event),
                Err(e) => self.unreadable(line, e.to_string()).await,
            }
        }
        self.ended().await;
    }

    /// A request is in flight and the load is over (loading has its own limit).
    fn owes_answer(&self) -> bool {
        self.loading.is_none() && self.routes.lock().is_ok_and(|r| !r.is_empty())
    }

    fn load_report(&mut self, report: Loading) {
        let last = !matches!(report, Loading::Progress(_));
        if let Some(tx) = &self.loading {
            let _ = tx.send(report);
        }
        if last {
            self.loading = None;
        }
    }

    fn event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::LoadProgress { fraction } => self.load_report(Loading::Progress(fraction)),
            WorkerEvent::Ready(info) => self.load_report(Loading::Ready(Box::new(info))),
            WorkerEvent::Error {
                id: None,
                code,
                message,
                ..
            } => {
                if self.loading.is_some() {
                    self.load_report(Loading::Failed { message });
                } else {
                    tracing::warn!("worker error: {code}: {message}");
                }
            }
            other => {
                let sender = event_id(&other)
                    .and_then(|id| self.routes.lock().ok().and_then(|r| r.get(&id).cloned()));
                if let Some(s) = sender {
                    let _ = s.send(other);
                }
            }
        }
    }

    /// A line that is not part of the protocol: before `Ready` it fails the load (what a
    /// stale or foreign binary produces); after, it fails the requests in flight, whose
    /// output can no longer be trusted, and stops them in the worker.
    async fn unreadable(&mut self, line: String, error: String) {
        tracing::warn!(
            model = self.model,
            "unreadable line from worker: {error}: {}",
            line_start(&line)
        );
        if self.loading.is_some() {
            self.load_report(Loading::Unreadable { line });
            return;
        }
        let pending: Vec<_> = self
            .routes
            .lock()
            .map(|mut r| r.drain().collect())
            .unwrap_or_default();
        let message = format!(
            "the worker wrote a line this app cannot read ({error}): {}",
            line_start(&line)
        );
        for (id, route) in pending {
            let _ = route.send(WorkerEvent::Error {
                id: Some(id),
                code: WorkerErrorCode::BadOutput,
                message: message.clone(),
                prompt_tokens: None,
            });
            let cancel = protocol::to_line(&WorkerRequest::Cancel { id });
            let mut stdin = self.stdin.lock().await;
            let _ = stdin.write_all(cancel.as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }

    /// stdout closed: the process is exiting or gone. Find out how it ended.
    async fn ended(mut self) {
        let status = {
            let mut child = self.child.lock().await;
            // Its own exit status when it ends by itself; killed when it lingers, so the
            // wait below always returns.
            let deadline = tokio::time::Instant::now() + EXIT_GRACE;
            while matches!(child.try_wait(), Ok(None)) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.start_kill();
            }
            child.wait().await
        };
        // Give the stderr reader a moment to collect the last lines (an abort message).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let last_stderr = tail_text(&self.tail);
        let (mut cause, signal) = describe_exit(status);
        tracing::warn!(model = self.model, cause, "worker exited");
        let mut rpc_lost = if self.rpc.is_empty() || self.loading.is_some() {
            Vec::new()
        } else {
            lost_rpc_servers(&self.rpc, &last_stderr).await
        };
        if let Some(limit) = self.stalled {
            cause = format!(
                "no reply for {} s ({RPC_STALL_ENV} sets this limit)",
                limit.as_secs_f64()
            );
            // A hung server still accepts connections (its kernel does): when no probe
            // tells which one hangs, every one is a suspect.
            if rpc_lost.is_empty() {
                rpc_lost = self.rpc.clone();
            }
        }
        let crash = Crash {
            cause,
            signal,
            last_stderr,
            rpc_lost,
        };
        if let Ok(mut d) = self.dead.lock() {
            *d = Some(crash.clone());
        }
        self.load_report(Loading::Failed {
            message: format!("the worker exited while loading ({})", crash.cause),
        });
        let pending: Vec<_> = self
            .routes
            .lock()
            .map(|mut r| r.drain().collect())
            .unwrap_or_default();
        for (id, s) in pending {
            let _ = s.send(WorkerEvent::Error {
                id: Some(id),
                code: WorkerErrorCode::WorkerCrashed,
                message: crash.cause.clone(),
                prompt_tokens: None,
            });
        }
    }
}

/// One line from a worker's output, read with a cap.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CappedLine {
    /// Invalid UTF-8 replaced by U+FFFD: the JSON parser says what is wrong with it.
    Text(String),
    /// Over the cap; `len` bytes were read before giving up on it.
    TooLong {
        len: usize,
    },
    Eof,
}

/// `lines()` without its unbounded buffer: stops reading a line once it passes `max` bytes.
pub(super) async fn read_capped_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<CappedLine> {
    let mut buf = Vec::new();
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() {
                CappedLine::Eof
            } else {
                CappedLine::Text(String::from_utf8_lossy(&buf).into_owned())
            });
        }
        let newline = chunk.iter().position(|&b| b == b'\n');
        let take = newline.map_or(chunk.len(), |i| i + 1);
        if buf.len() + take > max + 1 {
            let len = buf.len() + take;
            reader.consume(take);
            return Ok(CappedLine::TooLong { len });
        }
        buf.extend_from_slice(&chunk[..take]);
        reader.consume(take);
        if newline.is_some() {
            buf.pop();
            return Ok(CappedLine::Text(String::from_utf8_lossy(&buf).into_owned()));
        }
    }
}

/// Which of a dead worker's RPC servers no longer accept connections. When all still do
/// but llama.cpp said an RPC server failed, all are named: one of them broke the exchange.
async fn lost_rpc_servers(rpc: &[String], last_stderr: &str) -> Vec<String> {
    let mut lost = Vec::new();
    for endpoint in rpc {
        let probe = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(endpoint.as_str()),
        )
        .await;
        if !matches!(probe, Ok(Ok(_))) {
            lost.push(endpoint.clone());
        }
    }
    if lost.is_empty() && last_stderr.contains("RPC server") {
        return rpc.to_vec();
    }
    lost
}

/// [`RPC_STALL`], or [`RPC_STALL_ENV`] seconds.
fn rpc_stall() -> Duration {
    std::env::var(RPC_STALL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(RPC_STALL, Duration::from_secs_f64)
}

/// How long a loading worker may stay silent: [`LOAD_STALL`], or [`STALL_ENV`] seconds.
fn load_stall() -> Duration {
    std::env::var(STALL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(LOAD_STALL, Duration::from_secs_f64)
}

fn mismatch(spec: &WorkerSpec, worker: u32) -> EngineError {
    EngineError::ProtocolMismatch {
        bin: spec.bin.display().to_string(),
        worker,
        app: protocol::PROTOCOL_VERSION,
    }
}

/// The protocol version of a `Ready` line that does not parse as this version's `Ready`
/// (its fields changed): the version is then the useful thing to report.
fn ready_version(line: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("type")?.as_str()? != "ready" {
        return None;
    }
    let version = v
        .get("protocol")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Some(u32::try_from(version).unwrap_or(u32::MAX))
}

/// The start of a line, for messages: enough to recognise it, never a whole prompt.
fn line_start(line: &str) -> String {
    const SHOWN: usize = 80;
    let line = line.trim();
    match line.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("`{}…`", &line[..cut]),
        None => format!("`{line}`"),
    }
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    tail.lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn event_id(e: &WorkerEvent) -> Option<u64> {
    match e {
        WorkerEvent::Started { id, .. }
        | WorkerEvent::PromptProgress { id, .. }
        | WorkerEvent::Delta { id, .. }
        | WorkerEvent::Tokenized { id, .. } => Some(*id),
        WorkerEvent::Done(d) => Some(d.id),
        WorkerEvent::BenchResult(b) => Some(b.id),
        WorkerEvent::Warmed(w) => Some(w.id),
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

/// The last non-empty line of a stderr tail, for error messages.
pub(super) fn tail_hint(tail: &str) -> String {
    match tail.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => format!("; last log line: {}", last.trim()),
        None => String::new(),
    }
}
