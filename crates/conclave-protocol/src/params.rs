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
