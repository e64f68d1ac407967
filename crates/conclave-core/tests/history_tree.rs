//! Branches, current path, siblings, compare runs, listing and deleting, on real files.
#![allow(clippy::unwrap_used)]

use conclave_core::events::{Metrics, Role, StopReason, Usage};
use conclave_core::history::{
    AnswerMeta, CompareSlot, ConversationSettings, History, HistoryError, MessageStatus, ModelInfo,
    Vote,
};
use conclave_core::ErrorCode;

fn meta(model: &str) -> AnswerMeta {
    AnswerMeta {
        model: ModelInfo {
            file: model.into(),
            ..ModelInfo::default()
        },
        template: Some("chatml".into()),
        ..AnswerMeta::default()
    }
}

async fn answer(h: &History, conv: &str, parent: &str, text: &str, model: &str) -> String {
    let mut w = h.begin_answer(conv, parent, meta(model)).await.unwrap();
    w.push_answer(text).await.unwrap();
    let m = w
        .finish(
            MessageStatus::Complete,
            &Metrics::default(),
            &Usage::default(),
            StopReason::Eos,
        )
        .await
        .unwrap();
    m.id
}

#[tokio::test]
async fn edit_and_regenerate_make_branches_and_the_leaf_follows() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
    let conv = h
        .create_conversation("Branches", ConversationSettings::default())
        .await
        .unwrap();
    let u1 = h.add_user_message(&conv.id, None, "hello").await.unwrap();
    let a1 = answer(&h, &conv.id, &u1.id, "hi there", "m1.gguf").await;
    let u2 = h
        .add_user_message(&conv.id, Some(&a1), "tell me a joke")
        .await
        .unwrap();
    let a2 = answer(&h, &conv.id, &u2.id, "joke one", "m1.gguf").await;
    // Regenerate: a sibling answer; edit: a sibling user message.
    let a2b = answer(&h, &conv.id, &u2.id, "joke two", "m2.gguf").await;
    let sib = h.siblings(&a2).await.unwrap();
    assert_eq!(
        sib.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec![a2.as_str(), a2b.as_str()]
    );
    let tree = h.get_conversation(&conv.id).await.unwrap();
    assert_eq!(tree.current_leaf_id(), Some(a2b.as_str()));
    assert_eq!(tree.messages.len(), 5);

    let u2e = h.edit_message(&u2.id, "tell me a riddle").await.unwrap();
    assert_eq!(u2e.parent_id.as_deref(), Some(a1.as_str()));
    let a3 = answer(&h, &conv.id, &u2e.id, "riddle", "m1.gguf").await;
    let path: Vec<String> = h
        .path_to(&a3)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(
        path,
        vec!["hello", "hi there", "tell me a riddle", "riddle"]
    );
    assert_eq!(h.siblings(&u2.id).await.unwrap().len(), 2);

    // Switching to the old user branch shows its latest answer.
    let leaf = h.set_current_leaf(&conv.id, &u2.id).await.unwrap();
    assert_eq!(leaf, a2b);
    let tree = h.get_conversation(&conv.id).await.unwrap();
    let shown: Vec<&str> = tree
        .current_path()
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        shown,
        vec!["hello", "hi there", "tell me a joke", "joke two"]
    );

    // The list shows counts and the last model.
    let list = h.list_conversations(50, None).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].message_count, 7);
    assert_eq!(list[0].last_model.as_deref(), Some("m1.gguf"));

    // Deleting the branch on screen moves the view to the remaining branch.
    assert_eq!(h.delete_branch(&u2.id).await.unwrap(), 3);
    let tree = h.get_conversation(&conv.id).await.unwrap();
    assert_eq!(tree.messages.len(), 4);
    assert_eq!(tree.current_leaf_id(), Some(a3.as_str()));
    let err = h.path_to(&a2).await.unwrap_err();
    assert_eq!(err.code(), "not_found");
}

#[tokio::test]
async fn a_deep_conversation_deletes_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
    let conv = h
        .create_conversation("deep", ConversationSettings::default())
        .await
        .unwrap();
    let mut parent: Option<String> = None;
    let mut first = String::new();
    for i in 0..1200 {
        let m = h
            .add_message(
                &conv.id,
                parent.as_deref(),
                if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                "x",
            )
            .await
            .unwrap();
        if i == 0 {
            first = m.id.clone();
        }
        parent = Some(m.id);
    }
    assert_eq!(
        h.path_to(parent.as_deref().unwrap()).await.unwrap().len(),
        1200
    );
    assert_eq!(h.delete_branch(&first).await.unwrap(), 1200);
    assert_eq!(
        h.get_conversation(&conv.id)
            .await
            .unwrap()
            .conversation
            .current_leaf_id,
        None
    );
    h.delete_conversation(&conv.id).await.unwrap();
    assert!(matches!(
        h.get_conversation(&conv.id).await,
        Err(HistoryError::NotFound { .. })
    ));
}

