//! `conclave-worker`: the only Conclave process that links llama.cpp.
//!
//! One worker holds one model. llama.cpp reports many failures by aborting the process
//! (`GGML_ASSERT`), and a hostile GGUF or an out-of-memory can take down whatever loaded it;
//! keeping it in a child process means such a failure kills this worker and never the app.
//! The core reads our stdout line by line (see `conclave_protocol`); everything
//! llama.cpp logs goes to stderr, which the core keeps the tail of for crash reports.

mod devices;
mod generate;
mod lines;
mod prefix;
mod sandbox;
mod speculative;
mod text;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use conclave_protocol::{
    self as protocol, SandboxCheck, SandboxProbe, SandboxStatus, WorkerErrorCode, WorkerEvent,
    WorkerRequest,
};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use protocol::GpuLayers;

/// The longest request line read from the core. A request carries a whole rendered
/// prompt: a million-token context is a few megabytes of text, more once JSON-escaped.
const MAX_REQUEST_LINE: usize = 64 << 20;

struct Args {
    model: Option<PathBuf>,
    n_ctx: u32,
    threads: u32,
    /// A model with the same vocabulary that drafts tokens for `model`.
    draft_model: Option<PathBuf>,
    sandbox: bool,
    tcp_ports: Vec<u16>,
    check: bool,
    check_connect: String,
    check_open: PathBuf,
    rpc: Vec<String>,
    gpu_layers: GpuLayers,
    rpc_server: bool,
    list_devices: bool,
    host: String,
    port: u16,
    allow_lan: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        model: None,
        n_ctx: 4096,
        threads: 1,
        draft_model: None,
        sandbox: true,
        tcp_ports: Vec::new(),
        check: false,
        check_connect: "127.0.0.1:9".into(),
        check_open: "/etc/passwd".into(),
        rpc: Vec::new(),
        gpu_layers: GpuLayers::Auto,
        rpc_server: false,
        list_devices: false,
        host: "127.0.0.1".into(),
        port: 50052,
        allow_lan: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            protocol::ARG_MODEL => args.model = Some(value()?.into()),
            protocol::ARG_N_CTX => args.n_ctx = value()?.parse().context("--n-ctx")?,
            protocol::ARG_THREADS => args.threads = value()?.parse().context("--threads")?,
            protocol::ARG_DRAFT_MODEL => args.draft_model = Some(value()?.into()),
            protocol::ARG_SANDBOX => {
                args.sandbox = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => bail!("--sandbox takes on or off, not {other}"),
                }
            }
            protocol::ARG_ALLOW_TCP_CONNECT => args.tcp_ports.push(
                value()?
                    .parse()
                    .context("--allow-tcp-connect takes a port")?,
            ),
            protocol::ARG_SANDBOX_CHECK => args.check = true,
            protocol::ARG_CHECK_CONNECT => args.check_connect = value()?,
            protocol::ARG_CHECK_OPEN => args.check_open = value()?.into(),
            protocol::ARG_RPC => {
                args.rpc = protocol::parse_rpc_list(&value()?).map_err(anyhow::Error::msg)?
            }
            protocol::ARG_GPU_LAYERS => {
                args.gpu_layers = GpuLayers::parse(&value()?).map_err(anyhow::Error::msg)?
            }
            protocol::ARG_RPC_SERVER => args.rpc_server = true,
            protocol::ARG_LIST_DEVICES => args.list_devices = true,
            protocol::ARG_HOST => args.host = value()?,
            protocol::ARG_PORT => args.port = value()?.parse().context("--port")?,
            protocol::ARG_ALLOW_LAN => args.allow_lan = true,
            other => bail!("unknown argument {other}"),
        }
    }
    args.threads = args.threads.max(1);
    Ok(args)
}

impl Args {
    fn policy(&self) -> sandbox::Policy {
        sandbox::Policy {
            model: self.model.clone(),
            draft_model: self.draft_model.clone(),
            network: {
                // The RPC servers' ports too, so `--list-devices --rpc …` can reach them.
                let mut ports = self.tcp_ports.clone();
                for e in &self.rpc {
                    if let Ok((_, port)) = protocol::parse_endpoint(e) {
                        if !ports.contains(&port) {
                            ports.push(port);
                        }
                    }
                }
                if ports.is_empty() {
                    sandbox::Network::None
                } else {
                    sandbox::Network::TcpConnect(ports)
                }
            },
        }
    }
}

