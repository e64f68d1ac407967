//! End-to-end tests of the real desktop app: the built `conclave-app` binary, its real
//! worker and the real SmolLM2 model, driven through the window's DOM by WebDriver.
//!
//! Run: `cd ui && npm ci && npm run build`, `cargo build -p conclave-app -p conclave-worker`,
//! `cargo install tauri-driver --version ^2 --locked`, then
//! `CONCLAVE_E2E=1 cargo test -p conclave-tests --test e2e_app -- --test-threads=1`.
//! Without the app binary (or tauri-driver, WebKitWebDriver) each test says SKIPPED and
//! passes, unless CONCLAVE_E2E=1. Screenshots go to CONCLAVE_SHOTS_DIR (default
//! `<target>/e2e-shots`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
mod harness;

use std::time::Duration;

use conclave_core::events::Role;
use conclave_core::history::{ConversationSettings, History};
use harness::{data_dir, App, Res};
use serde_json::json;

/// Seeds the history with one conversation, a question and a stored answer: what a model
/// cannot be made to say reliably, the history can.
async fn seed_answer(data: &std::path::Path, title: &str, question: &str, answer: &str) -> Res {
    let history = History::open(data.join("history.sqlite3")).await?;
    let conv = history
        .create_conversation(title, ConversationSettings::default())
        .await?;
    let user = history.add_user_message(&conv.id, None, question).await?;
    history
        .add_message(&conv.id, Some(&user.id), Role::Assistant, answer)
        .await?;
    history.close().await;
    Ok(())
}

/// Opens the seeded conversation from the sidebar once it is listed.
async fn open_seeded(app: &App, title: &str) -> Res {
    app.wait_js_args(
        "return [...document.querySelectorAll('[data-testid=\"conversation-item\"]')].some(e => e.textContent.includes(arguments[0]))",
        vec![json!(title)],
        20,
        "the seeded conversation",
    )
    .await?;
    app.click("conversation-item").await
}

/// Small answers keep each run to a few seconds on two cores.
async fn base_settings(app: &App, max_tokens: u32) -> Res {
    app.open_settings().await?;
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-think-budget", "").await?;
    app.set_value("setting-max-tokens", &max_tokens.to_string())
        .await?;
    app.set_value("setting-seed", "").await?;
    app.set_value("setting-temperature", "0.7").await?;
    Ok(())
}

/// The last answer's prompt: its tokens and how many of them came from the cache, as its
/// cost line's tooltip says.
async fn last_prompt_reuse(app: &App) -> Res<(u64, u64)> {
    let v = app
        .js(
            "const lines = document.querySelectorAll('[data-testid=\"cost-line\"]'); \
             const line = lines[lines.length - 1]; if (!line) return null; \
             for (const el of line.querySelectorAll('[title]')) { \
               const m = /Prompt: ([\\d,]+) \\(([\\d,]+) reused from cache\\)/.exec(el.title); \
               if (m) return [m[1], m[2]].map((x) => Number(x.replaceAll(',', ''))); } \
             return null;",
            vec![],
        )
        .await?;
    let n = |i: usize| v[i].as_u64();
    match (n(0), n(1)) {
        (Some(prompt), Some(cached)) => Ok((prompt, cached)),
        _ => anyhow::bail!("no prompt figures in the last cost line: {v}"),
    }
}

/// While the user pauses before pressing Enter, the app reads the typed message into the
/// model's cache (`warm_prompt`): the send then decodes only the end-of-turn markup, where
/// a message sent at once decodes all of itself. With nothing typed, once an answer has
/// ended, the next turn's header is read, so that a paste-and-Enter decodes only itself.
#[tokio::test]
async fn a_message_is_read_ahead_while_the_user_pauses() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "read-ahead").await?;
    app.load_smollm2().await?;
    base_settings(&app, 24).await?;
    // The reference is sent with reading ahead switched off in the settings.
    app.click("setting-read-ahead").await?;
    app.close_settings().await?;

    app.send("What is a lighthouse? Answer in one sentence.")
        .await?;
    assert_eq!(app.wait_answer_done(1, 120).await?, "complete");

    // Sent at once, as a paste-and-Enter: the conversation is reused, the message is not.
    const PASTED: &str = "Who looks after it, and how often?";
    app.send(PASTED).await?;
    assert_eq!(app.wait_answer_done(2, 120).await?, "complete");
    let (prompt, cached) = last_prompt_reuse(&app).await?;
    let at_once = prompt - cached;
    app.open_settings().await?;
    app.click("setting-read-ahead").await?;
    app.close_settings().await?;

    // Typed, then a pause before Enter.
    app.type_prompt("And how far away can its light be seen at night?")
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.click("send").await?;
    assert_eq!(app.wait_answer_done(3, 120).await?, "complete");
    let (prompt, cached) = last_prompt_reuse(&app).await?;
    let after_pause = prompt - cached;

    // The user reads the answer, then pastes the same message as before and sends it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.send(PASTED).await?;
    assert_eq!(app.wait_answer_done(4, 120).await?, "complete");
    let (prompt, cached) = last_prompt_reuse(&app).await?;
    let pasted_after_reading = prompt - cached;
    println!(
        "prompt tokens decoded at the send: {at_once} sent at once, {after_pause} after a pause, \
         {pasted_after_reading} pasted after reading the answer"
    );
    // ChatML's end of turn and the assistant header: five tokens, and one of the message's
    // own should its last token change.
    assert!(
        after_pause <= 8 && after_pause < at_once,
        "decoded {after_pause} after a pause, {at_once} sent at once"
    );
    // The same text, but the new turn's header (`\n<|im_start|>user\n`, four tokens) was
    // read while the answer was on screen.
    assert!(
        pasted_after_reading + 3 <= at_once,
        "decoded {pasted_after_reading} pasted after reading, {at_once} sent at once"
    );
    app.shot("read-ahead").await?;
    app.close().await
}

