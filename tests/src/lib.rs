//! Helpers shared by the integration tests: the real test models, an engine that finds the
//! worker built next to the test executables, and collecting a streamed answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use conclave_core::engine::{ChatStream, Engine};
use conclave_core::{ChatEvent, Metrics, StopReason, Usage};

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// A real model from the checkout's `models/` folder. Missing models are a failure, not a
/// skip: `make test` fetches them.
pub fn model(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("models")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `make models-all` (models/fetch)",
        p.display()
    );
    p
}

/// The engine, with the worker binary that `cargo build -p conclave-worker` put in the
/// same target folder as this test executable.
pub fn engine() -> Engine {
    match Engine::new() {
        Ok(e) => e,
        Err(e) => panic!("{e} (run `cargo build -p conclave-worker` first; `make test` does)"),
    }
}

#[derive(Debug, Default)]
pub struct Answer {
    pub started: bool,
    pub reasoning: String,
    pub text: String,
    pub token_events: usize,
    pub reasoning_events: usize,
    pub stop_reason: Option<StopReason>,
    pub usage: Usage,
    pub metrics: Metrics,
    pub error: Option<(String, String)>,
}

/// Reads a stream to its end.
pub async fn collect(mut stream: ChatStream) -> Answer {
    let mut a = Answer::default();
    while let Some(ev) = stream.next_event().await {
        match ev {
            ChatEvent::Started { .. } => a.started = true,
            ChatEvent::Reasoning { text, .. } => {
                a.reasoning_events += 1;
                a.reasoning.push_str(&text);
            }
            ChatEvent::Token { text, .. } => {
                a.token_events += 1;
                a.text.push_str(&text);
            }
            ChatEvent::Done {
                stop_reason,
                usage,
                metrics,
            } => {
                a.stop_reason = Some(stop_reason);
                a.usage = usage;
                a.metrics = metrics;
                break;
            }
            ChatEvent::Error { code, message } => {
                a.error = Some((code, message));
                break;
            }
        }
    }
    a
}
