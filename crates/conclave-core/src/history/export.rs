//! Export as readable Markdown or complete JSON, and transactional JSON import.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::rows::message_insert;
use super::rows::think_mode_str;
use super::store::History;
use super::{ConversationTree, HistoryError, Preset, Result, StoredMessage, Vote};
use crate::events::Role;

pub const EXPORT_FORMAT: &str = "conclave-history";
pub const EXPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportScope {
    Conversation(String),
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Markdown,
    Json,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "md" | "markdown" => Ok(Self::Markdown),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown export format '{other}' (md, json)")),
        }
    }
}

/// The JSON export: everything needed to rebuild the conversations exactly, ids included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportDocument {
    pub format: String,
    pub version: u32,
    pub exported_at: i64,
    pub conversations: Vec<ConversationTree>,
    /// Every preset, in an export of the whole history (none for one conversation).
    /// Absent in exports made before presets lived in the history.
    #[serde(default)]
    pub presets: Vec<Preset>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(rename = "HistoryImportReport")]
pub struct ImportReport {
    pub conversations: usize,
    pub messages: usize,
    /// Conversations whose id already exists here; they are left as they are.
    pub skipped_existing: Vec<String>,
    #[serde(default)]
    pub presets: usize,
    /// Presets whose name already exists here; the local one is kept.
    #[serde(default)]
    pub skipped_presets: Vec<String>,
}

/// What a file export really wrote, so the app can say so instead of a bare "Saved".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ExportFileReport {
    pub path: String,
    pub conversations: usize,
    pub bytes: u64,
}

impl History {
    /// Exports to `path`. The text goes to a sibling temporary file first and is renamed
    /// over the target, so a failed write never leaves a truncated export behind.
    pub async fn export_to_file(
        &self,
        scope: &ExportScope,
        format: ExportFormat,
        path: &std::path::Path,
    ) -> Result<ExportFileReport> {
        let conversations = self.trees(scope).await?.len();
        let text = self.export(scope, format).await?;
        let file_err = |source| HistoryError::File {
            path: path.display().to_string(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".part");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, text.as_bytes()).map_err(file_err)?;
        if let Err(e) = std::fs::rename(&tmp, path) {
            // Best effort: the rename error is the one worth reporting.
            let _ = std::fs::remove_file(&tmp);
            return Err(file_err(e));
        }
        let bytes = std::fs::metadata(path).map_err(file_err)?.len();
        Ok(ExportFileReport {
            path: path.display().to_string(),
            conversations,
            bytes,
        })
    }

    /// Reads a JSON export from `path` and imports it (all or nothing, see `import_json`).
    pub async fn import_file(&self, path: &std::path::Path) -> Result<ImportReport> {
        let text = std::fs::read_to_string(path).map_err(|source| HistoryError::File {
            path: path.display().to_string(),
            source,
        })?;
        self.import_json(&text).await
    }

    pub async fn export(&self, scope: &ExportScope, format: ExportFormat) -> Result<String> {
        let trees = self.trees(scope).await?;
        match format {
            ExportFormat::Json => {
                let presets = match scope {
                    ExportScope::All => self.list_presets().await?,
                    ExportScope::Conversation(_) => Vec::new(),
                };
                let doc = ExportDocument {
                    format: EXPORT_FORMAT.into(),
                    version: EXPORT_VERSION,
                    exported_at: super::now_ms(),
                    conversations: trees,
                    presets,
                };
                serde_json::to_string_pretty(&doc).map_err(|e| {
                    HistoryError::InvalidInput(format!("could not serialise the export: {e}"))
                })
            }
            ExportFormat::Markdown => {
                let mut out = String::new();
                for (i, tree) in trees.iter().enumerate() {
                    if i > 0 {
                        out.push_str("\n\n---\n\n");
                    }
                    markdown(tree, &mut out);
                }
                Ok(out)
            }
        }
    }

    async fn trees(&self, scope: &ExportScope) -> Result<Vec<ConversationTree>> {
        match scope {
            ExportScope::Conversation(id) => Ok(vec![self.get_conversation(id).await?]),
            ExportScope::All => {
                let ids: Vec<String> =
                    sqlx::query_scalar("SELECT id FROM conversations ORDER BY created_at, id")
                        .fetch_all(&self.pool)
                        .await?;
                let mut trees = Vec::with_capacity(ids.len());
                for id in ids {
                    trees.push(self.get_conversation(&id).await?);
                }
                Ok(trees)
            }
        }
    }

