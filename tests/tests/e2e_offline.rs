//! Proof that the app stays on this machine (#16): a whole session in the real app (chat,
//! reasoning, side-by-side compare, the models screen, search, a restart) with every
//! process of it under `strace -f` (tauri-driver, WebKitWebDriver, the app, WebKit's web
//! and network processes, the model workers). Every connect and send of every one of them
//! is read back: nothing may reach an IP address but loopback, and no name may be looked
//! up (no port 53, no systemd-resolved, no read of /etc/resolv.conf).
//!
//! Run like the other e2e tests (`CONCLAVE_E2E=1 scripts/with-xvfb cargo test -p
//! conclave-tests --test e2e_offline`); it needs `strace` (scripts/setup installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
mod harness;

use harness::{data_dir, App, Res};

const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

async fn short_answers(app: &App) -> Res {
    app.open_settings().await?;
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-think-budget", "").await?;
    app.set_value("setting-max-tokens", "24").await?;
    app.set_value("setting-temperature", "0.7").await?;
    Ok(())
}

#[tokio::test]
async fn a_whole_session_never_leaves_the_machine() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let gemma = harness::checkout().join("models").join(GEMMA_FILE);
    anyhow::ensure!(gemma.is_file(), "{} missing (make models)", gemma.display());
    // The trace catches real traffic: a connect to a documentation address (never routed)
    // and a datagram to a DNS port.
    let canary = harness::trace_of(
        "timeout 2 bash -c 'exec 3<>/dev/tcp/192.0.2.1/9' ; echo x > /dev/udp/127.0.0.53/53",
    )?;
    assert!(
        canary.violations.iter().any(|v| v.contains("192.0.2.1:9"))
            && canary.violations.iter().any(|v| v.contains("DNS")),
        "the trace missed the canary's traffic: {canary:?}"
    );
    let data = data_dir()?;
    let traces = [
        data.path().join("trace-1.txt"),
        data.path().join("trace-2.txt"),
    ];

    let app = App::start_traced(&setup, data.path(), "offline-1", &traces[0]).await?;
    // Chat.
    app.load_smollm2().await?;
    short_answers(&app).await?;
    app.close_settings().await?;
    app.send("Tell me one fact about the okapi.").await?;
    assert_eq!(app.wait_answer_done(1, 180).await?, "complete");
    // Reasoning: the engine opens a thinking block, the budget closes it.
    app.click("new-chat").await?;
    app.open_settings().await?;
    app.set_value("setting-think", "on").await?;
    app.set_value("setting-think-budget", "8").await?;
    app.close_settings().await?;
    app.send("Why is the sky blue?").await?;
    assert_eq!(app.wait_answer_done(1, 180).await?, "complete");
    app.wait_js(
        "return document.querySelector('[data-testid=\"thinking\"]') !== null",
        20,
        "the thinking block",
    )
    .await?;
    app.open_settings().await?;
    app.set_value("setting-think", "off").await?;
    app.set_value("setting-think-budget", "").await?;
    app.close_settings().await?;
    // Compare: two models side by side.
    app.open_compare_with(&["smollm2", "gemma"]).await?;
    app.set_value("compare-prompt", "Name three colours of the rainbow.")
        .await?;
    app.click("compare-send").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"compare-summary\"]') !== null",
        300,
        "the compare run to finish",
    )
    .await?;
    // The models screen.
    app.click("nav-models").await?;
    app.wait_js(
        "return document.querySelectorAll('[data-testid=\"models-row\"]').length >= 2",
        30,
        "the model rows",
    )
    .await?;
    app.shot("models").await?;
    let errors = app.visible_errors().await?;
    assert!(errors.is_empty(), "errors on screen: {errors:?}");
    app.close().await?;

    // Restart, then search the history.
    let app = App::start_traced(&setup, data.path(), "offline-2", &traces[1]).await?;
    let search = app
        .client
        .find(fantoccini::Locator::Css(&harness::tid("search")))
        .await?;
    search.click().await?;
    search.send_keys("okapi").await?;
    app.wait_js(
        "return [...document.querySelectorAll('[data-testid=\"search-result\"]')].some(e => /okapi/i.test(e.textContent))",
        30,
        "a search result for 'okapi' after the restart",
    )
    .await?;
    app.click("search-result").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"message-user\"]')?.textContent.includes('okapi')",
        20,
        "the conversation to open",
    )
    .await?;
    app.shot("search-after-restart").await?;
    app.close().await?;

    let mut programs = Vec::new();
    for trace in &traces {
        let text = std::fs::read_to_string(trace)?;
        let report = harness::network_report(&text);
        eprintln!(
            "{}: {} lines; programs {:?}; IP peers {:?}",
            trace.display(),
            text.lines().count(),
            report.programs,
            report.ip_peers
        );
        assert!(
            report.violations.is_empty(),
            "{} shows traffic off the machine or a name lookup:\n{}",
            trace.display(),
            report.violations.join("\n")
        );
        programs.extend(report.programs);
    }
    // The trace covered every kind of process, or it proves nothing.
    for p in [
        "conclave-app",
        "WebKitWebProcess",
        "WebKitNetworkProcess",
        "conclave-worker",
    ] {
        assert!(
            programs.iter().any(|q| q == p),
            "{p} never ran under the trace: {programs:?}"
        );
    }
    Ok(())
}
