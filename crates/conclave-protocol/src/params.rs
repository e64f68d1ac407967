//! Sampling parameters and stop reasons: part of the worker protocol (a generate request
//! carries the former, its `Done` event the latter), and shown to users as they are.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: i32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// None: a random seed is drawn and reported, so any run can be replayed.
    pub seed: Option<u32>,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    /// DRY ("don't repeat yourself"): penalises continuing a sequence already seen;
    /// 0 = off. The penalty is `multiplier * base^(length - allowed_length)`.
    pub dry_multiplier: f32,
    pub dry_base: f32,
    /// Repeated sequences up to this long are not penalised.
    pub dry_allowed_length: i32,
    /// Tokens DRY looks back over; -1 = the whole context, 0 = off.
    pub dry_penalty_last_n: i32,
    /// XTC ("exclude top choices"): with this probability per token, drops every
    /// candidate above the threshold except the least likely of them; 0 = off.
    pub xtc_probability: f32,
    pub xtc_threshold: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        // llama.cpp's own defaults, so answers match what users see elsewhere.
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
            max_tokens: 512,
            stop: Vec::new(),
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_penalty_last_n: -1,
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model ended its answer (end-of-generation token).
    Eos,
    MaxTokens,
    /// One of the request's stop strings appeared.
    StopString,
    Cancelled,
    /// The context window filled up during generation.
    ContextFull,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopString => "stop_string",
            StopReason::Cancelled => "cancelled",
            StopReason::ContextFull => "context_full",
        }
    }
}

/// How a worker drafts tokens for speculative decoding. Drafted tokens are checked by
/// sampling the target model at each drafted position with the request's own sampler, so
/// the text is the one the target alone would write; only the speed changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum SpeculativeMode {
    /// One token per decode.
    Off,
    /// Drafts from the worker's draft model when it holds one, else from text already in
    /// the context (prompt lookup); either stops drafting while it does not pay. Greedy
    /// answers only: a sampled answer is left to plain decoding, so that its seed gives
    /// the same text whatever the machine's load.
    #[default]
    Auto,
    /// Drafts copied from the context (n-gram prompt lookup), whether it pays or not.
    Lookup,
    /// Drafts from the draft model, whether it pays or not.
    Draft,
}

impl SpeculativeMode {
    pub const ALL: [SpeculativeMode; 4] = [Self::Off, Self::Auto, Self::Lookup, Self::Draft];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Auto => "auto",
            Self::Lookup => "lookup",
            Self::Draft => "draft",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for SpeculativeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SpeculativeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
            .ok_or_else(|| format!("unknown speculative mode {s:?} (off, auto, lookup or draft)"))
    }
}
