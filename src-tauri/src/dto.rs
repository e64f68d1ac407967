//! The shapes the UI reads (ui/src/lib/types.ts), converted from the core's types.
//! The core keeps Unix milliseconds and rich catalog entries; the UI wants RFC 3339 strings
//! and a flat model row. Only renaming and reshaping happens here.

use std::path::Path;

use chrono::{DateTime, SecondsFormat};
use conclave_core::engine::ModelInfo as LoadedInfo;
use conclave_core::events::{Metrics, Role, Usage};
use conclave_core::history::{
    ConversationSummary, ConversationTree, MessageStatus, SearchHit, StoredMessage,
};
use conclave_core::models::{display_name, ModelEntry};
use conclave_core::session::ChatSettings;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::ApiError;

/// Millisecond precision, so a timestamp sent back as a paging cursor compares exactly.
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_rfc3339(s: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|e| ApiError::invalid_input(format!("'{s}' is not an RFC 3339 time: {e}")))
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "ModelInfo")]
pub struct ModelDto {
    /// The path-based id: it stays the same once the background sha256 is known, so the
    /// UI's remembered choice survives a restart.
    pub id: String,
    pub name: String,
    pub path: String,
    pub size_bytes: u64,
    pub architecture: Option<String>,
    pub quantization: Option<String>,
    pub parameter_count: Option<u64>,
    pub context_length: Option<u64>,
    pub has_chat_template: bool,
    pub reasoning_format: Option<String>,
    pub error: Option<String>,
    /// Layers on GPU and RPC devices chosen for this model; None = auto (the fit).
    pub gpu_layers: Option<u32>,
}

impl From<&ModelEntry> for ModelDto {
    fn from(m: &ModelEntry) -> Self {
        let meta = m.meta.as_ref();
        Self {
            id: m.path_id.clone(),
            name: m.display_name.clone(),
            path: m.path.display().to_string(),
            size_bytes: m.size,
            architecture: meta.and_then(|x| x.architecture.clone()),
            quantization: meta.and_then(|x| x.quantization.clone()),
            parameter_count: meta.map(|x| x.parameter_count).filter(|n| *n > 0),
            context_length: meta.and_then(|x| x.context_length),
            has_chat_template: meta.is_some_and(|x| x.has_chat_template),
            reasoning_format: meta.and_then(|x| x.reasoning_format).map(|f| f.to_string()),
            error: m.error.as_ref().map(|e| e.message.clone()),
            gpu_layers: m.gpu_layers,
        }
    }
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "LoadedModel")]
pub struct LoadedModelDto {
    pub model_id: String,
    pub name: String,
    pub load_ms: f64,
    /// The context the worker really allocated; the status line shows this, not the
    /// trained maximum.
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    pub has_chat_template: bool,
    pub template_name: String,
    pub reasoning_format: String,
    /// False when the template has no switch for thinking; the settings show Off as
    /// unavailable with `thinking_off_reason`.
    pub thinking_off_available: bool,
    pub thinking_off_reason: Option<String>,
    /// Where the layers run when more than the CPU takes part ("" for the CPU alone).
    pub devices: String,
}

impl LoadedModelDto {
    pub fn new(model_id: String, name: String, info: &LoadedInfo) -> Self {
        Self {
            model_id,
            name,
            load_ms: info.load_ms,
            n_ctx: info.n_ctx,
            n_ctx_train: info.n_ctx_train,
            has_chat_template: info.has_chat_template,
            template_name: info.template_name.clone(),
            reasoning_format: info.reasoning_format.clone(),
            thinking_off_available: info.thinking_off_available,
            thinking_off_reason: info.thinking_off_reason.clone(),
            devices: conclave_core::engine::placement_label(&info.devices),
        }
    }
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct LoadProgress {
    pub fraction: f32,
}

/// `start_chat`'s request: the core's `SendRequest` plus which model answers.
#[derive(Debug, Clone, Deserialize, TS)]
#[ts(rename = "ChatRequest")]
pub struct ChatRequestDto {
    pub conversation_id: Option<String>,
    pub parent_id: Option<String>,
    #[serde(default)]
    pub content: String,
    pub model_id: String,
    #[serde(default)]
    pub settings: ChatSettings,
    pub regenerate_of: Option<String>,
    pub edit_of: Option<String>,
}

/// What reading a message while it is typed left in the model's cache
/// (`warm_prompt`): all zero when nothing was read (no model loaded yet, an answer
/// running, an empty message).
#[derive(Debug, Clone, Default, Serialize, TS)]
#[ts(rename = "WarmReport")]
pub struct WarmReportDto {
    /// The conversation and the message so far, in tokens.
    pub prompt_tokens: u32,
    /// How many of them were in the cache already.
    pub cached_tokens: u32,
    /// How many were read now.
    pub decoded_tokens: u32,
    /// False when it stopped early (another request came first).
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "ConversationSummary")]
pub struct ConversationSummaryDto {
    pub id: String,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
    pub pinned: bool,
    pub message_count: i64,
    pub last_model: Option<String>,
}

