//! End-to-end test of the local API server switch in the real desktop app: the settings
//! turn on the OpenAI-compatible server inside `conclave-app`, this process talks to it
//! over HTTP (health, a real chat completion on SmolLM2), a non-loopback address without a
//! key is refused in place, the switch survives a restart, and turning it off closes the
//! port.
//!
//! Run: `cd ui && npm run build`, `cargo build -p conclave-app -p conclave-worker`, then
//! `CONCLAVE_E2E=1 scripts/with-xvfb cargo test -p conclave-tests --test e2e_api_switch`.
//! Without the app binary (or tauri-driver, WebKitWebDriver) the test says SKIPPED and
//! passes, unless CONCLAVE_E2E=1. Screenshots go to CONCLAVE_SHOTS_DIR (default
//! `<target>/e2e-shots`), named `api-<nn>-<label>.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
mod harness;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use harness::{data_dir, App, Res, SMOLLM2_FILE};
use serde_json::{json, Value};

fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn refuses(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
}

/// Waits until nothing listens on `port` (the app's exit takes its server with it).
async fn wait_refused(port: u16, secs: u64) -> Res {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !refuses(port) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "port {port} still accepts connections after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Opens the settings and brings the API server section into view (for the screenshots).
async fn show_section(app: &App) -> Res {
    app.open_settings().await?;
    app.wait_js(
        "const e = document.querySelector('[data-testid=\"api-status\"]'); \
         if (e) e.closest('section').scrollIntoView({block: 'center'}); return e !== null;",
        10,
        "the API server section",
    )
    .await?;
    Ok(())
}

async fn wait_status(app: &App, contains: &str, secs: u64) -> Res<String> {
    let v = app
        .wait_js_args(
            "const e = document.querySelector('[data-testid=\"api-status\"]'); \
             const t = e ? e.innerText.trim() : ''; return t.includes(arguments[0]) ? t : null;",
            vec![json!(contains)],
            secs,
            &format!("api status '{contains}'"),
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_owned())
}

async fn health(http: &reqwest::Client, port: u16) -> Res<reqwest::StatusCode> {
    Ok(http
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await?
        .status())
}

#[tokio::test]
async fn api_server_switch_serves_survives_a_restart_and_stops() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let data = data_dir()?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}/v1");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(180))
        .build()?;

    let app = App::start(&setup, data.path(), "api").await?;
    show_section(&app).await?;
    // Off by default: nothing listens until the user asks.
    assert!(
        app.js(
            "return document.querySelector('[data-testid=\"api-enabled\"]').checked",
            vec![]
        )
        .await?
            == json!(false),
        "the switch starts off"
    );
    wait_status(&app, "Off", 10).await?;
    app.set_value("api-port", &port.to_string()).await?;
    app.click("api-enabled").await?;
    let status = wait_status(&app, "Serving on", 30).await?;
    assert!(
        status.contains(&format!("Serving on {base}")),
        "status: {status:?}"
    );

    assert_eq!(health(&http, port).await?, reqwest::StatusCode::OK);
    let res = http
        .post(format!("{base}/chat/completions"))
        .json(&json!({
            "model": SMOLLM2_FILE,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 8,
        }))
        .send()
        .await?;
    let code = res.status();
    let body: Value = res.json().await?;
    assert_eq!(code, reqwest::StatusCode::OK, "chat completion: {body}");
    let answer = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!answer.trim().is_empty(), "empty answer: {body}");
    app.shot("serving").await?;

    // Another address without a key: the core refuses, and the form says so in place.
    app.set_value("api-host", "0.0.0.0").await?;
    let error = app
        .wait_js(
            "const e = document.querySelector('[data-testid=\"api-error\"]'); return e ? e.innerText : null;",
            15,
            "the key-required error",
        )
        .await?;
    assert!(
        error.as_str().unwrap_or_default().contains("API key"),
        "error: {error}"
    );
    wait_status(&app, "Not running", 5).await?;
    app.shot("key-required").await?;
    app.set_value("api-host", "127.0.0.1").await?;
    wait_status(&app, "Serving on", 30).await?;
    app.close().await?;

    // The server goes with the app, and comes back with it: the switch was saved.
    wait_refused(port, 20).await?;
    let saved = std::fs::read_to_string(data.path().join("app-settings.json"))?;
    assert!(saved.contains("\"enabled\": true"), "saved: {saved}");
    let app = App::start(&setup, data.path(), "api-restart").await?;
    show_section(&app).await?;
    let status = wait_status(&app, "Serving on", 30).await?;
    assert!(status.contains(&base), "after a restart: {status:?}");
    assert_eq!(health(&http, port).await?, reqwest::StatusCode::OK);
    app.shot("serving-after-restart").await?;

    app.click("api-enabled").await?;
    wait_status(&app, "Off", 20).await?;
    assert!(
        refuses(port),
        "port {port} still accepts connections when off"
    );
    app.shot("off").await?;
    app.close().await?;
    Ok(())
}
