//! Side by side: one prompt answered by 2–4 columns at once. A column is a model file with
//! its own [`ChatSettings`], so the same model with another temperature, thinking mode,
//! budget or system prompt is a column too.
//!
//! The columns run concurrently, scheduled to the machine (see [`schedule`] for the rules:
//! one worker per model, threads split so the cores are never oversubscribed, and a
//! fallback to one-after-another when the models do not fit in memory together). Each
//! column streams on its own: the first to finish does not wait for the others, and a
//! worker that dies fails only its own column.
//!
//! In the history the columns are sibling assistant answers to one committed user message,
//! tied together by a [`CompareRun`](crate::history::CompareRun). In blind mode the
//! columns are shuffled and every output names them "Model A", "Model B"… until the user
//! votes ([`vote`]); the stored `column_index` is the shuffled, displayed position, so a
//! vote "A better" always means column 0 of the run.
//!
//! Output is a stream of [`CompareOutput`]: a `plan`, a `loaded` per worker, the columns'
//! [`ChatEvent`]s tagged with their `column`, and a final `summary` with per-column
//! figures and which column was fastest and cheapest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use ts_rs::TS;

use crate::engine::{LoadOptions, LoadedModel};
use crate::error::{CoreError, ErrorCode};
use crate::events::{ChatEvent, StopReason, ThinkMode};
use crate::history::{
    AnswerMeta, CompareSlot, ConversationSettings, History, HistoryError, ModelInfo, Vote,
};
use crate::session::{title_from, ChatSettings, Conclave, SendRequest};

mod diff;
pub mod schedule;

pub use diff::{diff_columns, diff_words, ColumnDiff, DiffOp};
pub use schedule::{Lane, Schedule, MEMORY_LIMIT_ENV};

pub const MIN_COLUMNS: usize = 2;
pub const MAX_COLUMNS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("a side-by-side run takes {MIN_COLUMNS} to {MAX_COLUMNS} columns, not {0}")]
    ColumnCount(usize),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the run is blind: its models are shown once it has a vote")]
    StillBlind,
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<HistoryError> for CompareError {
    fn from(e: HistoryError) -> Self {
        CompareError::Core(e.into())
    }
}

impl ErrorCode for CompareError {
    fn code(&self) -> &'static str {
        match self {
            CompareError::ColumnCount(_) => "invalid_input",
            CompareError::EmptyPrompt => "invalid_input",
            CompareError::StillBlind => "still_blind",
            CompareError::Core(e) => e.code(),
        }
    }
}

/// One column: a model and the settings it answers with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareColumn {
    pub model: PathBuf,
    #[serde(default)]
    pub settings: ChatSettings,
    /// Shown instead of the generated label (file name, plus what sets this column apart
    /// when two columns use the same model).
    #[serde(default)]
    pub label: Option<String>,
}

