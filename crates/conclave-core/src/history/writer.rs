//! Incremental saving of a streamed answer: deltas accumulate in memory and reach the
//! database at most every [`FLUSH_INTERVAL`], each time as one small UPDATE. A crash loses
//! at most that window; a failing disk loses nothing from the caller's view, since the
//! writer keeps the whole text in memory and retries on the next push.

use std::time::{Duration, Instant};

use sqlx::Arguments;

use super::rows::push_metrics;
use super::store::History;
use super::{now_ms, HistoryError, MessageStatus, Result, StoredMessage};
use crate::events::{ChatEvent, Metrics, StopReason, Usage};

pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Writes one assistant answer as it streams. Created by [`History::begin_answer`].
#[derive(Debug)]
pub struct AnswerWriter {
    history: History,
    message: StoredMessage,
    seq: i64,
    dirty: bool,
    last_flush: Instant,
    closed: bool,
}

impl AnswerWriter {
    pub(crate) fn new(history: History, message: StoredMessage, seq: i64) -> Self {
        // The row was just written; the first delta may wait a full interval.
        Self {
            history,
            message,
            seq,
            dirty: false,
            last_flush: Instant::now(),
            closed: false,
        }
    }

    pub fn id(&self) -> &str {
        &self.message.id
    }

    pub fn conversation_id(&self) -> &str {
        &self.message.conversation_id
    }

    /// Everything received so far, saved or not.
    pub fn content(&self) -> &str {
        &self.message.content
    }

    pub fn reasoning(&self) -> &str {
        self.message.reasoning.as_deref().unwrap_or("")
    }

    /// True while some received text has not reached the database yet.
    pub fn has_unsaved(&self) -> bool {
        self.dirty
    }

    /// Appends thinking text. An error means the save failed (disk full, read-only); the
    /// text is still held and the next push retries.
    pub async fn push_reasoning(&mut self, delta: &str) -> Result<()> {
        self.ensure_open()?;
        self.message
            .reasoning
            .get_or_insert_with(String::new)
            .push_str(delta);
        self.dirty = true;
        self.flush_if_due().await
    }

    /// Appends answer text; see [`push_reasoning`](Self::push_reasoning) for errors.
    pub async fn push_answer(&mut self, delta: &str) -> Result<()> {
        self.ensure_open()?;
        self.message.content.push_str(delta);
        self.dirty = true;
        self.flush_if_due().await
    }

