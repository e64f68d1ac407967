//! `conclave bench`: raw llama.cpp decode speed inside the worker (llama-bench's method)
//! against the full pipeline (template, worker, IPC, streaming decode, metrics) on a real
//! prompt, without and with speculative decoding, in one run, with their ratios.
//!
//! Tasks: `chat` (an essay from a paragraph: little to copy, so speculation should stay
//! out of the way), `rewrite` (a fixed text of about 400 tokens to copy with a few fixes:
//! the answer repeats the prompt, which prompt lookup drafts from), and `followup` (a
//! second turn after the chat answer: its time to first token against raw llama.cpp
//! decoding the same new tokens with and without the conversation before them).

use std::time::Instant;

use conclave_core::engine::{ChatRequest, Engine, LoadOptions, LoadedModel};
use conclave_core::{ChatEvent, Message, Role, SamplingParams, SpeculativeMode};
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
    /// What to answer: chat (an essay), rewrite (copy a ~400-token text with fixes),
    /// followup (a second turn after the chat answer), or all (one after the other).
    #[arg(long, value_enum, default_value_t = Task::Chat)]
    pub task: Task,
    /// The speculative mode measured against `off` (draft needs --draft-model).
    #[arg(long, default_value_t = SpeculativeMode::Auto)]
    pub speculative: SpeculativeMode,
    /// A draft model loaded with --model (for --speculative draft or auto).
    #[arg(long)]
    pub draft_model: Option<String>,
    #[command(flatten)]
    pub placement: crate::PlacementArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    Chat,
    Rewrite,
    Followup,
    All,
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
    task: &'static str,
    model: String,
    /// Where the layers ran (empty: the CPU alone).
    devices: String,
    threads: u32,
    reps: u32,
    raw: Side,
    /// The pipeline without speculative decoding.
    pipeline: Side,
    /// The pipeline with `speculative.mode`.
    speculative: SpecSide,
    ratio: Ratio,
}

#[derive(Serialize)]
struct SpecSide {
    mode: SpeculativeMode,
    #[serde(flatten)]
    side: Side,
    drafted_tokens: u32,
    accepted_tokens: u32,
    /// The answers with and without speculation were the same text in every rep (they
    /// must be at temperature 0).
    same_text: bool,
}

#[derive(Serialize)]
struct Ratio {
    /// Pipeline over raw generation tokens/s (1.0 = no overhead).
    gen: f64,
    /// Pipeline over raw time to first token (1.0 = no overhead).
    ttft: f64,
    /// Pipeline with speculation over raw generation tokens/s.
    speculative_gen: f64,
    /// Pipeline with speculation over the pipeline without it.
    speculative_vs_off: f64,
}

/// The rewrite task's text: a function with typos in its comments and messages, to be
/// copied with the typos fixed. About 400 tokens with SmolLM2's tokenizer.
const REWRITE_TEXT: &str = r#"/// Reads the configuraton file and returns the settings it holds.
/// Missing keys get there default values, so an empty file is valid.
pub fn load_settings(path: &Path) -> Result<Settings, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // A file that does not exist yet is not an eror: the defaults apply.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => return Err(ConfigError::Io { path: path.to_owned(), source: e }),
    };
    let mut settings = Settings::default();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        // Blank lines and coments are skipped.
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::Syntax { line: number + 1, message: "expected key = value".into() });
        };
        match key.trim() {
            "threads" => settings.threads = parse_number(value, number)?,
            "context_length" => settings.context_length = parse_number(value, number)?,
            "temperature" => settings.temperature = parse_float(value, number)?,
            "model_folder" => settings.model_folder = PathBuf::from(value.trim()),
            "theme" => settings.theme = value.trim().to_owned(),
            other => {
                // Unknown keys are kept so that a newer version's file still loads.
                tracing::warn!("unknwon setting {other} on line {}", number + 1);
                settings.unknown.push((other.to_owned(), value.trim().to_owned()));
            }
        }
    }
    if settings.threads == 0 {
        return Err(ConfigError::Invalid { key: "threads", message: "must be at least one".into() });
    }
    Ok(settings)
}"#;

/// Enough for the whole function (its answer ends at the code block's end).
const REWRITE_GEN: u32 = 512;