impl CompareColumn {
    pub fn new(model: impl Into<PathBuf>, settings: ChatSettings) -> Self {
        Self {
            model: model.into(),
            settings,
            label: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct CompareOptions {
    /// Hide model names and shuffle the columns until a vote.
    pub blind: bool,
    /// Stored with the run; the leaderboard can be filtered by it.
    pub tag: Option<String>,
    /// Save nothing (no conversation, no run, so no vote either).
    pub no_save: bool,
    /// The conversation to continue; None starts one titled from the prompt.
    pub conversation_id: Option<String>,
    /// Where the prompt attaches; None = the end of the conversation's current branch.
    pub parent_id: Option<String>,
    /// Memory the run may plan for, in bytes; None = `CONCLAVE_MEMORY_LIMIT`, else
    /// `MemAvailable`.
    pub memory_limit_bytes: Option<u64>,
    /// Run the columns one after another whatever the machine could do.
    pub sequential: bool,
    /// Physical cores to plan for; None = this machine's.
    pub cores: Option<usize>,
    /// Seed of the blind shuffle, for reproducible tests; None = random.
    pub shuffle_seed: Option<u64>,
    /// llama.cpp RPC servers every column's model is spread over. llama.cpp's RPC server
    /// serves one client at a time, so a run with them loads one model at a time.
    pub rpc: Vec<String>,
    /// GPU/RPC layers for every column's model.
    pub gpu_layers: crate::protocol::GpuLayers,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRequest {
    pub prompt: String,
    pub columns: Vec<CompareColumn>,
    #[serde(default)]
    pub options: CompareOptions,
}

/// A column's [`ChatEvent`], flattened: `{"column":0,"type":"token","text":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct CompareEvent {
    pub column: usize,
    #[serde(flatten)]
    pub event: ChatEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct PlanColumn {
    pub column: usize,
    /// "Model A"… in blind mode.
    pub label: String,
    /// The model's file name; None while blind.
    pub model: Option<String>,
    /// Which worker answers it; columns of one lane run one after another.
    pub lane: usize,
}

/// How the run will go, sent before anything loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ComparePlan {
    pub run_id: Option<String>,
    pub conversation_id: Option<String>,
    pub user_message_id: Option<String>,
    pub blind: bool,
    /// No two columns run at the same time.
    pub sequential: bool,
    /// Why the run is not fully concurrent.
    pub reason: Option<String>,
    pub workers: usize,
    pub concurrency: usize,
    pub threads_per_worker: u32,
    pub memory_needed_bytes: u64,
    pub memory_budget_bytes: Option<u64>,
    pub columns: Vec<PlanColumn>,
}

/// A worker is up (sent before its columns start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct LaneLoaded {
    pub lane: usize,
    pub columns: Vec<usize>,
    pub pid: u32,
    pub threads: u32,
    pub load_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ColumnStatus {
    Done,
    Cancelled,
    Error,
}

/// What one column's answer cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ColumnFigures {
    pub column: usize,
    pub label: String,
    /// None while blind.
    pub model: Option<String>,
    pub status: ColumnStatus,
    pub error: Option<String>,
    pub stop_reason: Option<StopReason>,
    pub ttft_ms: f64,
    pub tokens_per_second: f64,
    pub thinking_tokens: u32,
    pub answer_tokens: u32,
    pub completion_tokens: u32,
    /// Request to last token.
    pub seconds: f64,
    pub energy_wh: f64,
    pub energy_method: String,
    pub threads: u32,
    /// Speculative decoding: tokens drafted and, of those, kept (0 and 0 without it).
    pub drafted_tokens: u32,
    pub accepted_tokens: u32,
    /// The stored answer (None with `no_save`).
    pub message_id: Option<String>,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct CompareSummary {
    pub run_id: Option<String>,
    pub blind: bool,
    pub sequential: bool,
    pub reason: Option<String>,
    pub columns: Vec<ColumnFigures>,
    /// Highest tokens per second among the columns that finished.
    pub fastest: Option<usize>,
    /// Least energy among the columns that finished.
    pub cheapest: Option<usize>,
    /// Time some column was generating (model loads between sequential columns excluded).
    pub generation_seconds: f64,
    /// All columns' generated tokens over `generation_seconds`.
    pub aggregate_tokens_per_second: f64,
}

/// Everything a run streams, one JSON object per line when serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CompareOutput {
    Plan(ComparePlan),
    Loaded(LaneLoaded),
    Summary(CompareSummary),
    /// A column's chat event carries its own `type` (`token`, `done`…).
    #[serde(untagged)]
    Column(CompareEvent),
}

/// Who a column was, once it may be shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct RevealedColumn {
    pub column: usize,
    pub model: String,
    pub sha256: Option<String>,
    pub message_id: Option<String>,
}

/// "Model A", "Model B"…
pub fn blind_label(column: usize) -> String {
    let letter = u8::try_from(column)
        .ok()
        .and_then(|c| b'A'.checked_add(c))
        .map_or('?', char::from);
    format!("Model {letter}")
}

/// Stops a run: every running column is cancelled and no further one starts.
#[derive(Clone, Default)]
struct Cancel {
    flag: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// The events of a run. Dropping it cancels the run.
pub struct CompareStream {
    rx: mpsc::UnboundedReceiver<CompareOutput>,
    run_id: Option<String>,
    conversation_id: Option<String>,
    user_message_id: Option<String>,
    identities: Vec<RevealedColumn>,
    cancel: Cancel,
    conclave: Arc<Conclave>,
}

impl CompareStream {
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    pub fn conversation_id(&self) -> Option<&str> {
        self.conversation_id.as_deref()
    }

    pub fn user_message_id(&self) -> Option<&str> {
        self.user_message_id.as_deref()
    }

    pub async fn next_event(&mut self) -> Option<CompareOutput> {
        self.rx.recv().await
    }

    /// The models behind the columns, from memory: for a blind run that was not saved
    /// (so cannot be voted on), once the caller decides to show them.
    pub fn identities(&self) -> &[RevealedColumn] {
        &self.identities
    }

