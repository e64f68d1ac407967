//! Chat history: one SQLite file (WAL) holding conversations as message trees, every
//! answer's model, parameters and metrics in typed columns, a full-text index, and
//! Markdown/JSON export and import.
//!
//! Durability rules that shape the API: a user message is committed before generation
//! starts ([`History::add_user_message`]), a streamed answer is written incrementally by an
//! [`AnswerWriter`], and answers a crash left `streaming` are turned `interrupted` (text kept)
//! the next time the database is opened.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::events::{
    ContextOverflow, Metrics, Role, SamplingParams, SpeculativeMode, StopReason, ThinkMode, Usage,
};

pub mod bench;
mod export;
mod presets;
mod rows;
mod search;
mod store;
mod writer;

pub use export::{
    ExportDocument, ExportFileReport, ExportFormat, ExportScope, ImportReport, EXPORT_FORMAT,
    EXPORT_VERSION,
};
pub use presets::{check_preset_name, Preset, MAX_PRESET_NAME};
pub use search::{SearchHit, SearchQuery, HIGHLIGHT_END, HIGHLIGHT_START};
pub use store::{History, HistoryOptions};
pub use writer::AnswerWriter;

pub type Result<T, E = HistoryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{what} '{id}' not found in history")]
    NotFound { what: &'static str, id: String },
    #[error("the disk holding the history database is full; free some space (nothing written since the last save was lost from this window): {0}")]
    StorageFull(String),
    #[error("the history database is read-only (check the file's permissions or the disk): {0}")]
    StorageReadOnly(String),
    #[error("the history database is busy (another Conclave process holds a write lock): {0}")]
    Busy(String),
    #[error("{path} is damaged or is not a Conclave history database: {reason}")]
    CorruptDatabase { path: String, reason: String },
    #[error("the history database was written by a newer Conclave (schema {found}); update Conclave to open it")]
    NewerSchema { found: i64 },
    #[error("invalid import file: {0}")]
    InvalidImport(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("database upgrade failed: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("i/o error on the history database: {0}")]
    Io(#[from] std::io::Error),
    /// Reading an import file or writing an export file failed: the path says which, so
    /// the user is not told their database is at fault.
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::ErrorCode for HistoryError {
    fn code(&self) -> &'static str {
        match self {
            HistoryError::NotFound { .. } => "not_found",
            HistoryError::StorageFull(_) => "storage_full",
            HistoryError::StorageReadOnly(_) => "storage_read_only",
            HistoryError::Busy(_) => "database_busy",
            HistoryError::CorruptDatabase { .. } => "corrupt_database",
            HistoryError::NewerSchema { .. } => "newer_schema",
            HistoryError::InvalidImport(_) => "invalid_import",
            HistoryError::InvalidInput(_) => "invalid_input",
            HistoryError::Migration(_) => "migration_failed",
            HistoryError::Database(_) => "database",
            HistoryError::Io(_) => "io",
            HistoryError::File { .. } => "file",
        }
    }
}

// SQLite primary result codes (the low byte of the extended code sqlx reports).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_NOTADB: i64 = 26;

impl From<sqlx::Error> for HistoryError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            let msg = db.message().to_string();
            match primary {
                Some(SQLITE_FULL) => return HistoryError::StorageFull(msg),
                Some(SQLITE_READONLY) => return HistoryError::StorageReadOnly(msg),
                Some(SQLITE_BUSY | SQLITE_LOCKED) => return HistoryError::Busy(msg),
                Some(SQLITE_CORRUPT | SQLITE_NOTADB) => {
                    return HistoryError::CorruptDatabase {
                        path: "the history database".into(),
                        reason: msg,
                    }
                }
                _ => {}
            }
        }
        if let sqlx::Error::Io(io) = &err {
            // ENOSPC can surface as an I/O error rather than SQLITE_FULL on some paths.
            if io.raw_os_error() == Some(libc::ENOSPC) {
                return HistoryError::StorageFull(io.to_string());
            }
            if io.raw_os_error() == Some(libc::EROFS) {
                return HistoryError::StorageReadOnly(io.to_string());
            }
        }
        HistoryError::Database(err)
    }
}

impl From<sqlx::migrate::MigrateError> for HistoryError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(e) => match HistoryError::from(e) {
                HistoryError::Database(e) => {
                    HistoryError::Migration(sqlx::migrate::MigrateError::Execute(e))
                }
                other => other,
            },
            sqlx::migrate::MigrateError::VersionMissing(found) => {
                HistoryError::NewerSchema { found }
            }
            other => HistoryError::Migration(other),
        }
    }
}

/// Where an assistant message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Being generated right now (or a crash happened before the next open).
    Streaming,
    Complete,
    Cancelled,
    /// The process died while streaming; the text written so far is kept.
    Interrupted,
    /// Generation failed; `error_message` says why.
    Error,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Streaming => "streaming",
            MessageStatus::Complete => "complete",
            MessageStatus::Cancelled => "cancelled",
            MessageStatus::Interrupted => "interrupted",
            MessageStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "streaming" => MessageStatus::Streaming,
            "complete" => MessageStatus::Complete,
            "cancelled" => MessageStatus::Cancelled,
            "interrupted" => MessageStatus::Interrupted,
            "error" => MessageStatus::Error,
            _ => return None,
        })
    }
}

