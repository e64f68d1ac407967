//! Export/import: JSON round-trips exactly (ids, branches, metrics, runs); a bad file
//! changes nothing; Markdown is readable.
#![allow(clippy::unwrap_used)]

use conclave_core::events::{Metrics, StopReason, ThinkMode, Usage};
use conclave_core::history::{
    AnswerMeta, CompareSlot, ConversationSettings, ExportFormat, ExportScope, History,
    MessageStatus, ModelInfo, Vote,
};
use conclave_core::{ErrorCode, SamplingParams};

async fn fill(h: &History) -> String {
    let settings = ConversationSettings {
        system_prompt: Some("be kind".into()),
        think_mode: ThinkMode::On,
        speculative: conclave_core::SpeculativeMode::Draft,
        draft_model: Some("/models/small.gguf".into()),
        ..Default::default()
    };
    let c = h.create_conversation("Export me", settings).await.unwrap();
    h.set_tags(&c.id, &["x".into(), "y".into()]).await.unwrap();
    h.set_pinned(&c.id, true).await.unwrap();
    let u = h
        .add_user_message(&c.id, None, "Why is the sky blue?")
        .await
        .unwrap();
    let meta = AnswerMeta {
        model: ModelInfo {
            file: "q.gguf".into(),
            sha256: Some("00ff".into()),
            architecture: Some("qwen3".into()),
            quantization: Some("Q8_0".into()),
        },
        template: Some("qwen3".into()),
        reasoning_format: Some("deepseek".into()),
        sampling: SamplingParams {
            temperature: 0.7,
            seed: None,
            stop: vec!["END".into()],
            ..Default::default()
        },
        seed: Some(99),
        compare: None,
    };
    let metrics = Metrics {
        ttft_ms: 12.5,
        prompt_tps: 250.0,
        gen_tps: 20.25,
        wall_ms: 1500.0,
        energy_wh: 0.125,
        energy_method: "rapl".into(),
        seed: 99,
        template: "qwen3".into(),
        reasoning_format: "deepseek".into(),
        thinking: ThinkMode::On,
        ..Default::default()
    };
    let usage = Usage {
        prompt_tokens: 5,
        completion_tokens: 9,
        reasoning_tokens: 4,
        answer_tokens: 5,
        cached_prompt_tokens: 0,
    };
    let mut w = h.begin_answer(&c.id, &u.id, meta.clone()).await.unwrap();
    w.push_reasoning("Rayleigh scattering, shorter wavelengths.")
        .await
        .unwrap();
    w.push_answer("Because of **Rayleigh** scattering.")
        .await
        .unwrap();
    w.finish(MessageStatus::Complete, &metrics, &usage, StopReason::Eos)
        .await
        .unwrap();
    let mut w = h.begin_answer(&c.id, &u.id, meta.clone()).await.unwrap();
    w.push_answer("cut short").await.unwrap();
    w.fail("oops").await.unwrap();
    let run = h.create_compare_run(&u.id, false, Some("t")).await.unwrap();
    for i in 0..2 {
        let m = AnswerMeta {
            compare: Some(CompareSlot {
                run_id: run.id.clone(),
                column_index: i,
            }),
            ..meta.clone()
        };
        let mut w = h.begin_answer(&c.id, &u.id, m).await.unwrap();
        w.push_answer(&format!("column {i}")).await.unwrap();
        w.finish(MessageStatus::Complete, &metrics, &usage, StopReason::Eos)
            .await
            .unwrap();
    }
    h.set_vote(&run.id, Some(Vote::Tie)).await.unwrap();
    c.id
}