/// Writes protocol events to stdout, one flushed line each, so tokens stream without delay.
pub struct Out(std::io::Stdout);

impl Out {
    pub fn send(&mut self, event: &WorkerEvent) {
        let line = protocol::to_line(event);
        let mut lock = self.0.lock();
        // A write error means the core is gone; the stdin reader notices and we exit.
        let _ = lock.write_all(line.as_bytes());
        let _ = lock.flush();
    }

    /// One line that is not an event (the device list of `--list-devices`).
    pub fn send_raw(&mut self, line: &str) {
        let mut lock = self.0.lock();
        let _ = lock.write_all(line.as_bytes());
        let _ = lock.flush();
    }

    pub fn error(&mut self, id: Option<u64>, code: WorkerErrorCode, message: impl Into<String>) {
        self.send(&WorkerEvent::Error {
            id,
            code,
            message: message.into(),
            prompt_tokens: None,
        });
    }
}

/// What the stdin reader hands the main loop.
pub enum Incoming {
    Request(WorkerRequest),
    BadLine(String),
}

/// True until the model is loaded: a core that closes our stdin by then has given up on
/// the load, and nothing would ever read the answer.
static LOADING: AtomicBool = AtomicBool::new(true);

/// Started before the model is loaded, so a closed pipe ends a load in progress.
fn spawn_stdin_reader() -> mpsc::Receiver<Incoming> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut reader = lines::CappedLines::new(stdin.lock(), MAX_REQUEST_LINE);
        loop {
            let msg = match reader.next_line() {
                Ok(lines::Line::Text(line)) if line.trim().is_empty() => continue,
                Ok(lines::Line::Text(line)) => match serde_json::from_str::<WorkerRequest>(&line) {
                    Ok(req) => Incoming::Request(req),
                    Err(e) => Incoming::BadLine(format!("bad request line: {e}")),
                },
                Ok(lines::Line::TooLong { len }) => Incoming::BadLine(format!(
                    "request line longer than {MAX_REQUEST_LINE} bytes ({len} read) was skipped"
                )),
                Ok(lines::Line::Eof) | Err(_) => break,
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
        if LOADING.load(Ordering::SeqCst) {
            // llama.cpp's load cannot be interrupted from another thread; the weights are
            // mapped, and exiting frees them at once.
            std::process::exit(0);
        }
        // Dropping `tx` tells the main loop that the core closed our stdin.
    });
    rx
}

fn main() {
    // On an abort ggml attaches gdb for a backtrace, whose output lands on our stdout, the
    // protocol's channel: the core would then report unreadable output instead of the
    // crash (and, with RPC, of the server that went away).
    std::env::set_var("GGML_NO_BACKTRACE", "1");
    // llama.cpp's log goes to stderr through tracing, warnings and errors only: load
    // failures are explained only there, and the core shows the tail of it.
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    // Each layer filters for itself: the log goes to stderr at `warn`, while the layer
    // log sees llama.cpp's debug lines only during the load (see devices::LayerLog).
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_target(false)
                .with_filter(
                    tracing_subscriber::EnvFilter::try_from_env("CONCLAVE_WORKER_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                ),
        )
        .with(
            devices::LayerLogLayer.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                devices::LayerLog::capturing() && meta.target() == "llama-cpp-2"
            })),
        )
        .init();
    let mut out = Out(std::io::stdout());
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            out.error(None, WorkerErrorCode::LoadFailed, format!("{e:#}"));
            std::process::exit(2);
        }
    };
    if args.check {
        sandbox_check(&args);
        return;
    }
    // Before any thread starts: the sandbox binds the calling thread and its children.
    // Not for `--rpc-server`: it opens no model and must listen for other machines, which
    // the sandbox forbids; the user starts it on purpose (`conclave rpc-server`).
    let sandbox = if args.rpc_server {
        tracing::warn!("sandbox: off for --rpc-server (it listens on the network)");
        SandboxStatus::default()
    } else if args.sandbox {
        sandbox::apply(&args.policy())
    } else {
        tracing::warn!("sandbox: off (--sandbox off)");
        SandboxStatus {
            warnings: vec!["the worker was started with --sandbox off".into()],
            ..SandboxStatus::default()
        }
    };
    // The RPC server and the device list take no requests: their stdin may well be closed
    // (a terminal's, or /dev/null), which for a loading model means "give up".
    let rx = if args.rpc_server || args.list_devices {
        mpsc::channel().1
    } else {
        spawn_stdin_reader()
    };
    if let Err(e) = run(&mut out, &args, rx, sandbox) {
        out.error(None, WorkerErrorCode::LoadFailed, format!("{e:#}"));
        std::process::exit(2);
    }
}