#[tokio::test]
async fn chat_streams_regenerates_branches_and_stops() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "chat").await?;
    app.shot("empty").await?;

    app.load_smollm2().await?;
    base_settings(&app, 40).await?;
    app.close_settings().await?;

    // A question, a streamed answer, what it cost.
    app.send("What is the capital of France? Answer in one sentence.")
        .await?;
    assert_eq!(app.wait_answer_done(1, 120).await?, "complete");
    let first = app.last_answer().await?;
    assert!(!first.trim().is_empty(), "the answer is empty");
    let user = app.text_of("message-user").await?;
    assert!(
        user.contains("capital of France"),
        "user message shown: {user:?}"
    );
    let cost = app.text_of("cost-line").await?;
    assert!(!cost.trim().is_empty(), "no cost line under the answer");
    app.shot("answer").await?;

    // Regenerate: a second answer to the same question, shown as branch 2 of 2.
    app.click_last("regenerate").await?;
    app.wait_js(
        "const p = document.querySelector('[data-testid=\"message-assistant\"] [data-testid=\"branch-pos\"]'); \
         const busy = document.querySelector('[data-testid=\"stop\"]') !== null; \
         return !busy && p && p.textContent.trim() === '2/2';",
        120,
        "branch 2/2 after regenerating",
    )
    .await?;
    assert_eq!(app.wait_answer_done(1, 60).await?, "complete");
    let second = app.last_answer().await?;
    assert!(!second.trim().is_empty());
    app.shot("regenerated-2of2").await?;

    app.click_last("branch-prev").await?;
    app.wait_js(
        "const p = document.querySelector('[data-testid=\"message-assistant\"] [data-testid=\"branch-pos\"]'); \
         return p && p.textContent.trim() === '1/2';",
        10,
        "branch 1/2",
    )
    .await?;
    assert_eq!(
        app.last_answer().await?,
        first,
        "branch 1 shows the first answer"
    );
    app.click_last("branch-next").await?;
    app.wait_js(
        "const p = document.querySelector('[data-testid=\"message-assistant\"] [data-testid=\"branch-pos\"]'); \
         return p && p.textContent.trim() === '2/2';",
        10,
        "branch 2/2 again",
    )
    .await?;
    assert_eq!(
        app.last_answer().await?,
        second,
        "branch 2 shows the second answer"
    );

    // Stop mid-answer: text streamed so far stays, marked as stopped.
    app.click("new-chat").await?;
    app.open_settings().await?;
    app.set_value("setting-max-tokens", "1500").await?;
    app.close_settings().await?;
    app.send("Write a very long and detailed story about a dragon who learns to cook, with many chapters.")
        .await?;
    app.wait_js(
        "const a = document.querySelectorAll('[data-testid=\"message-assistant\"]'); const m = a[a.length - 1]; \
         const t = m && m.querySelector('.md[data-testid=\"answer\"]'); \
         return document.querySelector('[data-testid=\"stop\"]') !== null && t && t.innerText.trim().length > 20;",
        120,
        "answer text to appear while it is still streaming",
    )
    .await?;
    app.shot("streaming").await?;
    app.click("stop").await?;
    assert_eq!(app.wait_answer_done(1, 30).await?, "cancelled");
    let partial = app.last_answer().await?;
    assert!(
        partial.trim().len() > 20,
        "the partial answer is kept: {partial:?}"
    );
    let note = app
        .js("return document.querySelector('[data-testid=\"message-assistant\"] .note.stopped')?.innerText ?? ''", vec![])
        .await?;
    assert!(
        note.as_str().unwrap_or_default().contains("Stopped"),
        "no 'stopped' note: {note}"
    );
    app.shot("stopped").await?;
    // Offline: after loading a model and answering, nothing in the app's process tree is
    // connected to anything but this machine.
    let peers = harness::app_remote_peers(app.driver_pid())?;
    assert!(
        peers.is_empty(),
        "the app is connected off the machine: {peers:?}"
    );
    assert!(
        app.visible_errors().await?.is_empty(),
        "errors shown: {:?}",
        app.visible_errors().await?
    );
    app.close().await
}

