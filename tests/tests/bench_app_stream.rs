//! The app's own streaming speed against `conclave chat`, in one run (`bench/app-stream.sh`,
//! `make bench-stream`). Not a test: it is `#[ignore]`d, so `cargo test` only compiles it.
//!
//! For each thread count and case it drives the real app (release build, under Xvfb,
//! through tauri-driver) and then runs `conclave chat` with the same model, threads,
//! prompt, seed and limits, and prints:
//! - tokens per second as the page shows them (first visible answer text to the answer
//!   marked done) and through the CLI (the worker's generation time), and their ratio;
//! - CPU milliseconds per streamed token of the web process and of the app process, and of
//!   the first 100 tokens against the last 100 (does the UI's cost grow with the message?);
//! - for a follow-up turn: the share of the previous context found in the cache, and its
//!   time to first token against the same text sent alone in a new chat of the same app.
//!   Both are sent after a pause (BENCH_FOLLOW_UP_PAUSE_MS, default 1000: a person reading
//!   over the message before Enter), during which the app reads the typed text ahead
//!   (`warm_prompt`); 0 sends at once, as a paste-and-Enter would.
//!
//! Env: CONCLAVE_APP_BIN (the app; `conclave` and `conclave-worker` sit next to it),
//! BENCH_THREADS (default "1,2"), BENCH_CASES (names, default all), BENCH_REPS (app and CLI
//! runs per case, taking turns; default 3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{data_dir, App, Res};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    prompt: &'static str,
    max_tokens: u32,
    temperature: f32,
    seed: u32,
    think_budget: Option<u32>,
}

const CASES: &[Case] = &[
    Case {
        name: "answer-256",
        prompt: "Write a detailed guide to caring for a vegetable garden through the year.",
        max_tokens: 256,
        temperature: 0.0,
        seed: 7,
        think_budget: None,
    },
    Case {
        name: "answer-1500",
        prompt: "Write a long, detailed history of lighthouses, from antiquity to today, \
                 with many sections, lists and examples.",
        max_tokens: 1500,
        temperature: 0.0,
        seed: 7,
        think_budget: None,
    },
    Case {
        name: "thinking-1000",
        prompt: "How many prime numbers are there below 100? Think it through carefully.",
        max_tokens: 1100,
        temperature: 0.0,
        seed: 7,
        think_budget: Some(1000),
    },
];

const FOLLOW_UP: &str = "Thank you. Now summarise that in one sentence.";

/// Cumulative CPU ticks (user + system) of a process, or None when it is gone.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// USER_HZ: /proc reports CPU time in these ticks; Linux fixes it at 100 on every
/// architecture this app runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// (when, CPU ticks of the web process(es), the app process, the worker).
type Sample = (Instant, [u64; 3]);