    pub fn cancel(&self) {
        cancel_all(&self.conclave, &self.cancel);
    }
}

fn cancel_all(conclave: &Conclave, cancel: &Cancel) {
    cancel.flag.store(true, Ordering::SeqCst);
    let ids = cancel
        .requests
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    for id in ids {
        conclave.cancel(&id);
    }
}

impl Stream for CompareStream {
    type Item = CompareOutput;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CompareOutput>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for CompareStream {
    fn drop(&mut self) {
        self.rx.close();
        if tokio::runtime::Handle::try_current().is_ok() {
            cancel_all(&self.conclave, &self.cancel);
        }
    }
}

/// Validates the request, commits the user message and the run (unless `no_save`), and
/// starts the columns. Errors here are about the request or the history; from then on,
/// failures are per column, as `Error` events.
pub async fn start(
    conclave: &Arc<Conclave>,
    req: CompareRequest,
) -> Result<CompareStream, CompareError> {
    let CompareRequest {
        prompt,
        mut columns,
        options,
    } = req;
    if !(MIN_COLUMNS..=MAX_COLUMNS).contains(&columns.len()) {
        return Err(CompareError::ColumnCount(columns.len()));
    }
    if prompt.trim().is_empty() {
        return Err(CompareError::EmptyPrompt);
    }
    if options.blind {
        let mut rng = match options.shuffle_seed {
            Some(s) => rand::rngs::StdRng::seed_from_u64(s),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        columns.shuffle(&mut rng);
    }
    let labels = column_labels(&columns, options.blind, |p| {
        conclave.library.display_name(p)
    });

    let keys: Vec<schedule::LaneKey> = columns
        .iter()
        .map(|c| schedule::LaneKey {
            model: c.model.clone(),
            n_ctx: schedule::resolve_n_ctx(&c.model, c.settings.n_ctx),
            draft_model: c.settings.draft_model.clone(),
        })
        .collect();
    let mut lanes = schedule::lanes_for(&keys);
    schedule::estimate_lanes(&mut lanes);
    let cores = options
        .cores
        .unwrap_or_else(crate::metrics::physical_cores)
        .max(1);
    let threads_for: fn(usize, usize) -> u32 = if options.cores.is_some() {
        schedule::split_threads
    } else {
        |_, busy| crate::metrics::threads_per_worker(busy)
    };
    let sched = schedule::schedule(schedule::ScheduleInput {
        lanes,
        n_columns: columns.len(),
        cores,
        threads_for,
        memory_budget: schedule::memory_budget(options.memory_limit_bytes),
        force_sequential: options.sequential || !options.rpc.is_empty(),
    });
    tracing::info!(
        columns = columns.len(),
        workers = sched.lanes.len(),
        concurrency = sched.concurrency,
        threads = sched.threads_per_worker,
        sequential = sched.sequential,
        "side-by-side run planned"
    );

    let (conversation_id, user_message_id, run_id) = if options.no_save {
        (None, None, None)
    } else {
        let h = &conclave.history;
        let conversation_id = match &options.conversation_id {
            Some(id) => id.clone(),
            None => {
                let settings = ConversationSettings {
                    default_model: columns.first().map(|c| c.model.display().to_string()),
                    ..ConversationSettings::default()
                };
                h.create_conversation(&title_from(&prompt), settings)
                    .await?
                    .id
            }
        };
        let parent = match &options.parent_id {
            Some(p) => Some(p.clone()),
            None => h.conversation(&conversation_id).await?.current_leaf_id,
        };
        let user = h
            .add_user_message(&conversation_id, parent.as_deref(), &prompt)
            .await?;
        let run = h
            .create_compare_run(&user.id, options.blind, options.tag.as_deref())
            .await?;
        (Some(conversation_id), Some(user.id), Some(run.id))
    };

    let plan = ComparePlan {
        run_id: run_id.clone(),
        conversation_id: conversation_id.clone(),
        user_message_id: user_message_id.clone(),
        blind: options.blind,
        sequential: sched.sequential,
        reason: sched.reason.clone(),
        workers: sched.lanes.len(),
        concurrency: sched.concurrency,
        threads_per_worker: sched.threads_per_worker,
        memory_needed_bytes: sched.memory_needed_bytes,
        memory_budget_bytes: sched.memory_budget_bytes,
        columns: columns
            .iter()
            .enumerate()
            .map(|(i, c)| PlanColumn {
                column: i,
                label: labels[i].clone(),
                model: (!options.blind).then(|| file_name(&c.model)),
                lane: sched
                    .lanes
                    .iter()
                    .position(|l| l.columns.contains(&i))
                    .unwrap_or(0),
            })
            .collect(),
    };
    let identities = columns
        .iter()
        .enumerate()
        .map(|(i, c)| RevealedColumn {
            column: i,
            model: file_name(&c.model),
            sha256: None,
            message_id: None,
        })
        .collect();

    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(CompareOutput::Plan(plan));
    let cancel = Cancel::default();
    let ctx = Arc::new(RunCtx {
        conclave: conclave.clone(),
        prompt,
        columns,
        labels,
        blind: options.blind,
        no_save: options.no_save,
        parent_id: options.parent_id.clone(),
        conversation_id: conversation_id.clone(),
        user_message_id: user_message_id.clone(),
        run_id: run_id.clone(),
        threads: sched.threads_per_worker,
        rpc: options.rpc.clone(),
        gpu_layers: options.gpu_layers,
        thread_budget: sched.threads_per_worker * (sched.concurrency.max(1) as u32),
        generating: Mutex::new(HashMap::new()),
        out: tx,
        cancel: cancel.clone(),
        results: Mutex::new(HashMap::new()),
    });
    tokio::spawn(drive(ctx, sched));
    Ok(CompareStream {
        rx,
        run_id,
        conversation_id,
        user_message_id,
        identities,
        cancel,
        conclave: conclave.clone(),
    })
}

/// Runs a whole comparison, handing every output to `sink`; returns the summary.
pub async fn run(
    conclave: &Arc<Conclave>,
    req: CompareRequest,
    mut sink: impl FnMut(&CompareOutput),
) -> Result<CompareSummary, CompareError> {
    let mut stream = start(conclave, req).await?;
    let mut summary = None;
    while let Some(out) = stream.next_event().await {
        sink(&out);
        if let CompareOutput::Summary(s) = out {
            summary = Some(s);
        }
    }
    summary.ok_or_else(|| {
        CompareError::Core(CoreError::InvalidInput(
            "the run ended without a summary".into(),
        ))
    })
}

/// Records the user's vote on a run and returns who the columns were.
pub async fn vote(
    history: &History,
    run_id: &str,
    vote: Vote,
) -> Result<Vec<RevealedColumn>, CompareError> {
    // A vote naming a column the run lacks would count games nobody played.
    let columns: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT column_index) FROM messages \
         WHERE compare_run_id = ? AND role = 'assistant'",
    )
    .bind(run_id)
    .fetch_one(&history.pool)
    .await
    .map_err(HistoryError::from)?;
    let columns = usize::try_from(columns).unwrap_or(0);
    if columns > 0 && !vote.fits_columns(columns) {
        return Err(HistoryError::InvalidInput(format!(
            "vote '{}' does not fit a run of {columns} columns",
            vote.code()
        ))
        .into());
    }
    history.set_vote(run_id, Some(vote)).await?;
    reveal(history, run_id).await
}

/// Who the columns of a stored run were; refused for a blind run without a vote.
pub async fn reveal(history: &History, run_id: &str) -> Result<Vec<RevealedColumn>, CompareError> {
    let row: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT blind, vote FROM compare_runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(&history.pool)
            .await
            .map_err(HistoryError::from)?;
    let Some((blind, vote)) = row else {
        return Err(HistoryError::NotFound {
            what: "compare run",
            id: run_id.to_owned(),
        }
        .into());
    };
    if blind != 0 && vote.is_none() {
        return Err(CompareError::StillBlind);
    }
    // (message id, column, model file, model sha256)
    type Row = (String, Option<i64>, Option<String>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, column_index, model_file, model_sha256 FROM messages \
         WHERE compare_run_id = ? AND role = 'assistant' ORDER BY column_index, created_at, seq",
    )
    .bind(run_id)
    .fetch_all(&history.pool)
    .await
    .map_err(HistoryError::from)?;
    Ok(rows
        .into_iter()
        .map(|(id, col, file, sha)| RevealedColumn {
            column: col.and_then(|c| usize::try_from(c).ok()).unwrap_or(0),
            model: file.unwrap_or_default(),
            sha256: sha,
            message_id: Some(id),
        })
        .collect())
}

/// Labels: the given one, else the model's name, plus what sets a column apart from another
/// column of the same model.
fn column_labels(
    columns: &[CompareColumn],
    blind: bool,
    name_of: impl Fn(&Path) -> String,
) -> Vec<String> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if blind {
                return blind_label(i);
            }
            if let Some(l) = &c.label {
                return l.clone();
            }
            let name = name_of(&c.model);
            let twins = columns.iter().filter(|o| o.model == c.model).count();
            if twins < 2 {
                return name;
            }
            let s = &c.settings;
            let mut parts = vec![format!("temp {}", s.sampling.temperature)];
            match s.think {
                ThinkMode::On => parts.push("think on".into()),
                ThinkMode::Off => parts.push("think off".into()),
                ThinkMode::Auto => {}
            }
            if let Some(b) = s.think_budget {
                parts.push(format!("budget {b}"));
            }
            if !s.system_prompt.trim().is_empty() {
                parts.push("system prompt".into());
            }
            // What a speculation column is compared for: say it only where twins differ.
            if columns
                .iter()
                .any(|o| o.model == c.model && o.settings.speculative != s.speculative)
            {
                parts.push(format!("speculative {}", s.speculative));
            }
            if let Some(d) = &s.draft_model {
                parts.push(format!("draft {}", name_of(d)));
            }
            format!("{name} ({}) #{}", parts.join(", "), i + 1)
        })
        .collect()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

