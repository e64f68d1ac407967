//! The conversation service: what "send a message" means for every front end (CLI, desktop
//! shell, API server). It commits the user's message before anything is generated, builds
//! the model's context from the branch being answered, streams the answer to the caller and
//! to the history store at the same time, and records how it ended.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::engine::{CancelHandle, ChatRequest, Engine, LoadOptions, LoadedModel, ModelInfo};
use crate::error::CoreError;
use crate::events::{
    ChatEvent, ContextOverflow, Message, Role, SamplingParams, SpeculativeMode, ThinkMode,
};
use crate::history::{AnswerMeta, CompareSlot, ConversationSettings, History, MessageStatus};
use crate::models::Library;
use crate::protocol::WarmInfo;

mod replay;
pub use replay::ReplayReport;

/// The settings a conversation is answered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct ChatSettings {
    pub system_prompt: String,
    pub sampling: SamplingParams,
    pub think: ThinkMode,
    pub think_budget: Option<u32>,
    pub keep_thoughts: bool,
    /// Context length; 0 = the model's default.
    pub n_ctx: u32,
    pub threads: Option<u32>,
    pub template: Option<String>,
    /// Speculative decoding for this conversation's answers.
    pub speculative: SpeculativeMode,
    /// A model drafting for the conversation's model (same vocabulary), loaded with it.
    pub draft_model: Option<PathBuf>,
    /// What to leave out when the conversation no longer fits the context.
    pub context_overflow: ContextOverflow,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            system_prompt: String::new(),
            sampling: SamplingParams::default(),
            think: ThinkMode::Auto,
            think_budget: None,
            keep_thoughts: false,
            n_ctx: 0,
            threads: None,
            template: None,
            speculative: SpeculativeMode::default(),
            draft_model: None,
            context_overflow: ContextOverflow::default(),
        }
    }
}

impl ChatSettings {
    /// The settings a stored conversation was answered with: its own columns plus the
    /// sampling of one answer (sampling is recorded per answer, not per conversation).
    pub fn from_stored(stored: &ConversationSettings, sampling: SamplingParams) -> Self {
        Self {
            system_prompt: stored.system_prompt.clone().unwrap_or_default(),
            sampling,
            think: stored.think_mode,
            think_budget: stored.think_budget,
            keep_thoughts: stored.keep_thoughts,
            n_ctx: stored.n_ctx.unwrap_or(0),
            threads: stored.threads,
            template: stored.template_override.clone(),
            context_overflow: stored.context_overflow,
            speculative: stored.speculative,
            draft_model: stored.draft_model.as_deref().map(PathBuf::from),
        }
    }

    /// The settings of the answer on screen (the newest, if none is), None when nothing
    /// was generated yet.
    pub fn of_tree(tree: &crate::history::ConversationTree) -> Option<Self> {
        let path = tree.current_path();
        let sampling = path
            .into_iter()
            .rev()
            .chain(tree.messages.iter().rev())
            .find_map(|m| m.sampling.clone())?;
        Some(Self::from_stored(&tree.conversation.settings, sampling))
    }

    fn to_stored(&self, model: &Path) -> ConversationSettings {
        ConversationSettings {
            system_prompt: Some(self.system_prompt.clone()).filter(|s| !s.is_empty()),
            think_mode: self.think,
            think_budget: self.think_budget,
            keep_thoughts: self.keep_thoughts,
            n_ctx: Some(self.n_ctx).filter(|n| *n > 0),
            threads: self.threads,
            template_override: self.template.clone(),
            default_model: Some(model.display().to_string()),
            context_overflow: self.context_overflow,
            speculative: self.speculative,
            draft_model: self.draft_model.as_ref().map(|p| p.display().to_string()),
        }
    }
}