/// Samples the CPU time of the app's processes every 10 ms while an answer streams.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// `groups`: the pids of the web process(es), the app process, the worker.
    fn start(groups: [Vec<u32>; 3]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let (s, out) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let mut v = [0u64; 3];
                for (i, g) in groups.iter().enumerate() {
                    v[i] = g.iter().filter_map(|p| cpu_ticks(*p)).sum();
                }
                out.lock().unwrap().push((Instant::now(), v));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// CPU seconds of group `g` between two instants, interpolated from the samples.
fn cpu_between(samples: &[Sample], g: usize, from: Instant, to: Instant) -> f64 {
    let at = |t: Instant| -> f64 {
        let i = samples.partition_point(|(s, _)| *s <= t);
        match (
            i.checked_sub(1).map(|j| samples[j]),
            samples.get(i).copied(),
        ) {
            (Some((t0, v0)), Some((t1, v1))) => {
                let span = t1.duration_since(t0).as_secs_f64();
                let f = if span > 0.0 {
                    t.duration_since(t0).as_secs_f64() / span
                } else {
                    0.0
                };
                v0[g] as f64 + f * (v1[g] as f64 - v0[g] as f64)
            }
            (Some((_, v)), None) | (None, Some((_, v))) => v[g] as f64,
            (None, None) => 0.0,
        }
    };
    (at(to) - at(from)).max(0.0) / TICKS_PER_SECOND
}

fn bin_dir() -> PathBuf {
    let app = std::env::var_os("CONCLAVE_APP_BIN").map(PathBuf::from);
    app.and_then(|a| a.parent().map(Path::to_path_buf))
        .expect("CONCLAVE_APP_BIN: the release app (bench/app-stream.sh sets it)")
}

fn model_path() -> PathBuf {
    harness::checkout()
        .join("models")
        .join(harness::SMOLLM2_FILE)
}

/// `conclave chat --json` once; returns its `done` event.
fn cli_chat(
    data: &Path,
    prompt: &str,
    threads: u32,
    max_tokens: u32,
    temp: f32,
    seed: u32,
    budget: Option<u32>,
) -> Res<Value> {
    let mut cmd = std::process::Command::new(bin_dir().join("conclave"));
    cmd.env("CONCLAVE_DATA_DIR", data)
        .arg("chat")
        .arg("--model")
        .arg(model_path())
        .args(["--threads", &threads.to_string()])
        .args(["--max-tokens", &max_tokens.to_string()])
        .args(["--temp", &temp.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--json", "--no-save"]);
    match budget {
        Some(b) => cmd.args(["--think", "on", "--think-budget", &b.to_string()]),
        None => cmd.args(["--think", "off"]),
    };
    let out = cmd.arg(prompt).output()?;
    anyhow::ensure!(
        out.status.success(),
        "conclave chat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "done")
        .ok_or_else(|| anyhow::anyhow!("no done event from conclave chat"))
}

/// The stored answers (metrics, usage) of the newest conversation, oldest first, read back
/// with the CLI.
fn latest_answers(data: &Path) -> Res<Vec<Value>> {
    let run = |args: &[&str]| -> Res<Value> {
        let out = std::process::Command::new(bin_dir().join("conclave"))
            .env("CONCLAVE_DATA_DIR", data)
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "conclave {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let list = run(&["history", "list", "--json"])?;
    let id = list[0]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no conversation: {list}"))?
        .to_owned();
    let conv = run(&["history", "show", &id, "--json"])?;
    let messages = conv["messages"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no messages: {conv}"))?;
    let mut answers: Vec<Value> = messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .cloned()
        .collect();
    answers.sort_by_key(|a| a["created_at"].as_i64().unwrap_or(0));
    Ok(answers)
}

fn last_answer_record(data: &Path) -> Res<Value> {
    latest_answers(data)?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no answer stored"))
}

async fn settings(app: &App, c: &Case, threads: u32, max_tokens: u32) -> Res {
    app.open_settings().await?;
    match c.think_budget {
        Some(b) => {
            app.set_value("setting-think", "on").await?;
            app.set_value("setting-think-budget", &b.to_string())
                .await?;
        }
        None => {
            app.set_value("setting-think", "off").await?;
            app.set_value("setting-think-budget", "").await?;
        }
    }
    app.set_value("setting-max-tokens", &max_tokens.to_string())
        .await?;
    app.set_value("setting-temperature", &c.temperature.to_string())
        .await?;
    app.set_value("setting-seed", &c.seed.to_string()).await?;
    set_threads(app, &threads.to_string()).await?;
    app.close_settings().await
}

/// The threads field, set as a user's edit ends (empty = automatic).
async fn set_threads(app: &App, value: &str) -> Res {
    let ok = app
        .js(
            "const el = document.getElementById('set-threads'); if (!el) return false; \
             el.value = arguments[0]; el.dispatchEvent(new Event('change', {bubbles: true})); return true;",
            vec![json!(value)],
        )
        .await?;
    anyhow::ensure!(ok == json!(true), "no threads setting");
    Ok(())
}

/// Page-side timing: when the new answer first shows text, and when it is marked done.
/// Only the first mutations look for text, so the observer costs nothing later on.
const OBSERVE: &str = r#"
const n = arguments[0];
window.__bench = { first: 0, done: 0 };
const answer = () => { const a = document.querySelectorAll('[data-testid="message-assistant"]'); return a.length > n ? a[a.length - 1] : null; };
const mo = new MutationObserver(() => {
  const b = window.__bench, a = answer();
  if (!a) return;
  const t = performance.now();
  if (!b.first) { const md = a.querySelector('.md'); if (md && md.firstChild) b.first = t; }
  if (a.dataset.status && a.dataset.status !== 'streaming') { b.done = t; mo.disconnect(); }
});
mo.observe(document.body, { childList: true, subtree: true, characterData: true, attributes: true, attributeFilter: ['data-status'] });
return true;
"#;

struct Run {
    tokens: u64,
    page_tps: f64,
    worker_tps: f64,
    web_ms_per_token: f64,
    app_ms_per_token: f64,
    worker_cpu_s: f64,
    ui_first100_ms: f64,
    ui_last100_ms: f64,
    prompt_tokens: u64,
    record: Value,
}

async fn app_turn(app: &App, prompt: &str, answers_before: usize, pause: Duration) -> Res<Run> {
    let procs = harness::app_processes(app.driver_pid())?;
    let pick = |pred: &dyn Fn(&str) -> bool| -> Vec<u32> {
        procs
            .iter()
            .filter(|(_, n)| pred(n))
            .map(|(p, _)| *p)
            .collect()
    };
    let groups = [
        pick(&|n| n.starts_with("WebKitWebProces")),
        pick(&|n| n.starts_with("conclave-app")),
        pick(&|n| n.starts_with("conclave-worker")),
    ];
    anyhow::ensure!(
        groups.iter().all(|g| !g.is_empty()),
        "app processes not found: {procs:?}"
    );
    app.js(OBSERVE, vec![json!(answers_before)]).await?;
    // Typing through WebDriver costs the web process more than the answer's first tokens:
    // the CPU window starts at the click, where the app's own timing (TTFT) starts too.
    app.type_prompt(prompt).await?;
    tokio::time::sleep(pause).await;
    let sampler = Sampler::start(groups);
    let t_send = Instant::now();
    app.click("send").await?;
    // Poll rarely: every WebDriver call is script work in the web process we measure.
    let deadline = Instant::now() + Duration::from_secs(300);
    let bench = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = app.js("return window.__bench", vec![]).await?;
        if b["done"].as_f64().unwrap_or(0.0) > 0.0 {
            break b;
        }
        anyhow::ensure!(Instant::now() < deadline, "the answer did not finish");
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let samples = sampler.finish();
    let record = last_answer_record(&app.data)?;
    let m = &record["metrics"];
    let tokens = record["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    let ttft = m["ttft_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    let gen = m["gen_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    let page_s =
        (bench["done"].as_f64().unwrap_or(0.0) - bench["first"].as_f64().unwrap_or(0.0)) / 1000.0;
    let g0 = t_send + Duration::from_secs_f64(ttft);
    let g1 = g0 + Duration::from_secs_f64(gen);
    let per_tok = |g: usize| cpu_between(&samples, g, g0, g1) * 1000.0 / tokens.max(1) as f64;
    let slice = Duration::from_secs_f64(gen * 100.0 / tokens.max(1) as f64);
    if std::env::var_os("BENCH_TIMELINE").is_some() {
        print_timeline(&samples, t_send, g0, g1);
    }
    let ui = |from: Instant, to: Instant| {
        (cpu_between(&samples, 0, from, to) + cpu_between(&samples, 1, from, to)) * 1000.0 / 100.0
    };
    Ok(Run {
        tokens,
        page_tps: if page_s > 0.0 {
            tokens.saturating_sub(1) as f64 / page_s
        } else {
            0.0
        },
        worker_tps: m["gen_tps"].as_f64().unwrap_or(0.0),
        web_ms_per_token: per_tok(0),
        app_ms_per_token: per_tok(1),
        worker_cpu_s: cpu_between(&samples, 2, g0, g1),
        ui_first100_ms: ui(g0, g0 + slice),
        ui_last100_ms: ui(g1.checked_sub(slice).unwrap_or(g0), g1),
        prompt_tokens: record["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        record,
    })
}

/// Where the CPU went while the turn ran (`BENCH_TIMELINE=1`): per quarter second from the
/// send, the share of a core each process group used, so a burst (start-up, the end of the
/// answer) tells itself apart from a cost spread over every token.
fn print_timeline(samples: &[Sample], t_send: Instant, g0: Instant, g1: Instant) {
    let Some(end) = samples.last().map(|s| s.0) else {
        return;
    };
    let step = Duration::from_millis(250);
    let mut t = t_send;
    eprintln!(
        "timeline (first token at {:.2} s, last at {:.2} s): t web% app% worker%",
        g0.duration_since(t_send).as_secs_f64(),
        g1.duration_since(t_send).as_secs_f64()
    );
    while t < end {
        let u = |g| 100.0 * cpu_between(samples, g, t, t + step) / step.as_secs_f64();
        eprintln!(
            "  {:5.2} {:4.0} {:4.0} {:4.0}",
            t.duration_since(t_send).as_secs_f64(),
            u(0),
            u(1),
            u(2)
        );
        t += step;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn wanted(name: &str) -> bool {
    match std::env::var("BENCH_CASES") {
        Ok(v) if !v.is_empty() => v.split(',').any(|c| c.trim() == name),
        _ => true,
    }
}

#[tokio::test]
#[ignore = "a benchmark: run bench/app-stream.sh"]
async fn app_stream_against_cli() -> Res {
    let Some(setup) = harness::setup() else {
        anyhow::bail!("the app, tauri-driver or the model is missing");
    };
    let threads: Vec<u32> = std::env::var("BENCH_THREADS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    let cli_data = data_dir()?;
    // The page's update interval (CONCLAVE_UI_FRAME_MS); empty = the app's default.
    let frames: Vec<Option<u64>> = match std::env::var("BENCH_UI_FRAME_MS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').map(|f| f.trim().parse().ok()).collect(),
        _ => vec![None],
    };
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let follow_up_pause = Duration::from_millis(
        std::env::var("BENCH_FOLLOW_UP_PAUSE_MS")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(1000),
    );
    let mut fresh_runs: std::collections::HashMap<u32, Value> = Default::default();
    let mut report = Vec::new();
    let mut last_app = None;
    for frame in frames {
        match frame {
            Some(ms) => std::env::set_var("CONCLAVE_UI_FRAME_MS", ms.to_string()),
            None => std::env::remove_var("CONCLAVE_UI_FRAME_MS"),
        }
        let frame_label = frame.map_or("default".to_owned(), |ms| format!("{ms} ms"));
        if let Some((app, _data)) = last_app.take() {
            App::close(app).await?;
        }
        let data = data_dir()?;
        let app = App::start(&setup, data.path(), "bench-stream").await?;
        app.load_smollm2().await?;
        for &t in &threads {
            for c in CASES.iter().filter(|c| wanted(c.name)) {
                eprintln!("bench: {} at {t} threads", c.name);
                // The app and the CLI take turns, `reps` times, so that a machine whose speed
                // drifts (a shared host) weighs on both sides alike; medians are compared.
                let (mut app_side, mut cli_side) = (Vec::new(), Vec::new());
                let mut last = None;
                for _ in 0..reps {
                    app.click("new-chat").await?;
                    settings(&app, c, t, c.max_tokens).await?;
                    let before = app.assistant_count().await?;
                    let run = app_turn(&app, c.prompt, before, Duration::ZERO).await?;
                    app_side.push(run.page_tps.min(run.worker_tps));
                    let cli = cli_chat(
                        cli_data.path(),
                        c.prompt,
                        t,
                        c.max_tokens,
                        c.temperature,
                        c.seed,
                        c.think_budget,
                    )?;
                    cli_side.push(cli["metrics"]["gen_tps"].as_f64().unwrap_or(0.0));
                    last = Some((before, run, cli));
                }
                let (before, run, cli) = last.ok_or_else(|| anyhow::anyhow!("BENCH_REPS is 0"))?;
                app.shot(&format!("{}-t{t}", c.name)).await?;

                // The follow-up: short, so its time to first token is mostly the prompt.
                settings(&app, c, t, 32).await?;
                let follow = app_turn(&app, FOLLOW_UP, before + 1, follow_up_pause).await?;
                app.shot(&format!("{}-t{t}-follow-up", c.name)).await?;
                let previous = run.prompt_tokens + run.tokens;
                let cached = follow.record["usage"]["cached_prompt_tokens"]
                    .as_u64()
                    .unwrap_or(0);
                let follow_ttft = follow.record["metrics"]["ttft_ms"].as_f64().unwrap_or(0.0);

                // The reference for the follow-up: the same text as a fresh prompt in a new
                // chat of the same warm app, so both go through the same path (IPC, history,
                // template) and differ only in the context the follow-up sits on.
                app.click("new-chat").await?;
                settings(&app, c, t, 32).await?;
                let alone = app_turn(
                    &app,
                    FOLLOW_UP,
                    app.assistant_count().await?,
                    follow_up_pause,
                )
                .await?;
                let alone_ttft = alone.record["metrics"]["ttft_ms"].as_f64().unwrap_or(0.0);
                let alone_prompt = alone.prompt_tokens;
                // Where the time to first token goes: the prompt tokens decoded and the
                // worker's time on them, for both.
                let eval = |r: &Value| {
                    format!(
                        "{} decoded in {:.0} ms",
                        r["usage"]["prompt_tokens"].as_u64().unwrap_or(0)
                            - r["usage"]["cached_prompt_tokens"].as_u64().unwrap_or(0),
                        r["metrics"]["prompt_eval_ms"].as_f64().unwrap_or(0.0)
                    )
                };
                let (follow_eval, alone_eval) = (eval(&follow.record), eval(&alone.record));

                let fresh = match fresh_runs.get(&t) {
                    Some(fresh) => fresh.clone(),
                    None => {
                        let fresh = cli_chat(cli_data.path(), FOLLOW_UP, t, 1, 0.0, 1, None)?;
                        fresh_runs.insert(t, fresh.clone());
                        fresh
                    }
                };
                let cli_tps = median(&mut cli_side);
                let cli_tokens = cli["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                let fresh_ttft = fresh["metrics"]["ttft_ms"].as_f64().unwrap_or(0.0);
                let fresh_prompt = fresh["usage"]["prompt_tokens"].as_u64().unwrap_or(0);

                let ui_ms = run.web_ms_per_token + run.app_ms_per_token;
                let pairs: Vec<String> = app_side
                    .iter()
                    .zip(&cli_side)
                    .map(|(a, c)| format!("{:.2}", a / c.max(1e-9)))
                    .collect();
                let app_tps = median(&mut app_side);
                println!(
                    "ui frame {frame_label}, threads {t} {:<14} app {:>6.1} t/s (median of {reps}; last: page {:.1}, worker {:.1}; {} tokens)  cli {:>6.1} t/s ({} tokens)  ratio {:.2} (each pair: {})  \
                     ui {:.2} ms/token (web {:.2}, app {:.2}; worker {:.1} CPU s)  first100 {:.2} ms/token, last100 {:.2} ms/token, growth {:.2}x",
                    c.name, app_tps, run.page_tps, run.worker_tps, run.tokens, cli_tps, cli_tokens,
                    app_tps / cli_tps.max(1e-9), pairs.join(" "), ui_ms, run.web_ms_per_token, run.app_ms_per_token,
                    run.worker_cpu_s, run.ui_first100_ms, run.ui_last100_ms,
                    run.ui_last100_ms / run.ui_first100_ms.max(1e-9),
                );
                println!(
                    "ui frame {frame_label}, threads {t} {:<14} follow-up sent {} ms after typing: cached {cached} (the previous context: {previous} tokens, {:.1}%), prompt {} tokens; \
                     ttft {:.0} ms against {:.0} ms for the follow-up alone in a new chat of the app ({alone_prompt} tokens): {:.2}x \
                     (follow-up {follow_eval}, alone {alone_eval}; the CLI's fresh run: {:.0} ms, {fresh_prompt} tokens)",
                    c.name,
                    follow_up_pause.as_millis(),
                    100.0 * cached as f64 / previous.max(1) as f64,
                    follow.prompt_tokens,
                    follow_ttft,
                    alone_ttft,
                    follow_ttft / alone_ttft.max(1e-9),
                    fresh_ttft,
                );
                report.push(json!({
                    "ui_frame_ms": frame, "threads": t, "case": c.name, "app_tps": app_tps, "page_tps": run.page_tps,
                    "worker_tps": run.worker_tps, "cli_tps": cli_tps, "ratio": app_tps / cli_tps.max(1e-9),
                    "tokens": run.tokens, "cli_tokens": cli_tokens,
                    "ui_ms_per_token": ui_ms, "web_ms_per_token": run.web_ms_per_token,
                    "app_ms_per_token": run.app_ms_per_token,
                    "ui_first100_ms_per_token": run.ui_first100_ms, "ui_last100_ms_per_token": run.ui_last100_ms,
                    "follow_up_cached": cached, "previous_context": previous,
                    "follow_up_pause_ms": follow_up_pause.as_millis() as u64,
                    "follow_up_ttft_ms": follow_ttft, "alone_ttft_ms": alone_ttft,
                    "alone_prompt_tokens": alone_prompt, "cli_fresh_ttft_ms": fresh_ttft,
                }));
            }
        }
        last_app = Some((app, data));
    }
    let (app, _data) = last_app.ok_or_else(|| anyhow::anyhow!("no app run"))?;
    if wanted("compare") {
        report.push(compare_case(&app, cli_data.path()).await?);
    }
    if let Ok(path) = std::env::var("BENCH_JSON") {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    app.close().await
}

const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
const COMPARE_PROMPT: &str = "Write a short story about a lighthouse keeper.";
const COMPARE_TOKENS: u32 = 256;

/// Both models side by side in the app's Compare screen, then `conclave compare` with the
/// same prompt and settings; the scheduler picks the threads in both.
async fn compare_case(app: &App, cli_data: &Path) -> Res<Value> {
    app.open_settings().await?;
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-think-budget", "").await?;
    app.set_value("setting-max-tokens", &COMPARE_TOKENS.to_string())
        .await?;
    app.set_value("setting-temperature", "0").await?;
    app.set_value("setting-seed", "7").await?;
    set_threads(app, "").await?;
    app.close_settings().await?;
    app.open_compare_with(&["smollm2", "gemma"]).await?;
    app.set_value("compare-prompt", COMPARE_PROMPT).await?;
    app.click("compare-send").await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let done = app
            .js(
                "return document.querySelector('[data-testid=\"compare-summary\"]') !== null",
                vec![],
            )
            .await?;
        if done == json!(true) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the compare run did not finish");
    }
    app.shot("compare").await?;
    let answers = latest_answers(&app.data)?;

    let out = std::process::Command::new(bin_dir().join("conclave"))
        .env("CONCLAVE_DATA_DIR", cli_data)
        .arg("compare")
        .arg("--model")
        .arg(model_path())
        .arg("--model")
        .arg(harness::checkout().join("models").join(GEMMA_FILE))
        .args([
            "--json",
            "--no-save",
            "--temp",
            "0",
            "--seed",
            "7",
            "--think=off",
        ])
        .args(["--max-tokens", &COMPARE_TOKENS.to_string()])
        .arg(COMPARE_PROMPT)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "conclave compare failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "done" && v.get("column").is_some())
        .collect();
    let mut columns = Vec::new();
    for (column, file) in [(0usize, harness::SMOLLM2_FILE), (1, GEMMA_FILE)] {
        let stem = file.trim_end_matches(".gguf").to_lowercase();
        let app_tps = answers
            .iter()
            .find(|a| {
                a["model"]["file"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase()
                    .contains(&stem)
            })
            .and_then(|a| a["metrics"]["gen_tps"].as_f64())
            .unwrap_or(0.0);
        let cli_tps = cli
            .iter()
            .find(|v| v["column"] == json!(column))
            .and_then(|v| v["metrics"]["gen_tps"].as_f64())
            .unwrap_or(0.0);
        println!(
            "compare column {column} ({file}): app {app_tps:.1} t/s, cli {cli_tps:.1} t/s, ratio {:.2}",
            app_tps / cli_tps.max(1e-9)
        );
        columns.push(
            json!({"column": column, "model": file, "app_tps": app_tps, "cli_tps": cli_tps,
            "ratio": app_tps / cli_tps.max(1e-9)}),
        );
    }
    Ok(json!({"case": "compare", "columns": columns}))
}
