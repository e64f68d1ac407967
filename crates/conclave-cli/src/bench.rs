//! `conclave bench`: raw llama.cpp decode speed inside the worker (llama-bench's method)
//! against the full pipeline (template, worker, IPC, streaming decode, metrics) on a real
//! chat prompt, in one run, with their ratios.

use std::time::Instant;

use conclave_core::engine::{ChatRequest, Engine, LoadOptions, LoadedModel};
use conclave_core::{ChatEvent, Message, Role, SamplingParams};
use serde::Serialize;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// The model to measure.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub threads: Option<u32>,
    #[arg(long, default_value_t = 64)]
    pub prompt_tokens: u32,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: u32,
    #[arg(long, default_value_t = 5)]
    pub reps: u32,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub placement: crate::PlacementArgs,
}

#[derive(clap::Subcommand)]
pub enum BenchWhat {
    /// The history store on a generated database (10,000 conversations, 1,000,000
    /// messages by default): list, open, search and export times against their targets.
    History {
        #[arg(long, default_value_t = 10_000)]
        conversations: u64,
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// Where to build the database (default: a temporary folder, removed afterwards).
        #[arg(long)]
        db: Option<std::path::PathBuf>,
    },
}

#[derive(Serialize, Default)]
struct Side {
    prompt_tokens: u32,
    gen_tokens: u32,
    prompt_tps: f64,
    gen_tps: f64,
    ttft_ms: f64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    /// Where the layers ran (empty: the CPU alone).
    devices: String,
    threads: u32,
    reps: u32,
    raw: Side,
    pipeline: Side,
    ratio: Ratio,
}

#[derive(Serialize)]
struct Ratio {
    /// Pipeline over raw generation tokens/s (1.0 = no overhead).
    gen: f64,
    /// Pipeline over raw time to first token (1.0 = no overhead).
    ttft: f64,
}