/// One message to send.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SendRequest {
    /// None starts a new conversation.
    pub conversation_id: Option<String>,
    /// Where the user message attaches; None = the end of the current branch.
    pub parent_id: Option<String>,
    pub content: String,
    pub settings: ChatSettings,
    /// An assistant message to answer again: the new answer is its sibling.
    pub regenerate_of: Option<String>,
    /// A user message to replace: the new text becomes its sibling.
    pub edit_of: Option<String>,
    /// This answer is a column of a side-by-side run.
    pub compare: Option<CompareSlot>,
    /// An existing user message to answer, adding no new one (each column of a
    /// side-by-side run answers the same committed message). The conversation is the
    /// message's own; its stored settings are left alone, since columns differ.
    pub answer_to: Option<String>,
    /// Save nothing (`conclave chat --no-save`, API requests unless enabled).
    pub no_save: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct ChatHandle {
    pub request_id: String,
    pub conversation_id: String,
    pub user_message_id: String,
    pub assistant_message_id: String,
}

/// Engine, history and model library together, with the models loaded so far.
pub struct Conclave {
    pub engine: Engine,
    pub history: History,
    pub library: Library,
    loaded: tokio::sync::Mutex<HashMap<PathBuf, LoadedModel>>,
    cancels: std::sync::Mutex<HashMap<String, CancelHandle>>,
    /// sha256 of loaded models, computed in the background after load: the leaderboard
    /// and the history identify a model by its content, not its file name.
    hashes: Arc<std::sync::Mutex<HashMap<PathBuf, String>>>,
}

impl Conclave {
    /// The user's data root (or `CONCLAVE_DATA_DIR`).
    pub async fn open_default() -> Result<Arc<Self>, CoreError> {
        Ok(Arc::new(Self {
            engine: Engine::new()?,
            history: History::open_default().await?,
            library: Library::open_default(),
            loaded: Default::default(),
            cancels: Default::default(),
            hashes: Default::default(),
        }))
    }

    pub fn new(engine: Engine, history: History, library: Library) -> Arc<Self> {
        Arc::new(Self {
            engine,
            history,
            library,
            loaded: Default::default(),
            cancels: Default::default(),
            hashes: Default::default(),
        })
    }

    /// Loads a model (or returns it if already loaded with the same context length).
    pub async fn load(
        &self,
        path: &Path,
        opts: LoadOptions,
        progress: impl FnMut(f32) + Send + 'static,
    ) -> Result<LoadedModel, CoreError> {
        let key = path.to_path_buf();
        let mut loaded = self.loaded.lock().await;
        if let Some(m) = loaded.get(&key) {
            if loaded_as_asked(m, &opts).await {
                return Ok(m.clone());
            }
            m.unload().await;
        }
        let model = self.engine.load(path, opts, progress).await?;
        loaded.insert(key.clone(), model.clone());
        let (library, hashes) = (self.library.clone(), self.hashes.clone());
        tokio::task::spawn_blocking(move || match library.ensure_sha256(&key) {
            Ok(sha) => {
                if let Ok(mut h) = hashes.lock() {
                    h.insert(key, sha);
                }
            }
            Err(e) => tracing::warn!("could not hash {}: {e}", key.display()),
        });
        Ok(model)
    }

    /// The model at `path` if it is loaded the way `opts` asks: what [`Conclave::load`]
    /// would return, without loading anything.
    pub async fn loaded_as(&self, path: &Path, opts: &LoadOptions) -> Option<LoadedModel> {
        let m = self.loaded.lock().await.get(path).cloned()?;
        loaded_as_asked(&m, opts).await.then_some(m)
    }

    /// The draft model the loaded `path` drafts with, if it is loaded with one.
    pub async fn loaded_draft(&self, path: &Path) -> Option<PathBuf> {
        let loaded = self.loaded.lock().await;
        loaded.get(path)?.draft_path().map(Path::to_path_buf)
    }

    pub async fn loaded(&self) -> Vec<ModelInfo> {
        let models: Vec<LoadedModel> = self.loaded.lock().await.values().cloned().collect();
        let mut out = Vec::new();
        for m in models {
            out.push(m.info().await);
        }
        out
    }

