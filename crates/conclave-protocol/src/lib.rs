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

pub use params::{SamplingParams, SpeculativeMode, StopReason};

/// The version of this protocol, carried in [`ReadyInfo::protocol`]. The core refuses a
/// worker that reports another one, so a stale `conclave-worker` left next to a newer app
/// fails its load with a clear message instead of misreading (or hanging on) its output.
/// Raise it with any change that an older or newer peer would misread.
pub const PROTOCOL_VERSION: u32 = 2;

/// Command-line flags the core passes when it starts a worker.
pub const ARG_MODEL: &str = "--model";
pub const ARG_N_CTX: &str = "--n-ctx";
pub const ARG_THREADS: &str = "--threads";
/// A second, smaller model with the same vocabulary that drafts tokens for the first one
/// (speculative decoding); both live in the same worker.
pub const ARG_DRAFT_MODEL: &str = "--draft-model";

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
    /// How tokens are drafted for speculative decoding (the output is the same either way).
    #[serde(default)]
    pub speculative: SpeculativeMode,
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
        code: WorkerErrorCode,
        message: String,
        /// For `context_overflow`: the prompt's length in tokens.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt_tokens: Option<u32>,
    },
}

/// Why a request failed, named the same on both sides. The core passes these codes on to
/// the UI and API clients (`ChatEvent::Error`), which match on them: the wire spelling of
/// a variant never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerErrorCode {
    /// The model could not be loaded; the worker exits after saying so.
    LoadFailed,
    /// A request line the worker could not read.
    BadRequest,
    /// The prompt tokenized to nothing.
    EmptyPrompt,
    /// The prompt does not fit the context (`prompt_tokens` says how long it is).
    ContextOverflow,
    GenerationFailed,
    BenchFailed,
    ThreadsFailed,
    /// Never sent by a worker: the core fails the requests of a worker that died with it.
    WorkerCrashed,
    /// Never sent by a worker: the core fails the pending requests with it when the worker
    /// writes a line that is not part of this protocol.
    BadOutput,
    /// A message could not be serialised (not expected with these types).
    Internal,
}

impl WorkerErrorCode {
    pub const ALL: [WorkerErrorCode; 10] = [
        Self::LoadFailed,
        Self::BadRequest,
        Self::EmptyPrompt,
        Self::ContextOverflow,
        Self::GenerationFailed,
        Self::BenchFailed,
        Self::ThreadsFailed,
        Self::WorkerCrashed,
        Self::BadOutput,
        Self::Internal,
    ];

    /// The wire spelling, for callers that hand codes on as strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadFailed => "load_failed",
            Self::BadRequest => "bad_request",
            Self::EmptyPrompt => "empty_prompt",
            Self::ContextOverflow => "context_overflow",
            Self::GenerationFailed => "generation_failed",
            Self::BenchFailed => "bench_failed",
            Self::ThreadsFailed => "threads_failed",
            Self::WorkerCrashed => "worker_crashed",
            Self::BadOutput => "bad_output",
            Self::Internal => "internal",
        }
    }

    /// The code a string names, if any (for codes that arrive as strings, such as a
    /// streamed `ChatEvent::Error`).
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for WorkerErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// [`PROTOCOL_VERSION`] of the worker; 0 for workers built before it existed.
    #[serde(default)]
    pub protocol: u32,
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
    /// The draft model's name when the worker holds one (`--draft-model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_model: Option<String>,
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
    /// Speculative decoding: tokens drafted and verified, and how many of them the target
    /// model kept (0 and 0 when nothing was drafted).
    #[serde(default)]
    pub drafted_tokens: u32,
    #[serde(default)]
    pub accepted_tokens: u32,
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
        // Quoted by serde_json too, so the reason cannot break the line's JSON.
        let message = serde_json::to_string(&format!("serialise: {e}"))
            .unwrap_or_else(|_| "\"serialise\"".to_owned());
        format!("{{\"type\":\"error\",\"code\":\"internal\",\"message\":{message}}}")
    });
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_spelled_on_the_wire_as_as_str_says() {
        for code in WorkerErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(WorkerErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(WorkerErrorCode::parse("nonsense"), None);
    }

    #[test]
    fn the_serialisation_fallback_is_itself_a_readable_event() {
        let fallback = "{\"type\":\"error\",\"code\":\"internal\",\"message\":\"serialise: x\"}";
        let event: Result<WorkerEvent, _> = serde_json::from_str(fallback);
        assert!(
            matches!(
                event,
                Ok(WorkerEvent::Error {
                    code: WorkerErrorCode::Internal,
                    ..
                })
            ),
            "{event:?}"
        );
    }
}