struct RunCtx {
    conclave: Arc<Conclave>,
    prompt: String,
    columns: Vec<CompareColumn>,
    labels: Vec<String>,
    blind: bool,
    no_save: bool,
    parent_id: Option<String>,
    conversation_id: Option<String>,
    user_message_id: Option<String>,
    run_id: Option<String>,
    threads: u32,
    rpc: Vec<String>,
    gpu_layers: crate::protocol::GpuLayers,
    /// Threads all concurrent lanes share; a lane that finishes leaves its part to the rest.
    thread_budget: u32,
    /// Lanes whose worker is generating now, by lane index.
    generating: Mutex<HashMap<usize, LoadedModel>>,
    out: mpsc::UnboundedSender<CompareOutput>,
    cancel: Cancel,
    results: Mutex<HashMap<usize, ColumnResult>>,
}

struct ColumnResult {
    figures: ColumnFigures,
    /// When the column was generating, for the run's aggregate speed.
    span: Option<(Instant, Instant)>,
}

impl RunCtx {
    fn emit(&self, column: usize, event: ChatEvent) {
        let _ = self
            .out
            .send(CompareOutput::Column(CompareEvent { column, event }));
    }

    fn cancelled(&self) -> bool {
        self.cancel.flag.load(Ordering::SeqCst)
    }

