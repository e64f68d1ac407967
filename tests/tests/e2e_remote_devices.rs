//! End-to-end test of Settings → Remote devices in the real desktop app: a real `conclave
//! rpc-server` on a loopback port is added in the settings (a malformed entry is refused in
//! place), SmolLM2 loaded afterwards runs its layers on that server, and the answer's cost
//! details name it; the list survives a restart and removing it brings the CPU alone back.
//!
//! Run: `cd ui && npm run build`, `cargo build -p conclave-app -p conclave-worker -p
//! conclave-cli`, then `CONCLAVE_E2E=1 scripts/with-xvfb cargo test -p conclave-tests --test
//! e2e_remote_devices`. Without the app (or tauri-driver) it says SKIPPED and passes, unless
//! CONCLAVE_E2E=1. Screenshots: `remote-<nn>-<label>.png` and `remote-restart-<nn>-<label>.png` in CONCLAVE_SHOTS_DIR.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
mod harness;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{data_dir, App, Res};
use serde_json::json;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `conclave rpc-server` from the same target folder as the app.
fn start_server(app: &std::path::Path) -> Res<(Server, String)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let cli = app.with_file_name("conclave");
    anyhow::ensure!(
        cli.is_file(),
        "{} is missing: cargo build -p conclave-cli",
        cli.display()
    );
    let child = Command::new(cli)
        .args(["rpc-server", "--port", &port.to_string(), "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Server(child);
    let endpoint = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    while TcpStream::connect(&endpoint).is_err() {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "rpc-server never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((server, endpoint))
}

async fn listed(app: &App) -> Res<Vec<String>> {
    let v = app
        .js(
            "return [...document.querySelectorAll('[data-testid=\"remote-devices\"] code')].map(c => c.textContent.trim())",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(v).unwrap_or_default())
}

/// Sends a prompt, waits for the answer, opens its cost details and returns the devices
/// line ("" when the answer names none).
async fn answer_devices(app: &App) -> Res<String> {
    let n = app.assistant_count().await? + 1;
    app.send("Say hello.").await?;
    let status = app.wait_answer_done(n, 180).await?;
    anyhow::ensure!(status == "complete", "answer status {status}");
    app.js(
        "const c = document.querySelectorAll('[data-testid=\"cost-line\"] button.line'); c[c.length - 1].click(); return true;",
        vec![],
    )
    .await?;
    let v = app
        .wait_js(
            "const d = document.querySelectorAll('[data-testid=\"cost-line\"] dl'); \
             if (!d.length) return null; const e = d[d.length - 1].querySelector('[data-testid=\"cost-devices\"]'); \
             return e ? e.textContent.trim() : '(none)';",
            10,
            "the cost details",
        )
        .await?;
    // The wait needs a truthy value: "(none)" stands for no devices row.
    Ok(match v.as_str().unwrap_or_default() {
        "(none)" => String::new(),
        d => d.to_owned(),
    })
}

#[tokio::test]
async fn remote_devices_in_settings_spread_the_next_load() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let (_server, endpoint) = start_server(&setup.app)?;
    let data = data_dir()?;

    let app = App::start(&setup, data.path(), "remote").await?;
    app.open_settings().await?;
    app.wait_js(
        "const e = document.querySelector('[data-testid=\"remote-device-input\"]'); \
         if (e) e.closest('section').scrollIntoView({block: 'center'}); return e !== null;",
        10,
        "the remote devices section",
    )
    .await?;
    assert!(listed(&app).await?.is_empty());

    // Not host:port: refused in place, nothing saved.
    app.set_value("remote-device-input", "nonsense").await?;
    app.click("remote-device-add").await?;
    let error = app
        .wait_js(
            "const e = document.querySelector('[data-testid=\"remote-devices-error\"]'); return e ? e.innerText : null;",
            10,
            "the refusal",
        )
        .await?;
    assert!(
        error.as_str().unwrap_or_default().contains("host:port"),
        "{error}"
    );
    assert!(listed(&app).await?.is_empty());

    app.set_value("remote-device-input", &endpoint).await?;
    app.click("remote-device-add").await?;
    app.wait_js_args(
        "return [...document.querySelectorAll('[data-testid=\"remote-devices\"] code')].some(c => c.textContent.trim() === arguments[0]);",
        vec![json!(endpoint)],
        10,
        "the server in the list",
    )
    .await?;
    assert!(
        app.visible_errors().await?.is_empty(),
        "{:?}",
        app.visible_errors().await?
    );
    app.shot("added").await?;
    app.close_settings().await?;

    app.load_smollm2().await?;
    let devices = answer_devices(&app).await?;
    assert!(
        devices.contains(&format!("rpc {endpoint}")),
        "the answer ran on the server: {devices:?}"
    );
    app.shot("answered-remote").await?;
    app.close().await?;

    // Kept across a restart; removing it brings the CPU alone back.
    let app = App::start(&setup, data.path(), "remote-restart").await?;
    app.open_settings().await?;
    let v = app
        .wait_js(
            "const l = document.querySelectorAll('[data-testid=\"remote-devices\"] code'); return l.length ? l[0].textContent.trim() : null;",
            10,
            "the saved list",
        )
        .await?;
    assert_eq!(v, json!(endpoint));
    app.click("remote-device-remove").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"remote-devices-none\"]') !== null",
        10,
        "the emptied list",
    )
    .await?;
    app.close_settings().await?;
    app.load_smollm2().await?;
    let devices = answer_devices(&app).await?;
    assert_eq!(devices, "", "CPU alone after removing the server");
    app.shot("answered-local").await?;
    app.close().await?;
    Ok(())
}