impl From<ConversationSummary> for ConversationSummaryDto {
    fn from(c: ConversationSummary) -> Self {
        Self {
            id: c.id,
            title: c.title,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            pinned: c.pinned,
            message_count: c.message_count,
            last_model: c.last_model,
        }
    }
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "MessageView")]
pub struct MessageDto {
    pub id: String,
    pub parent_id: Option<String>,
    pub role: Role,
    pub content: String,
    pub reasoning: Option<String>,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub model_name: Option<String>,
    pub created_at: String,
    pub metrics: Option<Metrics>,
    pub usage: Option<Usage>,
    pub stop_reason: Option<String>,
}

impl From<StoredMessage> for MessageDto {
    fn from(m: StoredMessage) -> Self {
        Self {
            id: m.id,
            parent_id: m.parent_id,
            role: m.role,
            content: m.content,
            reasoning: m.reasoning,
            status: m.status,
            error: m.error_message,
            // Named as the catalog names models; the history keeps the file name, not the
            // library entry, so a later rename is not applied to past answers.
            model_name: m.model.map(|x| display_name(Path::new(&x.file), None)),
            created_at: rfc3339(m.created_at),
            metrics: m.metrics,
            usage: m.usage,
            stop_reason: m.stop_reason.map(|s| s.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "ConversationView")]
pub struct ConversationViewDto {
    pub id: String,
    pub title: String,
    pub system_prompt: String,
    pub settings: Option<ChatSettings>,
    pub current_leaf_id: Option<String>,
    pub messages: Vec<MessageDto>,
}

impl From<ConversationTree> for ConversationViewDto {
    fn from(tree: ConversationTree) -> Self {
        let settings = ChatSettings::of_tree(&tree);
        Self {
            id: tree.conversation.id.clone(),
            title: tree.conversation.title.clone(),
            system_prompt: tree
                .conversation
                .settings
                .system_prompt
                .clone()
                .unwrap_or_default(),
            settings,
            current_leaf_id: tree.conversation.current_leaf_id.clone(),
            messages: tree.messages.into_iter().map(MessageDto::from).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "SearchHit")]
pub struct SearchHitDto {
    pub conversation_id: String,
    pub message_id: String,
    pub title: String,
    /// Matches between U+0001 and U+0002, which the UI turns into highlights.
    pub snippet: String,
    pub role: Role,
}

impl From<SearchHit> for SearchHitDto {
    fn from(h: SearchHit) -> Self {
        Self {
            conversation_id: h.conversation_id,
            message_id: h.message_id,
            title: h.conversation_title,
            snippet: h.snippet,
            role: h.role,
        }
    }
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "AppInfo")]
pub struct AppInfoDto {
    pub version: String,
    pub data_dir: String,
    pub models_dirs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(rename = "WorkerCrashed")]
pub struct WorkerCrashedEvent {
    pub model_id: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct ModelLoadedEvent {
    pub model_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_to_the_millisecond() {
        let ms = 1_732_800_000_123;
        let s = rfc3339(ms);
        assert_eq!(s, "2024-11-28T13:20:00.123Z");
        assert_eq!(parse_rfc3339(&s), Ok(ms));
        assert_eq!(
            parse_rfc3339("yesterday").map_err(|e| e.code),
            Err("invalid_input".into())
        );
    }

    #[test]
    fn chat_request_accepts_what_the_ui_sends() {
        let json = serde_json::json!({
            "conversation_id": null, "parent_id": null, "content": "hi", "model_id": "abc",
            "settings": {"system_prompt": "", "sampling": {"temperature": 0, "top_k": 40,
              "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1, "repeat_last_n": 64,
              "frequency_penalty": 0, "presence_penalty": 0, "seed": 7, "max_tokens": 32,
              "stop": []}, "think": "on", "think_budget": 16, "keep_thoughts": false,
              "n_ctx": 0, "threads": null, "template": null},
            "regenerate_of": null, "edit_of": null
        });
        let req: ChatRequestDto = match serde_json::from_value(json) {
            Ok(r) => r,
            Err(e) => panic!("the UI's request must parse: {e}"),
        };
        assert_eq!(req.settings.sampling.seed, Some(7));
        assert_eq!(req.settings.think_budget, Some(16));
        assert_eq!(req.settings.sampling.temperature, 0.0);
    }
}