    fn model_shown(&self, column: usize) -> Option<String> {
        (!self.blind).then(|| file_name(&self.columns[column].model))
    }

    fn empty_figures(&self, column: usize, status: ColumnStatus) -> ColumnFigures {
        ColumnFigures {
            column,
            label: self.labels[column].clone(),
            model: self.model_shown(column),
            status,
            error: None,
            stop_reason: None,
            ttft_ms: 0.0,
            tokens_per_second: 0.0,
            thinking_tokens: 0,
            answer_tokens: 0,
            completion_tokens: 0,
            seconds: 0.0,
            energy_wh: 0.0,
            energy_method: String::new(),
            threads: 0,
            drafted_tokens: 0,
            accepted_tokens: 0,
            message_id: None,
        }
    }

    fn record(&self, column: usize, figures: ColumnFigures, span: Option<(Instant, Instant)>) {
        if let Ok(mut r) = self.results.lock() {
            r.insert(column, ColumnResult { figures, span });
        }
    }

    /// A column that never reached its worker: an `Error` event, a failed answer in the
    /// history (so the run still has every column), and its figures.
    async fn fail_column(&self, column: usize, code: &str, message: &str) {
        let mut figures = self.empty_figures(column, ColumnStatus::Error);
        figures.error = Some(message.to_owned());
        if let (Some(conv), Some(user), Some(run)) =
            (&self.conversation_id, &self.user_message_id, &self.run_id)
        {
            let meta = AnswerMeta {
                model: ModelInfo {
                    file: file_name(&self.columns[column].model),
                    ..ModelInfo::default()
                },
                sampling: self.columns[column].settings.sampling.clone(),
                compare: Some(CompareSlot {
                    run_id: run.clone(),
                    column_index: u32::try_from(column).unwrap_or(u32::MAX),
                }),
                ..AnswerMeta::default()
            };
            let stored = async {
                let mut w = self.conclave.history.begin_answer(conv, user, meta).await?;
                w.fail(message).await?;
                Ok::<_, HistoryError>(w.id().to_owned())
            }
            .await;
            match stored {
                Ok(id) => figures.message_id = Some(id),
                Err(e) => tracing::error!("could not store the failed column {column}: {e}"),
            }
        }
        self.emit(
            column,
            ChatEvent::Error {
                code: code.to_owned(),
                message: message.to_owned(),
            },
        );
        self.record(column, figures, None);
    }
}