    /// Imports a JSON export in one transaction: on any problem nothing is written and the
    /// error says what is wrong. Conversations whose id already exists are skipped.
    pub async fn import_json(&self, text: &str) -> Result<ImportReport> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| HistoryError::InvalidImport(format!("not valid JSON: {e}")))?;
        let format = value.get("format").and_then(|v| v.as_str());
        if format != Some(EXPORT_FORMAT) {
            return Err(HistoryError::InvalidImport(format!(
                "not a Conclave history export (\"format\" is {}, expected \"{EXPORT_FORMAT}\")",
                format.map_or("missing".to_string(), |f| format!("\"{f}\""))
            )));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(EXPORT_VERSION) => {}
            Some(v) => {
                return Err(HistoryError::InvalidImport(format!(
                    "export version {v} is not supported (this Conclave reads version {EXPORT_VERSION})"
                )))
            }
            None => return Err(HistoryError::InvalidImport("\"version\" is missing".into())),
        }
        let doc: ExportDocument = serde_json::from_value(value)
            .map_err(|e| HistoryError::InvalidImport(e.to_string()))?;
        for tree in &doc.conversations {
            validate(tree)?;
        }
        for p in &doc.presets {
            super::presets::check_preset_name(&p.name)
                .map_err(|e| HistoryError::InvalidImport(format!("preset '{}': {e}", p.name)))?;
        }

        let mut report = ImportReport::default();
        let mut tx = self.begin_write().await?;
        for tree in &doc.conversations {
            let c = &tree.conversation;
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = ?")
                    .bind(&c.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_some() {
                report.skipped_existing.push(c.id.clone());
                continue;
            }
            let s = &c.settings;
            sqlx::query(
                "INSERT INTO conversations (id, title, created_at, updated_at, system_prompt, think_mode, think_budget, \
                 keep_thoughts, n_ctx, threads, template_override, default_model, pinned, folder, \
                 context_overflow, speculative, draft_model) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            )
            .bind(&c.id)
            .bind(&c.title)
            .bind(c.created_at)
            .bind(c.updated_at)
            .bind(&s.system_prompt)
            .bind(think_mode_str(s.think_mode))
            .bind(s.think_budget.map(i64::from))
            .bind(s.keep_thoughts)
            .bind(s.n_ctx.map(i64::from))
            .bind(s.threads.map(i64::from))
            .bind(&s.template_override)
            .bind(&s.default_model)
            .bind(c.pinned)
            .bind(&c.folder)
            .bind(s.context_overflow.as_str())
            .bind(s.speculative.as_str())
            .bind(&s.draft_model)
            .execute(&mut *tx)
            .await
            .map_err(|e| import_db_error(e, &c.id))?;
            for tag in &c.tags {
                sqlx::query(
                    "INSERT OR IGNORE INTO conversation_tags (conversation_id, tag) VALUES (?, ?)",
                )
                .bind(&c.id)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
            }
            // Runs reference user messages and answers reference runs: insert messages
            // parents-first without run links, then runs, then the links.
            for m in parents_first(&tree.messages) {
                let mut unlinked = m.clone();
                unlinked.compare_run_id = None;
                let (sql, args) = message_insert(&unlinked)?;
                sqlx::query_with(&sql, args)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| import_db_error(e, &m.id))?;
            }
            for r in &tree.compare_runs {
                sqlx::query(
                    "INSERT INTO compare_runs (id, user_message_id, blind, vote, tag, created_at) VALUES (?,?,?,?,?,?)",
                )
                .bind(&r.id)
                .bind(&r.user_message_id)
                .bind(r.blind)
                .bind(r.vote.map(Vote::code))
                .bind(&r.tag)
                .bind(r.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| import_db_error(e, &r.id))?;
            }
            for m in tree.messages.iter().filter(|m| m.compare_run_id.is_some()) {
                sqlx::query("UPDATE messages SET compare_run_id = ? WHERE id = ?")
                    .bind(&m.compare_run_id)
                    .bind(&m.id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("UPDATE conversations SET current_leaf_id = ? WHERE id = ?")
                .bind(&c.current_leaf_id)
                .bind(&c.id)
                .execute(&mut *tx)
                .await?;
            report.conversations += 1;
            report.messages += tree.messages.len();
        }
        for p in &doc.presets {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM presets WHERE name = ?")
                .bind(p.name.trim())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                report.skipped_presets.push(p.name.clone());
                continue;
            }
            let mut p = p.clone();
            p.name = p.name.trim().to_owned();
            super::presets::upsert(&mut tx, &p)
                .await
                .map_err(|e| import_db_error(e, &p.name))?;
            report.presets += 1;
        }
        tx.commit().await?;
        Ok(report)
    }
}

