//! End-to-end test of the side-by-side screen in the real desktop app: the built
//! `conclave-app`, its real workers and the real SmolLM2 and Gemma 3 270M models, driven
//! through the window's DOM by WebDriver. Then the leaderboard shows the vote, and the
//! Models screen lists both models with a fit badge.
//!
//! Run: `cd ui && npm run build`, `cargo build -p conclave-app -p conclave-worker`, then
//! `CONCLAVE_E2E=1 scripts/with-xvfb cargo test -p conclave-tests --test e2e_compare`.
//! Without the app binary (or tauri-driver, WebKitWebDriver) the test says SKIPPED and
//! passes, unless CONCLAVE_E2E=1. Screenshots go to CONCLAVE_SHOTS_DIR (default
//! `<target>/e2e-shots`), named `compare-<nn>-<label>.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
mod harness;

use harness::{data_dir, App, Res};
use serde_json::{json, Value};

const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

async fn texts(app: &App, testid: &str) -> Res<Vec<String>> {
    let v = app
        .js(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText.trim())",
            vec![json!(harness::tid(testid))],
        )
        .await?;
    Ok(serde_json::from_value(v).unwrap_or_default())
}

#[tokio::test]
async fn compare_blind_vote_then_leaderboard_and_models() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let gemma = harness::checkout().join("models").join(GEMMA_FILE);
    anyhow::ensure!(gemma.is_file(), "{} missing (make models)", gemma.display());
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "compare").await?;

    // Short answers, no thinking: each column is a few seconds on two cores. The columns
    // start from the chat settings.
    app.open_settings().await?;
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-think-budget", "").await?;
    app.set_value("setting-max-tokens", "32").await?;
    app.set_value("setting-temperature", "0.7").await?;
    app.close_settings().await?;

    app.open_compare_with(&["smollm2", "gemma"]).await?;
    app.click("compare-blind").await?;
    let blind = app
        .js(
            "return document.querySelector('[data-testid=\"compare-blind\"]').checked",
            vec![],
        )
        .await?;
    assert_eq!(blind, json!(true), "blind mode is on");
    app.shot("setup").await?;

    app.set_value("compare-prompt", "Name three colours of the rainbow.")
        .await?;
    app.click("compare-send").await?;

    // Both columns stream: each shows answer text before the run is over.
    let streaming = app
        .wait_js(
            "const cols = [...document.querySelectorAll('[data-testid=\"compare-column\"]')]; \
             if (cols.length !== 2) return null; \
             const got = cols.map(c => { const a = c.querySelector('[data-testid=\"compare-answer\"].md'); \
               return a ? a.innerText.trim().length : 0; }); \
             return got.every(n => n > 0) ? cols.map(c => c.dataset.phase) : null;",
            180,
            "both columns to stream",
        )
        .await?;
    app.shot("streaming").await?;
    let names = texts(&app, "compare-name").await?;
    assert_eq!(names, ["Model A", "Model B"], "names hidden while blind");
    eprintln!("phases when both had text: {streaming}");

    app.wait_js(
        "return document.querySelector('[data-testid=\"compare-summary\"]') !== null \
           && document.querySelector('[data-testid=\"vote-a\"]') !== null",
        240,
        "the run to finish",
    )
    .await?;
    let errors = app.visible_errors().await?;
    assert!(errors.is_empty(), "errors on screen: {errors:?}");
    // Still hidden after the run, until the vote; the figures are the core's.
    assert_eq!(texts(&app, "compare-name").await?, ["Model A", "Model B"]);
    let body = app.text_of("compare-summary").await?;
    assert!(body.contains("Fastest") && body.contains("Model"), "{body}");
    assert!(!body.to_lowercase().contains("smollm2") && !body.to_lowercase().contains("gemma"));
    let figures = texts(&app, "compare-figures").await?;
    assert_eq!(figures.len(), 2);
    for f in &figures {
        assert!(f.contains("TTFT") && f.contains("t/s"), "figures: {f}");
    }
    let answers = texts(&app, "compare-answer").await?;
    assert!(
        answers.iter().all(|a| !a.is_empty()),
        "answers: {answers:?}"
    );
    app.shot("blind-done").await?;

    // The vote reveals who was who.
    app.click("vote-a").await?;
    let revealed = app
        .wait_js(
            "const n = [...document.querySelectorAll('[data-testid=\"compare-name\"]')].map(e => e.innerText.trim()); \
             return n.every(x => /\\.gguf$/.test(x)) ? n : null;",
            15,
            "the names to be revealed",
        )
        .await?;
    let revealed: Vec<String> = serde_json::from_value(revealed)?;
    let mut sorted = revealed.clone();
    sorted.sort_by_key(|s| s.to_lowercase());
    assert_eq!(
        sorted,
        [GEMMA_FILE.to_owned(), harness::SMOLLM2_FILE.to_owned()],
        "both models revealed"
    );
    let winner = revealed[0].clone();
    assert!(app.text_of("vote-result").await?.contains("A is better"));
    app.shot("revealed").await?;

    // The word diff of the two answers, from the core.
    app.click("diff-toggle").await?;
    app.wait_js(
        "return document.querySelectorAll('[data-testid=\"diff-answer\"]').length === 2",
        15,
        "the word diff",
    )
    .await?;
    app.shot("diff").await?;

    // The leaderboard counts the vote: column A's model won its one game.
    app.click("nav-leaderboard").await?;
    let rows = app
        .wait_js(
            "const r = [...document.querySelectorAll('[data-testid=\"leaderboard-row\"]')].map(e => e.innerText); \
             return r.length === 2 ? r : null;",
            15,
            "two leaderboard rows",
        )
        .await?;
    let rows: Vec<String> = serde_json::from_value(rows)?;
    assert!(
        rows[0].contains(&winner),
        "the winner {winner} ranks first: {rows:?}"
    );
    assert!(
        rows[0].contains("1 / 0 / 0"),
        "one win, no ties or losses: {rows:?}"
    );
    assert!(rows[1].contains("0 / 0 / 1"), "one loss: {rows:?}");
    app.shot("leaderboard").await?;

    // The Models screen lists both, each with a fit estimate.
    app.click("nav-models").await?;
    let fits = app
        .wait_js(
            "const b = [...document.querySelectorAll('[data-testid=\"fit-badge\"]')].map(e => e.dataset.fit); \
             return b.length >= 2 && b.every(f => f !== 'unknown') ? b : null;",
            30,
            "fit badges",
        )
        .await?;
    let fits: Vec<String> = serde_json::from_value(fits)?;
    assert!(
        fits.iter()
            .all(|f| ["fits", "tight", "wont_fit"].contains(&f.as_str())),
        "{fits:?}"
    );
    let rows: Value = app
        .js(
            "return [...document.querySelectorAll('[data-testid=\"models-row\"]')].map(e => e.innerText)",
            vec![],
        )
        .await?;
    let rows = rows.to_string().to_lowercase();
    assert!(rows.contains("smollm2") && rows.contains("gemma"), "{rows}");
    // A table row is not "interactable" to WebKitWebDriver: click it from the page.
    app.js(
        "document.querySelector('[data-testid=\"models-row\"] td').click(); return true",
        vec![],
    )
    .await?;
    app.wait_js(
        "const d = document.querySelector('[data-testid=\"model-details\"]'); return d && /Memory at/.test(d.innerText);",
        15,
        "the model details",
    )
    .await?;
    app.shot("models").await?;

    app.close().await?;
    Ok(())
}