#[tokio::test]
async fn thinking_block_streams_then_collapses() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "thinking").await?;
    app.load_smollm2().await?;
    base_settings(&app, 120).await?;
    // SmolLM2 does not think by itself: "on" makes the engine open <think>, and the budget
    // forces it closed after 64 tokens: several of the page's updates, which come every
    // 250 ms when the model has every core.
    app.set_value("setting-think", "on").await?;
    app.set_value("setting-think-budget", "64").await?;
    // A fixed seed: with some seeds the answer ends right after the forced end of the
    // thought, and greedy decoding ends the thought by itself before the budget.
    app.set_value("setting-seed", "11").await?;
    app.close_settings().await?;

    // The check below sees endless CSS animations in this WebKit: a probe one is found.
    let probe = app
        .js(
            "const st = document.createElement('style'); st.textContent = '@keyframes probe { to { opacity: .5 } }'; \
             document.head.appendChild(st); const d = document.createElement('div'); \
             d.style.animation = 'probe 1s infinite'; document.body.appendChild(d); \
             const seen = document.getAnimations().some(a => a.animationName === 'probe' && a.effect?.getTiming().iterations === Infinity); \
             d.remove(); st.remove(); return seen;",
            vec![],
        )
        .await?;
    assert_eq!(
        probe,
        json!(true),
        "getAnimations sees an endless animation"
    );
    // Every state the block passes through, recorded as it happens (polling could miss a
    // short thought), and the endless animations running meanwhile: without a GPU each
    // is a repaint per display frame, taken from the cores the model decodes on.
    app.js(
        "window.__thinkStates = []; window.__endless = []; \
         new MutationObserver(() => { \
           for (const a of document.getAnimations()) { \
             if (a.playState === 'running' && a.effect?.getTiming().iterations === Infinity) \
               window.__endless.push(a.animationName ?? String(a.id)); } \
           const t = document.querySelector('[data-testid=\"thinking\"]'); \
           if (!t) return; const s = t.dataset.state; \
           const sum = t.querySelector('[data-testid=\"thinking-summary\"]')?.textContent ?? ''; \
           const last = window.__thinkStates[window.__thinkStates.length - 1]; \
           if (!last || last.state !== s) window.__thinkStates.push({state: s, summary: sum}); \
         }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});",
        vec![],
    )
    .await?;
    app.send("Why is the sky blue?").await?;
    assert_eq!(app.wait_answer_done(1, 120).await?, "complete");
    let states = app.js("return window.__thinkStates", vec![]).await?;
    let states: Vec<serde_json::Value> = serde_json::from_value(states).unwrap_or_default();
    let names: Vec<&str> = states.iter().filter_map(|s| s["state"].as_str()).collect();
    let endless = app.js("return window.__endless", vec![]).await?;
    assert_eq!(
        endless,
        json!([]),
        "no endless CSS animation runs while the answer streams"
    );
    assert_eq!(
        names.first(),
        Some(&"streaming"),
        "the block opens while thinking: {states:?}"
    );
    assert!(
        states[0]["summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Thinking"),
        "live summary: {states:?}"
    );
    let final_state = app
        .js(
            "return document.querySelector('[data-testid=\"thinking\"]')?.dataset.state ?? null",
            vec![],
        )
        .await?;
    assert_eq!(
        final_state,
        json!("collapsed"),
        "the block folds away: {states:?}"
    );
    let summary = app.text_of("thinking-summary").await?;
    assert!(
        summary.starts_with("Thought for"),
        "summary after thinking: {summary:?}"
    );
    assert!(
        summary.contains("budget reached"),
        "the budget of 64 forced the answer: {summary:?}"
    );
    assert!(
        !app.last_answer().await?.trim().is_empty(),
        "an answer follows the thinking"
    );
    app.shot("thinking-collapsed").await?;

    // Opening it shows the thoughts.
    app.click("thinking-summary").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"thinking\"]')?.dataset.state === 'expanded'",
        5,
        "the thinking block to open",
    )
    .await?;
    app.shot("thinking-expanded").await?;
    app.close().await
}

#[tokio::test]
async fn settings_change_the_answer() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "settings").await?;
    app.load_smollm2().await?;
    base_settings(&app, 24).await?;
    app.shot("settings-drawer").await?;
    let prompt = "Name three colours.";

    async fn answer(app: &App, temperature: &str, seed: &str, prompt: &str) -> Res<String> {
        app.click("new-chat").await?;
        app.open_settings().await?;
        app.set_value("setting-temperature", temperature).await?;
        app.set_value("setting-seed", seed).await?;
        app.close_settings().await?;
        app.send(prompt).await?;
        assert_eq!(app.wait_answer_done(1, 120).await?, "complete");
        let text = app.last_answer().await?;
        assert!(!text.trim().is_empty());
        Ok(text)
    }

    let greedy_a = answer(&app, "0", "", prompt).await?;
    let greedy_b = answer(&app, "0", "", prompt).await?;
    assert_eq!(greedy_a, greedy_b, "temperature 0 is deterministic");

    let seed1 = answer(&app, "1", "1", prompt).await?;
    let seed1_again = answer(&app, "1", "1", prompt).await?;
    let seed2 = answer(&app, "1", "2", prompt).await?;
    assert_eq!(seed1, seed1_again, "the same seed replays the same answer");
    assert_ne!(
        seed1, seed2,
        "another seed at temperature 1 gives another answer"
    );
    app.shot("seeded-answer").await?;
    app.close().await
}