#[tokio::test]
async fn compare_runs_are_sibling_columns_with_a_vote() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
    let conv = h
        .create_conversation("cmp", ConversationSettings::default())
        .await
        .unwrap();
    let u = h
        .add_user_message(&conv.id, None, "which is better?")
        .await
        .unwrap();
    let run = h
        .create_compare_run(&u.id, true, Some("blind-1"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, model) in ["a.gguf", "b.gguf"].iter().enumerate() {
        let mut m = meta(model);
        m.compare = Some(CompareSlot {
            run_id: run.id.clone(),
            column_index: i as u32,
        });
        let mut w = h.begin_answer(&conv.id, &u.id, m).await.unwrap();
        w.push_answer(model).await.unwrap();
        ids.push(
            w.finish(
                MessageStatus::Complete,
                &Metrics::default(),
                &Usage::default(),
                StopReason::Eos,
            )
            .await
            .unwrap()
            .id,
        );
    }
    h.set_vote(&run.id, Some(Vote::BBetter)).await.unwrap();
    let tree = h.get_conversation(&conv.id).await.unwrap();
    assert_eq!(
        tree.current_leaf_id(),
        Some(ids[0].as_str()),
        "column 0 is the branch on screen"
    );
    assert_eq!(tree.compare_runs.len(), 1);
    assert_eq!(tree.compare_runs[0].vote, Some(Vote::BBetter));
    assert!(tree.compare_runs[0].blind);
    let cols: Vec<(Option<u32>, &str)> = tree
        .messages
        .iter()
        .filter(|m| m.compare_run_id.as_deref() == Some(run.id.as_str()))
        .map(|m| (m.column_index, m.content.as_str()))
        .collect();
    assert_eq!(cols, vec![(Some(0), "a.gguf"), (Some(1), "b.gguf")]);
    assert_eq!(h.siblings(&ids[1]).await.unwrap().len(), 2);
}

#[tokio::test]
async fn conversation_fields_and_paging() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("sub/dir/h.sqlite3"))
        .await
        .unwrap();
    let settings = ConversationSettings {
        system_prompt: Some("be brief".into()),
        think_mode: conclave_core::ThinkMode::On,
        think_budget: Some(256),
        keep_thoughts: true,
        n_ctx: Some(8192),
        threads: Some(4),
        template_override: Some("qwen3".into()),
        default_model: Some("q.gguf".into()),
        context_overflow: conclave_core::ContextOverflow::TruncateMiddle,
        speculative: conclave_core::SpeculativeMode::Lookup,
        draft_model: Some("/models/draft.gguf".into()),
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = h
            .create_conversation(&format!("c{i}"), settings.clone())
            .await
            .unwrap();
        ids.push(c.id);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    h.rename(&ids[0], "renamed").await.unwrap();
    h.set_pinned(&ids[0], true).await.unwrap();
    h.set_folder(&ids[0], Some("work")).await.unwrap();
    h.set_tags(&ids[0], &["b".into(), " a ".into(), "b".into(), "".into()])
        .await
        .unwrap();
    let c = h.conversation(&ids[0]).await.unwrap();
    assert_eq!(
        (c.title.as_str(), c.pinned, c.folder.as_deref()),
        ("renamed", true, Some("work"))
    );
    assert_eq!(c.tags, vec!["a", "b"]);
    assert_eq!(c.settings, settings);
    let page1 = h.list_conversations(3, None).await.unwrap();
    assert_eq!(
        page1.iter().map(|c| c.title.as_str()).collect::<Vec<_>>(),
        vec!["c4", "c3", "c2"]
    );
    let page2 = h
        .list_conversations(3, Some(page1[2].updated_at))
        .await
        .unwrap();
    assert_eq!(page2.len(), 2);
    assert_eq!(h.rename("nope", "x").await.unwrap_err().code(), "not_found");
    assert_eq!(h.delete_all().await.unwrap(), 5);
    h.vacuum().await.unwrap();
    assert!(h.list_conversations(10, None).await.unwrap().is_empty());
}