    pub async fn unload(&self, path: &Path) {
        if let Some(m) = self.loaded.lock().await.remove(path) {
            m.unload().await;
        }
    }

    pub fn cancel(&self, request_id: &str) {
        let handle = self
            .cancels
            .lock()
            .ok()
            .and_then(|c| c.get(request_id).cloned());
        if let Some(h) = handle {
            h.cancel();
        }
    }

    /// Sends a message and streams the answer to `sink` (deltas, then `Done` or `Error`).
    /// Returns as soon as the user message is committed and generation has started.
    pub async fn send(
        self: &Arc<Self>,
        model: &LoadedModel,
        req: SendRequest,
        mut sink: impl FnMut(ChatEvent) + Send + 'static,
    ) -> Result<ChatHandle, CoreError> {
        let info = model.info().await;
        let settings = req.settings.clone();
        let (conversation_id, user_message_id, mut context) = if req.no_save {
            (
                String::new(),
                String::new(),
                self.unsaved_context(&req).await?,
            )
        } else {
            self.commit_user_turn(&req, &info.path).await?
        };
        with_system_prompt(&mut context, &settings);

        let chat = chat_request(&settings, context);
        let mut writer = if req.no_save {
            None
        } else {
            let header = crate::gguf::read_header(&info.path).ok();
            // Every saved answer names its model by content, so that it can be replayed
            // (and counted on the leaderboard) even if the background hash after `load`
            // has not finished yet; the hash is cached, so this costs once per file.
            let sha256 = self.ensure_model_hash(&info.path).await;
            let meta = AnswerMeta {
                model: crate::history::ModelInfo {
                    file: info
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    sha256,
                    architecture: Some(info.architecture.clone()),
                    quantization: header.and_then(|h| h.file_type()),
                },
                template: Some(info.template_name.clone()),
                reasoning_format: Some(info.reasoning_format.clone()),
                sampling: settings.sampling.clone(),
                seed: settings.sampling.seed,
                compare: req.compare.clone(),
            };
            Some(
                self.history
                    .begin_answer(&conversation_id, &user_message_id, meta)
                    .await?,
            )
        };
        let assistant_message_id = writer
            .as_ref()
            .map(|w| w.id().to_owned())
            .unwrap_or_default();

        let mut stream = match model.chat(chat).await {
            Ok(s) => s,
            Err(e) => {
                if let Some(w) = writer.as_mut() {
                    let _ = w.fail(&e.to_string()).await;
                }
                return Err(e.into());
            }
        };
        let request_id = stream.request_id().to_string();
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(request_id.clone(), stream.cancel_handle());
        }
        let this = self.clone();
        let rid = request_id.clone();
        tokio::spawn(async move {
            // A failing disk must not stop the answer on screen: keep streaming, say so at
            // the end.
            let mut save_error: Option<CoreError> = None;
            while let Some(ev) = stream.next_event().await {
                if let Some(w) = writer.as_mut() {
                    let r = w.apply(&ev).await;
                    if let Err(e) = r {
                        tracing::error!("saving the answer failed: {e}");
                        save_error.get_or_insert(e.into());
                    }
                }
                let last = matches!(ev, ChatEvent::Done { .. } | ChatEvent::Error { .. });
                sink(ev);
                if last {
                    break;
                }
            }
            if let Some(e) = save_error {
                sink(ChatEvent::Error {
                    code: crate::error::ErrorCode::code(&e).to_owned(),
                    message: format!("the answer is shown but could not be saved: {e}"),
                });
            }
            if let Ok(mut c) = this.cancels.lock() {
                c.remove(&rid);
            }
        });
        Ok(ChatHandle {
            request_id,
            conversation_id,
            user_message_id,
            assistant_message_id,
        })
    }

    /// Commits the user's turn and returns (conversation, user message, context to answer).
    async fn commit_user_turn(
        &self,
        req: &SendRequest,
        model_path: &Path,
    ) -> Result<(String, String, Vec<Message>), CoreError> {
        let h = &self.history;
        if let Some(user_id) = &req.answer_to {
            let user = h.message(user_id).await?;
            if user.role != Role::User {
                return Err(CoreError::InvalidInput(format!(
                    "{user_id} is not a user message"
                )));
            }
            if req
                .conversation_id
                .as_ref()
                .is_some_and(|c| *c != user.conversation_id)
            {
                return Err(CoreError::InvalidInput(format!(
                    "message {user_id} is not in the given conversation"
                )));
            }
            let context = answer_context(h.path_to(&user.id).await?);
            return Ok((user.conversation_id, user.id, context));
        }
        let conversation_id = match &req.conversation_id {
            Some(id) => {
                h.update_settings(id, &req.settings.to_stored(model_path))
                    .await?;
                id.clone()
            }
            None => {
                let title = title_from(&req.content);
                h.create_conversation(&title, req.settings.to_stored(model_path))
                    .await?
                    .id
            }
        };
        let user = if let Some(answer_id) = &req.regenerate_of {
            let answer = h.message(answer_id).await?;
            let parent = answer.parent_id.ok_or_else(|| {
                CoreError::InvalidInput("that answer has no question to answer again".into())
            })?;
            h.message(&parent).await?
        } else if let Some(user_id) = &req.edit_of {
            h.edit_message(user_id, &req.content).await?
        } else {
            if req.content.trim().is_empty() {
                return Err(CoreError::InvalidInput("the message is empty".into()));
            }
            let parent = match &req.parent_id {
                Some(p) => Some(p.clone()),
                None => h.conversation(&conversation_id).await?.current_leaf_id,
            };
            h.add_user_message(&conversation_id, parent.as_deref(), &req.content)
                .await?
        };
        let path = h.path_to(&user.id).await?;
        Ok((conversation_id, user.id, answer_context(path)))
    }

    /// Reads the message still being typed (`req.content`, on the branch `send` would put
    /// it) into `model`'s cache, so that sending it decodes only what was typed since:
    /// [`LoadedModel::warm`]. With nothing typed yet, reads the history and the new turn's
    /// header ([`LoadedModel::warm_before_text`]). Reads the history and writes nothing.
    /// Only for a new message (an edit or a regenerate starts from elsewhere in the tree).
    pub async fn warm(
        &self,
        model: &LoadedModel,
        req: &SendRequest,
    ) -> Result<WarmInfo, CoreError> {
        self.warm_with(model, req, false).await
    }

    /// [`warm`](Self::warm) once typing has stopped: the message's whole turn is read, as
    /// sending it would ([`LoadedModel::warm_whole`]), so that Enter decodes one token.
    pub async fn warm_whole(
        &self,
        model: &LoadedModel,
        req: &SendRequest,
    ) -> Result<WarmInfo, CoreError> {
        self.warm_with(model, req, true).await
    }

    async fn warm_with(
        &self,
        model: &LoadedModel,
        req: &SendRequest,
        whole: bool,
    ) -> Result<WarmInfo, CoreError> {
        let content = req.content.trim();
        if req.regenerate_of.is_some() || req.edit_of.is_some() {
            return Ok(WarmInfo::default());
        }
        let h = &self.history;
        let parent = match (&req.parent_id, &req.conversation_id) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(c)) => h.conversation(c).await?.current_leaf_id,
            (None, None) => None,
        };
        let mut context = match &parent {
            Some(p) => answer_context(h.path_to(p).await?),
            None => Vec::new(),
        };
        context.push(Message::new(Role::User, content));
        with_system_prompt(&mut context, &req.settings);
        let request = chat_request(&req.settings, context);
        Ok(if content.is_empty() {
            model.warm_before_text(&request).await?
        } else if whole {
            model.warm_whole(&request).await?
        } else {
            model.warm(&request).await?
        })
    }

    /// The sha256 of a model file, computed now (off the async threads) unless known, and
    /// remembered for the answers' metadata (`send` awaits it, since the background hash
    /// after `load` may still be running when an answer starts).
    pub async fn ensure_model_hash(&self, path: &Path) -> Option<String> {
        if let Some(h) = self.hashes.lock().ok().and_then(|h| h.get(path).cloned()) {
            return Some(h);
        }
        let (library, key) = (self.library.clone(), path.to_path_buf());
        let sha = tokio::task::spawn_blocking(move || library.ensure_sha256(&key)).await;
        match sha {
            Ok(Ok(sha)) => {
                if let Ok(mut h) = self.hashes.lock() {
                    h.insert(path.to_path_buf(), sha.clone());
                }
                Some(sha)
            }
            Ok(Err(e)) => {
                tracing::warn!("could not hash {}: {e}", path.display());
                None
            }
            Err(e) => {
                tracing::warn!("hashing {} stopped: {e}", path.display());
                None
            }
        }
    }

    async fn unsaved_context(&self, req: &SendRequest) -> Result<Vec<Message>, CoreError> {
        let mut context = Vec::new();
        if let Some(parent) = &req.parent_id {
            for m in self.history.path_to(parent).await? {
                context.push(Message {
                    role: m.role,
                    content: m.content,
                    reasoning: m.reasoning,
                });
            }
        }
        context.push(Message::new(Role::User, req.content.clone()));
        Ok(context)
    }
}

