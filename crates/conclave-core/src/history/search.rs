//! Full-text search over answers (and optionally thinking), ranked by bm25.

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};

use super::rows::role_from;
use super::store::History;
use super::Result;
use crate::events::Role;

/// Marks the start of a matched term in [`SearchHit::snippet`]. Control characters never
/// appear in chat text the UI renders, so it can split on them without escaping issues.
pub const HIGHLIGHT_START: char = '\u{1}';
pub const HIGHLIGHT_END: char = '\u{2}';

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchQuery {
    /// Words to find (all must match). Quotes group a phrase; a trailing `*` makes a word
    /// a prefix (not automatic: a short prefix expands to thousands of index terms).
    pub text: String,
    /// Also search the thinking of assistant messages.
    pub include_reasoning: bool,
    /// Only answers by this model file.
    pub model: Option<String>,
    /// Inclusive range on the message's creation time, Unix milliseconds.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: u32,
}

impl Default for SearchQuery {
    fn default() -> Self {
        Self {
            text: String::new(),
            include_reasoning: false,
            model: None,
            from: None,
            to: None,
            limit: 50,
        }
    }
}

impl SearchQuery {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub message_id: String,
    pub conversation_id: String,
    pub conversation_title: String,
    pub role: Role,
    pub model: Option<String>,
    pub created_at: i64,
    /// Excerpt with matches between [`HIGHLIGHT_START`] and [`HIGHLIGHT_END`].
    pub snippet: String,
    /// bm25 score; lower is better (SQLite's convention).
    pub score: f64,
}

impl FromRow<'_, SqliteRow> for SearchHit {
    fn from_row(row: &SqliteRow) -> std::result::Result<Self, sqlx::Error> {
        let role: String = row.try_get("role")?;
        Ok(SearchHit {
            message_id: row.try_get("id")?,
            conversation_id: row.try_get("conversation_id")?,
            conversation_title: row.try_get("title")?,
            role: role_from(&role).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "role".into(),
                source: format!("unexpected role '{role}'").into(),
            })?,
            model: row.try_get("model_file")?,
            created_at: row.try_get("created_at")?,
            snippet: row
                .try_get::<Option<String>, _>("snippet")?
                .unwrap_or_default(),
            score: row.try_get("score")?,
        })
    }
}

/// Turns what the user typed into an FTS5 expression that cannot be a syntax error:
/// every word or quoted phrase becomes a quoted string, joined with AND.
pub(crate) fn fts_expression(text: &str, include_reasoning: bool) -> Option<String> {
    let mut terms: Vec<(String, bool)> = Vec::new(); // (text, is_prefix)
    let mut rest = text.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('"') {
            let end = after.find('"').unwrap_or(after.len());
            let phrase = after[..end].trim();
            if !phrase.is_empty() {
                terms.push((phrase.to_string(), false));
            }
            rest = after.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            let word = &rest[..end];
            // Punctuation-only input would be an empty FTS string: skip it.
            let (word, prefix) = match word.strip_suffix('*') {
                Some(w) => (w.trim_end_matches('*'), true),
                None => (word, false),
            };
            if word.chars().any(char::is_alphanumeric) {
                terms.push((word.to_string(), prefix));
            }
            rest = rest[end..].trim_start();
        }
    }
    if terms.is_empty() {
        return None;
    }
    let column = if include_reasoning {
        "{content reasoning}"
    } else {
        "{content}"
    };
    let parts: Vec<String> = terms
        .iter()
        .map(|(t, prefix)| {
            let quoted = format!("\"{}\"", t.replace('"', "\"\""));
            let prefix = if *prefix { " *" } else { "" };
            format!("{column} : {quoted}{prefix}")
        })
        .collect();
    Some(parts.join(" AND "))
}

/// How many of the newest matches are ranked when a term is very common.
const RANKED_CANDIDATES: i64 = 5_000;

impl History {
    /// Messages matching `query`, best first (for terms with more than 5,000 matches, the
    /// best of the newest 5,000).
    pub async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        let Some(expr) = fts_expression(&query.text, query.include_reasoning) else {
            return Ok(Vec::new());
        };
        // Column -1 lets snippet() pick whichever column matched best; thinking is weighted
        // lower so an answer that says it outranks one that merely thought it. `ORDER BY
        // rank` is sorted inside FTS5, so snippets are built only for the rows returned,
        // not for every match of a common word.
        let filtered = query.model.is_some() || query.from.is_some() || query.to.is_some();
        let sql = if filtered {
            "SELECT m.id, m.conversation_id, c.title, m.role, m.model_file, m.created_at, \
               snippet(messages_fts, -1, char(1), char(2), '…', 16) AS snippet, rank AS score \
             FROM messages_fts \
             JOIN messages m ON m.seq = messages_fts.rowid \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE messages_fts MATCH ?1 AND messages_fts.rowid >= ?6 AND rank MATCH 'bm25(1.0, 0.5)' \
               AND (?2 IS NULL OR m.model_file = ?2) \
               AND (?3 IS NULL OR m.created_at >= ?3) \
               AND (?4 IS NULL OR m.created_at <= ?4) \
             ORDER BY rank LIMIT ?5"
        } else {
            "WITH hits AS ( \
               SELECT rowid AS seq, snippet(messages_fts, -1, char(1), char(2), '…', 16) AS snippet, rank AS score \
               FROM messages_fts WHERE messages_fts MATCH ?1 AND rowid >= ?6 AND rank MATCH 'bm25(1.0, 0.5)' \
               ORDER BY rank LIMIT ?5) \
             SELECT m.id, m.conversation_id, c.title, m.role, m.model_file, m.created_at, hits.snippet, hits.score \
             FROM hits JOIN messages m ON m.seq = hits.seq JOIN conversations c ON c.id = m.conversation_id \
             WHERE ?2 IS NULL AND ?3 IS NULL AND ?4 IS NULL \
             ORDER BY hits.score"
        };
        // bm25 scores every match before sorting, so a word found in 100,000 messages cost
        // ~90 ms. Rank only the newest RANKED_CANDIDATES matches: FTS5 walks its doclists in
        // rowid order, so finding the boundary is cheap, and `rowid >= boundary` is a range
        // it applies before scoring. Rarer terms (the usual search) are ranked in full.
        let boundary: Option<i64> = sqlx::query_scalar(
            "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1 \
             ORDER BY rowid DESC LIMIT 1 OFFSET ?2",
        )
        .bind(&expr)
        .bind(RANKED_CANDIDATES - 1)
        .fetch_optional(&self.pool)
        .await?;
        let hits = sqlx::query_as::<_, SearchHit>(sql)
            .bind(expr)
            .bind(&query.model)
            .bind(query.from)
            .bind(query.to)
            .bind(i64::from(query.limit.max(1)))
            .bind(boundary.unwrap_or(i64::MIN))
            .fetch_all(&self.pool)
            .await?;
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::fts_expression;

    #[test]
    fn user_text_becomes_a_safe_expression() {
        assert_eq!(fts_expression("  ", false), None);
        assert_eq!(fts_expression("*** (", false), None);
        assert_eq!(
            fts_expression("rust \"borrow checker\" NOT", false),
            Some(
                "{content} : \"rust\" AND {content} : \"borrow checker\" AND {content} : \"NOT\""
                    .into()
            )
        );
        assert_eq!(
            fts_expression("a\"b\" pre*", true),
            Some("{content reasoning} : \"a\" AND {content reasoning} : \"b\" AND {content reasoning} : \"pre\" *".into())
        );
    }
}
