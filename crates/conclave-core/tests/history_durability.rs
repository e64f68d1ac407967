//! Never lose a message: incremental saving, crash recovery (a real SIGKILL), full disk,
//! read-only file.
#![allow(clippy::unwrap_used)]

use std::io::BufRead;
use std::time::Duration;

use conclave_core::events::{Metrics, StopReason, ThinkMode, Usage};
use conclave_core::history::{
    AnswerMeta, ConversationSettings, History, HistoryOptions, MessageStatus, ModelInfo,
};
use conclave_core::{ErrorCode, SamplingParams};

const CHILD_ENV: &str = "CONCLAVE_HISTORY_WRITER_CHILD_DB";

fn meta() -> AnswerMeta {
    AnswerMeta {
        model: ModelInfo {
            file: "qwen3-0.6b-q8_0.gguf".into(),
            sha256: Some("ab".repeat(32)),
            architecture: Some("qwen3".into()),
            quantization: Some("Q8_0".into()),
        },
        template: Some("qwen3".into()),
        reasoning_format: Some("deepseek".into()),
        sampling: SamplingParams {
            seed: Some(7),
            stop: vec!["</s>".into()],
            ..SamplingParams::default()
        },
        seed: Some(7),
        compare: None,
    }
}

#[tokio::test]
async fn partial_answer_is_visible_mid_stream_and_finish_stores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let h = History::open(&path).await.unwrap();
    let conv = h
        .create_conversation("stream", ConversationSettings::default())
        .await
        .unwrap();
    let u = h.add_user_message(&conv.id, None, "count").await.unwrap();
    let mut w = h.begin_answer(&conv.id, &u.id, meta()).await.unwrap();
    w.push_reasoning("thinking about numbers").await.unwrap();
    for i in 0..20 {
        w.push_answer(&format!("{i} ")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // A second handle (another window, the CLI) sees what was flushed, still streaming.
    let other = History::open(&path).await.unwrap();
    let seen = other.message(w.id()).await.unwrap();
    assert_eq!(
        seen.status,
        MessageStatus::Streaming,
        "a live writer is not marked interrupted"
    );
    assert!(
        !seen.content.is_empty() && w.content().starts_with(&seen.content),
        "{:?}",
        seen.content
    );
    assert_eq!(seen.reasoning.as_deref(), Some("thinking about numbers"));

    let metrics = Metrics {
        ttft_ms: 120.5,
        gen_tps: 33.25,
        wall_ms: 900.0,
        threads: 4,
        peak_rss_bytes: 1 << 33,
        energy_method: "cpu-time".into(),
        seed: 7,
        template: "qwen3".into(),
        reasoning_format: "deepseek".into(),
        thinking: ThinkMode::On,
        budget_cut_at: Some(100),
        reasoning_cut_off: true,
        first_reasoning_ms: Some(80.25),
        first_answer_ms: Some(450.5),
        drafted_tokens: 530,
        accepted_tokens: 412,
        devices: "CPU: 11 layers, rpc 10.0.0.2:50052: 20 layers".into(),
        ..Metrics::default()
    };
    let usage = Usage {
        prompt_tokens: 10,
        cached_prompt_tokens: 2,
        completion_tokens: 30,
        reasoning_tokens: 5,
        answer_tokens: 25,
    };
    let done = w
        .finish(
            MessageStatus::Complete,
            &metrics,
            &usage,
            StopReason::MaxTokens,
        )
        .await
        .unwrap();
    assert_eq!(
        done.content,
        (0..20).map(|i| format!("{i} ")).collect::<String>()
    );
    assert_eq!(done.metrics.as_ref(), Some(&metrics));
    assert_eq!(done.usage.as_ref(), Some(&usage));
    assert_eq!(done.stop_reason, Some(StopReason::MaxTokens));
    assert_eq!(done.sampling.as_ref(), Some(&meta().sampling));
    assert_eq!(done.model.as_ref(), Some(&meta().model));
    assert!(
        w.push_answer("late").await.is_err(),
        "a finished writer refuses more text"
    );

    let mut w = h.begin_answer(&conv.id, &u.id, meta()).await.unwrap();
    w.push_answer("partial").await.unwrap();
    w.fail("worker crashed").await.unwrap();
    let failed = h.message(w.id()).await.unwrap();
    assert_eq!(
        (failed.status, failed.content.as_str()),
        (MessageStatus::Error, "partial")
    );
    assert_eq!(failed.error_message.as_deref(), Some("worker crashed"));
}

#[tokio::test]
async fn dropped_writer_keeps_its_text_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
    let conv = h
        .create_conversation("drop", ConversationSettings::default())
        .await
        .unwrap();
    let u = h.add_user_message(&conv.id, None, "q").await.unwrap();
    let mut w = h.begin_answer(&conv.id, &u.id, meta()).await.unwrap();
    w.push_answer("never flushed").await.unwrap();
    let id = w.id().to_string();
    drop(w);
    let mut m = h.message(&id).await.unwrap();
    for _ in 0..50 {
        if m.status != MessageStatus::Streaming {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = h.message(&id).await.unwrap();
    }
    assert_eq!(
        (m.status, m.content.as_str()),
        (MessageStatus::Interrupted, "never flushed")
    );
}

/// Child mode of this test binary: streams tokens forever, reporting each flush on stdout.
#[tokio::test]
async fn child_writer_mode() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let h = History::open(&db).await.unwrap();
    let conv = h
        .create_conversation("killed", ConversationSettings::default())
        .await
        .unwrap();
    let u = h.add_user_message(&conv.id, None, "go").await.unwrap();
    let mut w = h.begin_answer(&conv.id, &u.id, meta()).await.unwrap();
    println!("MESSAGE {}", w.id());
    for i in 0u64.. {
        if i % 3 == 0 {
            w.push_reasoning("r").await.unwrap();
        }
        w.push_answer(&format!("tok{i} ")).await.unwrap();
        if !w.has_unsaved() {
            println!("FLUSHED {}", w.content().len());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn sigkill_mid_stream_leaves_an_interrupted_answer_with_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer_mode",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut message_id = None;
    let mut flushed = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        // libtest prints "test child_writer_mode ... " on the same line first.
        if let Some((_, id)) = line.split_once("MESSAGE ") {
            message_id = Some(id.to_string());
        } else if let Some(n) = line.strip_prefix("FLUSHED ") {
            flushed.push(n.parse::<usize>().unwrap());
            if flushed.len() == 4 {
                child.kill().unwrap(); // SIGKILL on Unix: no destructor, no final flush
                break;
            }
        }
    }
    child.wait().unwrap();
    let message_id = message_id.expect("child never started");
    let last_flushed = *flushed.last().unwrap();

    let h = History::open(&path).await.unwrap();
    assert_eq!(h.integrity_check().await.unwrap(), "ok");
    let m = h.message(&message_id).await.unwrap();
    assert_eq!(m.status, MessageStatus::Interrupted);
    assert!(
        m.content.len() >= last_flushed,
        "{} < {last_flushed}",
        m.content.len()
    );
    assert!(m.content.starts_with("tok0 tok1 "));
    let tokens: Vec<&str> = m.content.split_whitespace().collect();
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(
            *t,
            format!("tok{i}"),
            "saved text is a clean prefix of the stream"
        );
    }
    assert!(m.reasoning.as_deref().is_some_and(|r| r.starts_with("rr")));
    // The interrupted answer can be continued from: it is on the current path.
    let tree = h.get_conversation(&m.conversation_id).await.unwrap();
    assert_eq!(tree.current_leaf_id(), Some(message_id.as_str()));
}

