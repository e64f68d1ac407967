//! `conclave`: the headless face of Conclave. Every subcommand is a thin layer over
//! `conclave-core`, the same code the desktop app and the API server run.

mod bench;
mod chat;
mod compare_cmd;
mod devices_cmd;
mod doctor_cmd;
mod history_cmd;
mod leaderboard_cmd;
mod models_cmd;
mod presets_cmd;
mod sampling_flags;
mod serve_cmd;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "conclave",
    version,
    about = "Private, offline chat with local GGUF models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer one prompt with a local model, streaming the answer.
    Chat(chat::ChatArgs),
    /// Measure raw llama.cpp speed against the full Conclave pipeline.
    Bench(bench::BenchArgs),
    /// Answer one prompt with 2–4 models (or settings) side by side, concurrently.
    Compare(compare_cmd::CompareArgs),
    /// Ratings of your models from your side-by-side votes (Elo and Bradley–Terry).
    Leaderboard(leaderboard_cmd::LeaderboardArgs),
    /// A local OpenAI-compatible API (chat completions, models), thinking in reasoning_content.
    Serve(serve_cmd::ServeArgs),
    /// The chat history: list, show, search, export, import, delete.
    History {
        #[command(subcommand)]
        command: history_cmd::HistoryCommand,
    },
    /// The model library: list, inspect, import, download, remove.
    Models {
        #[command(subcommand)]
        command: models_cmd::ModelsCommand,
    },
    /// Saved settings presets: list, show, delete (`chat --preset NAME` uses one).
    Presets {
        #[command(subcommand)]
        command: presets_cmd::PresetsCommand,
    },
    /// What confines the model workers on this machine (Landlock, seccomp), tried for real.
    Doctor(doctor_cmd::DoctorArgs),
    /// Lend this machine's CPU (or GPUs) to another machine's models over llama.cpp's RPC
    /// (no authentication, no encryption: loopback only unless --allow-lan).
    RpcServer(devices_cmd::RpcServerArgs),
    /// The backends and devices llama.cpp sees here (and on --rpc servers), with memory.
    Devices(devices_cmd::DevicesArgs),
    /// Reasoning tools.
    Reasoning {
        #[command(subcommand)]
        command: ReasoningCommand,
    },
}

#[derive(Subcommand)]
enum ReasoningCommand {
    /// Split model outputs into thinking and answer (JSON lines on stdin and stdout).
    Split {
        /// Read one JSON object per line: {"format", "prefilled_open", "chunks"}.
        #[arg(long)]
        batch: bool,
    },
}

/// Where a model runs: `--rpc` servers and `--gpu-layers`, shared by every command that
/// loads one.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PlacementArgs {
    /// llama.cpp RPC servers (`host:port[,host:port…]`, see `conclave rpc-server`) whose
    /// devices take layers of the model.
    #[arg(long, value_parser = parse_rpc_arg, value_delimiter = ',')]
    pub rpc: Vec<String>,
    /// Layers on GPU and RPC devices: auto (llama.cpp's fit to free memory), a number, or
    /// 0 for the CPU only.
    #[arg(long, value_name = "auto|N")]
    pub gpu_layers: Option<conclave_core::protocol::GpuLayers>,
}

impl PlacementArgs {
    pub fn apply(
        &self,
        opts: conclave_core::engine::LoadOptions,
    ) -> conclave_core::engine::LoadOptions {
        conclave_core::engine::LoadOptions {
            rpc: self.rpc.clone(),
            gpu_layers: self.gpu_layers.unwrap_or_default(),
            ..opts
        }
    }
}

pub fn parse_rpc_arg(s: &str) -> Result<String, String> {
    conclave_core::protocol::parse_endpoint(s).map(|_| s.trim().to_owned())
}

/// Finds a model by path, or by file name or stem in the model folders.
pub fn resolve_model(arg: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(arg);
    if p.is_file() {
        return Ok(p);
    }
    let wanted = arg.trim_end_matches(".gguf").to_lowercase();
    let mut candidates = Vec::new();
    for dir in conclave_core::paths::model_search_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if !name.ends_with(".gguf") {
                continue;
            }
            let stem = name.trim_end_matches(".gguf");
            if stem == wanted {
                return Ok(path);
            }
            if stem.contains(&wanted) {
                candidates.push(path);
            }
        }
    }
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => anyhow::bail!(
            "no model '{arg}': not a file, and no .gguf of that name in {}",
            dirs_list()
        ),
        _ => anyhow::bail!(
            "'{arg}' matches several models: {}",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn dirs_list() -> String {
    conclave_core::paths::model_search_dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONCLAVE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conclave: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Chat(args) => chat::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::History { command } => history_cmd::run(command).await,
            Command::Models { command } => models_cmd::run(command).await,
            Command::Presets { command } => presets_cmd::run(command).await,
            Command::Compare(args) => compare_cmd::run(args).await,
            Command::Leaderboard(args) => leaderboard_cmd::run(args).await,
            Command::Serve(args) => serve_cmd::run(args).await,
            Command::Doctor(args) => doctor_cmd::run(args).await,
            Command::RpcServer(args) => devices_cmd::rpc_server(args).await,
            Command::Devices(args) => devices_cmd::devices(args).await,
            Command::Reasoning { command: ReasoningCommand::Split { batch } } => {
                if !batch {
                    anyhow::bail!("only --batch is supported: pipe JSON lines to `conclave reasoning split --batch`");
                }
                let stdin = std::io::stdin();
                let stdout = std::io::stdout();
                conclave_core::reasoning::run_batch_lines(stdin.lock(), stdout.lock())?;
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: scripts read the first line of stderr.
            eprintln!("conclave: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
