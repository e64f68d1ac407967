//! Word-level diff of two columns' answers (and of their thinking), for the "what differs"
//! view of a side-by-side run.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use similar::{Algorithm, ChangeTag, TextDiff};
use ts_rs::TS;

/// Past this, the diff settles for a coarser (still correct) answer: a diff view must never
/// freeze the UI on two long, unrelated answers.
const DIFF_TIMEOUT: Duration = Duration::from_millis(500);

/// One run of text in a diff. Consecutive words of the same kind are merged, and the
/// whitespace between words belongs to the run it sits in, so concatenating the `Equal`
/// and `Delete` texts gives back `a` exactly, and `Equal` and `Insert` texts give `b`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DiffOp {
    Equal {
        text: String,
    },
    /// Only in `b`.
    Insert {
        text: String,
    },
    /// Only in `a`.
    Delete {
        text: String,
    },
}

impl DiffOp {
    pub fn text(&self) -> &str {
        match self {
            DiffOp::Equal { text } | DiffOp::Insert { text } | DiffOp::Delete { text } => text,
        }
    }
}

/// Word-level diff from `a` to `b`. Patience matching keeps unique words (names, numbers)
/// anchored, which reads better for prose than the shortest edit script.
pub fn diff_words(a: &str, b: &str) -> Vec<DiffOp> {
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Patience)
        .timeout(DIFF_TIMEOUT)
        .diff_words(a, b);
    let mut out: Vec<DiffOp> = Vec::new();
    for change in diff.iter_all_changes() {
        let text = change.value();
        match (out.last_mut(), change.tag()) {
            (Some(DiffOp::Equal { text: t }), ChangeTag::Equal)
            | (Some(DiffOp::Insert { text: t }), ChangeTag::Insert)
            | (Some(DiffOp::Delete { text: t }), ChangeTag::Delete) => t.push_str(text),
            (_, tag) => out.push(match tag {
                ChangeTag::Equal => DiffOp::Equal {
                    text: text.to_owned(),
                },
                ChangeTag::Insert => DiffOp::Insert {
                    text: text.to_owned(),
                },
                ChangeTag::Delete => DiffOp::Delete {
                    text: text.to_owned(),
                },
            }),
        }
    }
    out
}

/// The diffs of two columns: answers and thinking separately, since a model that thinks
/// differently can still land on the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ColumnDiff {
    pub answer: Vec<DiffOp>,
    pub thinking: Vec<DiffOp>,
}

pub fn diff_columns(
    answer_a: &str,
    thinking_a: &str,
    answer_b: &str,
    thinking_b: &str,
) -> ColumnDiff {
    ColumnDiff {
        answer: diff_words(answer_a, answer_b),
        thinking: diff_words(thinking_a, thinking_b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebuild(ops: &[DiffOp], keep_insert: bool) -> String {
        ops.iter()
            .filter(|o| match o {
                DiffOp::Equal { .. } => true,
                DiffOp::Insert { .. } => keep_insert,
                DiffOp::Delete { .. } => !keep_insert,
            })
            .map(DiffOp::text)
            .collect()
    }

    #[test]
    fn both_sides_rebuild_exactly() {
        let a = "The  quick brown fox\njumps over the lazy dog.";
        let b = "A quick red fox jumps over the dog!";
        let ops = diff_words(a, b);
        assert_eq!(rebuild(&ops, false), a);
        assert_eq!(rebuild(&ops, true), b);
    }

    #[test]
    fn identical_and_empty() {
        assert_eq!(
            diff_words("same text", "same text"),
            vec![DiffOp::Equal {
                text: "same text".into()
            }]
        );
        assert!(diff_words("", "").is_empty());
        assert_eq!(
            diff_words("", "new"),
            vec![DiffOp::Insert { text: "new".into() }]
        );
    }
}