#[tokio::test]
async fn history_survives_a_restart_and_search_finds_it() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;

    let app = App::start(&setup, data.path(), "restart-1").await?;
    app.load_smollm2().await?;
    base_settings(&app, 24).await?;
    app.close_settings().await?;
    app.send("Tell me one fact about the okapi.").await?;
    assert_eq!(app.wait_answer_done(1, 120).await?, "complete");
    let answer = app.last_answer().await?;
    app.close().await?;

    let app = App::start(&setup, data.path(), "restart-2").await?;
    app.wait_js(
        "return [...document.querySelectorAll('[data-testid=\"conversation-item\"]')] \
           .some(e => e.textContent.includes('okapi'))",
        20,
        "the conversation in the sidebar after a restart",
    )
    .await?;
    app.shot("sidebar-after-restart").await?;
    app.click("conversation-item").await?;
    app.wait_js(
        "const u = document.querySelector('[data-testid=\"message-user\"]'); \
         return u && u.textContent.includes('okapi') && document.querySelector('[data-testid=\"message-assistant\"]') !== null",
        20,
        "the conversation to open",
    )
    .await?;
    assert_eq!(
        app.last_answer().await?,
        answer,
        "the saved answer comes back as it was"
    );
    app.shot("conversation-reopened").await?;

    let search = app
        .client
        .find(fantoccini::Locator::Css(&harness::tid("search")))
        .await?;
    search.click().await?;
    search.send_keys("okapi").await?;
    app.wait_js(
        "return [...document.querySelectorAll('[data-testid=\"search-result\"]')].some(e => /okapi/i.test(e.textContent))",
        20,
        "a search result for 'okapi'",
    )
    .await?;
    let marked = app
        .js(
            "return document.querySelectorAll('[data-testid=\"search-result\"] mark').length",
            vec![],
        )
        .await?;
    assert!(marked.as_u64().unwrap_or(0) > 0, "the match is highlighted");
    app.shot("search").await?;
    app.click("search-result").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"message-user\"]')?.textContent.includes('okapi')",
        20,
        "the search result to open its conversation",
    )
    .await?;
    app.close().await
}

#[tokio::test]
async fn xss_in_a_stored_answer_renders_inert() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;

    let payload = "Here is the harmless part.\n\n\
        <img src=x onerror=\"window.__xss='img';document.title='pwned-img'\">\n\n\
        [click me](javascript:window.__xss='md-link')\n\n\
        <script>window.__xss='script';document.title='pwned-script'</script>\n\n\
        <svg onload=\"window.__xss='svg'\"><circle r=\"5\"/></svg>\n\n\
        <a href=\"javascript:window.__xss='a'\" id=\"raw-link\">raw link</a>\n\n\
        <iframe src=\"javascript:parent.__xss='iframe'\"></iframe>\n\n\
        <div style=\"background:url(javascript:window.__xss='css')\" onmouseover=\"window.__xss='hover'\">hover me</div>\n\n\
        End of answer.";
    seed_answer(data.path(), "XSS probe", "Show me some HTML", payload).await?;
    let app = App::start(&setup, data.path(), "xss").await?;
    open_seeded(&app, "XSS probe").await?;
    app.wait_js(
        "const t = document.querySelector('[data-testid=\"message-assistant\"] .md[data-testid=\"answer\"]'); \
         return t && t.innerText.includes('End of answer')",
        20,
        "the stored answer to render",
    )
    .await?;
    // Let a failing <img> fire its handler, if it had one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Hovering and clicking what is left must not run anything either.
    app.js(
        "const root = document.querySelector('[data-testid=\"message-assistant\"] .md'); \
         root.querySelectorAll('*').forEach(e => { \
           e.dispatchEvent(new MouseEvent('mouseover', {bubbles: true})); \
           if (e.tagName === 'A') e.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true})); });",
        vec![],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.shot("xss-inert").await?;

    let report = app
        .js(
            "const root = document.querySelector('[data-testid=\"message-assistant\"] .md'); \
             const all = [...root.querySelectorAll('*')]; \
             return { \
               xss: window.__xss ?? null, title: document.title, \
               scripts: root.querySelectorAll('script').length, \
               iframes: root.querySelectorAll('iframe, object, embed').length, \
               handlers: all.filter(e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).map(e => e.outerHTML), \
               jsUrls: all.filter(e => [...e.attributes].some(a => /javascript:/i.test(a.value))).map(e => e.outerHTML), \
               text: root.innerText };",
            vec![],
        )
        .await?;
    assert_eq!(report["xss"], json!(null), "a payload ran: {report}");
    assert!(
        !report["title"]
            .as_str()
            .unwrap_or_default()
            .contains("pwned"),
        "{report}"
    );
    assert_eq!(report["scripts"], json!(0), "{report}");
    assert_eq!(report["iframes"], json!(0), "{report}");
    assert_eq!(
        report["handlers"],
        json!([]),
        "event handler attributes survived: {report}"
    );
    assert_eq!(
        report["jsUrls"],
        json!([]),
        "javascript: URLs survived: {report}"
    );
    let text = report["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Here is the harmless part") && text.contains("End of answer"),
        "{report}"
    );
    app.close().await
}