/// The most columns a side-by-side run has, and so the most a vote can name.
pub const MAX_VOTE_COLUMNS: usize = 4;

/// The user's verdict on a side-by-side run. Stored and serialised as its code
/// (`a_better` … `d_better`, `tie`, `both_bad`, or `rank:a>c=b>d`), so older exports and
/// databases read unchanged. The leaderboard turns it into pairwise games
/// (`leaderboard::games_for_vote` documents the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Vote {
    ABetter,
    BBetter,
    /// Column C (the third) is the best; only with three or more columns.
    CBetter,
    /// Column D (the fourth) is the best; only with four columns.
    DBetter,
    Tie,
    BothBad,
    /// A full ranking of the columns, ties allowed.
    Ranked(Ranking),
}

// Serialised as its code, so the TypeScript type is the set of codes (see `Vote` above).
impl ts_rs::TS for Vote {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn name(_: &ts_rs::Config) -> String {
        "Vote".to_owned()
    }

    fn inline(_: &ts_rs::Config) -> String {
        "\"a_better\" | \"b_better\" | \"c_better\" | \"d_better\" | \"tie\" | \"both_bad\" | `rank:${string}`"
            .to_owned()
    }

    fn decl(cfg: &ts_rs::Config) -> String {
        format!("type Vote = {};", Self::inline(cfg))
    }

    fn decl_concrete(cfg: &ts_rs::Config) -> String {
        Self::decl(cfg)
    }

    fn output_path() -> Option<std::path::PathBuf> {
        Some("Vote.ts".into())
    }
}

/// Places of columns `0..len` (0 = best; equal places are ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranking {
    places: [u8; MAX_VOTE_COLUMNS],
    len: u8,
}

impl Ranking {
    /// From each column's place (0 = best). Places need not be dense: `[0, 2, 2]` is the
    /// same ranking as `[0, 1, 1]`.
    pub fn from_places(places: &[u8]) -> Option<Self> {
        if !(2..=MAX_VOTE_COLUMNS).contains(&places.len()) {
            return None;
        }
        let mut p = [0u8; MAX_VOTE_COLUMNS];
        p[..places.len()].copy_from_slice(places);
        // Never fails: the length was checked above.
        let len = u8::try_from(places.len()).ok()?;
        Some(Self { places: p, len })
    }

    pub fn places(&self) -> &[u8] {
        &self.places[..usize::from(self.len)]
    }

    /// `a>c=b>d`: every column once, best first, `=` between tied columns.
    pub fn parse(s: &str) -> Option<Self> {
        let mut places = [u8::MAX; MAX_VOTE_COLUMNS];
        let mut n = 0usize;
        for (place, group) in s.split('>').enumerate() {
            for col in group.split('=') {
                let col = col.trim();
                let mut chars = col.chars();
                let (Some(c), None) = (chars.next(), chars.next()) else {
                    return None;
                };
                let i = (c.to_ascii_lowercase() as usize).checked_sub('a' as usize)?;
                if i >= MAX_VOTE_COLUMNS || places[i] != u8::MAX {
                    return None;
                }
                places[i] = u8::try_from(place).ok()?;
                n += 1;
            }
        }
        // Columns named must be exactly a, b, … with none skipped.
        if n < 2 || places[..n].contains(&u8::MAX) {
            return None;
        }
        Self::from_places(&places[..n])
    }

    fn code(&self) -> String {
        let mut cols: Vec<usize> = (0..usize::from(self.len)).collect();
        cols.sort_by_key(|&c| (self.places[c], c));
        let mut out = String::from("rank:");
        for (k, &c) in cols.iter().enumerate() {
            if k > 0 {
                out.push(if self.places[c] == self.places[cols[k - 1]] {
                    '='
                } else {
                    '>'
                });
            }
            out.push(char::from(b'a' + c as u8));
        }
        out
    }
}

impl Vote {
    /// The stored form.
    pub fn code(self) -> String {
        match self {
            Vote::ABetter => "a_better".into(),
            Vote::BBetter => "b_better".into(),
            Vote::CBetter => "c_better".into(),
            Vote::DBetter => "d_better".into(),
            Vote::Tie => "tie".into(),
            Vote::BothBad => "both_bad".into(),
            Vote::Ranked(r) => r.code(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "a_better" => Vote::ABetter,
            "b_better" => Vote::BBetter,
            "c_better" => Vote::CBetter,
            "d_better" => Vote::DBetter,
            "tie" => Vote::Tie,
            "both_bad" => Vote::BothBad,
            other => Vote::Ranked(Ranking::parse(other.strip_prefix("rank:")?)?),
        })
    }

