//! The chat templates the app offers are exactly the core's, and each one answers: the real
//! app picks every template in its settings drawer and gets an answer from SmolLM2, and the
//! history records that the answer was rendered with the picked template.
//!
//! Run like e2e_app.rs: `CONCLAVE_E2E=1 scripts/with-xvfb cargo test -p conclave-tests
//! --test e2e_templates -- --test-threads=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
mod harness;

use conclave_core::events::Role;
use conclave_core::history::History;
use conclave_core::template::BUILTIN_NAMES;
use harness::{data_dir, App, Res};
use serde_json::json;

#[tokio::test]
async fn every_offered_template_is_the_cores_and_answers() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "templates").await?;
    app.load_smollm2().await?;
    app.open_settings().await?;
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-max-tokens", "12").await?;
    app.set_value("setting-temperature", "0").await?;

    let offered = app
        .js(
            "return [...document.querySelectorAll('[data-testid=\"setting-template\"] option')] \
               .map(o => o.value).filter(v => v !== '')",
            vec![],
        )
        .await?;
    let offered: Vec<String> = serde_json::from_value(offered)?;
    assert_eq!(
        offered, BUILTIN_NAMES,
        "the app must offer exactly the core's templates"
    );

    for (i, name) in offered.iter().enumerate() {
        app.set_value("setting-template", name).await?;
        let picked = app
            .js(
                "return document.querySelector('[data-testid=\"setting-template\"]').value",
                vec![],
            )
            .await?;
        assert_eq!(picked, json!(name));
        app.send("Name one colour.").await?;
        let status = app.wait_answer_done(i + 1, 120).await?;
        assert_eq!(
            status,
            "complete",
            "template {name}: {:?}",
            app.visible_errors().await?
        );
    }
    app.shot("templates").await?;
    app.close().await?;

    // What really rendered each answer: the history keeps the template and the text.
    let history = History::open(data.path().join("history.sqlite3")).await?;
    let convs = history.list_conversations(10, None).await?;
    assert_eq!(convs.len(), 1);
    let tree = history.get_conversation(&convs[0].id).await?;
    let answers: Vec<_> = tree
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .collect();
    assert_eq!(answers.len(), BUILTIN_NAMES.len());
    for (m, name) in answers.iter().zip(BUILTIN_NAMES) {
        assert_eq!(m.template.as_deref(), Some(*name), "answer {}", m.id);
        let text = format!("{}{}", m.content, m.reasoning.clone().unwrap_or_default());
        assert!(
            !text.trim().is_empty(),
            "template {name} gave an empty answer"
        );
        assert!(m.usage.as_ref().is_some_and(|u| u.completion_tokens > 0));
    }
    history.close().await;
    Ok(())
}

/// DRY and XTC from the settings drawer (whose fields come from the core's table) change
/// the app's answer, and each answer is stored with them.
#[tokio::test]
async fn dry_and_xtc_from_the_settings_drawer_change_the_answer() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "dry-xtc").await?;
    app.load_smollm2().await?;
    app.open_settings().await?;
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-max-tokens", "40").await?;
    app.set_value("setting-temperature", "0").await?;
    app.set_value("setting-seed", "1").await?;

    let repeat = "Repeat after me: la la la la la la la la la la la la";
    let story = "Tell me a short story about a cat.";
    let mut texts = Vec::new();
    for (n, (prompt, field, value)) in [
        (repeat, None, ""),
        (repeat, Some("setting-dry_multiplier"), "0.8"),
        (story, Some("setting-dry_multiplier"), "0"),
        (story, Some("setting-xtc_probability"), "1"),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(f) = field {
            app.set_value(f, value).await?;
        }
        app.send(prompt).await?;
        assert_eq!(app.wait_answer_done(n + 1, 120).await?, "complete");
        texts.push(app.last_answer().await?);
    }
    app.shot("dry-xtc").await?;
    app.close().await?;

    // Without a system prompt SmolLM2 does not loop on "la" here, but it repeats its own
    // sentences, which is what DRY penalises.
    assert_ne!(texts[1], texts[0], "DRY 0.8 changed nothing");
    assert_ne!(texts[3], texts[2], "XTC changed nothing");

    let history = History::open(data.path().join("history.sqlite3")).await?;
    let convs = history.list_conversations(10, None).await?;
    let tree = history.get_conversation(&convs[0].id).await?;
    let stored: Vec<(f32, f32)> = tree
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .filter_map(|m| m.sampling.as_ref())
        .map(|s| (s.dry_multiplier, s.xtc_probability))
        .collect();
    assert_eq!(stored, vec![(0.0, 0.0), (0.8, 0.0), (0.0, 0.0), (0.0, 1.0)]);
    history.close().await;
    Ok(())
}