/// Code and formulas in an answer: KaTeX and highlight.js are loaded on first use (not at
/// start-up), under the app's strict CSP; the answer must end up highlighted and typeset.
#[tokio::test]
async fn code_and_math_render_once_their_renderers_load() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let answer = "The area is $\\pi r^2$, and in code:\n\n\
        ```python\ndef area(r):\n    return math.pi * r ** 2\n```\n\n\
        $$\\int_0^1 x^2 \\, dx = \\frac{1}{3}$$\n\nDone.";
    seed_answer(data.path(), "Circle area", "Area of a circle?", answer).await?;
    let app = App::start(&setup, data.path(), "render").await?;
    open_seeded(&app, "Circle area").await?;
    app.wait_js(
        "const t = document.querySelector('[data-testid=\"message-assistant\"] .md'); \
         return !!t && t.querySelectorAll('.katex').length === 2 && !!t.querySelector('.hljs-keyword')",
        20,
        "the formulas typeset and the code highlighted",
    )
    .await?;
    let report = app
        .js(
            "const t = document.querySelector('[data-testid=\"message-assistant\"] .md'); \
             return { keyword: t.querySelector('.hljs-keyword').textContent, \
                      tex: [...t.querySelectorAll('.katex annotation')].map(a => a.textContent), \
                      display: t.querySelectorAll('.katex-display').length, \
                      source: t.querySelectorAll('code.math-source').length, \
                      font: getComputedStyle(t.querySelector('.katex')).fontFamily };",
            vec![],
        )
        .await?;
    assert_eq!(report["keyword"], json!("def"), "{report}");
    assert_eq!(
        report["tex"],
        json!(["\\pi r^2", "\\int_0^1 x^2 \\, dx = \\frac{1}{3}"]),
        "{report}"
    );
    assert_eq!(report["display"], json!(1), "{report}");
    assert_eq!(report["source"], json!(0), "{report}");
    // KaTeX's stylesheet came with it (its fonts are what make formulas readable).
    assert!(
        report["font"]
            .as_str()
            .unwrap_or_default()
            .contains("KaTeX"),
        "{report}"
    );
    app.shot("code-and-math").await?;
    app.close().await
}