/// "Does a draft model pay on this model?": the same model twice, the second column with
/// SmolLM2 drafting for itself, set in the column's own settings. Both answer the same
/// text at temperature 0, and only the second column's figures say what was drafted.
#[tokio::test]
async fn a_column_with_its_own_draft_model_shows_what_it_bought() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "compare-draft").await?;
    app.open_settings().await?;
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-max-tokens", "40").await?;
    app.set_value("setting-temperature", "0").await?;
    app.set_value("setting-speculative", "off").await?;
    app.close_settings().await?;

    app.open_compare_with(&["smollm2", "smollm2"]).await?;
    app.js(
        "document.querySelectorAll('[data-testid=\"column-settings-toggle\"]')[1].click(); return true",
        vec![],
    )
    .await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"column-draft-model\"]') !== null",
        10,
        "the column's settings",
    )
    .await?;
    app.set_value("column-speculative", "draft").await?;
    // The draft model is picked from the library, as a user would.
    let picked = app
        .js(
            "const s = document.querySelector('[data-testid=\"column-draft-model\"]'); \
             const o = [...s.options].find(o => /smollm2/i.test(o.textContent) && o.value); \
             if (!o) return null; s.value = o.value; \
             s.dispatchEvent(new Event('change', {bubbles: true})); return o.value;",
            vec![],
        )
        .await?;
    let picked = picked.as_str().unwrap_or_default().to_owned();
    assert!(
        picked.ends_with(harness::SMOLLM2_FILE),
        "SmolLM2 offered as a draft model: {picked:?}"
    );
    app.shot("column-settings").await?;
    app.js(
        "document.querySelector('[data-testid=\"column-settings\"] button').click(); return true",
        vec![],
    )
    .await?;

    app.set_value("compare-prompt", "List the days of the week.")
        .await?;
    app.click("compare-send").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"compare-summary\"]') !== null",
        240,
        "the run to finish",
    )
    .await?;
    let errors = app.visible_errors().await?;
    assert!(errors.is_empty(), "errors on screen: {errors:?}");
    let figures = texts(&app, "compare-figures").await?;
    assert_eq!(figures.len(), 2, "{figures:?}");
    assert!(!figures[0].contains("speculative"), "{figures:?}");
    assert!(
        figures[1].contains("speculative:") && figures[1].contains("drafted accepted"),
        "{figures:?}"
    );
    let answers = texts(&app, "compare-answer").await?;
    assert!(!answers[0].is_empty(), "{answers:?}");
    assert_eq!(answers[0], answers[1], "same text at temperature 0");
    let names = texts(&app, "compare-name").await?;
    assert!(
        names[1].contains("draft") && !names[0].contains("draft"),
        "the labels say which column drafts: {names:?}"
    );
    app.shot("draft-column-done").await?;
    app.close().await?;
    Ok(())
}