#[tokio::test]
async fn json_round_trips_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let a = History::open(dir.path().join("a.sqlite3")).await.unwrap();
    let id = fill(&a).await;
    let other = a
        .create_conversation("second", ConversationSettings::default())
        .await
        .unwrap();
    a.add_user_message(&other.id, None, "hi").await.unwrap();
    let json = a
        .export(&ExportScope::All, ExportFormat::Json)
        .await
        .unwrap();
    assert!(json.contains("\"format\": \"conclave-history\"") && json.contains("\"version\": 1"));

    let b = History::open(dir.path().join("b.sqlite3")).await.unwrap();
    let report = b.import_json(&json).await.unwrap();
    assert_eq!(report.conversations, 2);
    assert_eq!(report.messages, 6);
    for conv in [&id, &other.id] {
        assert_eq!(
            a.get_conversation(conv).await.unwrap(),
            b.get_conversation(conv).await.unwrap()
        );
    }
    let single = a
        .export(&ExportScope::Conversation(id.clone()), ExportFormat::Json)
        .await
        .unwrap();
    let again = b.import_json(&single).await.unwrap();
    assert_eq!(
        (again.conversations, again.skipped_existing.clone()),
        (0, vec![id.clone()])
    );
    // Re-exporting the import gives the same conversations.
    let json_b = b
        .export(&ExportScope::All, ExportFormat::Json)
        .await
        .unwrap();
    let strip = |s: &str| {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        v["exported_at"] = 0.into();
        v
    };
    assert_eq!(strip(&json), strip(&json_b));
    // Search works on imported text.
    assert_eq!(
        b.search(&conclave_core::history::SearchQuery::new("Rayleigh"))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_bad_import_changes_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let a = History::open(dir.path().join("a.sqlite3")).await.unwrap();
    let id = fill(&a).await;
    let good = a
        .export(&ExportScope::Conversation(id.clone()), ExportFormat::Json)
        .await
        .unwrap();
    let b = History::open(dir.path().join("b.sqlite3")).await.unwrap();
    let keep = b
        .create_conversation("already here", ConversationSettings::default())
        .await
        .unwrap();

    let mut doc: serde_json::Value = serde_json::from_str(&good).unwrap();
    let mut cases: Vec<(String, &str)> = vec![
        ("not json".into(), "not valid JSON"),
        (
            "{\"format\":\"other\",\"version\":1}".into(),
            "not a Conclave history export",
        ),
        (
            good.replace("\"version\": 1", "\"version\": 9"),
            "version 9",
        ),
    ];
    // A second, valid conversation first, then one with a dangling parent: all or nothing.
    let mut second = doc["conversations"][0].clone();
    second["conversation"]["id"] = "fresh".into();
    for m in second["messages"].as_array_mut().unwrap() {
        m["conversation_id"] = "fresh".into();
        m["id"] = format!("fresh-{}", m["id"].as_str().unwrap()).into();
        if let Some(p) = m["parent_id"].as_str() {
            m["parent_id"] = format!("fresh-{p}").into();
        }
        m["compare_run_id"] = serde_json::Value::Null;
    }
    second["conversation"]["current_leaf_id"] = serde_json::Value::Null;
    second["compare_runs"] = serde_json::json!([]);
    let mut broken = second.clone();
    broken["conversation"]["id"] = "broken".into();
    for m in broken["messages"].as_array_mut().unwrap() {
        m["conversation_id"] = "broken".into();
        m["id"] = format!("b-{}", m["id"].as_str().unwrap()).into();
        m["parent_id"] = "nowhere".into();
    }
    doc["conversations"] = serde_json::json!([second, broken]);
    cases.push((doc.to_string(), "which is not in the file"));
    let mut bad_role: serde_json::Value = serde_json::from_str(&good).unwrap();
    bad_role["conversations"][0]["conversation"]["id"] = "other".into();
    bad_role["conversations"][0]["messages"][0]["role"] = "wizard".into();
    cases.push((bad_role.to_string(), "invalid import file"));

    for (text, expect) in cases {
        let err = b.import_json(&text).await.unwrap_err();
        assert_eq!(err.code(), "invalid_import", "{err}");
        assert!(err.to_string().contains(expect), "{err} / {expect}");
        let list = b.list_conversations(10, None).await.unwrap();
        assert_eq!(list.len(), 1, "nothing imported from a bad file");
        assert_eq!(list[0].id, keep.id);
    }
}

#[tokio::test]
async fn markdown_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let a = History::open(dir.path().join("a.sqlite3")).await.unwrap();
    let id = fill(&a).await;
    // Show the first (complete) answer.
    let tree = a.get_conversation(&id).await.unwrap();
    let first_answer = tree
        .messages
        .iter()
        .find(|m| m.reasoning.is_some())
        .unwrap()
        .id
        .clone();
    a.set_current_leaf(&id, &first_answer).await.unwrap();
    let md = a
        .export(&ExportScope::Conversation(id), ExportFormat::Markdown)
        .await
        .unwrap();
    assert!(md.starts_with("# Export me\n"), "{md}");
    assert!(md.contains("<details><summary>Thinking</summary>\n\nRayleigh scattering, shorter wavelengths.\n\n</details>"), "{md}");
    assert!(md.contains("Because of **Rayleigh** scattering."));
    assert!(md.contains("model q.gguf (qwen3, Q8_0)"));
    assert!(md.contains("temperature 0.7"));
    assert!(md.contains("seed 99"));
    assert!(md.contains("> be kind"));
    assert!(md.contains("Other branches: 3 message(s)"));
}

/// The app's Save and Import go through files: the report says what was really written
/// and read, a second import skips what is already there, and a path that cannot be
/// written is an error naming the file (no "Saved" for nothing).
#[tokio::test]
async fn file_export_and_import_report_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let a = History::open(dir.path().join("a.sqlite3")).await.unwrap();
    let id = fill(&a).await;
    let path = dir.path().join("all.json");
    let rep = a
        .export_to_file(&ExportScope::All, ExportFormat::Json, &path)
        .await
        .unwrap();
    assert_eq!(rep.conversations, 1);
    assert_eq!(rep.bytes, std::fs::metadata(&path).unwrap().len());
    assert!(rep.bytes > 0);
    assert!(!dir.path().join("all.json.part").exists());

    let b = History::open(dir.path().join("b.sqlite3")).await.unwrap();
    let first = b.import_file(&path).await.unwrap();
    assert_eq!(first.conversations, 1);
    assert!(first.skipped_existing.is_empty());
    let again = b.import_file(&path).await.unwrap();
    assert_eq!(again.conversations, 0);
    assert_eq!(again.skipped_existing, vec![id.clone()]);

    let bad = dir.path().join("no-such-dir").join("x.md");
    let err = a
        .export_to_file(&ExportScope::Conversation(id), ExportFormat::Markdown, &bad)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "file");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    let err = b
        .import_file(&dir.path().join("missing.json"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "file");
}