/// Runs the lanes, `concurrency` at a time in plan order, then sends the summary.
async fn drive(ctx: Arc<RunCtx>, sched: Schedule) {
    let queue = Arc::new(Mutex::new(
        sched
            .lanes
            .iter()
            .cloned()
            .enumerate()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    // The first wave starts generating together, once all of it has loaded: the columns
    // then share the machine from their first token (a fair race, and what a concurrent
    // run is measured on); later lanes start as soon as a slot frees.
    let first_wave = sched.concurrency.min(sched.lanes.len()).max(1);
    let barrier = Arc::new(tokio::sync::Barrier::new(first_wave));
    let mut runners = Vec::new();
    for _ in 0..first_wave {
        let (ctx, queue) = (ctx.clone(), queue.clone());
        let mut start_together = Some(barrier.clone());
        runners.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some((index, lane)) = next else { break };
                let finished = run_lane(&ctx, index, lane, start_together.take()).await;
                let nothing_queued = queue.lock().map(|q| q.is_empty()).unwrap_or(false);
                if nothing_queued {
                    share_freed_threads(&ctx).await;
                }
                // After the hand-over: the others need not wait for this worker to exit.
                if let Some(model) = finished {
                    model.unload().await;
                }
            }
        }));
    }
    for r in runners {
        if let Err(e) = r.await {
            tracing::error!("a side-by-side lane stopped: {e}");
        }
    }
    let summary = summarize(&ctx, &sched);
    let _ = ctx.out.send(CompareOutput::Summary(summary));
}

async fn run_lane(
    ctx: &Arc<RunCtx>,
    index: usize,
    lane: Lane,
    start_together: Option<Arc<tokio::sync::Barrier>>,
) -> Option<LoadedModel> {
    let loaded = if ctx.cancelled() {
        None
    } else {
        let opts = LoadOptions {
            n_ctx: lane.n_ctx,
            threads: Some(ctx.threads),
            rpc: ctx.rpc.clone(),
            gpu_layers: ctx.gpu_layers,
            draft_model: lane.draft_model.clone(),
            ..Default::default()
        };
        let loaded = ctx.conclave.engine.load(&lane.model, opts, |_| {}).await;
        if loaded.is_ok() && !ctx.no_save {
            // The leaderboard knows a model by its content: have the hash before the
            // answers are stored (and before the wave starts, so it does not skew it).
            ctx.conclave.ensure_model_hash(&lane.model).await;
        }
        Some(loaded)
    };
    // Every member of the wave arrives, failed or not, so none waits forever.
    if let Some(b) = start_together {
        b.wait().await;
    }
    let model = match loaded {
        None => {
            for &c in &lane.columns {
                cancelled_before_start(ctx, c);
            }
            return None;
        }
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            let (code, message) = (e.code(), e.to_string());
            tracing::warn!(model = %lane.model.display(), "side-by-side load failed: {message}");
            for &c in &lane.columns {
                ctx.fail_column(c, code, &message).await;
            }
            return None;
        }
    };
    let info = model.info().await;
    let _ = ctx.out.send(CompareOutput::Loaded(LaneLoaded {
        lane: index,
        columns: lane.columns.clone(),
        pid: info.pid,
        threads: info.threads,
        load_ms: info.load_ms,
    }));
    if let Ok(mut g) = ctx.generating.lock() {
        g.insert(index, model.clone());
    }
    for &c in &lane.columns {
        if ctx.cancelled() {
            cancelled_before_start(ctx, c);
            continue;
        }
        run_column(ctx, &model, c).await;
    }
    if let Ok(mut g) = ctx.generating.lock() {
        g.remove(&index);
    }
    Some(model)
}

/// When a lane finishes and none waits, the lanes still generating take its threads (mid
/// answer: the worker swaps its context between two tokens and keeps the cache), so a fast
/// column's end does not leave a core idle while a slow one runs on alone.
async fn share_freed_threads(ctx: &RunCtx) {
    let still: Vec<LoadedModel> = ctx
        .generating
        .lock()
        .map(|g| g.values().cloned().collect())
        .unwrap_or_default();
    if still.is_empty() {
        return;
    }
    let each = (ctx.thread_budget / still.len() as u32).max(1);
    for model in still {
        if let Err(e) = model.set_threads(each).await {
            tracing::debug!("could not give a worker {each} threads: {e}");
        }
    }
}