/// Whether the loaded `m` is what `opts` asks for: the same context length (or any, for
/// 0), placement and draft model.
async fn loaded_as_asked(m: &LoadedModel, opts: &LoadOptions) -> bool {
    (opts.n_ctx == 0 || opts.n_ctx == m.info().await.n_ctx)
        && m.placement_matches(opts)
        && opts.draft_model.as_deref() == m.draft_path()
}

fn with_system_prompt(context: &mut Vec<Message>, settings: &ChatSettings) {
    if !settings.system_prompt.trim().is_empty() {
        context.insert(
            0,
            Message::new(Role::System, settings.system_prompt.clone()),
        );
    }
}

/// The request `send` makes of a conversation's messages; `warm` makes the same one, so
/// that the two render the same prompt.
fn chat_request(settings: &ChatSettings, messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        messages,
        params: settings.sampling.clone(),
        template: settings.template.clone(),
        think: settings.think,
        think_budget: settings.think_budget,
        keep_thoughts: settings.keep_thoughts,
        threads: settings.threads,
        grammar: None,
        template_vars: Vec::new(),
        speculative: settings.speculative,
        overflow: settings.context_overflow,
    }
}

/// The messages a model sees for the branch ending at a user message.
fn answer_context(path: Vec<crate::history::StoredMessage>) -> Vec<Message> {
    path.into_iter()
        .filter(|m| m.role != Role::System)
        // Failed answers carry no useful text; interrupted and cancelled ones do.
        .filter(|m| {
            !(m.role == Role::Assistant
                && (m.status == MessageStatus::Error || m.content.is_empty()))
        })
        .map(|m| Message {
            role: m.role,
            content: m.content,
            reasoning: m.reasoning,
        })
        .collect()
}

/// A conversation's title: its first line, shortened at a word boundary.
pub fn title_from(content: &str) -> String {
    let first = content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("New chat");
    if first.chars().count() <= 60 {
        return first.to_owned();
    }
    let cut: String = first.chars().take(60).collect();
    match cut.rfind(' ') {
        Some(i) if i > 30 => format!("{}…", &cut[..i]),
        _ => format!("{cut}…"),
    }
}

#[cfg(test)]
mod tests {
    use super::title_from;

    #[test]
    fn titles() {
        assert_eq!(title_from("\n  What is Rust?\nmore"), "What is Rust?");
        assert_eq!(title_from(""), "New chat");
        let long = "word ".repeat(30);
        let t = title_from(&long);
        assert!(t.ends_with('…') && t.chars().count() <= 61, "{t}");
    }
}