/// `--sandbox-check`: applies the sandbox, then tries what it must refuse and what the
/// worker needs, and prints the outcome as one JSON line.
fn sandbox_check(args: &Args) {
    let status = sandbox::apply(&args.policy());
    let mut probes = Vec::new();
    let probe = |name: &str, target: String, result: std::io::Result<()>| SandboxProbe {
        name: name.into(),
        target,
        denied: matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied),
        result: match result {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        },
    };
    probes.push(probe(
        "open_outside",
        args.check_open.display().to_string(),
        std::fs::File::open(&args.check_open).map(drop),
    ));
    let dir = std::env::temp_dir().join(format!("conclave-sandbox-check-{}", std::process::id()));
    probes.push(probe(
        "create_outside",
        dir.display().to_string(),
        std::fs::create_dir(&dir).map(|()| {
            let _ = std::fs::remove_dir(&dir);
        }),
    ));
    let connect = args
        .check_connect
        .parse::<std::net::SocketAddr>()
        .map_err(std::io::Error::other)
        .and_then(|addr| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).map(drop)
        });
    probes.push(probe("connect_tcp", args.check_connect.clone(), connect));
    // A name lookup needs a UDP (or TCP) socket to a resolver: the first step is refused.
    probes.push(probe(
        "udp_socket",
        "0.0.0.0:0".into(),
        std::net::UdpSocket::bind("0.0.0.0:0").map(drop),
    ));
    if let Some(model) = &args.model {
        let read = std::fs::File::open(model).and_then(|mut f| {
            let mut magic = [0u8; 4];
            std::io::Read::read_exact(&mut f, &mut magic)
        });
        probes.push(probe("read_model", model.display().to_string(), read));
    }
    probes.push(probe(
        "read_proc_self",
        "/proc/self/status".into(),
        std::fs::read_to_string("/proc/self/status").map(drop),
    ));
    println!(
        "{}",
        serde_json::to_string(&SandboxCheck { status, probes }).unwrap_or_default()
    );
}

