//! Saving API exchanges to the history, when the user turned that on.
//!
//! The API is stateless (each request carries the whole conversation) so each request
//! becomes a conversation of its own: system prompt in its settings, the messages as a
//! single branch, the answer streamed into it as it is generated. Saving never fails a
//! request: a failing history is logged and the answer goes on.

use crate::events::{ChatEvent, Message, Metrics, Role, SamplingParams, StopReason, Usage};
use crate::history::{AnswerMeta, AnswerWriter, ConversationSettings, MessageStatus, ModelInfo};
use crate::session::{title_from, Conclave};

pub(crate) struct Recorder {
    /// None once the answer is finished (or saving broke).
    writer: Option<AnswerWriter>,
}

impl Recorder {
    pub async fn start(
        app: &Conclave,
        model: &crate::engine::ModelInfo,
        messages: &[Message],
        sampling: &SamplingParams,
    ) -> Option<Self> {
        match Self::try_start(app, model, messages, sampling).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!("could not save the API request to the history: {e}");
                None
            }
        }
    }

    async fn try_start(
        app: &Conclave,
        model: &crate::engine::ModelInfo,
        messages: &[Message],
        sampling: &SamplingParams,
    ) -> Result<Self, crate::error::CoreError> {
        let h = &app.history;
        let system: Vec<&str> = messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("API request", |m| m.content.as_str());
        let file = model
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let settings = ConversationSettings {
            system_prompt: Some(system.join("\n\n")).filter(|s| !s.is_empty()),
            default_model: Some(model.path.display().to_string()),
            ..ConversationSettings::default()
        };
        let conv = h
            .create_conversation(&title_from(last_user), settings)
            .await?;
        let mut parent: Option<String> = None;
        for m in messages.iter().filter(|m| m.role != Role::System) {
            let stored = h
                .add_message(&conv.id, parent.as_deref(), m.role, &m.content)
                .await?;
            parent = Some(stored.id);
        }
        let parent = parent.unwrap_or_default();
        let meta = AnswerMeta {
            model: ModelInfo {
                file,
                sha256: None,
                architecture: Some(model.architecture.clone()),
                quantization: None,
            },
            template: Some(model.template_name.clone()),
            reasoning_format: Some(model.reasoning_format.clone()),
            sampling: sampling.clone(),
            seed: sampling.seed,
            compare: None,
        };
        let writer = h.begin_answer(&conv.id, &parent, meta).await?;
        Ok(Self {
            writer: Some(writer),
        })
    }

    pub async fn event(&mut self, ev: &ChatEvent) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let last = matches!(ev, ChatEvent::Done { .. } | ChatEvent::Error { .. });
        let r = w.apply(ev).await;
        if let Err(e) = r {
            tracing::error!("saving the API answer failed: {e}");
            self.writer = None;
        }
        if last {
            self.writer = None;
        }
    }
}

impl Drop for Recorder {
    /// The client went away mid-answer: keep what was said, marked cancelled, rather than
    /// leaving it `streaming` for as long as the server runs.
    fn drop(&mut self) {
        let Some(mut w) = self.writer.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(async move {
            let r = w
                .finish(
                    MessageStatus::Cancelled,
                    &Metrics::default(),
                    &Usage::default(),
                    StopReason::Cancelled,
                )
                .await;
            if let Err(e) = r {
                tracing::warn!("could not mark the cancelled API answer: {e}");
            }
        });
    }
}