const REWRITE_ASK: &str = "Fix the spelling mistakes in the comments of this Rust function. Answer with the whole function, unchanged otherwise, in one code block.";

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
    let draft_model = args
        .draft_model
        .as_deref()
        .map(crate::resolve_model)
        .transpose()?;
    let engine = Engine::new()?;
    let threads = args
        .threads
        .unwrap_or_else(|| conclave_core::metrics::threads_per_worker(1));
    let tasks: &[Task] = match args.task {
        Task::All => &[Task::Chat, Task::Rewrite, Task::Followup],
        Task::Chat => &[Task::Chat],
        Task::Rewrite => &[Task::Rewrite],
        Task::Followup => &[Task::Followup],
    };
    // A follow-up holds the first turn, its answer and the second turn.
    let ctx = (args.prompt_tokens + args.gen_tokens + 64).max(1024).max(
        if tasks.contains(&Task::Rewrite) {
            1024 + REWRITE_GEN
        } else {
            0
        },
    );
    let base = LoadOptions {
        n_ctx: ctx,
        threads: Some(threads),
        draft_model,
        ..LoadOptions::default()
    };
    if args.placement.rpc.is_empty() {
        // Each task's figures as soon as they are measured: on a busy machine a run can
        // take minutes, and an interrupted one still reports what it finished.
        let emit = |report: &Report| -> anyhow::Result<()> {
            if args.json {
                println!("{}", serde_json::to_string(report)?);
            } else {
                print_report(report);
            }
            Ok(())
        };
        let opts = args.placement.apply(base);
        measure(&engine, &path, opts, &args, threads, tasks, emit).await?;
        return Ok(());
    }
    // Spread over RPC servers: the same model on this machine's CPU alone is measured in
    // the same run, so the cost of the network is a ratio from one machine state.
    let local_opts = LoadOptions {
        gpu_layers: conclave_core::protocol::GpuLayers::Count(0),
        ..base.clone()
    };
    let quiet = |_: &Report| Ok(());
    let local = measure(&engine, &path, local_opts, &args, threads, tasks, quiet).await?;
    let opts = args.placement.apply(base);
    let remote = measure(&engine, &path, opts, &args, threads, tasks, quiet).await?;
    for (local, remote) in local.iter().zip(&remote) {
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
            print_report(local);
            println!("== with --rpc {}", args.placement.rpc.join(","));
            print_report(remote);
            println!(
                "rpc/local gen {:.3}×   prompt {:.3}×   pipeline gen {:.3}×",
                ratio.raw_gen, ratio.raw_prompt, ratio.pipeline_gen
            );
        }
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

/// Loads the model one way and measures each task on it; `emit` sees each report as soon
/// as it is measured.
async fn measure(
    engine: &Engine,
    path: &std::path::Path,
    opts: LoadOptions,
    args: &BenchArgs,
    threads: u32,
    tasks: &[Task],
    emit: impl Fn(&Report) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Report>> {
    let model = engine.load(path, opts, |_| {}).await?;
    let devices = conclave_core::engine::placement_label(&model.info().await.devices);
    let mut reports = Vec::new();
    for task in tasks {
        let name = path.display().to_string();
        if *task == Task::Followup {
            let report = run_followup(args, &model, threads, name).await?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_followup(&report);
            }
            continue;
        }
        let report = run_task(args, &model, *task, threads, name, devices.clone()).await?;
        emit(&report)?;
        reports.push(report);
    }
    model.unload().await;
    Ok(reports)
}

/// The second turn of the follow-up task.
const FOLLOW_UP: &str = "Now sum that up in one sentence.";

#[derive(Serialize)]
struct FollowupReport {
    task: &'static str,
    model: String,
    threads: u32,
    reps: u32,
    /// The first turn: prompt and answer, all of which the follow-up can reuse.
    previous_context: u32,
    /// What the follow-up found in the cache, and the new tokens it decoded.
    cached_tokens: u32,
    new_tokens: u32,
    /// Means over the reps, in ms: the follow-up's time to first token through the
    /// pipeline; raw llama.cpp decoding `new_tokens` with `cached_tokens` before them, and
    /// alone (a fresh prompt made only of the new tokens).
    followup_ttft_ms: f64,
    raw_at_depth_ms: f64,
    raw_fresh_ms: f64,
    ratio: FollowupRatio,
}