fn import_db_error(err: sqlx::Error, id: &str) -> HistoryError {
    match HistoryError::from(err) {
        HistoryError::Database(e) => {
            HistoryError::InvalidImport(format!("record {id} cannot be stored: {e}"))
        }
        other => other,
    }
}

/// Structural checks the database cannot phrase helpfully.
fn validate(tree: &ConversationTree) -> Result<()> {
    let c = &tree.conversation;
    let bad = |msg: String| {
        Err(HistoryError::InvalidImport(format!(
            "conversation {}: {msg}",
            c.id
        )))
    };
    if c.id.trim().is_empty() {
        return Err(HistoryError::InvalidImport(
            "a conversation has an empty id".into(),
        ));
    }
    let mut ids = HashSet::new();
    for m in &tree.messages {
        if m.id.trim().is_empty() {
            return bad("a message has an empty id".into());
        }
        if !ids.insert(m.id.as_str()) {
            return bad(format!("message id {} appears twice", m.id));
        }
        if m.conversation_id != c.id {
            return bad(format!(
                "message {} says it belongs to conversation {}",
                m.id, m.conversation_id
            ));
        }
    }
    for m in &tree.messages {
        if let Some(p) = &m.parent_id {
            if !ids.contains(p.as_str()) {
                return bad(format!(
                    "message {} has parent {p}, which is not in the file",
                    m.id
                ));
            }
        }
    }
    if parents_first(&tree.messages).len() != tree.messages.len() {
        return bad("the parent links form a cycle".into());
    }
    if let Some(leaf) = &c.current_leaf_id {
        if !ids.contains(leaf.as_str()) {
            return bad(format!("current leaf {leaf} is not one of its messages"));
        }
    }
    let runs: HashSet<&str> = tree.compare_runs.iter().map(|r| r.id.as_str()).collect();
    for r in &tree.compare_runs {
        if !ids.contains(r.user_message_id.as_str()) {
            return bad(format!(
                "compare run {} points at missing message {}",
                r.id, r.user_message_id
            ));
        }
    }
    for m in &tree.messages {
        if let Some(run) = &m.compare_run_id {
            if !runs.contains(run.as_str()) {
                return bad(format!(
                    "message {} points at missing compare run {run}",
                    m.id
                ));
            }
        }
    }
    Ok(())
}

/// Messages ordered so that every parent precedes its children; messages on a cycle (or
/// under one) are left out, which `validate` reports.
fn parents_first(messages: &[StoredMessage]) -> Vec<&StoredMessage> {
    let mut children: HashMap<Option<&str>, Vec<&StoredMessage>> = HashMap::new();
    for m in messages {
        children.entry(m.parent_id.as_deref()).or_default().push(m);
    }
    let mut out = Vec::with_capacity(messages.len());
    let mut stack: Vec<&StoredMessage> = children.get(&None).cloned().unwrap_or_default();
    stack.reverse();
    while let Some(m) = stack.pop() {
        out.push(m);
        if let Some(kids) = children.get(&Some(m.id.as_str())) {
            stack.extend(kids.iter().rev());
        }
    }
    out
}

fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// The branch on screen, readable: answers with their model and parameters, thinking
/// folded away. Other branches are only counted (the JSON export has everything).
fn markdown(tree: &ConversationTree, out: &mut String) {
    let c = &tree.conversation;
    let title = if c.title.trim().is_empty() {
        "Untitled conversation"
    } else {
        c.title.trim()
    };
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(out, "- Created: {}", fmt_time(c.created_at));
    let _ = writeln!(out, "- Updated: {}", fmt_time(c.updated_at));
    if let Some(model) = &c.settings.default_model {
        let _ = writeln!(out, "- Model: {model}");
    }
    if !c.tags.is_empty() {
        let _ = writeln!(out, "- Tags: {}", c.tags.join(", "));
    }
    let path = tree.current_path();
    let others = tree.messages.len().saturating_sub(path.len());
    if others > 0 {
        let _ = writeln!(
            out,
            "- Other branches: {others} message(s) not shown (see the JSON export)"
        );
    }
    if let Some(system) = c
        .settings
        .system_prompt
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        let _ = writeln!(out, "\n**System prompt:**\n\n{}", quote(system));
    }
    for m in path {
        let columns: Vec<&StoredMessage> = match &m.compare_run_id {
            Some(run) => {
                let mut cols: Vec<&StoredMessage> = tree
                    .messages
                    .iter()
                    .filter(|o| o.compare_run_id.as_deref() == Some(run))
                    .collect();
                cols.sort_by_key(|o| o.column_index);
                cols
            }
            None => vec![m],
        };
        for (i, m) in columns.iter().enumerate() {
            message_markdown(m, (columns.len() > 1).then_some(i), out);
        }
    }
}

fn quote(text: &str) -> String {
    text.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn message_markdown(m: &StoredMessage, column: Option<usize>, out: &mut String) {
    let who = match m.role {
        Role::System => "System".to_string(),
        Role::User => "User".to_string(),
        Role::Assistant => match &m.model {
            Some(model) => format!("Assistant ({})", model.file),
            None => "Assistant".to_string(),
        },
    };
    let column = column
        .map(|i| format!(" — column {}", (b'A' + (i % 26) as u8) as char))
        .unwrap_or_default();
    let _ = writeln!(out, "\n## {who}{column}\n");
    let _ = writeln!(out, "*{}*\n", fmt_time(m.created_at));
    if let Some(reasoning) = m.reasoning.as_deref().filter(|r| !r.trim().is_empty()) {
        let _ = writeln!(
            out,
            "<details><summary>Thinking</summary>\n\n{}\n\n</details>\n",
            reasoning.trim_end()
        );
    }
    let _ = writeln!(out, "{}", m.content.trim_end());
    if m.role != Role::Assistant {
        return;
    }
    let mut facts: Vec<String> = Vec::new();
    if let Some(model) = &m.model {
        let mut desc = model.file.clone();
        let extra: Vec<&str> = [model.architecture.as_deref(), model.quantization.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !extra.is_empty() {
            desc.push_str(&format!(" ({})", extra.join(", ")));
        }
        facts.push(format!("model {desc}"));
    }
    if let Some(t) = &m.template {
        facts.push(format!("template {t}"));
    }
    if let Some(s) = &m.sampling {
        facts.push(format!(
            "temperature {}, top_k {}, top_p {}, min_p {}, repeat_penalty {}, max_tokens {}",
            s.temperature, s.top_k, s.top_p, s.min_p, s.repeat_penalty, s.max_tokens
        ));
        // The other parameters only where they differ from the default (DRY, XTC… off).
        let d = crate::events::SamplingParams::default();
        for f in crate::settings::table_stored_fields() {
            let v = crate::settings::sampling_value(s, f.key);
            if v != crate::settings::sampling_value(&d, f.key) {
                if let Some(v) = v {
                    facts.push(format!("{} {}", f.key, v as f32));
                }
            }
        }
    }
    if let Some(seed) = m.seed {
        facts.push(format!("seed {seed}"));
    }
    if let Some(u) = &m.usage {
        facts.push(format!(
            "{} prompt + {} generated tokens",
            u.prompt_tokens, u.completion_tokens
        ));
    }
    if let Some(x) = &m.metrics {
        facts.push(format!(
            "{:.1} tok/s, first token {:.0} ms, {:.1} s",
            x.gen_tps,
            x.ttft_ms,
            x.wall_ms / 1000.0
        ));
    }
    if let Some(r) = m.stop_reason {
        facts.push(format!("stopped: {}", r.as_str()));
    }
    match m.status {
        super::MessageStatus::Complete => {}
        super::MessageStatus::Error => {
            facts.push(format!(
                "error: {}",
                m.error_message.as_deref().unwrap_or("unknown")
            ));
        }
        other => facts.push(format!("status: {}", other.as_str())),
    }
    if !facts.is_empty() {
        let _ = writeln!(out, "\n<sub>{}</sub>", facts.join(" · "));
    }
}
