//! End-to-end: the Replay action on an answer in the real app. A SmolLM2 answer sampled at
//! temperature 0.8 with a seed replays "identical ✓"; after the saved text is changed (an
//! export edited and imported again), the replay shows a word diff. The context policy
//! chosen in the settings drawer is stored with the conversation.
//!
//! Run like e2e_app.rs: `CONCLAVE_E2E=1 cargo test -p conclave-tests --test e2e_replay`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
mod harness;

use conclave_core::history::{ExportFormat, ExportScope, History};
use harness::{data_dir, App, Res};
use serde_json::json;

async fn replay_last(app: &App) -> Res<serde_json::Value> {
    app.click_last("replay-button").await?;
    app.wait_js(
        "const r = document.querySelector('[data-testid=\"replay-result\"], [data-testid=\"replay-error\"]'); \
         return r ? {identical: r.dataset.identical ?? null, text: r.innerText} : null;",
        180,
        "the replay to finish",
    )
    .await
}

#[tokio::test]
async fn replay_says_identical_then_shows_a_word_diff() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "replay").await?;
    app.load_smollm2().await?;
    app.open_settings().await?;
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-max-tokens", "32").await?;
    app.set_value("setting-temperature", "0.8").await?;
    app.set_value("setting-seed", "77").await?;
    // The conversation's context policy is set here too, and stored with it (checked below).
    app.set_value("setting-context-overflow", "truncate_middle")
        .await?;
    app.js(
        "document.querySelector('[data-testid=\"setting-context-overflow\"]').scrollIntoView()",
        vec![],
    )
    .await?;
    app.shot("settings-context-overflow").await?;
    app.close_settings().await?;
    app.send("Write one sentence about mountains.").await?;
    assert_eq!(app.wait_answer_done(1, 120).await?, "complete");
    let result = replay_last(&app).await?;
    assert_eq!(result["identical"], json!("true"), "{result}");
    assert!(
        result["text"].as_str().unwrap().contains("identical ✓"),
        "{result}"
    );
    app.shot("replay-identical").await?;
    app.close().await?;

    // Change the saved answer's first word behind the app's back.
    let db = data.path().join("history.sqlite3");
    let history = History::open(&db).await?;
    let conv = history.list_conversations(10, None).await?.remove(0).id;
    assert_eq!(
        history.conversation(&conv).await?.settings.context_overflow,
        conclave_core::ContextOverflow::TruncateMiddle
    );
    let tree = history.get_conversation(&conv).await?;
    let answer = tree
        .messages
        .iter()
        .find(|m| m.role == conclave_core::Role::Assistant)
        .unwrap()
        .content
        .clone();
    let first = answer.split_whitespace().next().unwrap().to_owned();
    let export = history
        .export(&ExportScope::Conversation(conv.clone()), ExportFormat::Json)
        .await?;
    let edited = export.replacen(
        &serde_json::to_string(&answer)?,
        &serde_json::to_string(&answer.replacen(&first, "Zebras", 1))?,
        1,
    );
    assert_ne!(edited, export);
    history.delete_conversation(&conv).await?;
    history.import_json(&edited).await?;
    history.close().await;

    let app = App::start(&setup, data.path(), "replay-diff").await?;
    app.load_smollm2().await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"conversation-item\"]') !== null",
        20,
        "the saved conversation",
    )
    .await?;
    app.click("conversation-item").await?;
    app.wait_answer_done(1, 30).await?;
    let result = replay_last(&app).await?;
    assert_eq!(result["identical"], json!("false"), "{result}");
    let marks = app
        .js(
            "return [...document.querySelectorAll('[data-testid=\"replay-diff\"] span')] \
             .map(s => [s.className.split(' ').find(c => c === 'insert' || c === 'delete' || c === 'equal'), s.textContent]);",
            vec![],
        )
        .await?;
    let marks: Vec<(String, String)> = serde_json::from_value(marks)?;
    assert!(
        marks.contains(&("delete".into(), "Zebras".into())),
        "{marks:?}"
    );
    assert!(
        marks
            .iter()
            .any(|(k, t)| k == "insert" && t.contains(&first)),
        "{marks:?}"
    );
    app.shot("replay-diff").await?;
    app.close().await
}