fn run(
    out: &mut Out,
    args: &Args,
    rx: mpsc::Receiver<Incoming>,
    sandbox: SandboxStatus,
) -> anyhow::Result<()> {
    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    let backend = LlamaBackend::init().context("initialising llama.cpp")?;

    if args.rpc_server {
        if !protocol::rpc_host_allowed(&args.host, args.allow_lan) {
            bail!(
                "refusing to serve RPC on {}: {}. Use 127.0.0.1, or pass --allow-lan on a \
                 network you trust",
                args.host,
                protocol::RPC_NO_AUTH
            );
        }
        return devices::serve_rpc(&format!("{}:{}", args.host, args.port), args.threads);
    }
    devices::add_rpc_servers(&args.rpc)?;
    let list = devices::list();
    if args.list_devices {
        out.send_raw(&protocol::to_line(&list));
        return Ok(());
    }
    let model_path = args.model.clone().context("--model is required")?;

    let started = Instant::now();
    let placement = devices::place(&model_path, args.n_ctx, args.gpu_layers, &list)?;
    let mut last_reported = -1.0f32;
    let progress_out = std::io::stdout();
    let params = placement.params.with_progress_callback(move |fraction| {
        // Throttled: the callback fires per tensor.
        if fraction - last_reported >= 0.05 || fraction >= 1.0 {
            last_reported = fraction;
            let line = protocol::to_line(&WorkerEvent::LoadProgress { fraction });
            let mut lock = progress_out.lock();
            let _ = lock.write_all(line.as_bytes());
            let _ = lock.flush();
        }
        true
    });
    devices::LayerLog::start();
    let loaded = LlamaModel::load_from_file(&backend, &model_path, &params);
    let placed = devices::LayerLog::finish(&list);
    let model = loaded.map_err(|e| {
        let offloaded: u32 = placed
            .iter()
            .filter(|d| d.device.kind != "cpu")
            .map(|d| d.layers)
            .sum();
        if offloaded > 0 {
            anyhow::anyhow!(
                "llama.cpp could not load {} with {offloaded} layers on {} ({e}); a device may \
                 be out of memory: try fewer layers (--gpu-layers {}) or --gpu-layers 0 for \
                 the CPU only",
                model_path.display(),
                placed
                    .iter()
                    .filter(|d| d.device.kind != "cpu")
                    .map(|d| d.device.label())
                    .collect::<Vec<_>>()
                    .join(", "),
                offloaded / 2
            )
        } else {
            anyhow::anyhow!(
                "llama.cpp could not load {} ({e}); see the worker log for the reason",
                model_path.display()
            )
        }
    })?;
    // The model lives as long as the process; leaking it lets contexts borrow it for 'static.
    let model: &'static LlamaModel = Box::leak(Box::new(model));
    let draft = match &args.draft_model {
        Some(path) => {
            // On the CPU: it is small, and the fit above measured free device memory for
            // the target alone (nor should it land on an RPC server by default).
            let params = LlamaModelParams::default()
                .with_use_mmap(true)
                .with_n_gpu_layers(0);
            let draft = LlamaModel::load_from_file(&backend, path, &params)
            .map_err(|e| {
                anyhow::anyhow!(
                    "llama.cpp could not load the draft model {} ({e}); see the worker log for the reason",
                    path.display()
                )
            })?;
            speculative::check_vocab(model, &draft)?;
            let draft: &'static LlamaModel = Box::leak(Box::new(draft));
            Some(draft)
        }
        None => None,
    };
    let backend: &'static LlamaBackend = Box::leak(Box::new(backend));

    let engine = generate::Generator::new(backend, model, args.n_ctx, args.threads, draft);
    let memory = devices::LayerLog::memory(&list);
    let mut engine = engine?;
    LOADING.store(false, Ordering::SeqCst);
    let mut ready = engine.ready_info(started.elapsed(), sandbox);
    ready.memory = memory;
    ready.gpu_layers = placed
        .iter()
        .filter(|d| d.device.kind != "cpu")
        .map(|d| d.layers)
        .sum();
    ready.devices = placed;
    ready.gpu_layers_source = placement.source;
    out.send(&WorkerEvent::Ready(ready));

    let mut queue = generate::Queue::new(rx);
    while let Some(incoming) = queue.next_blocking() {
        match incoming {
            Incoming::BadLine(msg) => out.error(None, WorkerErrorCode::BadRequest, msg),
            Incoming::Request(WorkerRequest::Generate(req)) => {
                engine.generate(*req, &mut queue, out)
            }
            Incoming::Request(WorkerRequest::Tokenize { id, text }) => {
                let tokens = engine.count_tokens(&text);
                out.send(&WorkerEvent::Tokenized { id, tokens });
            }
            Incoming::Request(WorkerRequest::Bench(req)) => engine.bench(req, out),
            Incoming::Request(WorkerRequest::Warm(req)) => engine.warm(req, &mut queue, out),
            Incoming::Request(WorkerRequest::SetThreads { threads }) => {
                if let Err(e) = engine.set_threads(threads) {
                    out.error(None, WorkerErrorCode::ThreadsFailed, format!("{e:#}"));
                }
            }
            // A cancel for a request that is not running any more: nothing to stop.
            Incoming::Request(WorkerRequest::Cancel { .. }) => {}
        }
    }
    Ok(())
}
