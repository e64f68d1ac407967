//! `conclave-worker`: the only Conclave process that links llama.cpp.
//!
//! One worker holds one model. llama.cpp reports many failures by aborting the process
//! (`GGML_ASSERT`), and a hostile GGUF or an out-of-memory can take down whatever loaded it;
//! keeping it in a child process means such a failure kills this worker and never the app.
//! The core reads our stdout line by line (see `conclave_protocol`); everything
//! llama.cpp logs goes to stderr, which the core keeps the tail of for crash reports.

mod generate;
mod prefix;
mod speculative;
mod text;

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use conclave_protocol::{self as protocol, WorkerErrorCode, WorkerEvent, WorkerRequest};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

struct Args {
    model: std::path::PathBuf,
    n_ctx: u32,
    threads: u32,
    draft_model: Option<std::path::PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut model = None;
    let mut n_ctx = 4096;
    let mut threads = 1;
    let mut draft_model = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            protocol::ARG_MODEL => model = Some(value()?.into()),
            protocol::ARG_N_CTX => n_ctx = value()?.parse().context("--n-ctx")?,
            protocol::ARG_THREADS => threads = value()?.parse().context("--threads")?,
            protocol::ARG_DRAFT_MODEL => draft_model = Some(value()?.into()),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        model: model.context("--model is required")?,
        n_ctx,
        threads: threads.max(1),
        draft_model,
    })
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

fn spawn_stdin_reader() -> mpsc::Receiver<Incoming> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let msg = match serde_json::from_str::<WorkerRequest>(&line) {
                Ok(req) => Incoming::Request(req),
                Err(e) => Incoming::BadLine(format!("bad request line: {e}")),
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
        // Dropping `tx` tells the main loop that the core closed our stdin.
    });
    rx
}

fn main() {
    // llama.cpp's log goes to stderr through tracing, warnings and errors only: load
    // failures are explained only there, and the core shows the tail of it.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONCLAVE_WORKER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let mut out = Out(std::io::stdout());
    if let Err(e) = run(&mut out) {
        out.error(None, WorkerErrorCode::LoadFailed, format!("{e:#}"));
        std::process::exit(2);
    }
}

fn run(out: &mut Out) -> anyhow::Result<()> {
    let args = parse_args()?;
    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    let backend = LlamaBackend::init().context("initialising llama.cpp")?;

    let started = Instant::now();
    let mut last_reported = -1.0f32;
    let progress_out = std::io::stdout();
    let params = LlamaModelParams::default()
        .with_use_mmap(true)
        .with_progress_callback(move |fraction| {
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
    let model = LlamaModel::load_from_file(&backend, &args.model, &params).map_err(|e| {
        anyhow::anyhow!(
            "llama.cpp could not load {} ({e}); see the worker log for the reason",
            args.model.display()
        )
    })?;
    // The model lives as long as the process; leaking it lets contexts borrow it for 'static.
    let model: &'static LlamaModel = Box::leak(Box::new(model));
    let draft = match &args.draft_model {
        Some(path) => {
            let draft = LlamaModel::load_from_file(
                &backend,
                path,
                &LlamaModelParams::default().with_use_mmap(true),
            )
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

    let mut engine = generate::Generator::new(backend, model, args.n_ctx, args.threads, draft)?;
    out.send(&WorkerEvent::Ready(engine.ready_info(started.elapsed())));

    let rx = spawn_stdin_reader();
    let mut queue = generate::Queue::new(rx);
    while let Some(incoming) = queue.next_blocking() {
        match incoming {
            Incoming::BadLine(msg) => out.error(None, WorkerErrorCode::BadRequest, msg),
            Incoming::Request(WorkerRequest::Generate(req)) => {
                engine.generate(req, &mut queue, out)
            }
            Incoming::Request(WorkerRequest::Tokenize { id, text }) => {
                let tokens = engine.count_tokens(&text);
                out.send(&WorkerEvent::Tokenized { id, tokens });
            }
            Incoming::Request(WorkerRequest::Bench(req)) => engine.bench(req, out),
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
