//! The wire protocol between the core and a `conclave-worker` process: one JSON object per
//! line, requests on the worker's stdin, events on its stdout. The worker prints `Ready`
//! once its model is loaded and exits when its stdin closes, so a dead parent never leaves
//! an orphan holding gigabytes of weights.
//!
//! The worker knows nothing of templates, reasoning formats or history: it turns a rendered
//! prompt into a stream of complete UTF-8 text pieces, and applies the thinking budget as a
//! plain "if N tokens pass without `close`, inject `close`" rule.

//!
//! This crate is all the two sides share, so the worker builds without the core (no
//! database, HTTP or template engine in the process that holds the model).

mod params;

use serde::{Deserialize, Serialize};

pub use params::{SamplingParams, StopReason};

/// Command-line flags the core passes when it starts a worker.
pub const ARG_MODEL: &str = "--model";
pub const ARG_N_CTX: &str = "--n-ctx";
pub const ARG_THREADS: &str = "--threads";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerRequest {
    Generate(GenerateRequest),
    /// Stop the generation with this id within one token (also during prompt decoding).
    Cancel {
        id: u64,
    },
    /// Count tokens of a text, as the model would see it in a prompt.
    Tokenize {
        id: u64,
        text: String,
    },
    /// Raw llama.cpp speed, measured the way llama-bench does: no template, no sampling.
    Bench(BenchRequest),
    /// Use this many threads from the next token on (also mid-answer): a side-by-side run
    /// gives the cores of a finished column to the ones still generating.
    SetThreads {
        threads: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub id: u64,
    /// The fully rendered prompt; special tokens in it are parsed.
    pub prompt: String,
    /// Prepend BOS: only when the model wants one and the template did not write it.
    pub add_bos: bool,
    pub params: SamplingParams,
    /// The seed actually used (the core draws one when the user gave none).
    pub seed: u32,
    /// Threads for this request; the worker rebuilds its context when this changes.
    pub threads: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<ThinkBudget>,
    /// A GBNF grammar constraining the output (JSON mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<String>,
}

/// Budget forcing: once `max_tokens` tokens have been spent thinking without the closing
/// marker, the worker feeds `inject` (lead-in + closing marker) as if the model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinkBudget {
    pub max_tokens: u32,
    /// The prompt already ends inside the opening marker.
    pub starts_in_thinking: bool,
    pub open: String,
    pub close: String,
    pub inject: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRequest {
    pub id: u64,
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
    pub reps: u32,
    pub threads: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerEvent {
    LoadProgress {
        fraction: f32,
    },
    Ready(ReadyInfo),
    /// The prompt has been decoded; generation begins.
    Started {
        id: u64,
        prompt_tokens: u32,
        cached_tokens: u32,
        prompt_ms: f64,
    },
    /// Complete UTF-8 text; `tokens` is how many generated tokens it covers (0 when the
    /// bytes of a token ended inside a character and wait for the next one).
    Delta {
        id: u64,
        text: String,
        tokens: u32,
    },
    Done(DoneInfo),
    Tokenized {
        id: u64,
        tokens: u32,
    },
    BenchResult(BenchResult),
    /// A request failed; the worker stays usable. `id` is absent for load failures.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        code: String,
        message: String,
        /// For `context_overflow`: the prompt's length in tokens.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt_tokens: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyInfo {
    pub pid: u32,
    pub load_ms: f64,
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    pub n_vocab: i32,
    pub n_params: u64,
    pub size_bytes: u64,
    pub threads: u32,
    pub architecture: String,
    pub name: Option<String>,
    pub chat_template: Option<String>,
    pub bos_token: String,
    pub eos_token: String,
    pub add_bos: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneInfo {
    pub id: u64,
    pub stop_reason: StopReason,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub completion_tokens: u32,
    pub prompt_ms: f64,
    /// From the first generated token to the last.
    pub gen_ms: f64,
    pub threads: u32,
    /// Thinking tokens counted by the budget rule (0 without a budget).
    pub thinking_tokens: u32,
    pub budget_cut_at: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub id: u64,
    pub threads: u32,
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
    pub reps: u32,
    /// Mean prompt-processing speed (tokens/s).
    pub prompt_tps: f64,
    /// Mean single-token decode speed (tokens/s).
    pub gen_tps: f64,
    /// Prompt batch plus the first single-token decode, in ms.
    pub ttft_ms: f64,
    pub gen_tps_stddev: f64,
}

/// Serialises one message as a line. Serialising these plain types cannot fail.
pub fn to_line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value).unwrap_or_else(|e| {
        format!("{{\"type\":\"error\",\"code\":\"internal\",\"message\":\"serialise: {e}\"}}")
    });
    s.push('\n');
    s
}
