//! Conclave's core: everything the CLI, the desktop shell and the API server share.
//! No Tauri, no llama.cpp: inference runs in `conclave-worker` child processes that
//! [`engine`] spawns and talks to over framed JSON.

pub mod api;
pub mod compare;
pub mod engine;
pub mod error;
pub mod events;
pub mod files;
pub mod frames;
pub mod gguf;
pub mod history;
pub mod leaderboard;
pub mod metrics;
pub mod models;
pub mod paths;
/// The worker protocol lives in its own crate, shared with `conclave-worker`.
pub use conclave_protocol as protocol;
pub mod reasoning;
pub mod session;
pub mod settings;
pub mod template;

pub use error::{CoreError, ErrorCode};
pub use events::{
    ChatEvent, ContextOverflow, Message, Metrics, Role, SamplingParams, SpeculativeMode,
    StopReason, ThinkMode, Usage,
};