    /// Saves now if the last save is older than the flush interval (call on idle ticks so
    /// text that arrived just before a pause is not left only in memory).
    pub async fn flush_if_due(&mut self) -> Result<()> {
        if self.dirty && self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Saves the text received so far, whatever the interval.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.dirty || self.closed {
            return Ok(());
        }
        // Counted from the attempt: a failing disk is retried once per interval, not per token.
        self.last_flush = Instant::now();
        let now = now_ms();
        let mut tx = self.history.begin_write().await?;
        sqlx::query("UPDATE messages SET content = ?, reasoning = ?, updated_at = ? WHERE seq = ? AND status = 'streaming'")
            .bind(&self.message.content)
            .bind(self.message.reasoning.as_deref().filter(|r| !r.is_empty()))
            .bind(now)
            .bind(self.seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.message.updated_at = now;
        self.dirty = false;
        Ok(())
    }

    /// Ends the answer with its final text, outcome and measurements, in one transaction.
    /// On error the writer stays open so the caller can retry.
    pub async fn finish(
        &mut self,
        status: MessageStatus,
        metrics: &Metrics,
        usage: &Usage,
        stop_reason: StopReason,
    ) -> Result<StoredMessage> {
        self.ensure_open()?;
        if status == MessageStatus::Streaming {
            return Err(HistoryError::InvalidInput(
                "an answer cannot finish as 'streaming'".into(),
            ));
        }
        let now = now_ms();
        let mut cols: Vec<&'static str> = Vec::with_capacity(40);
        let mut args = sqlx::sqlite::SqliteArguments::default();
        macro_rules! col {
            ($name:literal, $value:expr) => {{
                cols.push($name);
                args.add($value).map_err(sqlx::Error::Encode)?;
            }};
        }
        col!("content", self.message.content.clone());
        col!(
            "reasoning",
            self.message.reasoning.clone().filter(|r| !r.is_empty())
        );
        col!("status", status.as_str());
        col!("updated_at", now);
        col!("template", metrics.template.clone());
        col!("reasoning_format", metrics.reasoning_format.clone());
        col!("seed", i64::from(metrics.seed));
        col!("stop_reason", stop_reason.as_str());
        col!("prompt_tokens", i64::from(usage.prompt_tokens));
        col!(
            "cached_prompt_tokens",
            i64::from(usage.cached_prompt_tokens)
        );
        col!("completion_tokens", i64::from(usage.completion_tokens));
        col!("reasoning_tokens", i64::from(usage.reasoning_tokens));
        col!("answer_tokens", i64::from(usage.answer_tokens));
        push_metrics(&mut cols, &mut args, Some(metrics))?;
        args.add(self.seq).map_err(sqlx::Error::Encode)?;
        let sets: Vec<String> = cols.iter().map(|c| format!("{c} = ?")).collect();
        let sql = format!("UPDATE messages SET {} WHERE seq = ?", sets.join(", "));

        let mut tx = self.history.begin_write().await?;
        sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        touch_conversation(&mut tx, &self.message.conversation_id, now).await?;
        tx.commit().await?;
        self.closed = true;
        self.dirty = false;
        self.history.message(&self.message.id).await
    }

    /// Records one streamed event: deltas are buffered and saved at most every 250 ms,
    /// `Done` finishes the answer (cancelled or complete), `Error` fails it.
    pub async fn apply(&mut self, event: &ChatEvent) -> Result<()> {
        match event {
            ChatEvent::Reasoning { text, .. } => self.push_reasoning(text).await,
            ChatEvent::Token { text, .. } => self.push_answer(text).await,
            ChatEvent::Done {
                stop_reason,
                usage,
                metrics,
            } => {
                let status = match stop_reason {
                    StopReason::Cancelled => MessageStatus::Cancelled,
                    _ => MessageStatus::Complete,
                };
                self.finish(status, metrics, usage, *stop_reason)
                    .await
                    .map(|_| ())
            }
            ChatEvent::Error { message, .. } => self.fail(message).await,
            ChatEvent::Started { .. } => Ok(()),
        }
    }

    /// Ends the answer as failed, keeping the partial text.
    pub async fn fail(&mut self, message: &str) -> Result<()> {
        self.ensure_open()?;
        let now = now_ms();
        let mut tx = self.history.begin_write().await?;
        sqlx::query(
            "UPDATE messages SET content = ?, reasoning = ?, status = 'error', error_message = ?, updated_at = ? \
             WHERE seq = ?",
        )
        .bind(&self.message.content)
        .bind(self.message.reasoning.as_deref().filter(|r| !r.is_empty()))
        .bind(message)
        .bind(now)
        .bind(self.seq)
        .execute(&mut *tx)
        .await?;
        touch_conversation(&mut tx, &self.message.conversation_id, now).await?;
        tx.commit().await?;
        self.closed = true;
        self.dirty = false;
        Ok(())
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed {
            return Err(HistoryError::InvalidInput(format!(
                "answer {} is already finished",
                self.message.id
            )));
        }
        Ok(())
    }
}

async fn touch_conversation(conn: &mut sqlx::SqliteConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE conversations SET updated_at = ? WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

impl Drop for AnswerWriter {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // Dropped mid-stream (task cancelled, caller bailed out): save what we have and
        // mark it interrupted now rather than at the next open.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.history.pool.clone();
        let content = std::mem::take(&mut self.message.content);
        let reasoning = self.message.reasoning.take().filter(|r| !r.is_empty());
        let seq = self.seq;
        let id = self.message.id.clone();
        handle.spawn(async move {
            let result = sqlx::query(
                "UPDATE messages SET content = ?, reasoning = ?, status = 'interrupted', updated_at = ? \
                 WHERE seq = ? AND status = 'streaming'",
            )
            .bind(content)
            .bind(reasoning)
            .bind(now_ms())
            .bind(seq)
            .execute(&pool)
            .await;
            if let Err(e) = result {
                tracing::warn!(message = %id, error = %e, "could not save an abandoned answer");
            }
        });
    }
}