const TEXT: &str = "Paris is the capital and largest city of France. It sits on the Seine in the north of the country, at the heart of the Ile-de-France region. The city is known for its museums, its architecture, its cafes and its long history as a centre of art, science and trade in Europe.";

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(BenchWhat::History {
        conversations,
        messages,
        db,
    }) = args.what
    {
        let tmp = tempdir_for(db.is_none())?;
        let path = db.unwrap_or_else(|| tmp.join("bench-history.sqlite3"));
        let report = conclave_core::history::bench::run(&path, conversations, messages).await?;
        println!("{}", report.table());
        if db_is_temp(&tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        return Ok(());
    }
    let Some(model_arg) = args.model.as_deref() else {
        anyhow::bail!("--model is required (or `conclave bench history`)");
    };
    let path = crate::resolve_model(model_arg)?;
    let engine = Engine::new()?;
    let threads = args
        .threads
        .unwrap_or_else(|| conclave_core::metrics::threads_per_worker(1));
    let ctx = (args.prompt_tokens + args.gen_tokens + 64).max(512);
    let base = LoadOptions {
        n_ctx: ctx,
        threads: Some(threads),
        ..LoadOptions::default()
    };
    if args.placement.rpc.is_empty() {
        let report = measure(&engine, &path, args.placement.apply(base), &args, threads).await?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_report(&report);
        }
        return Ok(());
    }
    // Spread over RPC servers: the same model on this machine's CPU alone is measured in
    // the same run, so the cost of the network is a ratio from one machine state.
    let local = measure(
        &engine,
        &path,
        LoadOptions {
            gpu_layers: conclave_core::protocol::GpuLayers::Count(0),
            ..base.clone()
        },
        &args,
        threads,
    )
    .await?;
    let remote = measure(&engine, &path, args.placement.apply(base), &args, threads).await?;
    let ratio = RpcRatio {
        raw_gen: div(remote.raw.gen_tps, local.raw.gen_tps),
        raw_prompt: div(remote.raw.prompt_tps, local.raw.prompt_tps),
        pipeline_gen: div(remote.pipeline.gen_tps, local.pipeline.gen_tps),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"local": local, "rpc": remote, "ratio": ratio})
        );
    } else {
        println!("== local (CPU only)");
        print_report(&local);
        println!("== with --rpc {}", args.placement.rpc.join(","));
        print_report(&remote);
        println!(
            "rpc/local gen {:.3}×   prompt {:.3}×   pipeline gen {:.3}×",
            ratio.raw_gen, ratio.raw_prompt, ratio.pipeline_gen
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct RpcRatio {
    /// Raw generation t/s with the RPC servers over the CPU alone.
    raw_gen: f64,
    raw_prompt: f64,
    pipeline_gen: f64,
}

fn div(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn print_report(report: &Report) {
    println!(
        "model     {}  ({} threads, {} reps)",
        report.model, report.threads, report.reps
    );
    println!(
        "devices   {}",
        if report.devices.is_empty() {
            "CPU"
        } else {
            &report.devices
        }
    );
    println!("            prompt t/s   gen t/s   TTFT ms   prompt/gen tokens");
    for (name, s) in [("raw", &report.raw), ("pipeline", &report.pipeline)] {
        println!(
            "{name:<10}{:>12.1}{:>10.1}{:>10.1}   {}/{}",
            s.prompt_tps, s.gen_tps, s.ttft_ms, s.prompt_tokens, s.gen_tokens
        );
    }
    println!(
        "ratio     gen {:.3}×   ttft {:.3}×  (pipeline / raw)",
        report.ratio.gen, report.ratio.ttft
    );
}

/// Raw and pipeline speed of one model loaded one way.
async fn measure(
    engine: &Engine,
    path: &std::path::Path,
    opts: LoadOptions,
    args: &BenchArgs,
    threads: u32,
) -> anyhow::Result<Report> {
    let model = engine.load(path, opts, |_| {}).await?;
    let devices = conclave_core::engine::placement_label(&model.info().await.devices);
    let reps = args.reps.max(1);
    // The chat prompt: a real question, grown from a real paragraph until its rendered
    // prompt is as long as the raw benchmark's, so both decode the same number of tokens.
    let essay = |n: usize| {
        let words: Vec<&str> = TEXT.split(' ').cycle().take(n).collect();
        format!(
            "{}\n\nWrite a long, detailed essay about this.",
            words.join(" ")
        )
    };
    // The template adds its own tokens around the message: measure them once, then grow
    // the text until the whole rendered prompt reaches the requested length.
    let probe = essay(1);
    let first = pipeline_once(&model, &probe, 1, threads, 0).await?;
    let framing = first
        .prompt_tokens
        .saturating_sub(model.count_tokens(&probe).await?);
    let mut prompt_text = probe;
    for n in 1..2000 {
        let candidate = essay(n);
        if model.count_tokens(&candidate).await? + framing > args.prompt_tokens {
            break;
        }
        prompt_text = candidate;
    }

    // Interleave so that both sides see the same machine state (thermal, other load).
    let mut raw_runs = Vec::new();
    let mut pipe_runs = Vec::new();
    pipeline_once(&model, &prompt_text, args.gen_tokens, threads, 0).await?; // warm-up
    for rep in 0..reps {
        raw_runs.push(
            model
                .bench_raw(args.prompt_tokens, args.gen_tokens, 1, threads)
                .await?,
        );
        pipe_runs
            .push(pipeline_once(&model, &prompt_text, args.gen_tokens, threads, rep + 1).await?);
    }
    model.unload().await;

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let raw = Side {
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        prompt_tps: mean(&raw_runs.iter().map(|r| r.prompt_tps).collect::<Vec<_>>()),
        gen_tps: mean(&raw_runs.iter().map(|r| r.gen_tps).collect::<Vec<_>>()),
        ttft_ms: mean(&raw_runs.iter().map(|r| r.ttft_ms).collect::<Vec<_>>()),
    };
    let pipeline = Side {
        prompt_tokens: pipe_runs.first().map(|p| p.prompt_tokens).unwrap_or(0),
        gen_tokens: pipe_runs.iter().map(|p| p.gen_tokens).min().unwrap_or(0),
        prompt_tps: mean(&pipe_runs.iter().map(|p| p.prompt_tps).collect::<Vec<_>>()),
        gen_tps: mean(&pipe_runs.iter().map(|p| p.gen_tps).collect::<Vec<_>>()),
        ttft_ms: mean(&pipe_runs.iter().map(|p| p.ttft_ms).collect::<Vec<_>>()),
    };
    let report = Report {
        model: path.display().to_string(),
        devices,
        threads,
        reps,
        ratio: Ratio {
            gen: if raw.gen_tps > 0.0 {
                pipeline.gen_tps / raw.gen_tps
            } else {
                0.0
            },
            ttft: if raw.ttft_ms > 0.0 {
                pipeline.ttft_ms / raw.ttft_ms
            } else {
                0.0
            },
        },
        raw,
        pipeline,
    };
    Ok(report)
}

struct PipeRun {
    prompt_tokens: u32,
    gen_tokens: u32,
    prompt_tps: f64,
    gen_tps: f64,
    ttft_ms: f64,
}

/// One answer through the whole pipeline, timed where a consumer sees the tokens.
async fn pipeline_once(
    model: &LoadedModel,
    text: &str,
    gen_tokens: u32,
    threads: u32,
    rep: u32,
) -> anyhow::Result<PipeRun> {
    // A different system line each time, as in a new conversation: the prompt cache must
    // not make the pipeline's prompt look free.
    let req = ChatRequest {
        messages: vec![
            Message::new(
                Role::System,
                format!("Session {rep}-{}. You are a helpful assistant.", rand_tag()),
            ),
            Message::new(Role::User, text),
        ],
        params: SamplingParams {
            temperature: 0.0,
            max_tokens: gen_tokens,
            ..SamplingParams::default()
        },
        threads: Some(threads),
        ..ChatRequest::default()
    };
    let t0 = Instant::now();
    let mut stream = model.chat(req).await?;
    let mut first = None;
    let mut last = None;
    let mut n = 0u32;
    while let Some(ev) = stream.next_event().await {
        match ev {
            ChatEvent::Token { .. } | ChatEvent::Reasoning { .. } => {
                first.get_or_insert_with(|| t0.elapsed());
                last = Some(t0.elapsed());
            }
            ChatEvent::Done { usage, metrics, .. } => {
                n = usage.completion_tokens;
                let (Some(f), Some(l)) = (first, last) else {
                    anyhow::bail!("the model produced no text")
                };
                // Tokens after the first, over the time between first and last delivery.
                let span = (l - f).as_secs_f64();
                return Ok(PipeRun {
                    prompt_tokens: usage.prompt_tokens,
                    gen_tokens: n,
                    prompt_tps: metrics.prompt_tps,
                    gen_tps: if span > 0.0 {
                        f64::from(n.saturating_sub(1)) / span
                    } else {
                        0.0
                    },
                    ttft_ms: f.as_secs_f64() * 1000.0,
                });
            }
            ChatEvent::Error { code, message } => anyhow::bail!("{message} ({code})"),
            ChatEvent::Started { .. } => {}
        }
    }
    anyhow::bail!("the answer ended without a result after {n} tokens")
}

fn tempdir_for(needed: bool) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("conclave-bench-{}", std::process::id()));
    if needed {
        std::fs::create_dir_all(&dir)?;
    }
    Ok(dir)
}

fn db_is_temp(dir: &std::path::Path) -> bool {
    dir.starts_with(std::env::temp_dir()) && dir.exists()
}

fn rand_tag() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
