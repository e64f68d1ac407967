//! The typed values that flow out of the engine: requests' parameters, streamed deltas,
//! and what an answer cost. Every consumer (CLI, desktop shell, API server, history) reads
//! these; streams carry deltas, never the accumulated text.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

// Sampling parameters and stop reasons travel to and from the worker, so the protocol crate
// owns them; they stay reachable here, where the rest of the app has always found them.
pub use conclave_protocol::{SamplingParams, SpeculativeMode, StopReason};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// The thinking of an earlier assistant turn; sent back to the model only when the
    /// conversation keeps thoughts in context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            reasoning: None,
        }
    }
}

/// Whether the model should think before answering, where its template lets us choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum ThinkMode {
    On,
    Off,
    #[default]
    Auto,
}

impl std::str::FromStr for ThinkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown thinking mode '{other}' (on, off, auto)")),
        }
    }
}

/// What to do when a conversation no longer fits the model's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ContextOverflow {
    /// Refuse to answer and say so; nothing is dropped.
    Stop,
    /// Leave out the oldest turns (after the system prompt) until it fits.
    #[default]
    DropOldest,
    /// Keep the system prompt, the first exchange (which usually sets the task) and the
    /// latest turns; leave out turns from the middle.
    TruncateMiddle,
}

impl ContextOverflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::DropOldest => "drop_oldest",
            Self::TruncateMiddle => "truncate_middle",
        }
    }
}

impl std::str::FromStr for ContextOverflow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.replace('-', "_").as_str() {
            "stop" => Ok(Self::Stop),
            "drop_oldest" => Ok(Self::DropOldest),
            "truncate_middle" => Ok(Self::TruncateMiddle),
            _ => Err(format!(
                "unknown context overflow policy '{s}' (stop, drop_oldest, truncate_middle)"
            )),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct Usage {
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV cache was reused from the previous turn.
    pub cached_prompt_tokens: u32,
    pub completion_tokens: u32,
    pub reasoning_tokens: u32,
    pub answer_tokens: u32,
}

/// What one answer cost, measured (never estimated, except energy, whose method is named).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct Metrics {
    /// From the request reaching the engine to the first streamed token.
    pub ttft_ms: f64,
    pub prompt_eval_ms: f64,
    pub prompt_tps: f64,
    pub gen_ms: f64,
    pub gen_tps: f64,
    pub wall_ms: f64,
    /// Thinking time is measured from the request, not from the first thought.
    pub thinking_ms: f64,
    pub answer_ms: f64,
    pub threads: u32,
    pub peak_rss_bytes: u64,
    pub cpu_seconds: f64,
    pub energy_wh: f64,
    pub energy_thinking_wh: f64,
    pub energy_answer_wh: f64,
    /// "rapl" or "cpu-time" (CPU seconds × watts per core).
    pub energy_method: String,
    /// Messages left out so the conversation fits the context.
    pub dropped_messages: u32,
    /// The policy that chose them (oldest first, or from the middle).
    #[serde(default)]
    pub context_overflow: ContextOverflow,
    pub seed: u32,
    pub template: String,
    /// Reasoning format detected for this answer ("none" when the model does not think).
    pub reasoning_format: String,
    pub thinking: ThinkMode,
    /// Thinking token count at which the budget forced the answer, if it did.
    pub budget_cut_at: Option<u32>,
    /// Generation stopped while still thinking (no closing marker).
    pub reasoning_cut_off: bool,
    /// Tokens saved by not sending earlier turns' thinking back to the model.
    pub thoughts_dropped_tokens: u32,
    /// From the request to the first thinking text; absent when there was none. Unlike
    /// `ttft_ms`, which is the first text of either kind.
    #[serde(default)]
    pub first_reasoning_ms: Option<f64>,
    /// From the request to the first answer text; absent when there was none.
    #[serde(default)]
    pub first_answer_ms: Option<f64>,
    /// Speculative decoding: tokens drafted and verified, and how many the model kept.
    #[serde(default)]
    pub drafted_tokens: u32,
    #[serde(default)]
    pub accepted_tokens: u32,
    /// Where the model's layers ran when more than the CPU took part, e.g.
    /// `CPU: 16 layers, rpc 127.0.0.1:50052: 15 layers`; empty for the CPU alone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub devices: String,
}

fn one_token() -> u32 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_one_token(n: &u32) -> bool {
    *n == 1
}

/// One event of a streamed answer. Text events are deltas.
// `Done` carries the whole Metrics, once per answer: boxing it would change every front
// end's match to save a few hundred bytes per queued event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    Started {
        request_id: String,
        model: String,
        seed: u32,
        reasoning_format: String,
        prompt_tokens: u32,
        cached_prompt_tokens: u32,
    },
    Reasoning {
        text: String,
        /// Tokens in `text`: 1 as the engine sends them; more once a frame's worth is joined
        /// for a page (`frames`), so live counts and speeds stay counts of tokens.
        #[serde(default = "one_token", skip_serializing_if = "is_one_token")]
        #[ts(optional, as = "Option<u32>")]
        tokens: u32,
    },
    Token {
        text: String,
        /// As for `Reasoning`.
        #[serde(default = "one_token", skip_serializing_if = "is_one_token")]
        #[ts(optional, as = "Option<u32>")]
        tokens: u32,
    },
    Done {
        stop_reason: StopReason,
        usage: Usage,
        metrics: Metrics,
    },
    Error {
        code: String,
        message: String,
    },
}

impl ChatEvent {
    /// One generated token's answer text.
    pub fn token(text: impl Into<String>) -> Self {
        ChatEvent::Token {
            text: text.into(),
            tokens: 1,
        }
    }

    /// One generated token's thinking text.
    pub fn reasoning(text: impl Into<String>) -> Self {
        ChatEvent::Reasoning {
            text: text.into(),
            tokens: 1,
        }
    }
}