fn cancelled_before_start(ctx: &RunCtx, column: usize) {
    ctx.emit(
        column,
        ChatEvent::Done {
            stop_reason: StopReason::Cancelled,
            usage: Default::default(),
            metrics: Default::default(),
        },
    );
    let mut f = ctx.empty_figures(column, ColumnStatus::Cancelled);
    f.stop_reason = Some(StopReason::Cancelled);
    ctx.record(column, f, None);
}

async fn run_column(ctx: &Arc<RunCtx>, model: &LoadedModel, column: usize) {
    let spec = &ctx.columns[column];
    let mut settings = spec.settings.clone();
    // The schedule owns the thread count: a column's own would oversubscribe the cores
    // (and rebuild the worker's context for nothing).
    settings.threads = Some(ctx.threads);
    let req = SendRequest {
        conversation_id: ctx.conversation_id.clone(),
        parent_id: if ctx.no_save {
            ctx.parent_id.clone()
        } else {
            None
        },
        content: ctx.prompt.clone(),
        settings,
        compare: ctx.run_id.as_ref().map(|run_id| CompareSlot {
            run_id: run_id.clone(),
            column_index: u32::try_from(column).unwrap_or(u32::MAX),
        }),
        answer_to: ctx.user_message_id.clone(),
        no_save: ctx.no_save,
        ..SendRequest::default()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    let handle = match ctx
        .conclave
        .send(model, req, move |ev| {
            let _ = tx.send(ev);
        })
        .await
    {
        Ok(h) => h,
        Err(e) => {
            ctx.fail_column(column, e.code(), &e.to_string()).await;
            return;
        }
    };
    if let Ok(mut r) = ctx.cancel.requests.lock() {
        r.push(handle.request_id.clone());
    }
    if ctx.cancelled() {
        ctx.conclave.cancel(&handle.request_id);
    }
    let mut figures = ctx.empty_figures(column, ColumnStatus::Error);
    figures.message_id = Some(handle.assistant_message_id.clone()).filter(|m| !m.is_empty());
    figures.threads = ctx.threads;
    let mut end = None;
    let mut finished = false;
    // Read to the end of the channel, not just to `Done`: a failed save is reported after.
    while let Some(mut ev) = rx.recv().await {
        match &mut ev {
            ChatEvent::Started { model, .. } if ctx.blind => *model = ctx.labels[column].clone(),
            ChatEvent::Done {
                stop_reason,
                usage,
                metrics,
            } => {
                end = Some(Instant::now());
                finished = true;
                if ctx.blind {
                    // The template's name ("gemma", "llama3"…) would give the model away.
                    metrics.template = String::new();
                }
                figures.status = if *stop_reason == StopReason::Cancelled {
                    ColumnStatus::Cancelled
                } else {
                    ColumnStatus::Done
                };
                figures.stop_reason = Some(*stop_reason);
                figures.ttft_ms = metrics.ttft_ms;
                figures.tokens_per_second = metrics.gen_tps;
                figures.thinking_tokens = usage.reasoning_tokens;
                figures.answer_tokens = usage.answer_tokens;
                figures.completion_tokens = usage.completion_tokens;
                figures.seconds = metrics.wall_ms / 1000.0;
                figures.energy_wh = metrics.energy_wh;
                figures.energy_method = metrics.energy_method.clone();
                figures.drafted_tokens = metrics.drafted_tokens;
                figures.accepted_tokens = metrics.accepted_tokens;
                if metrics.threads > 0 {
                    figures.threads = metrics.threads;
                }
            }
            ChatEvent::Error { message, .. } => {
                if finished {
                    // The answer was shown; only saving it failed. Keep the figures.
                    figures.error = Some(message.clone());
                } else {
                    end = Some(Instant::now());
                    figures.status = ColumnStatus::Error;
                    figures.error = Some(message.clone());
                }
            }
            _ => {}
        }
        ctx.emit(column, ev);
    }
    ctx.record(column, figures, end.map(|e| (t0, e)));
}

fn summarize(ctx: &RunCtx, sched: &Schedule) -> CompareSummary {
    let mut results = ctx
        .results
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    let mut columns = Vec::new();
    let mut spans = Vec::new();
    for c in 0..ctx.columns.len() {
        match results.remove(&c) {
            Some(r) => {
                spans.extend(r.span);
                columns.push(r.figures);
            }
            None => {
                // Only a panicking lane leaves a column without a result.
                let mut f = ctx.empty_figures(c, ColumnStatus::Error);
                f.error = Some("the column stopped without a result".into());
                columns.push(f);
            }
        }
    }
    let done = || {
        columns
            .iter()
            .filter(|c| c.status == ColumnStatus::Done && c.completion_tokens > 0)
    };
    let fastest = done()
        .max_by(|a, b| a.tokens_per_second.total_cmp(&b.tokens_per_second))
        .map(|c| c.column);
    let cheapest = done()
        .min_by(|a, b| a.energy_wh.total_cmp(&b.energy_wh))
        .map(|c| c.column);
    let generation_seconds = union_seconds(&mut spans);
    let tokens: u32 = columns.iter().map(|c| c.completion_tokens).sum();
    CompareSummary {
        run_id: ctx.run_id.clone(),
        blind: ctx.blind,
        sequential: sched.sequential,
        reason: sched.reason.clone(),
        fastest,
        cheapest,
        generation_seconds,
        aggregate_tokens_per_second: if generation_seconds > 0.0 {
            f64::from(tokens) / generation_seconds
        } else {
            0.0
        },
        columns,
    }
}

/// Total length of the union of time spans.
fn union_seconds(spans: &mut [(Instant, Instant)]) -> f64 {
    spans.sort_by_key(|s| s.0);
    let mut total = 0.0;
    let mut current: Option<(Instant, Instant)> = None;
    for &(s, e) in spans.iter() {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += (ce - cs).as_secs_f64();
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        total += (ce - cs).as_secs_f64();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn union_of_spans() {
        let t = Instant::now();
        let s = |a: u64, b: u64| (t + Duration::from_secs(a), t + Duration::from_secs(b));
        assert_eq!(union_seconds(&mut [s(0, 4), s(1, 3), s(6, 8)]), 6.0);
        assert_eq!(union_seconds(&mut []), 0.0);
    }

    #[test]
    fn outputs_serialise_tagged() {
        let ev = CompareOutput::Column(CompareEvent {
            column: 1,
            event: ChatEvent::token("hi"),
        });
        let v = serde_json::to_value(&ev).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({"column": 1, "type": "token", "text": "hi"})
        );
        let back: CompareOutput =
            serde_json::from_value(v).unwrap_or(CompareOutput::Loaded(LaneLoaded {
                lane: 9,
                columns: vec![],
                pid: 0,
                threads: 0,
                load_ms: 0.0,
            }));
        assert_eq!(back, ev);
        let loaded = CompareOutput::Loaded(LaneLoaded {
            lane: 0,
            columns: vec![0, 1],
            pid: 7,
            threads: 1,
            load_ms: 3.0,
        });
        let v = serde_json::to_value(&loaded).unwrap_or_default();
        assert_eq!(v["type"], "loaded");
        let back: Option<CompareOutput> = serde_json::from_value(v).ok();
        assert_eq!(back, Some(loaded));
    }

    #[test]
    fn labels() {
        assert_eq!(blind_label(0), "Model A");
        assert_eq!(blind_label(3), "Model D");
        let mut hot = ChatSettings::default();
        hot.sampling.temperature = 1.0;
        let cols = vec![
            CompareColumn::new("/m/a.gguf", ChatSettings::default()),
            CompareColumn::new("/m/a.gguf", hot),
            CompareColumn::new("/m/b.gguf", ChatSettings::default()),
        ];
        let name = |p: &Path| crate::models::display_name(p, None);
        let l = column_labels(&cols, false, name);
        assert_eq!(l[2], "b");
        assert!(
            l[0].starts_with("a (temp 0.8") && l[1].starts_with("a (temp 1"),
            "{l:?}"
        );
        assert_eq!(column_labels(&cols, true, name)[1], "Model B");
        // Speculation columns say how they differ.
        let drafted = ChatSettings {
            speculative: crate::protocol::SpeculativeMode::Draft,
            draft_model: Some("/m/small.gguf".into()),
            ..ChatSettings::default()
        };
        let off = ChatSettings {
            speculative: crate::protocol::SpeculativeMode::Off,
            ..ChatSettings::default()
        };
        let cols = vec![
            CompareColumn::new("/m/a.gguf", off),
            CompareColumn::new("/m/a.gguf", drafted),
        ];
        let l = column_labels(&cols, false, name);
        assert!(
            l[0].contains("speculative off") && !l[0].contains("draft"),
            "{l:?}"
        );
        assert!(
            l[1].contains("speculative draft") && l[1].contains("draft small"),
            "{l:?}"
        );
    }
}