/// Speculative decoding from the settings drawer: `lookup` drafts on a copying prompt, the
/// cost line says what it bought, `off` drafts nothing, and the history keeps the counts
/// of each answer and the conversation's mode.
#[tokio::test]
async fn speculative_mode_from_the_settings_drawer_is_used_shown_and_stored() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "speculative").await?;
    app.load_smollm2().await?;
    app.open_settings().await?;
    let offered = app
        .js(
            "return [...document.querySelectorAll('[data-testid=\"setting-speculative\"] option')] \
               .map(o => o.value)",
            vec![],
        )
        .await?;
    let offered: Vec<String> = serde_json::from_value(offered)?;
    let core: Vec<String> = conclave_core::SpeculativeMode::ALL
        .iter()
        .map(|m| m.as_str().to_owned())
        .collect();
    assert_eq!(offered, core, "the app must offer exactly the core's modes");
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-max-tokens", "60").await?;
    app.set_value("setting-temperature", "0").await?;
    app.set_value("setting-speculative", "lookup").await?;

    let copy = "Copy this text exactly, with no changes: The lighthouse keeper climbed the \
                stairs every evening at six. He lit the lamp, wrote the weather in his log, \
                and watched the ships pass the rocks until morning.";
    app.send(copy).await?;
    assert_eq!(app.wait_answer_done(1, 120).await?, "complete");
    let cost = app.text_of("cost-line").await?;
    assert!(
        cost.contains("speculative:") && cost.contains("drafted accepted"),
        "no speculative figures in the cost line: {cost}"
    );
    app.set_value("setting-speculative", "off").await?;
    app.send(copy).await?;
    assert_eq!(app.wait_answer_done(2, 120).await?, "complete");
    let cost = app.text_of("cost-line").await?;
    // A draft model is picked from the library, as the model itself is.
    let drafts = app
        .js(
            "const s = document.querySelector('[data-testid=\"setting-draft-model\"]'); \
               s.scrollIntoView({block: 'center'}); \
               return [...s.options].map(o => o.textContent.trim())",
            vec![],
        )
        .await?;
    let drafts: Vec<String> = serde_json::from_value(drafts)?;
    assert!(
        drafts.first().is_some_and(|d| d == "None") && drafts.iter().any(|d| d.contains("SmolLM2")),
        "draft models offered: {drafts:?}"
    );
    app.shot("speculative").await?;
    app.close().await?;

    let history = History::open(data.path().join("history.sqlite3")).await?;
    let convs = history.list_conversations(10, None).await?;
    assert_eq!(convs.len(), 1);
    let tree = history.get_conversation(&convs[0].id).await?;
    let counts: Vec<(u32, u32)> = tree
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .filter_map(|m| m.metrics.as_ref())
        .map(|x| (x.drafted_tokens, x.accepted_tokens))
        .collect();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts[0].0 > 0 && counts[0].1 <= counts[0].0, "{counts:?}");
    assert_eq!(counts[1], (0, 0), "off drafted: {counts:?} ({cost})");
    assert_eq!(
        tree.conversation.settings.speculative,
        conclave_core::SpeculativeMode::Off,
        "the conversation keeps its last mode"
    );
    history.close().await;
    Ok(())
}