    /// The column this vote names as the best, for the "X better" votes.
    pub fn best_column(self) -> Option<usize> {
        match self {
            Vote::ABetter => Some(0),
            Vote::BBetter => Some(1),
            Vote::CBetter => Some(2),
            Vote::DBetter => Some(3),
            _ => None,
        }
    }

    /// Whether the vote can be cast on a run of `columns` columns: the best column must
    /// exist, and a ranking must rank exactly those columns.
    pub fn fits_columns(self, columns: usize) -> bool {
        match self {
            Vote::Ranked(r) => r.places().len() == columns,
            v => v.best_column().is_none_or(|c| c < columns),
        }
    }
}

impl From<Vote> for String {
    fn from(v: Vote) -> String {
        v.code()
    }
}

impl TryFrom<String> for Vote {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Vote::parse(&s).ok_or_else(|| {
            format!("unknown vote '{s}' (a_better, b_better, c_better, d_better, tie, both_bad, rank:a>b=c)")
        })
    }
}

/// Per-conversation generation settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConversationSettings {
    pub system_prompt: Option<String>,
    pub think_mode: ThinkMode,
    pub think_budget: Option<u32>,
    pub keep_thoughts: bool,
    pub n_ctx: Option<u32>,
    pub threads: Option<u32>,
    pub template_override: Option<String>,
    pub default_model: Option<String>,
    pub context_overflow: ContextOverflow,
    /// Speculative decoding for the conversation's answers.
    pub speculative: SpeculativeMode,
    /// The model drafting for the conversation's model (a GGUF path), if any.
    pub draft_model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    /// Unix milliseconds, UTC.
    pub created_at: i64,
    pub updated_at: i64,
    pub settings: ConversationSettings,
    pub pinned: bool,
    pub folder: Option<String>,
    /// Sorted.
    pub tags: Vec<String>,
    /// The message the conversation view shows last; the branch on screen is `path_to(leaf)`.
    pub current_leaf_id: Option<String>,
}

/// One row of the conversation list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: String,
    pub title: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub pinned: bool,
    pub folder: Option<String>,
    /// All messages of the tree, every branch included.
    pub message_count: i64,
    /// Model file of the most recent assistant message.
    pub last_model: Option<String>,
}

/// The GGUF that produced an answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelInfo {
    /// File name of the GGUF.
    pub file: String,
    pub sha256: Option<String>,
    pub architecture: Option<String>,
    pub quantization: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: String,
    pub conversation_id: String,
    /// None for the first message of a conversation (several roots are allowed: an edited
    /// first message is a sibling root).
    pub parent_id: Option<String>,
    pub role: Role,
    /// The answer (for assistant messages, without the thinking).
    pub content: String,
    pub reasoning: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub status: MessageStatus,
    pub error_message: Option<String>,
    pub model: Option<ModelInfo>,
    pub template: Option<String>,
    pub reasoning_format: Option<String>,
    /// Parameters as requested.
    pub sampling: Option<SamplingParams>,
    /// Seed actually used.
    pub seed: Option<u32>,
    pub stop_reason: Option<StopReason>,
    pub usage: Option<Usage>,
    /// Non-finite measurements are stored as 0.
    pub metrics: Option<Metrics>,
    pub compare_run_id: Option<String>,
    pub column_index: Option<u32>,
}

/// What is known about an answer when its generation starts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AnswerMeta {
    pub model: ModelInfo,
    pub template: Option<String>,
    pub reasoning_format: Option<String>,
    pub sampling: SamplingParams,
    /// Seed actually used, when already known (`ChatEvent::Started`); `finish` records it too.
    pub seed: Option<u32>,
    /// Set when this answer is one column of a side-by-side run.
    pub compare: Option<CompareSlot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareSlot {
    pub run_id: String,
    pub column_index: u32,
}

/// A side-by-side run: its columns are sibling assistant answers to `user_message_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRun {
    pub id: String,
    pub user_message_id: String,
    pub blind: bool,
    pub vote: Option<Vote>,
    pub tag: Option<String>,
    pub created_at: i64,
}

/// A conversation with its whole message tree (flat, by creation time; parent links give
/// the shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationTree {
    pub conversation: Conversation,
    pub messages: Vec<StoredMessage>,
    pub compare_runs: Vec<CompareRun>,
}

impl ConversationTree {
    pub fn current_leaf_id(&self) -> Option<&str> {
        self.conversation.current_leaf_id.as_deref()
    }

    /// Root→leaf path of the current branch, from the loaded messages.
    pub fn current_path(&self) -> Vec<&StoredMessage> {
        let by_id: std::collections::HashMap<&str, &StoredMessage> =
            self.messages.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut path = Vec::new();
        let mut cursor = self.current_leaf_id();
        while let Some(id) = cursor {
            let Some(m) = by_id.get(id) else { break };
            path.push(*m);
            cursor = m.parent_id.as_deref();
            if path.len() > self.messages.len() {
                break; // a cycle can only come from a damaged file; don't spin
            }
        }
        path.reverse();
        path
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn new_id() -> String {
    // v7: time-ordered, so new rows land at the end of the id index.
    uuid::Uuid::now_v7().to_string()
}
