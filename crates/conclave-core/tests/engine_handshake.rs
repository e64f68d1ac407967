//! The start of a worker, against fake workers (small shell scripts): one that speaks
//! another protocol version, one that writes garbage, one that says nothing, and one that
//! goes wrong after `Ready`. Each must fail with a clear error within seconds, never hang.
//! No llama.cpp and no model weights are needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "gguf_builder.rs"]
mod gguf_builder;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conclave_core::engine::{ChatRequest, Engine, EngineError, LoadOptions, LoadedModel};
use conclave_core::protocol::PROTOCOL_VERSION;
use conclave_core::{ChatEvent, ErrorCode, Message, Role};
use gguf_builder::Builder;

/// Every test here fails well before this; a hang is what they guard against.
const LIMIT: Duration = Duration::from_secs(20);

/// A `Ready` line as a worker of protocol `version` writes it (no version field for 0).
fn ready_line(version: u32) -> String {
    let protocol = if version == 0 {
        String::new()
    } else {
        format!("\"protocol\":{version},")
    };
    format!(
        r#"{{"type":"ready",{protocol}"pid":1,"load_ms":1.0,"n_ctx":2048,"n_ctx_train":2048,"n_vocab":32,"n_params":1,"size_bytes":1,"threads":1,"architecture":"llama","name":null,"chat_template":null,"bos_token":"<s>","eos_token":"</s>","add_bos":false}}"#
    )
}

struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
}

fn fixture() -> Fixture {
    // Short, so the silent worker's test is quick; the others answer at once anyway.
    // Every test in this file wants the same value, so setting it for the process is safe.
    std::env::set_var("CONCLAVE_WORKER_LOAD_STALL_SECS", "2");
    let dir = tempfile::tempdir().unwrap();
    let model = Builder::tiny().write(dir.path(), "tiny.gguf");
    Fixture { dir, model }
}

impl Fixture {
    /// A fake worker that runs `body` (sh). It ends in `exec sleep` so that killing the
    /// worker kills the whole script.
    fn worker(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\nexec sleep 30\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    async fn load(&self, worker: &Path) -> (Result<LoadedModel, EngineError>, Duration) {
        let engine = Engine::with_worker(worker.to_path_buf());
        let t = Instant::now();
        let res = tokio::time::timeout(
            LIMIT,
            engine.load(&self.model, LoadOptions::default(), |_| {}),
        )
        .await
        .expect("the load hung");
        (res, t.elapsed())
    }
}

fn load_error(res: Result<LoadedModel, EngineError>) -> EngineError {
    match res {
        Ok(_) => panic!("a fake worker loaded"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_worker_of_another_protocol_version_is_refused() {
    let f = fixture();
    let other = PROTOCOL_VERSION + 1;
    let bin = f.worker("newer", &format!("echo '{}'", ready_line(other)));
    let (res, took) = f.load(&bin).await;
    let e = load_error(res);
    assert_eq!(e.code(), "worker_mismatch", "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&bin.display().to_string())
            && msg.contains(&format!("protocol {other}, this app {PROTOCOL_VERSION}"))
            && msg.contains("rebuild"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn a_worker_from_before_versioning_is_refused_as_version_0() {
    let f = fixture();
    let bin = f.worker("stale", &format!("echo '{}'", ready_line(0)));
    let e = load_error(f.load(&bin).await.0);
    assert!(
        matches!(e, EngineError::ProtocolMismatch { worker: 0, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn a_ready_line_of_another_shape_still_reports_the_version() {
    let f = fixture();
    let bin = f.worker(
        "reshaped",
        r#"echo '{"type":"ready","protocol":7,"renamed":true}'"#,
    );
    let e = load_error(f.load(&bin).await.0);
    assert!(
        matches!(e, EngineError::ProtocolMismatch { worker: 7, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn a_worker_that_writes_garbage_fails_the_load_at_once() {
    let f = fixture();
    let bin = f.worker("garbage", "echo 'Segmentation fault? no: just not JSON'");
    let (res, took) = f.load(&bin).await;
    let e = load_error(res);
    assert_eq!(e.code(), "load_failed", "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("cannot read") && msg.contains("`Segmentation fault? no: just not JSON`"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn a_silent_worker_is_given_up_after_the_stall_limit() {
    let f = fixture();
    let bin = f.worker("silent", "");
    let (res, took) = f.load(&bin).await;
    let e = load_error(res);
    assert_eq!(e.code(), "load_failed", "{e}");
    assert!(e.to_string().contains("no progress for 2 s"), "{e}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "took {took:?}"
    );
}

#[tokio::test]
async fn a_slow_load_that_reports_progress_is_waited_for() {
    let f = fixture();
    // 4 s in all, longer than the 2 s limit, but never 2 s without a word.
    let bin = f.worker(
        "slow",
        &format!(
            "for p in 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8; do echo \"{{\\\"type\\\":\\\"load_progress\\\",\\\"fraction\\\":$p}}\"; sleep 0.5; done\necho '{}'",
            ready_line(PROTOCOL_VERSION)
        ),
    );
    let (res, took) = f.load(&bin).await;
    let m = res.expect("a worker that keeps reporting progress is not given up");
    assert!(took >= Duration::from_secs(3), "took {took:?}");
    assert_eq!(m.info().await.architecture, "llama");
    m.unload().await;
}

#[tokio::test]
async fn garbage_after_ready_fails_the_pending_answer() {
    let f = fixture();
    // Reads the generate request, then answers with a line that is no event.
    let bin = f.worker(
        "broken",
        &format!(
            "echo '{}'\nread request\necho 'warning: something printed to stdout'",
            ready_line(PROTOCOL_VERSION)
        ),
    );
    let m = f.load(&bin).await.0.expect("the fake worker is ready");
    let mut stream = m
        .chat(ChatRequest {
            messages: vec![Message::new(Role::User, "hi")],
            ..ChatRequest::default()
        })
        .await
        .unwrap();
    let event = tokio::time::timeout(LIMIT, stream.next_event())
        .await
        .expect("the answer hung");
    match event {
        Some(ChatEvent::Error { code, message }) => {
            assert_eq!(code, "bad_output", "{message}");
            assert!(
                message.contains("`warning: something printed to stdout`"),
                "{message}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    m.unload().await;
}

#[tokio::test]
async fn an_endless_line_fails_the_load_instead_of_filling_memory() {
    let f = fixture();
    // 32 MB without a newline, then the worker lingers: the reader must give up on the
    // line at its cap, and the worker must be killed rather than waited for.
    let bin = f.worker("flood", "head -c 33554432 /dev/zero | tr '\\0' a");
    let (res, took) = f.load(&bin).await;
    let e = load_error(res);
    let msg = e.to_string();
    assert!(msg.contains("too long") || msg.contains("bytes"), "{msg}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}