/// Every command the UI cannot reach without a native dialog or a model run, called over
/// the real IPC bridge with the argument names api.ts uses, so a renamed parameter or a
/// missing permission shows up here and not in a user's hands.
#[tokio::test]
async fn commands_answer_over_the_real_ipc_bridge() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let (conv_id, user_id, answer_id) = {
        let history = History::open(data.path().join("history.sqlite3")).await?;
        let conv = history
            .create_conversation("Kiwi facts", ConversationSettings::default())
            .await?;
        let user = history
            .add_user_message(&conv.id, None, "Tell me about kiwi birds")
            .await?;
        let answer = history
            .add_message(
                &conv.id,
                Some(&user.id),
                Role::Assistant,
                "Kiwi birds cannot fly.",
            )
            .await?;
        history.close().await;
        (conv.id, user.id, answer.id)
    };
    let elsewhere = data.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;
    let broken = elsewhere.join("broken.gguf");
    std::fs::write(&broken, b"GGUF\x03\x00\x00\x00not really a model")?;

    let outside = elsewhere.join("picked.gguf");
    std::os::unix::fs::symlink(
        harness::checkout()
            .join("models")
            .join(harness::SMOLLM2_FILE),
        &outside,
    )?;

    let app = App::start(&setup, data.path(), "ipc").await?;
    let out = app
        .js_async(
            "const [conv, user, answer, broken, picked] = arguments; const done = arguments[arguments.length - 1]; \
             const inv = window.__TAURI_INTERNALS__.invoke; const out = {}; \
             const r = async (k, cmd, args) => { try { out[k] = {ok: await inv(cmd, args)}; } catch (e) { out[k] = {err: e}; } }; \
             (async () => { \
               await r('info', 'app_info'); \
               await r('models', 'list_models'); \
               await r('list', 'list_conversations', {limit: 10, before: null}); \
               await r('get', 'get_conversation', {id: conv}); \
               await r('missing', 'get_conversation', {id: 'no-such-id'}); \
               await r('rename', 'rename_conversation', {id: conv, title: 'Renamed kiwi'}); \
               await r('list2', 'list_conversations', {limit: 10, before: null}); \
               const updated = out.list2.ok && out.list2.ok[0] && out.list2.ok[0].updated_at; \
               await r('page2', 'list_conversations', {limit: 10, before: updated}); \
               await r('badcursor', 'list_conversations', {limit: 10, before: 'yesterday'}); \
               await r('md', 'export_conversation', {id: conv, format: 'md'}); \
               await r('json', 'export_conversation', {id: conv, format: 'json'}); \
               await r('pdf', 'export_conversation', {id: conv, format: 'pdf'}); \
               await r('search', 'search', {query: 'kiwi', includeReasoning: false}); \
               await r('leaf', 'set_current_leaf', {conversationId: conv, messageId: user}); \
               await r('cancel', 'cancel', {requestId: 'not-running'}); \
               await r('brokenModel', 'open_model_file', {path: broken}); \
               await r('picked', 'open_model_file', {path: picked}); \
               await r('models2', 'list_models'); \
               await r('delMsg', 'delete_message', {id: answer}); \
               await r('after', 'get_conversation', {id: conv}); \
               await r('delConv', 'delete_conversation', {id: conv}); \
               await r('list3', 'list_conversations', {limit: 10, before: null}); \
               done(out); })();",
            vec![json!(conv_id), json!(user_id), json!(answer_id), json!(broken), json!(outside)],
        )
        .await?;
    let ok = |k: &str| -> serde_json::Value {
        assert!(out[k].get("ok").is_some(), "{k} failed: {}", out[k]);
        out[k]["ok"].clone()
    };
    let err_code = |k: &str| -> String {
        assert!(out[k].get("err").is_some(), "{k} should fail: {}", out[k]);
        out[k]["err"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    let info = ok("info");
    assert_eq!(info["data_dir"], json!(data.path()));
    assert!(info["version"].as_str().is_some_and(|v| !v.is_empty()));
    let models = ok("models");
    let smol = models
        .as_array()
        .and_then(|m| {
            m.iter().find(|m| {
                m["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(harness::SMOLLM2_FILE))
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("SmolLM2 not listed: {models}"));
    assert_eq!(smol["error"], json!(null));
    assert!(
        smol["size_bytes"].as_u64().unwrap_or(0) > 1_000_000,
        "{smol}"
    );
    assert_eq!(smol["architecture"], json!("llama"), "{smol}");

    let list = ok("list");
    assert_eq!(list[0]["id"], json!(conv_id));
    assert_eq!(list[0]["message_count"], json!(2));
    assert!(
        list[0]["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
        "RFC 3339: {list}"
    );
    let view = ok("get");
    assert_eq!(view["current_leaf_id"], json!(answer_id));
    assert_eq!(view["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(view["messages"][1]["role"], json!("assistant"));
    assert_eq!(view["messages"][1]["status"], json!("complete"));
    assert_eq!(err_code("missing"), "not_found");
    ok("rename");
    assert_eq!(ok("list2")[0]["title"], json!("Renamed kiwi"));
    assert_eq!(
        ok("page2"),
        json!([]),
        "nothing older than the only conversation"
    );
    assert_eq!(err_code("badcursor"), "invalid_input");
    assert!(ok("md")
        .as_str()
        .is_some_and(|t| t.contains("Kiwi birds cannot fly.")));
    let exported: serde_json::Value =
        serde_json::from_str(ok("json").as_str().unwrap_or_default())?;
    assert_eq!(exported["format"], json!("conclave-history"));
    assert_eq!(err_code("pdf"), "invalid_input");
    let hits = ok("search");
    assert!(
        hits.as_array().is_some_and(|h| h
            .iter()
            .any(|h| h["message_id"] == json!(answer_id) && h["title"] == json!("Renamed kiwi"))),
        "{hits}"
    );
    ok("leaf");
    ok("cancel");
    assert!(
        err_code("brokenModel").starts_with("model_"),
        "{}",
        out["brokenModel"]
    );
    let picked = ok("picked");
    assert_eq!(picked["error"], json!(null), "{picked}");
    assert!(
        ok("models2")
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == picked["id"])),
        "the opened file is in the library afterwards: {picked}"
    );
    ok("delMsg");
    assert_eq!(ok("after")["messages"].as_array().map(Vec::len), Some(1));
    ok("delConv");
    assert_eq!(ok("list3"), json!([]));
    app.close().await
}

/// A worker killed mid-answer (what a GGML abort or the OOM killer does) shows as an error
/// on that answer and a banner, and the next message starts a fresh worker.
#[tokio::test]
async fn a_crashed_worker_is_reported_and_replaced() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "crash").await?;
    app.load_smollm2().await?;
    base_settings(&app, 1500).await?;
    app.close_settings().await?;
    app.send("Write a very long story about a lighthouse keeper.")
        .await?;
    app.wait_js(
        "const t = document.querySelector('[data-testid=\"message-assistant\"] .md[data-testid=\"answer\"]'); \
         return document.querySelector('[data-testid=\"stop\"]') !== null && t && t.innerText.trim().length > 0;",
        120,
        "the answer to start streaming",
    )
    .await?;
    let workers: Vec<u32> = harness::app_processes(app.driver_pid())?
        .into_iter()
        .filter(|(_, name)| name == "conclave-worker")
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(workers.len(), 1, "one worker for one model: {workers:?}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &workers[0].to_string()])
        .status()?;
    assert!(killed.success());

    assert_eq!(app.wait_answer_done(1, 30).await?, "error");
    let errors = app.visible_errors().await?;
    assert!(
        errors.iter().any(|e| e.contains("worker")),
        "the crash is explained: {errors:?}"
    );
    app.shot("worker-crashed").await?;

    app.click("new-chat").await?;
    app.open_settings().await?;
    app.set_value("setting-max-tokens", "16").await?;
    app.close_settings().await?;
    app.send("Say hello.").await?;
    assert_eq!(app.wait_answer_done(1, 120).await?, "complete");
    assert!(!app.last_answer().await?.trim().is_empty());
    app.shot("after-crash").await?;
    app.close().await
}

/// Edit and resend: the edited question becomes branch 2/2 of the user turn with its own
/// answer, and branch 1/2 still holds the original question and answer.
#[tokio::test]
async fn edit_and_resend_makes_a_branch() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "edit").await?;
    app.load_smollm2().await?;
    base_settings(&app, 16).await?;
    app.set_value("setting-temperature", "0").await?;
    app.close_settings().await?;

    app.send("Name one fruit.").await?;
    assert_eq!(app.wait_answer_done(1, 120).await?, "complete");
    let first = app.last_answer().await?;

    app.click("edit").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"edit-text\"]') !== null",
        10,
        "the edit box",
    )
    .await?;
    app.set_value("edit-text", "Name one colour.").await?;
    app.click("edit-send").await?;
    app.wait_js(
        "const p = document.querySelector('[data-testid=\"message-user\"] [data-testid=\"branch-pos\"]'); \
         const busy = document.querySelector('[data-testid=\"stop\"]') !== null; \
         return !busy && p && p.textContent.trim() === '2/2';",
        120,
        "the edited question as branch 2/2",
    )
    .await?;
    assert_eq!(app.wait_answer_done(1, 60).await?, "complete");
    let user = app.text_of("message-user").await?;
    assert!(
        user.contains("Name one colour."),
        "edited text shown: {user:?}"
    );
    assert!(
        !user.contains("fruit"),
        "only the edited branch shown: {user:?}"
    );
    let second = app.last_answer().await?;
    assert!(!second.trim().is_empty());
    app.shot("edited-2of2").await?;

    app.click("branch-prev").await?;
    app.wait_js(
        "const p = document.querySelector('[data-testid=\"message-user\"] [data-testid=\"branch-pos\"]'); \
         return p && p.textContent.trim() === '1/2';",
        10,
        "branch 1/2",
    )
    .await?;
    let user = app.text_of("message-user").await?;
    assert!(
        user.contains("Name one fruit."),
        "original question kept: {user:?}"
    );
    assert_eq!(app.last_answer().await?, first, "original answer kept");
    assert!(app.visible_errors().await?.is_empty());
    app.close().await
}

/// Ctrl+= / Ctrl+- / Ctrl+0 zoom the page (Tauri's zoomHotkeysEnabled polyfill listens
/// for keydown on the window); at 200% the chat, the composer and the settings still fit
/// on screen and work.
#[tokio::test]
async fn zoom_hotkeys_keep_the_app_usable_at_200_percent() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    seed_answer(
        data.path(),
        "Zoomed chat",
        "How do I read small text?",
        "Press **Ctrl+=** to zoom in and **Ctrl+0** to go back to 100%.",
    )
    .await?;
    let app = App::start(&setup, data.path(), "zoom").await?;
    open_seeded(&app, "Zoomed chat").await?;
    let width = |v: serde_json::Value| v.as_f64().unwrap_or_default();
    let base = width(app.js("return window.innerWidth", vec![]).await?);

    let press = "const k = arguments[0]; for (let i = 0; i < arguments[1]; i++) \
                 window.dispatchEvent(new KeyboardEvent('keydown', {key: k, ctrlKey: true, bubbles: true})); return true;";
    // Five steps of 20%: 200%. One key at a time, each step seen before the next: on a busy
    // machine presses sent together were not all applied.
    for step in 1..=5 {
        let before = width(app.js("return window.innerWidth", vec![]).await?);
        app.js(press, vec![json!("="), json!(1)]).await?;
        app.wait_js_args(
            "return window.innerWidth < arguments[0] - 1",
            vec![json!(before)],
            10,
            &format!("zoom step {step}"),
        )
        .await?;
    }
    app.wait_js_args(
        "return Math.abs(window.innerWidth * 2 - arguments[0]) < 4",
        vec![json!(base)],
        10,
        "the page to zoom to 200%",
    )
    .await?;

    // Everything a user needs is inside the window and not covered.
    let reachable = "const el = document.querySelector(arguments[0]); if (!el) return 'missing'; \
                     const r = el.getBoundingClientRect(); \
                     if (r.width < 1 || r.height < 1) return 'hidden'; \
                     if (r.left < 0 || r.top < 0 || r.right > window.innerWidth + 1 || r.bottom > window.innerHeight + 1) \
                       return 'outside ' + JSON.stringify([r.left, r.top, r.right, r.bottom, window.innerWidth, window.innerHeight]); \
                     const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2); \
                     return hit && (el === hit || el.contains(hit) || hit.contains(el)) ? 'ok' : 'covered by ' + (hit && hit.outerHTML.slice(0, 80));";
    for id in ["prompt", "message-assistant", "settings-toggle"] {
        let r = app.js(reachable, vec![json!(harness::tid(id))]).await?;
        assert_eq!(r, json!("ok"), "{id} at 200%");
    }
    app.shot("zoom-200-chat").await?;
    // WebKitWebDriver does not scale its click coordinates by the page zoom, so a WebDriver
    // click lands elsewhere; the toggle was checked above to be on screen and uncovered.
    app.js(
        "document.querySelector(arguments[0]).click(); return true;",
        vec![json!(harness::tid("settings-toggle"))],
    )
    .await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"setting-temperature\"]') !== null",
        10,
        "the settings drawer at 200%",
    )
    .await?;
    // The drawer covers the toolbar's toggle at this width; its own Close button must work.
    for sel in [
        harness::tid("setting-temperature"),
        harness::tid("setting-max-tokens"),
        "[aria-label=\"Close settings\"]".to_owned(),
    ] {
        let r = app
            .js(
                &format!("document.querySelector(arguments[0])?.scrollIntoView({{block: 'nearest'}}); {reachable}"),
                vec![json!(sel)],
            )
            .await?;
        assert_eq!(r, json!("ok"), "{sel} at 200% with the settings open");
    }
    app.set_value("setting-max-tokens", "33").await?;
    app.shot("zoom-200-settings").await?;
    app.js(
        "document.querySelector('[aria-label=\"Close settings\"]').click(); return true;",
        vec![],
    )
    .await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"setting-temperature\"]') === null",
        10,
        "the settings drawer to close",
    )
    .await?;

    // Ctrl+- steps back; Ctrl+0 resets.
    app.js(press, vec![json!("-"), json!(1)]).await?;
    app.wait_js_args(
        "return Math.abs(window.innerWidth * 1.8 - arguments[0]) < 4",
        vec![json!(base)],
        10,
        "180% after Ctrl+-",
    )
    .await?;
    app.js(press, vec![json!("0"), json!(1)]).await?;
    app.wait_js_args(
        "return Math.abs(window.innerWidth - arguments[0]) < 2",
        vec![json!(base)],
        10,
        "100% after Ctrl+0",
    )
    .await?;
    app.close().await
}

