//! Opening the database (refusing foreign or damaged files, migrating, recovering
//! interrupted answers) and the conversation/message operations the UI needs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection, SqlitePool};

use super::rows::{message_insert, think_mode_str, CONVERSATION_SELECT};
use super::writer::AnswerWriter;
use super::{
    new_id, now_ms, AnswerMeta, CompareRun, Conversation, ConversationSettings,
    ConversationSummary, ConversationTree, HistoryError, MessageStatus, Result, StoredMessage,
    Vote,
};
use crate::events::Role;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// 'CNCL', written by the first migration.
const APPLICATION_ID: i64 = 0x434E_434C;
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// How to open the database. `Default` is right for the app.
#[derive(Debug, Clone, Default)]
pub struct HistoryOptions {
    /// Open without writing (browsing a backup, a read-only medium). Also chosen
    /// automatically when the file is not writable.
    pub read_only: bool,
    /// Connections in the pool (default 4). WAL lets readers run beside the one writer.
    pub max_connections: Option<u32>,
    /// Caps the file size in pages; lets tests reproduce a full disk.
    #[doc(hidden)]
    pub max_page_count: Option<u32>,
}

/// The chat history store. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct History {
    pub(crate) pool: SqlitePool,
    path: PathBuf,
    read_only: bool,
}

