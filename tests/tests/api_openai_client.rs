//! The official `openai` Python client against a real `conclave serve` process
//! (tests/api/test_openai_client.py). The venv comes from `scripts/setup`; without it the
//! test is skipped, unless `CONCLAVE_E2E` is set (as `make test` does), where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conclave_tests::{model, SMOLLM2};

const KEY: &str = "test-key-0f3a-5c9e-b417";

/// `$TARGET/debug/deps/<test>` → `$TARGET/debug`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("CONCLAVE_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("venv")))
        .unwrap_or_else(|| bin_dir().parent().unwrap().join("venv"));
    venv.join("bin").join("python")
}

/// Kills the server however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_client() {
    let python = venv_python();
    let has_openai = python.is_file()
        && Command::new(&python)
            .args(["-c", "import openai"])
            .status()
            .is_ok_and(|s| s.success());
    if !has_openai {
        let msg = format!(
            "no venv with the openai package at {} (run scripts/setup)",
            python.display()
        );
        if std::env::var_os("CONCLAVE_E2E").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED official_openai_python_client: {msg}");
        return;
    }
    let conclave = bin_dir().join("conclave");
    assert!(
        conclave.is_file(),
        "{} missing: cargo build -p conclave-cli",
        conclave.display()
    );

    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(&conclave)
        .args([
            "serve",
            "--port",
            "0",
            "--threads",
            "1",
            "--ctx",
            "2048",
            "--api-key",
            KEY,
            "--model",
        ])
        .arg(model(SMOLLM2))
        .env("CONCLAVE_DATA_DIR", data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    // The first stdout line names the address (port 0 picked a free port).
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from conclave serve: {line:?}"))
        .to_owned();

    let health = base.trim_end_matches("/v1").to_owned() + "/health";
    let t0 = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(&health).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "/health never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("api/test_openai_client.py");
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(&base)
            .arg(KEY)
            .output(),
    )
    .await
    .expect("the Python client test ran past 5 minutes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the openai client test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("openai client: all checks passed"),
        "{stdout}"
    );
    drop(server);
}
