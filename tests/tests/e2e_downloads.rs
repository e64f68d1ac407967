//! End-to-end test of unfinished downloads on the Models screen of the real desktop app: a
//! download from a local HTTP server (loopback http, as the tests of the core use) is
//! cancelled half-way, the Models screen lists it with how far it got and where from, it
//! is still listed after a restart, Resume continues it with a `Range` request from the
//! bytes on disk to a complete, catalogued model, and Delete (after confirming) removes
//! another one's bytes.
//!
//! Run: `cd ui && npm run build`, `cargo build -p conclave-app -p conclave-worker`, then
//! `CONCLAVE_E2E=1 scripts/with-xvfb cargo test -p conclave-tests --test e2e_downloads`.
//! Without the app (or tauri-driver) it says SKIPPED and passes, unless CONCLAVE_E2E=1.
//! Screenshots: `downloads-<nn>-<label>.png` in CONCLAVE_SHOTS_DIR.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{data_dir, App, Res, SMOLLM2_FILE};
use serde_json::json;

/// The `Range` start of every request the server answered (None: the whole file).
type RangeLog = Arc<Mutex<Vec<Option<u64>>>>;

/// Serves one file under any name, slowly (so a download can be cancelled half-way), with
/// `Range` answered by 206 and a fixed ETag. Records the `Range` start of every request.
fn serve(data: Arc<Vec<u8>>) -> Res<(String, RangeLog)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let log = ranges.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (data, log) = (data.clone(), log.clone());
            std::thread::spawn(move || {
                let _ = answer(stream, &data, &log);
            });
        }
    });
    Ok((base, ranges))
}

fn answer(
    mut stream: TcpStream,
    data: &[u8],
    log: &Mutex<Vec<Option<u64>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut from = None;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            from = v.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    log.lock().unwrap().push(from);
    let start = from.unwrap_or(0).min(data.len() as u64) as usize;
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\n",
            data.len() - 1,
            data.len()
        )
    } else {
        "HTTP/1.1 200 OK\r\n".to_owned()
    };
    write!(
        stream,
        "{head}Content-Length: {}\r\nETag: \"v1\"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
        data.len() - start
    )?;
    for chunk in data[start..].chunks(128 * 1024) {
        stream.write_all(chunk)?;
        std::thread::sleep(Duration::from_millis(15));
    }
    Ok(())
}

/// Starts a download of `url` on the Models screen and cancels it once a few megabytes
/// are on disk.
async fn start_and_cancel(app: &App, url: &str) -> Res {
    app.set_value("download-url", url).await?;
    app.click("download-start").await?;
    app.wait_js(
        "const p = document.querySelector('[data-testid=\"download-progress\"]'); \
         return p !== null && Number(p.getAttribute('aria-valuenow')) >= 5;",
        60,
        "the download past 5 %",
    )
    .await?;
    app.click("download-cancel").await?;
    app.wait_js(
        "return document.body.innerText.includes('Download cancelled')",
        20,
        "the cancelled download",
    )
    .await?;
    Ok(())
}

/// The unfinished downloads listed: (file name, info text).
async fn partials(app: &App) -> Res<Vec<(String, String)>> {
    let v = app
        .js(
            "return [...document.querySelectorAll('[data-testid=\"partial-download\"]')] \
             .map(r => [r.dataset.name, r.querySelector('[data-testid=\"partial-info\"]').innerText])",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(v)?)
}

async fn wait_partials(app: &App, n: usize) -> Res<Vec<(String, String)>> {
    app.wait_js_args(
        "return document.querySelectorAll('[data-testid=\"partial-download\"]').length === arguments[0]",
        vec![json!(n)],
        20,
        &format!("{n} unfinished downloads listed"),
    )
    .await?;
    partials(app).await
}

#[tokio::test]
async fn unfinished_downloads_are_listed_resumed_and_deleted() -> Res {
    let _serial = harness::serial().await;
    let Some(setup) = harness::setup() else {
        return Ok(());
    };
    let model = harness::checkout().join("models").join(SMOLLM2_FILE);
    let bytes = Arc::new(std::fs::read(&model)?);
    let (base, ranges) = serve(bytes.clone())?;
    let data = data_dir()?;
    let models = data.path().join("models");

    let app = App::start(&setup, data.path(), "downloads").await?;
    app.click("nav-models").await?;
    start_and_cancel(&app, &format!("{base}/served-smol.gguf")).await?;
    let listed = wait_partials(&app, 1).await?;
    let (name, info) = &listed[0];
    assert_eq!(name, "served-smol.gguf");
    let host = base.trim_start_matches("http://");
    assert!(info.contains(&format!("from {host}")), "info: {info}");
    assert!(info.contains('%') && info.contains(" of "), "info: {info}");
    let kept = std::fs::metadata(models.join("served-smol.gguf.part"))?.len();
    assert!(kept > 0 && kept < bytes.len() as u64, "kept {kept}");
    app.shot("cancelled-listed").await?;
    app.close().await?;

    // Closing the app loses nothing: the list comes back, and Resume continues the bytes.
    let app = App::start(&setup, data.path(), "downloads-restart").await?;
    app.click("nav-models").await?;
    let listed = wait_partials(&app, 1).await?;
    assert_eq!(listed[0].0, "served-smol.gguf");
    app.click("partial-resume").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"download-progress\"]') !== null",
        20,
        "the resumed download's progress",
    )
    .await?;
    app.shot("resuming").await?;
    wait_partials(&app, 0).await?;
    app.wait_js(
        "return [...document.querySelectorAll('[data-testid=\"models-row\"]')] \
         .some(r => r.innerText.includes('served-smol'))",
        60,
        "the resumed model in the list",
    )
    .await?;
    let done = std::fs::read(models.join("served-smol.gguf"))?;
    assert!(
        done == *bytes,
        "the resumed file differs from the served one"
    );
    assert!(!models.join("served-smol.gguf.part").exists());
    let starts = ranges.lock().unwrap().clone();
    assert!(
        starts.contains(&Some(kept)),
        "no request resumed from the {kept} bytes on disk: {starts:?}"
    );
    assert!(app.visible_errors().await?.is_empty());
    app.shot("resumed").await?;

    // Delete asks first, then removes the bytes and their record.
    start_and_cancel(&app, &format!("{base}/second.gguf")).await?;
    wait_partials(&app, 1).await?;
    app.click("partial-delete").await?;
    app.wait_js(
        "return document.querySelector('[data-testid=\"partial-delete-confirm\"]') !== null",
        10,
        "the delete confirmation",
    )
    .await?;
    assert!(
        models.join("second.gguf.part").exists(),
        "deleted before confirming"
    );
    app.shot("delete-confirm").await?;
    app.click("partial-delete-confirm").await?;
    wait_partials(&app, 0).await?;
    assert!(!models.join("second.gguf.part").exists());
    assert!(!models.join("second.gguf.part.json").exists());
    app.close().await?;
    Ok(())
}