/// Presets made in the Settings drawer land in the history database (where the CLI and
/// the API read them), survive a restart, and are renamed and deleted there.
#[tokio::test]
async fn presets_live_in_the_history_database() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let app = App::start(&setup, data.path(), "presets").await?;
    app.open_settings().await?;
    app.set_value("setting-temperature", "0.3").await?;
    app.set_value("preset-name", "Precise").await?;
    app.click("preset-save").await?;
    let listed = "return [...document.querySelectorAll('[data-testid=\"preset-list\"] li span')].map(e => e.textContent).join('|') === arguments[0]";
    app.wait_js_args(listed, vec![json!("Precise")], 10, "the saved preset")
        .await?;
    app.shot("preset-saved").await?;
    app.close().await?;

    {
        let h = History::open(data.path().join("history.sqlite3")).await?;
        let p = h.get_preset("Precise").await?;
        assert!((p.settings.sampling.temperature - 0.3).abs() < 1e-6);
        h.close().await;
    }

    let app = App::start(&setup, data.path(), "presets-again").await?;
    app.open_settings().await?;
    app.wait_js_args(
        listed,
        vec![json!("Precise")],
        10,
        "the preset after a restart",
    )
    .await?;
    app.click("preset-rename").await?;
    app.set_value("preset-rename-input", "Exact").await?;
    app.js(
        "document.querySelector('[data-testid=\"preset-rename-input\"]').dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true})); return true;",
        vec![],
    )
    .await?;
    app.wait_js_args(listed, vec![json!("Exact")], 10, "the renamed preset")
        .await?;
    app.click("preset-delete").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"preset-list\"]') === null",
        10,
        "the preset list to empty",
    )
    .await?;
    assert!(app.visible_errors().await?.is_empty());
    app.close().await?;
    let h = History::open(data.path().join("history.sqlite3")).await?;
    assert!(h.list_presets().await?.is_empty());
    h.close().await;
    Ok(())
}
