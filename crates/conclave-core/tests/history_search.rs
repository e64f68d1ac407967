//! Full-text search: ranking, highlighting, filters, and staying in sync with edits and deletes.
#![allow(clippy::unwrap_used)]

use conclave_core::events::{Metrics, StopReason, Usage};
use conclave_core::history::{
    AnswerMeta, ConversationSettings, History, MessageStatus, ModelInfo, SearchQuery,
    HIGHLIGHT_END, HIGHLIGHT_START,
};

async fn answer(
    h: &History,
    conv: &str,
    parent: &str,
    text: &str,
    reasoning: &str,
    model: &str,
) -> String {
    let meta = AnswerMeta {
        model: ModelInfo {
            file: model.into(),
            ..ModelInfo::default()
        },
        ..AnswerMeta::default()
    };
    let mut w = h.begin_answer(conv, parent, meta).await.unwrap();
    if !reasoning.is_empty() {
        w.push_reasoning(reasoning).await.unwrap();
    }
    w.push_answer(text).await.unwrap();
    w.finish(
        MessageStatus::Complete,
        &Metrics::default(),
        &Usage::default(),
        StopReason::Eos,
    )
    .await
    .unwrap()
    .id
}

#[tokio::test]
async fn ranked_highlighted_filtered_and_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
    let c = h
        .create_conversation("Rust questions", ConversationSettings::default())
        .await
        .unwrap();
    let u = h
        .add_user_message(&c.id, None, "How does the borrow checker work?")
        .await
        .unwrap();
    let dense = answer(
        &h,
        &c.id,
        &u.id,
        "The borrow checker checks borrows: borrow rules, borrow scopes.",
        "",
        "a.gguf",
    )
    .await;
    let sparse = answer(
        &h,
        &c.id,
        &u.id,
        "Ownership is a long topic with many parts, and somewhere in it there is a borrow, among many other words that dilute it.",
        "",
        "b.gguf",
    )
    .await;
    let thought = answer(
        &h,
        &c.id,
        &u.id,
        "Lifetimes annotate references.",
        "maybe mention the zygomorphic rule",
        "a.gguf",
    )
    .await;

    let hits = h.search(&SearchQuery::new("borrow")).await.unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.message_id.as_str()).collect();
    assert_eq!(
        ids[0], dense,
        "the message that is about the word ranks first"
    );
    assert!(ids.contains(&sparse.as_str()));
    assert!(hits[0].score <= hits[1].score);
    assert!(
        hits[0]
            .snippet
            .contains(&format!("{HIGHLIGHT_START}borrow{HIGHLIGHT_END}")),
        "{:?}",
        hits[0].snippet
    );
    assert_eq!(hits[0].conversation_title, "Rust questions");

    // Thinking is searched only on request; `*` makes a prefix.
    assert!(h
        .search(&SearchQuery::new("zygomorphic"))
        .await
        .unwrap()
        .is_empty());
    let q = SearchQuery {
        include_reasoning: true,
        ..SearchQuery::new("zygomor*")
    };
    let hits = h.search(&q).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message_id, thought);
    assert!(hits[0].snippet.contains(HIGHLIGHT_START));

    // Filters.
    let q = SearchQuery {
        model: Some("b.gguf".into()),
        ..SearchQuery::new("borrow")
    };
    assert_eq!(
        h.search(&q)
            .await
            .unwrap()
            .iter()
            .map(|h| h.message_id.clone())
            .collect::<Vec<_>>(),
        vec![sparse.clone()]
    );
    let q = SearchQuery {
        to: Some(0),
        ..SearchQuery::new("borrow")
    };
    assert!(h.search(&q).await.unwrap().is_empty());
    let q = SearchQuery {
        from: Some(0),
        to: Some(i64::MAX),
        ..SearchQuery::new("borrow")
    };
    assert_eq!(
        h.search(&q).await.unwrap().len(),
        3,
        "user message + two answers"
    );

    // Odd input never errors.
    for text in [
        "\"unclosed",
        "AND OR NOT",
        "*",
        "a:b",
        "(",
        "NEAR(",
        "ünïcödé",
    ] {
        h.search(&SearchQuery::new(text)).await.unwrap();
    }
    assert_eq!(h.search(&SearchQuery::new("cafe")).await.unwrap().len(), 0);

    // Edits (a new sibling) and deletes keep the index in sync.
    let edited = h
        .edit_message(&u.id, "Explain café lifetimes")
        .await
        .unwrap();
    assert_eq!(
        h.search(&SearchQuery::new("cafe")).await.unwrap()[0].message_id,
        edited.id,
        "diacritics folded"
    );
    h.delete_branch(&dense).await.unwrap();
    let ids: Vec<String> = h
        .search(&SearchQuery::new("borrow"))
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.message_id)
        .collect();
    assert!(!ids.contains(&dense));
    h.delete_conversation(&c.id).await.unwrap();
    assert!(h
        .search(&SearchQuery::new("borrow"))
        .await
        .unwrap()
        .is_empty());
    assert!(h
        .search(&SearchQuery {
            include_reasoning: true,
            ..SearchQuery::new("zygomorphic")
        })
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn streaming_text_is_searchable_as_it_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
    let c = h
        .create_conversation("s", ConversationSettings::default())
        .await
        .unwrap();
    let u = h.add_user_message(&c.id, None, "q").await.unwrap();
    let mut w = h
        .begin_answer(&c.id, &u.id, AnswerMeta::default())
        .await
        .unwrap();
    w.push_answer("first quokka").await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(
        h.search(&SearchQuery::new("quokka")).await.unwrap().len(),
        1
    );
    w.push_answer(" then wombat").await.unwrap();
    w.flush().await.unwrap();
    assert_eq!(
        h.search(&SearchQuery::new("quokka wombat"))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A word in more messages than are ranked still finds hits, drawn from the newest ones.
#[tokio::test]
async fn very_common_terms_rank_the_newest_matches() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
    let conv = h
        .create_conversation("many", ConversationSettings::default())
        .await
        .unwrap();
    let mut parent: Option<String> = None;
    for i in 0..5_100 {
        let m = h
            .add_user_message(&conv.id, parent.as_deref(), &format!("apple number n{i}"))
            .await
            .unwrap();
        parent = Some(m.id);
    }
    let hits = h.search(&SearchQuery::new("apple")).await.unwrap();
    assert_eq!(hits.len(), 50, "the default limit");
    // The oldest 100 are beyond the ranked window.
    let oldest = h.search(&SearchQuery::new("n5")).await.unwrap();
    assert_eq!(oldest.len(), 1, "a rare term is still found wherever it is");
    let old_ids: Vec<String> = (0..100).map(|i| format!("n{i} ")).collect();
    for hit in &hits {
        let text = hit.snippet.replace([HIGHLIGHT_START, HIGHLIGHT_END], "");
        assert!(
            !old_ids
                .iter()
                .any(|o| format!("{text} ").contains(o.as_str())),
            "{text}"
        );
    }
}