#[derive(Serialize)]
struct FollowupRatio {
    /// The follow-up over a fresh prompt of its new tokens (the issue's measure).
    followup_vs_fresh: f64,
    /// The follow-up over raw llama.cpp at the same depth (what the pipeline adds).
    followup_vs_raw_at_depth: f64,
    /// Raw at depth over raw fresh (what attending to the conversation costs llama.cpp).
    depth_cost: f64,
}

async fn run_followup(
    args: &BenchArgs,
    model: &LoadedModel,
    threads: u32,
    model_name: String,
) -> anyhow::Result<FollowupReport> {
    let reps = args.reps.max(1);
    let prompt = chat_prompt(model, args.prompt_tokens).await?;
    let mut follow = Vec::new();
    let mut at_depth = Vec::new();
    let mut fresh = Vec::new();
    let (mut previous, mut cached, mut new_tokens) = (0, 0, 0);
    let raw_prompt_ms = |r: &conclave_core::protocol::BenchResult, n: u32| {
        if r.prompt_tps > 0.0 {
            f64::from(n) / r.prompt_tps * 1000.0
        } else {
            0.0
        }
    };
    for rep in 0..=reps {
        let system = Message::new(
            Role::System,
            format!("Session {rep}-{}. You are a helpful assistant.", rand_tag()),
        );
        let mut messages = vec![system, Message::new(Role::User, prompt.as_str())];
        let first = answer_once(model, messages.clone(), args.gen_tokens, threads).await?;
        messages.push(Message::new(Role::Assistant, first.text.as_str()));
        messages.push(Message::new(Role::User, FOLLOW_UP));
        let second = answer_once(model, messages, 1, threads).await?;
        let new = second
            .prompt_tokens
            .saturating_sub(second.cached_tokens)
            .max(1);
        let depth = raw_bench(model, new, threads, second.cached_tokens).await?;
        let alone = raw_bench(model, new, threads, 0).await?;
        if rep == 0 {
            continue; // warm-up
        }
        previous = first.prompt_tokens + first.gen_tokens;
        (cached, new_tokens) = (second.cached_tokens, new);
        follow.push(second.ttft_ms);
        at_depth.push(raw_prompt_ms(&depth, new));
        fresh.push(raw_prompt_ms(&alone, new));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (f, d, a) = (mean(&follow), mean(&at_depth), mean(&fresh));
    Ok(FollowupReport {
        task: "followup",
        model: model_name,
        threads,
        reps,
        previous_context: previous,
        cached_tokens: cached,
        new_tokens,
        followup_ttft_ms: f,
        raw_at_depth_ms: d,
        raw_fresh_ms: a,
        ratio: FollowupRatio {
            followup_vs_fresh: div(f, a),
            followup_vs_raw_at_depth: div(f, d),
            depth_cost: div(d, a),
        },
    })
}

async fn raw_bench(
    model: &LoadedModel,
    prompt_tokens: u32,
    threads: u32,
    depth: u32,
) -> anyhow::Result<conclave_core::protocol::BenchResult> {
    Ok(model
        .bench_raw_at(prompt_tokens, 1, 1, threads, depth)
        .await?)
}

fn print_followup(r: &FollowupReport) {
    println!(
        "task followup   model {}  ({} threads, {} reps)",
        r.model, r.threads, r.reps
    );
    println!(
        "follow-up      cached {} of the previous {} tokens ({:.1}%), {} new tokens decoded",
        r.cached_tokens,
        r.previous_context,
        div(f64::from(r.cached_tokens), f64::from(r.previous_context)) * 100.0,
        r.new_tokens
    );
    println!(
        "TTFT ms        follow-up {:.1}   raw at depth {} {:.1}   raw fresh {:.1}",
        r.followup_ttft_ms, r.cached_tokens, r.raw_at_depth_ms, r.raw_fresh_ms
    );
    println!(
        "ratio          follow-up {:.2}× a fresh prompt of its new tokens, {:.2}× raw at the same depth; the depth costs llama.cpp {:.2}×",
        r.ratio.followup_vs_fresh, r.ratio.followup_vs_raw_at_depth, r.ratio.depth_cost
    );
}

/// One greedy answer to `messages`, timed where a consumer sees the first token.
struct Turn {
    text: String,
    prompt_tokens: u32,
    cached_tokens: u32,
    gen_tokens: u32,
    ttft_ms: f64,
}

async fn answer_once(
    model: &LoadedModel,
    messages: Vec<Message>,
    max_tokens: u32,
    threads: u32,
) -> anyhow::Result<Turn> {
    let req = ChatRequest {
        messages,
        params: SamplingParams {
            temperature: 0.0,
            max_tokens,
            ..SamplingParams::default()
        },
        threads: Some(threads),
        ..ChatRequest::default()
    };
    let t0 = Instant::now();
    let mut stream = model.chat(req).await?;
    let mut first = None;
    let mut text = String::new();
    while let Some(ev) = stream.next_event().await {
        match ev {
            ChatEvent::Token { text: t, .. } | ChatEvent::Reasoning { text: t, .. } => {
                text.push_str(&t);
                first.get_or_insert_with(|| t0.elapsed());
            }
            ChatEvent::Done { usage, .. } => {
                return Ok(Turn {
                    text,
                    prompt_tokens: usage.prompt_tokens,
                    cached_tokens: usage.cached_prompt_tokens,
                    gen_tokens: usage.completion_tokens,
                    ttft_ms: first.unwrap_or_else(|| t0.elapsed()).as_secs_f64() * 1000.0,
                });
            }
            ChatEvent::Error { code, message } => anyhow::bail!("{message} ({code})"),
            ChatEvent::Started { .. } => {}
        }
    }
    anyhow::bail!("the answer ended without a result")
}

async fn run_task(
    args: &BenchArgs,
    model: &LoadedModel,
    task: Task,
    threads: u32,
    model_name: String,
    devices: String,
) -> anyhow::Result<Report> {
    let reps = args.reps.max(1);
    let (prompt_text, gen_tokens) = match task {
        Task::Rewrite => (
            format!("{REWRITE_ASK}\n\n```rust\n{REWRITE_TEXT}\n```"),
            REWRITE_GEN,
        ),
        _ => (
            chat_prompt(model, args.prompt_tokens).await?,
            args.gen_tokens,
        ),
    };
    let spec = args.speculative;
    let once = |mode: SpeculativeMode, rep: u32| {
        pipeline_once(model, &prompt_text, gen_tokens, threads, rep, mode)
    };

    // Interleave so that all sides see the same machine state (thermal, other load).
    let mut raw_runs = Vec::new();
    let mut pipe_runs = Vec::new();
    let mut spec_runs = Vec::new();
    once(SpeculativeMode::Off, 0).await?; // warm-up
    let mut same_text = true;
    for rep in 0..reps {
        let off = once(SpeculativeMode::Off, rep + 1).await?;
        let on = once(spec, rep + 1).await?;
        same_text &= off.text == on.text;
        // The raw side decodes as many tokens as the answers had, after a prompt as long.
        raw_runs.push(
            model
                .bench_raw(off.prompt_tokens, off.gen_tokens.max(16), 1, threads)
                .await?,
        );
        pipe_runs.push(off);
        spec_runs.push(on);
    }

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let raw = Side {
        prompt_tokens: raw_runs.first().map_or(0, |r| r.prompt_tokens),
        gen_tokens: raw_runs.first().map_or(0, |r| r.gen_tokens),
        prompt_tps: mean(&raw_runs.iter().map(|r| r.prompt_tps).collect::<Vec<_>>()),
        gen_tps: mean(&raw_runs.iter().map(|r| r.gen_tps).collect::<Vec<_>>()),
        ttft_ms: mean(&raw_runs.iter().map(|r| r.ttft_ms).collect::<Vec<_>>()),
    };
    let side = |runs: &[PipeRun]| Side {
        prompt_tokens: runs.first().map(|p| p.prompt_tokens).unwrap_or(0),
        gen_tokens: runs.iter().map(|p| p.gen_tokens).min().unwrap_or(0),
        prompt_tps: mean(&runs.iter().map(|p| p.prompt_tps).collect::<Vec<_>>()),
        gen_tps: mean(&runs.iter().map(|p| p.gen_tps).collect::<Vec<_>>()),
        ttft_ms: mean(&runs.iter().map(|p| p.ttft_ms).collect::<Vec<_>>()),
    };
    let pipeline = side(&pipe_runs);
    let speculative = SpecSide {
        mode: spec,
        side: side(&spec_runs),
        drafted_tokens: spec_runs.iter().map(|r| r.drafted).sum(),
        accepted_tokens: spec_runs.iter().map(|r| r.accepted).sum(),
        same_text,
    };
    let over = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    Ok(Report {
        task: match task {
            Task::Rewrite => "rewrite",
            _ => "chat",
        },
        model: model_name,
        devices,
        threads,
        reps,
        ratio: Ratio {
            gen: over(pipeline.gen_tps, raw.gen_tps),
            ttft: over(pipeline.ttft_ms, raw.ttft_ms),
            speculative_gen: over(speculative.side.gen_tps, raw.gen_tps),
            speculative_vs_off: over(speculative.side.gen_tps, pipeline.gen_tps),
        },
        raw,
        pipeline,
        speculative,
    })
}

fn print_report(report: &Report) {
    println!(
        "task {}   model {}  ({} threads, {} reps)",
        report.task, report.model, report.threads, report.reps
    );
    println!(
        "devices        {}",
        if report.devices.is_empty() {
            "CPU"
        } else {
            &report.devices
        }
    );
    println!("                 prompt t/s   gen t/s   TTFT ms   prompt/gen tokens");
    let spec_name = format!("spec {}", report.speculative.mode);
    for (name, s) in [
        ("raw", &report.raw),
        ("pipeline off", &report.pipeline),
        (spec_name.as_str(), &report.speculative.side),
    ] {
        println!(
            "{name:<15}{:>12.1}{:>10.1}{:>10.1}   {}/{}",
            s.prompt_tps, s.gen_tps, s.ttft_ms, s.prompt_tokens, s.gen_tokens
        );
    }
    println!(
        "speculative: {} of {} drafted accepted; same text as off: {}",
        report.speculative.accepted_tokens,
        report.speculative.drafted_tokens,
        if report.speculative.same_text {
            "yes"
        } else {
            "NO"
        }
    );
    println!(
        "ratio          gen {:.3}×   ttft {:.3}×  (pipeline off / raw)",
        report.ratio.gen, report.ratio.ttft
    );
    println!(
        "               gen {:.3}× raw, {:.3}× pipeline off  (spec {})",
        report.ratio.speculative_gen, report.ratio.speculative_vs_off, report.speculative.mode
    );
}

/// The chat prompt: a real question, grown from a real paragraph until its rendered
/// prompt is as long as the raw benchmark's, so both decode the same number of tokens.
async fn chat_prompt(model: &LoadedModel, prompt_tokens: u32) -> anyhow::Result<String> {
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
    let first = pipeline_once(model, &probe, 1, 1, 0, SpeculativeMode::Off).await?;
    let framing = first
        .prompt_tokens
        .saturating_sub(model.count_tokens(&probe).await?);
    let mut prompt_text = probe;
    for n in 1..2000 {
        let candidate = essay(n);
        if model.count_tokens(&candidate).await? + framing > prompt_tokens {
            break;
        }
        prompt_text = candidate;
    }
    Ok(prompt_text)
}

struct PipeRun {
    text: String,
    drafted: u32,
    accepted: u32,
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
    speculative: SpeculativeMode,
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
        speculative,
        ..ChatRequest::default()
    };
    let t0 = Instant::now();
    let mut stream = model.chat(req).await?;
    let mut first = None;
    let mut last = None;
    let mut n = 0u32;
    let mut text = String::new();
    while let Some(ev) = stream.next_event().await {
        match ev {
            ChatEvent::Token { text: t, .. } | ChatEvent::Reasoning { text: t, .. } => {
                text.push_str(&t);
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
                    text,
                    drafted: metrics.drafted_tokens,
                    accepted: metrics.accepted_tokens,
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