impl History {
    /// Opens (creating if needed) the history at `path`, upgrades its schema and marks
    /// answers a crash left `streaming` as `interrupted`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, HistoryOptions::default()).await
    }

    /// Opens the history in the data root (`CONCLAVE_DATA_DIR` or the platform data dir).
    pub async fn open_default() -> Result<Self> {
        // Best effort: where the root cannot be tightened, opening reports what fails.
        if let Err(e) = crate::paths::ensure_data_dir() {
            tracing::warn!("could not make the data folder private: {e}");
        }
        Self::open(crate::paths::database_path()).await
    }

    pub async fn open_with(path: impl AsRef<Path>, options: HistoryOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let meta = std::fs::metadata(&path).ok();
        // Mode bits, not access(2): root may write anything, but a file the user marked
        // read-only must stay untouched.
        let read_only =
            options.read_only || meta.as_ref().is_some_and(|m| m.permissions().readonly());
        // Two processes opening a new database at once (the app and a `conclave` command,
        // two scripts) would both run the first migration and one would fail: whoever
        // comes second waits here and then finds the schema in place.
        let _opening = if read_only {
            None
        } else {
            open_lock(&path).await
        };
        let meta = std::fs::metadata(&path).ok();
        let existing = meta.as_ref().is_some_and(|m| m.len() > 0);
        if existing {
            check_header(&path)?;
            probe_ownership(&path).await?;
        } else if read_only {
            return Err(HistoryError::StorageReadOnly(format!(
                "{shown} does not exist and cannot be created"
            )));
        } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        if !read_only {
            // Best effort: a database someone else owns cannot be chmod-ed, and SQLite
            // reports better than we could what else is wrong with it.
            if let Err(e) = make_private(&path) {
                tracing::warn!(path = %shown, "could not make the history private: {e}");
            }
        }

        let mut connect = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(!read_only)
            .read_only(read_only)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .synchronous(SqliteSynchronous::Normal);
        if !read_only {
            connect = connect.journal_mode(SqliteJournalMode::Wal);
        }
        if let Some(pages) = options.max_page_count {
            connect = connect.pragma("max_page_count", pages.to_string());
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.unwrap_or(4).max(1))
            .connect_with(connect)
            .await
            .map_err(|e| with_path(e.into(), &shown))?;

        if read_only {
            check_schema_current(&pool, &shown).await?;
        } else {
            MIGRATOR
                .run(&pool)
                .await
                .map_err(|e| with_path(e.into(), &shown))?;
            let recovered = recover_interrupted(&pool).await?;
            if recovered > 0 {
                tracing::warn!(
                    recovered,
                    "answers left streaming by a previous run marked interrupted"
                );
            }
        }
        tracing::debug!(path = %shown, read_only, "history opened");
        Ok(History {
            pool,
            path,
            read_only,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Waits for in-flight statements and closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        if self.read_only {
            return Err(HistoryError::StorageReadOnly(format!(
                "{} was opened read-only",
                self.path.display()
            )));
        }
        // IMMEDIATE takes the write lock up front, so a read-then-write transaction waits on
        // the busy timeout instead of failing when another process wrote in between.
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    // ----- conversations -------------------------------------------------------------

    pub async fn create_conversation(
        &self,
        title: &str,
        settings: ConversationSettings,
    ) -> Result<Conversation> {
        let id = new_id();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO conversations (id, title, created_at, updated_at, system_prompt, think_mode, think_budget, \
             keep_thoughts, n_ctx, threads, template_override, default_model, context_overflow, speculative, \
             draft_model) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        )
        .bind(&id)
        .bind(title)
        .bind(now)
        .bind(now)
        .bind(&settings.system_prompt)
        .bind(think_mode_str(settings.think_mode))
        .bind(settings.think_budget.map(i64::from))
        .bind(settings.keep_thoughts)
        .bind(settings.n_ctx.map(i64::from))
        .bind(settings.threads.map(i64::from))
        .bind(&settings.template_override)
        .bind(&settings.default_model)
        .bind(settings.context_overflow.as_str())
        .bind(settings.speculative.as_str())
        .bind(&settings.draft_model)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.conversation(&id).await
    }

    pub async fn conversation(&self, id: &str) -> Result<Conversation> {
        sqlx::query_as::<_, Conversation>(&format!("{CONVERSATION_SELECT} WHERE c.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("conversation", id))
    }

    pub async fn update_settings(&self, id: &str, settings: &ConversationSettings) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE conversations SET system_prompt = ?, think_mode = ?, think_budget = ?, keep_thoughts = ?, \
             n_ctx = ?, threads = ?, template_override = ?, default_model = ?, context_overflow = ?, speculative = ?, \
             draft_model = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&settings.system_prompt)
        .bind(think_mode_str(settings.think_mode))
        .bind(settings.think_budget.map(i64::from))
        .bind(settings.keep_thoughts)
        .bind(settings.n_ctx.map(i64::from))
        .bind(settings.threads.map(i64::from))
        .bind(&settings.template_override)
        .bind(&settings.default_model)
        .bind(settings.context_overflow.as_str())
        .bind(settings.speculative.as_str())
        .bind(&settings.draft_model)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(not_found("conversation", id));
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn rename(&self, id: &str, title: &str) -> Result<()> {
        self.update_conversation_column(
            id,
            "UPDATE conversations SET title = ? WHERE id = ?",
            title,
        )
        .await
    }

    pub async fn set_pinned(&self, id: &str, pinned: bool) -> Result<()> {
        self.update_conversation_column(
            id,
            "UPDATE conversations SET pinned = ? WHERE id = ?",
            pinned,
        )
        .await
    }

    pub async fn set_folder(&self, id: &str, folder: Option<&str>) -> Result<()> {
        self.update_conversation_column(
            id,
            "UPDATE conversations SET folder = ? WHERE id = ?",
            folder,
        )
        .await
    }

    async fn update_conversation_column<'a, T>(
        &self,
        id: &'a str,
        sql: &'a str,
        value: T,
    ) -> Result<()>
    where
        T: sqlx::Encode<'a, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + 'a,
    {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(sql)
            .bind(value)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(not_found("conversation", id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the conversation's tags (trimmed, empty ones dropped, duplicates merged).
    pub async fn set_tags(&self, id: &str, tags: &[String]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        ensure_conversation(&mut tx, id).await?;
        sqlx::query("DELETE FROM conversation_tags WHERE conversation_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for tag in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            sqlx::query(
                "INSERT OR IGNORE INTO conversation_tags (conversation_id, tag) VALUES (?, ?)",
            )
            .bind(id)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Most recently updated first; pass the last row's `updated_at` to get the next page.
    pub async fn list_conversations(
        &self,
        limit: u32,
        before_updated_at: Option<i64>,
    ) -> Result<Vec<ConversationSummary>> {
        Ok(sqlx::query_as::<_, ConversationSummary>(
            "SELECT c.id, c.title, c.created_at, c.updated_at, c.pinned, c.folder, \
               (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count, \
               (SELECT m.model_file FROM messages m WHERE m.conversation_id = c.id AND m.model_file IS NOT NULL \
                  ORDER BY m.created_at DESC, m.seq DESC LIMIT 1) AS last_model \
             FROM conversations c WHERE c.updated_at < ? ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
        )
        .bind(before_updated_at.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The conversation with every message of its tree and its side-by-side runs.
    pub async fn get_conversation(&self, id: &str) -> Result<ConversationTree> {
        let mut conn = self.pool.acquire().await?;
        // One read transaction, so a concurrent writer cannot show us half a turn.
        let mut tx = conn.begin().await?;
        let conversation =
            sqlx::query_as::<_, Conversation>(&format!("{CONVERSATION_SELECT} WHERE c.id = ?"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| not_found("conversation", id))?;
        let messages = sqlx::query_as::<_, StoredMessage>(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, seq",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let compare_runs = sqlx::query_as::<_, CompareRun>(
            "SELECT r.* FROM compare_runs r JOIN messages m ON m.id = r.user_message_id \
             WHERE m.conversation_id = ? ORDER BY r.created_at, r.id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ConversationTree {
            conversation,
            messages,
            compare_runs,
        })
    }

    pub async fn message(&self, id: &str) -> Result<StoredMessage> {
        sqlx::query_as::<_, StoredMessage>("SELECT * FROM messages WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found("message", id))
    }

    // ----- messages ------------------------------------------------------------------

    /// Commits a user message (before any generation starts) and makes it the current leaf.
    /// `parent_id` None starts the conversation (or adds a sibling root).
    pub async fn add_user_message(
        &self,
        conversation_id: &str,
        parent_id: Option<&str>,
        content: &str,
    ) -> Result<StoredMessage> {
        self.add_message(conversation_id, parent_id, Role::User, content)
            .await
    }

    /// Adds a complete message of any role (user turns, a system note, an imported answer).
    pub async fn add_message(
        &self,
        conversation_id: &str,
        parent_id: Option<&str>,
        role: Role,
        content: &str,
    ) -> Result<StoredMessage> {
        let now = now_ms();
        let message = StoredMessage {
            id: new_id(),
            conversation_id: conversation_id.to_string(),
            parent_id: parent_id.map(str::to_string),
            role,
            content: content.to_string(),
            reasoning: None,
            created_at: now,
            updated_at: now,
            status: MessageStatus::Complete,
            error_message: None,
            model: None,
            template: None,
            reasoning_format: None,
            sampling: None,
            seed: None,
            stop_reason: None,
            usage: None,
            metrics: None,
            compare_run_id: None,
            column_index: None,
        };
        self.insert_new(&message, true, None).await?;
        Ok(message)
    }

    /// Edit-and-resend: a new message beside `message_id` (same parent, same role) with the
    /// new text; the original stays as the other branch.
    pub async fn edit_message(&self, message_id: &str, new_content: &str) -> Result<StoredMessage> {
        let original = self.message(message_id).await?;
        self.add_message(
            &original.conversation_id,
            original.parent_id.as_deref(),
            original.role,
            new_content,
        )
        .await
    }

    /// Starts an assistant answer under `parent_id` (committed as `streaming` before this
    /// returns). Regenerating is simply another `begin_answer` on the same parent: the new
    /// answer becomes a sibling branch.
    pub async fn begin_answer(
        &self,
        conversation_id: &str,
        parent_id: &str,
        meta: AnswerMeta,
    ) -> Result<AnswerWriter> {
        let now = now_ms();
        let (compare_run_id, column_index) = match &meta.compare {
            Some(slot) => (Some(slot.run_id.clone()), Some(slot.column_index)),
            None => (None, None),
        };
        let message = StoredMessage {
            id: new_id(),
            conversation_id: conversation_id.to_string(),
            parent_id: Some(parent_id.to_string()),
            role: Role::Assistant,
            content: String::new(),
            reasoning: None,
            created_at: now,
            updated_at: now,
            status: MessageStatus::Streaming,
            error_message: None,
            model: Some(meta.model),
            template: meta.template,
            reasoning_format: meta.reasoning_format,
            sampling: Some(meta.sampling),
            seed: meta.seed,
            stop_reason: None,
            usage: None,
            metrics: None,
            compare_run_id,
            column_index,
        };
        // Side columns other than the first leave the visible branch alone.
        let becomes_leaf = column_index.unwrap_or(0) == 0;
        let seq = self
            .insert_new(&message, becomes_leaf, Some(std::process::id()))
            .await?;
        Ok(AnswerWriter::new(self.clone(), message, seq))
    }

    async fn insert_new(
        &self,
        message: &StoredMessage,
        becomes_leaf: bool,
        writer_pid: Option<u32>,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        ensure_conversation(&mut tx, &message.conversation_id).await?;
        if let Some(parent) = &message.parent_id {
            let parent_conv: Option<String> =
                sqlx::query_scalar("SELECT conversation_id FROM messages WHERE id = ?")
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await?;
            match parent_conv {
                None => return Err(not_found("message", parent)),
                Some(c) if c != message.conversation_id => {
                    return Err(HistoryError::InvalidInput(format!(
                        "message {parent} belongs to another conversation"
                    )))
                }
                Some(_) => {}
            }
        }
        if let Some(run) = &message.compare_run_id {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM compare_runs WHERE id = ?")
                .bind(run)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(not_found("compare run", run));
            }
        }
        let (sql, args) = message_insert(message)?;
        let seq = sqlx::query_with(&sql, args)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        if let Some(pid) = writer_pid {
            sqlx::query("UPDATE messages SET writer_pid = ? WHERE seq = ?")
                .bind(i64::from(pid))
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        let leaf_sql = if becomes_leaf {
            "UPDATE conversations SET current_leaf_id = ?, updated_at = ? WHERE id = ?"
        } else {
            "UPDATE conversations SET updated_at = max(updated_at, ?2) WHERE id = ?3 AND ?1 IS NOT NULL"
        };
        sqlx::query(leaf_sql)
            .bind(&message.id)
            .bind(message.created_at)
            .bind(&message.conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Shows the branch through `message_id`: the current leaf becomes the most recent
    /// message below it (itself if it has no replies). Returns the new leaf's id.
    pub async fn set_current_leaf(
        &self,
        conversation_id: &str,
        message_id: &str,
    ) -> Result<String> {
        let mut tx = self.begin_write().await?;
        let conv: Option<String> =
            sqlx::query_scalar("SELECT conversation_id FROM messages WHERE id = ?")
                .bind(message_id)
                .fetch_optional(&mut *tx)
                .await?;
        match conv {
            None => return Err(not_found("message", message_id)),
            Some(c) if c != conversation_id => {
                return Err(HistoryError::InvalidInput(format!(
                    "message {message_id} is not in conversation {conversation_id}"
                )))
            }
            Some(_) => {}
        }
        let leaf = latest_leaf_under(&mut tx, message_id).await?;
        sqlx::query("UPDATE conversations SET current_leaf_id = ? WHERE id = ?")
            .bind(&leaf)
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(leaf)
    }

    /// Root→`message_id`: the context the model sees for that message.
    pub async fn path_to(&self, message_id: &str) -> Result<Vec<StoredMessage>> {
        let path = sqlx::query_as::<_, StoredMessage>(
            "WITH RECURSIVE up(id, parent_id, depth) AS ( \
               SELECT id, parent_id, 0 FROM messages WHERE id = ? \
               UNION ALL SELECT m.id, m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.parent_id) \
             SELECT m.* FROM up JOIN messages m ON m.id = up.id ORDER BY up.depth DESC",
        )
        .bind(message_id)
        .fetch_all(&self.pool)
        .await?;
        if path.is_empty() {
            return Err(not_found("message", message_id));
        }
        Ok(path)
    }

    /// `message_id` and the other answers/edits with the same parent, oldest first.
    pub async fn siblings(&self, message_id: &str) -> Result<Vec<StoredMessage>> {
        let me = self.message(message_id).await?;
        let rows = match &me.parent_id {
            Some(parent) => {
                sqlx::query_as::<_, StoredMessage>("SELECT * FROM messages WHERE parent_id = ? ORDER BY created_at, seq")
                    .bind(parent)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_as::<_, StoredMessage>(
                    "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS NULL ORDER BY created_at, seq",
                )
                .bind(&me.conversation_id)
                .fetch_all(&self.pool)
                .await?
            }
        };
        Ok(rows)
    }

    // ----- side-by-side runs ---------------------------------------------------------

    pub async fn create_compare_run(
        &self,
        user_message_id: &str,
        blind: bool,
        tag: Option<&str>,
    ) -> Result<CompareRun> {
        let run = CompareRun {
            id: new_id(),
            user_message_id: user_message_id.to_string(),
            blind,
            vote: None,
            tag: tag.map(str::to_string),
            created_at: now_ms(),
        };
        let mut tx = self.begin_write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM messages WHERE id = ?")
            .bind(user_message_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(not_found("message", user_message_id));
        }
        sqlx::query("INSERT INTO compare_runs (id, user_message_id, blind, vote, tag, created_at) VALUES (?,?,?,?,?,?)")
            .bind(&run.id)
            .bind(&run.user_message_id)
            .bind(run.blind)
            .bind(run.vote.map(Vote::code))
            .bind(&run.tag)
            .bind(run.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(run)
    }

    pub async fn set_vote(&self, run_id: &str, vote: Option<Vote>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE compare_runs SET vote = ? WHERE id = ?")
            .bind(vote.map(Vote::code))
            .bind(run_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(not_found("compare run", run_id));
        }
        tx.commit().await?;
        Ok(())
    }

    // ----- deleting ------------------------------------------------------------------

    pub async fn delete_conversation(&self, id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        // Messages first, in one statement: parent links are checked at statement end.
        sqlx::query("UPDATE conversations SET current_leaf_id = NULL WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM messages WHERE conversation_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM conversations WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(not_found("conversation", id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes `message_id` and everything below it. If the current leaf was in that
    /// subtree, the view moves to the most recent remaining branch under its parent.
    /// Returns how many messages were deleted.
    pub async fn delete_branch(&self, message_id: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT conversation_id, parent_id FROM messages WHERE id = ?")
            .bind(message_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found("message", message_id))?;
        let conversation_id: String = row.try_get("conversation_id")?;
        let parent_id: Option<String> = row.try_get("parent_id")?;
        let leaf: Option<String> =
            sqlx::query_scalar("SELECT current_leaf_id FROM conversations WHERE id = ?")
                .bind(&conversation_id)
                .fetch_one(&mut *tx)
                .await?;
        let deleted = sqlx::query(
            "DELETE FROM messages WHERE id IN ( \
               WITH RECURSIVE sub(id) AS (SELECT ?1 UNION ALL SELECT m.id FROM messages m JOIN sub ON m.parent_id = sub.id) \
               SELECT id FROM sub)",
        )
        .bind(message_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let leaf_gone = match &leaf {
            Some(l) => {
                let still: Option<i64> = sqlx::query_scalar("SELECT 1 FROM messages WHERE id = ?")
                    .bind(l)
                    .fetch_optional(&mut *tx)
                    .await?;
                still.is_none()
            }
            None => false,
        };
        if leaf_gone {
            let new_leaf = match &parent_id {
                Some(p) => Some(latest_leaf_under(&mut tx, p).await?),
                None => {
                    // A root went: show the newest remaining root's latest branch, if any.
                    let root: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS NULL \
                         ORDER BY created_at DESC, seq DESC LIMIT 1",
                    )
                    .bind(&conversation_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match root {
                        Some(r) => Some(latest_leaf_under(&mut tx, &r).await?),
                        None => None,
                    }
                }
            };
            sqlx::query("UPDATE conversations SET current_leaf_id = ? WHERE id = ?")
                .bind(new_leaf)
                .bind(&conversation_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE conversations SET updated_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(&conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Deletes every conversation. Returns how many.
    pub async fn delete_all(&self) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE conversations SET current_leaf_id = NULL")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM compare_runs")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM messages")
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM conversations")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Compacts the search index and the file, and truncates the WAL.
    pub async fn vacuum(&self) -> Result<()> {
        if self.read_only {
            return Err(HistoryError::StorageReadOnly(format!(
                "{} was opened read-only",
                self.path.display()
            )));
        }
        let mut conn = self.pool.acquire().await?;
        sqlx::query("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
            .execute(&mut *conn)
            .await?;
        sqlx::query("VACUUM").execute(&mut *conn).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Runs SQLite's own consistency check; "ok" when healthy.
    pub async fn integrity_check(&self) -> Result<String> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.join("\n"))
    }
}

/// Marks `streaming` answers whose writing process is gone as `interrupted`, keeping
/// their text. Returns how many.
async fn recover_interrupted(pool: &SqlitePool) -> Result<u64> {
    let streaming: Vec<(i64, Option<i64>)> =
        sqlx::query_as("SELECT seq, writer_pid FROM messages WHERE status = 'streaming'")
            .fetch_all(pool)
            .await?;
    let mut recovered = 0;
    for (seq, pid) in streaming {
        if pid.is_some_and(process_alive) {
            continue;
        }
        recovered += sqlx::query(
            "UPDATE messages SET status = 'interrupted', updated_at = ? WHERE seq = ? AND status = 'streaming'",
        )
        .bind(now_ms())
        .bind(seq)
        .execute(pool)
        .await?
        .rows_affected();
    }
    Ok(recovered)
}

/// Whether a process with this id is running (zombies count as gone). Where this cannot
/// be told, every writer counts as gone: a stale `streaming` is worse than a rare false
/// `interrupted` on a still-running second process.
fn process_alive(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
                .unwrap_or(false),
            Err(_) => false,
        }
    } else {
        false
    }
}

pub(crate) fn not_found(what: &'static str, id: &str) -> HistoryError {
    HistoryError::NotFound {
        what,
        id: id.to_string(),
    }
}

pub(crate) async fn ensure_conversation(conn: &mut SqliteConnection, id: &str) -> Result<()> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM conversations WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    exists
        .map(|_| ())
        .ok_or_else(|| not_found("conversation", id))
}

/// The most recently created message in the subtree rooted at `id` that has no children.
async fn latest_leaf_under(conn: &mut SqliteConnection, id: &str) -> Result<String> {
    let leaf: Option<String> = sqlx::query_scalar(
        "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION ALL SELECT m.id FROM messages m JOIN sub ON m.parent_id = sub.id) \
         SELECT m.id FROM sub JOIN messages m ON m.id = sub.id \
         WHERE NOT EXISTS (SELECT 1 FROM messages c WHERE c.parent_id = m.id) \
         ORDER BY m.created_at DESC, m.seq DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(leaf.unwrap_or_else(|| id.to_string()))
}

/// The history is the user's conversations: the database and its `-wal` and `-shm` files are
/// owner-only (0600). SQLite creates the latter two with the database file's own mode, so
/// a new database is created empty and 0600 before SQLite opens it; an existing one (from
/// before this rule, or copied in) is tightened.
fn make_private(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, crate::files::PRIVATE_FILE_MODE);
        match opts.open(path) {
            Ok(_) => {}
            // Another process created it meanwhile: tighten it below like any other.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        crate::files::restrict_file(Path::new(&name))?;
    }
    Ok(())
}

/// An exclusive lock on `<database>.lock`, held while the database is opened and migrated.
/// A lock file beside it rather than the database itself: SQLite's own locks must not be
/// disturbed. The OS releases it if the process dies. Best effort: where no lock file can
/// be made (a read-only folder), opening goes on as before and SQLite reports what fails.
async fn open_lock(path: &Path) -> Option<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let name = PathBuf::from(name);
    let locked = async {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        // Empty, but it sits in the private data folder like the rest: owner-only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, crate::files::PRIVATE_FILE_MODE);
        let file = opts.open(&name)?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(std::io::Error::other)?
    };
    match locked.await {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::warn!("opening the history without {}: {e}", name.display());
            None
        }
    }
}

fn with_path(err: HistoryError, path: &str) -> HistoryError {
    match err {
        HistoryError::CorruptDatabase { reason, .. } => HistoryError::CorruptDatabase {
            path: path.to_string(),
            reason,
        },
        other => other,
    }
}

/// Refuses a file that is not SQLite at all before SQLite gets a chance to touch it.
fn check_header(path: &Path) -> Result<()> {
    let mut header = [0u8; 16];
    let mut file = std::fs::File::open(path)?;
    let n = file.read(&mut header)?;
    if n < header.len() || &header != SQLITE_MAGIC {
        return Err(HistoryError::CorruptDatabase {
            path: path.display().to_string(),
            reason: "the file is not an SQLite database (wrong header)".into(),
        });
    }
    Ok(())
}

/// Refuses an SQLite file that belongs to some other program, read-only so that it is
/// left exactly as it was (no WAL switch, no migration table).
async fn probe_ownership(path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    let opts = SqliteConnectOptions::from_str("sqlite:")
        .map_err(HistoryError::Database)?
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = opts
        .connect()
        .await
        .map_err(|e| with_path(e.into(), &shown))?;
    let result = async {
        let app_id: i64 = sqlx::query_scalar("PRAGMA application_id").fetch_one(&mut conn).await?;
        if app_id == APPLICATION_ID {
            return Ok(());
        }
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_one(&mut conn)
        .await?;
        if app_id == 0 && tables == 0 {
            return Ok(()); // created but never migrated (a crash right after creation)
        }
        Err(HistoryError::CorruptDatabase {
            path: shown.clone(),
            reason: format!(
                "it is an SQLite database of another application (application_id {app_id:#x}, {tables} tables); \
                 refusing to modify it"
            ),
        })
    }
    .await
    .map_err(|e| with_path(e, &shown));
    let _ = conn.close().await;
    result
}

/// A read-only open cannot migrate; it works only when the schema is already current.
async fn check_schema_current(pool: &SqlitePool, shown: &str) -> Result<()> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    if let Some(newer) = applied.iter().find(|v| !MIGRATOR.version_exists(**v)) {
        return Err(HistoryError::NewerSchema { found: *newer });
    }
    let missing = MIGRATOR.iter().any(|m| !applied.contains(&m.version));
    if missing {
        return Err(HistoryError::StorageReadOnly(format!(
            "{shown} needs a schema upgrade but is read-only"
        )));
    }
    Ok(())
}