#[tokio::test]
async fn full_disk_is_a_clear_error_and_the_writer_keeps_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let (conv, user) = {
        let h = History::open(&path).await.unwrap();
        let c = h
            .create_conversation("full", ConversationSettings::default())
            .await
            .unwrap();
        let u = h
            .add_user_message(&c.id, None, "write a lot")
            .await
            .unwrap();
        h.close().await;
        (c.id, u.id)
    };
    let pages = std::fs::metadata(&path).unwrap().len() / 4096;
    let h = History::open_with(
        &path,
        HistoryOptions {
            max_page_count: Some(pages as u32 + 8),
            ..HistoryOptions::default()
        },
    )
    .await
    .unwrap();
    let mut w = h.begin_answer(&conv, &user, meta()).await.unwrap();
    let chunk = "lorem ipsum dolor sit amet ".repeat(4000);
    w.push_answer(&chunk).await.unwrap(); // buffered: within the flush interval
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = w.push_answer(&chunk).await.unwrap_err();
    assert_eq!(err.code(), "storage_full", "{err}");
    assert!(err.to_string().contains("full"));
    assert_eq!(w.content().len(), chunk.len() * 2, "nothing lost in memory");
    assert!(w.has_unsaved());
    // The conversation stays readable.
    let tree = h.get_conversation(&conv).await.unwrap();
    assert_eq!(tree.messages.len(), 2);
}

#[tokio::test]
async fn read_only_file_reads_but_refuses_writes_clearly() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let conv = {
        let h = History::open(&path).await.unwrap();
        let c = h
            .create_conversation("ro", ConversationSettings::default())
            .await
            .unwrap();
        h.add_user_message(&c.id, None, "kept").await.unwrap();
        h.close().await;
        c.id
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let h = History::open(&path).await.unwrap();
    assert!(h.is_read_only());
    assert_eq!(
        h.get_conversation(&conv).await.unwrap().messages[0].content,
        "kept"
    );
    let err = h.add_user_message(&conv, None, "new").await.unwrap_err();
    assert_eq!(err.code(), "storage_read_only", "{err}");
    let err = h
        .create_conversation("x", ConversationSettings::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "storage_read_only");
    // A read-only file that does not exist yet cannot be created.
    let err = History::open_with(
        dir.path().join("missing.sqlite3"),
        HistoryOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "storage_read_only");
}
