//! Replay: answer a saved question again with exactly what produced the saved answer (the
//! same model file, checked by its sha256; the same template, sampler and seed) and say
//! whether the new text is identical, or how it differs word by word.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::{answer_context, Conclave};
use crate::compare::{diff_words, DiffOp};
use crate::engine::{ChatRequest, LoadOptions};
use crate::error::CoreError;
use crate::events::{ChatEvent, Message, Role, SpeculativeMode};
use crate::history::StoredMessage;

/// What a replay found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ReplayReport {
    pub message_id: String,
    /// The model file that was run (its sha256 equals the stored one).
    pub model_path: PathBuf,
    pub sha256: String,
    pub template: Option<String>,
    pub seed: u32,
    /// Answer and thinking both equal the stored ones, byte for byte.
    pub identical: bool,
    pub original: String,
    pub replayed: String,
    /// Word diff from the stored answer to the new one (empty when identical).
    pub diff: Vec<DiffOp>,
    pub original_reasoning: String,
    pub replayed_reasoning: String,
    pub reasoning_diff: Vec<DiffOp>,
}

impl Conclave {
    /// Replays the answer `message_id`, streaming the new answer to `sink`, and returns the
    /// comparison once it is done. `model` names the file to run; by default the
    /// conversation's model, then every catalogued model, are tried, and only a file whose
    /// sha256 equals the stored one is used.
    pub async fn replay(
        self: &Arc<Self>,
        message_id: &str,
        model: Option<&Path>,
        mut sink: impl FnMut(&ChatEvent) + Send,
    ) -> Result<ReplayReport, CoreError> {
        let h = &self.history;
        let msg = h.message(message_id).await?;
        let (parent, stored_model, sampling, seed) = replayable(&msg)?;
        let expected = stored_model.sha256.clone().ok_or_else(|| {
            CoreError::InvalidInput(format!(
                "answer {message_id} was saved without its model's sha256, so the model cannot be checked; answers saved from now on always carry it"
            ))
        })?;
        let conversation = h.conversation(&msg.conversation_id).await?;
        let settings = conversation.settings;
        let path = self
            .find_model_by_sha(&expected, model, settings.default_model.as_deref())
            .await?;

        let mut context = answer_context(h.path_to(&parent).await?);
        if let Some(system) = settings.system_prompt.filter(|s| !s.trim().is_empty()) {
            context.insert(0, Message::new(Role::System, system));
        }
        // A custom template's source is kept only with the conversation, under its own name.
        let template = match msg.template.as_deref() {
            Some("custom") => settings.template_override.clone(),
            other => other.map(str::to_owned),
        };
        let loaded = self
            .load(
                &path,
                LoadOptions {
                    n_ctx: settings.n_ctx.unwrap_or(0),
                    threads: settings.threads,
                    ..Default::default()
                },
                |_| {},
            )
            .await?;
        let mut params = sampling;
        params.seed = Some(seed);
        let chat = ChatRequest {
            messages: context,
            params,
            template: template.clone(),
            think: settings.think_mode,
            think_budget: settings.think_budget,
            keep_thoughts: settings.keep_thoughts,
            threads: settings.threads,
            grammar: None,
            template_vars: Vec::new(),
            overflow: settings.context_overflow,
            // The text is the same in every mode; a replay loads no draft model, so a
            // conversation answered with one drafts by prompt lookup instead.
            speculative: match settings.speculative {
                SpeculativeMode::Draft => SpeculativeMode::Auto,
                mode => mode,
            },
        };
        let mut stream = loaded.chat(chat).await?;
        let (mut replayed, mut replayed_reasoning) = (String::new(), String::new());
        while let Some(ev) = stream.next_event().await {
            sink(&ev);
            match ev {
                ChatEvent::Token { text, .. } => replayed.push_str(&text),
                ChatEvent::Reasoning { text, .. } => replayed_reasoning.push_str(&text),
                ChatEvent::Done { .. } => break,
                ChatEvent::Error { code, message } => {
                    return Err(CoreError::InvalidInput(format!(
                        "the replay failed: {message} ({code})"
                    )))
                }
                ChatEvent::Started { .. } => {}
            }
        }
        let original = msg.content;
        let original_reasoning = msg.reasoning.unwrap_or_default();
        let identical = original == replayed && original_reasoning == replayed_reasoning;
        let diff = if original == replayed {
            Vec::new()
        } else {
            diff_words(&original, &replayed)
        };
        let reasoning_diff = if original_reasoning == replayed_reasoning {
            Vec::new()
        } else {
            diff_words(&original_reasoning, &replayed_reasoning)
        };
        Ok(ReplayReport {
            message_id: msg.id,
            model_path: path,
            sha256: expected,
            template: msg.template,
            seed,
            identical,
            original,
            replayed,
            diff,
            original_reasoning,
            replayed_reasoning,
            reasoning_diff,
        })
    }

    /// The first of the candidate files whose content is `sha256`: the one asked for (and
    /// only it), else the conversation's model, else every catalogued model with that
    /// hash or that is not hashed yet.
    async fn find_model_by_sha(
        &self,
        sha256: &str,
        asked: Option<&Path>,
        conversation_model: Option<&str>,
    ) -> Result<PathBuf, CoreError> {
        let candidates: Vec<PathBuf> = match asked {
            Some(p) => vec![p.to_path_buf()],
            None => {
                let library = self.library.clone();
                let catalog = tokio::task::spawn_blocking(move || library.catalog())
                    .await
                    .unwrap_or_default();
                conversation_model
                    .map(PathBuf::from)
                    .into_iter()
                    .chain(
                        catalog
                            .models
                            .into_iter()
                            .filter(|m| m.sha256.as_deref().is_none_or(|s| s == sha256))
                            .map(|m| m.path),
                    )
                    .collect()
            }
        };
        for path in &candidates {
            if !path.is_file() {
                continue;
            }
            if self.ensure_model_hash(path).await.as_deref() == Some(sha256) {
                return Ok(path.clone());
            }
        }
        Err(CoreError::InvalidInput(match asked {
            Some(p) => format!(
                "{} is not the model that wrote this answer (its sha256 differs from {sha256})",
                p.display()
            ),
            None => format!("no model file with sha256 {sha256} was found in the model folders"),
        }))
    }
}

/// The parts of a saved answer a replay needs: its question, model, sampler and seed.
fn replayable(
    msg: &StoredMessage,
) -> Result<
    (
        String,
        crate::history::ModelInfo,
        crate::events::SamplingParams,
        u32,
    ),
    CoreError,
> {
    let not = |why: &str| CoreError::InvalidInput(format!("message {} {why}", msg.id));
    if msg.role != Role::Assistant {
        return Err(not("is not an answer; replay an assistant message"));
    }
    let parent = msg
        .parent_id
        .clone()
        .ok_or_else(|| not("has no question"))?;
    let model = msg
        .model
        .clone()
        .ok_or_else(|| not("has no model recorded"))?;
    let sampling = msg
        .sampling
        .clone()
        .ok_or_else(|| not("has no sampler settings recorded"))?;
    let seed = msg
        .seed
        .ok_or_else(|| not("has no seed recorded (it never started)"))?;
    Ok((parent, model, sampling, seed))
}
