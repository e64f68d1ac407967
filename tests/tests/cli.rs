//! The built `conclave` binary, run the way a user runs it, against a temporary data
//! folder (CONCLAVE_DATA_DIR) and the checkout's real models: models, chat (with a
//! preset), compare with a scripted blind vote, leaderboard and presets.
//!
//! Needs `cargo build -p conclave-cli -p conclave-worker` (`make test` does); the binary
//! is looked up next to this test executable, or at CONCLAVE_CLI_BIN.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use conclave_core::history::History;
use conclave_core::session::ChatSettings;
use conclave_tests::{model, SMOLLM2};

fn cli_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CONCLAVE_CLI_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/cli-… → target/debug/conclave
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("conclave");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p conclave-cli -p conclave-worker`",
        bin.display()
    );
    bin
}

fn conclave(data: &Path, args: &[&str]) -> Output {
    let models = model(SMOLLM2).parent().unwrap().to_path_buf();
    let out = Command::new(cli_bin())
        .args(args)
        .env("CONCLAVE_DATA_DIR", data)
        .env("CONCLAVE_MODELS_DIR", models)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    out
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = conclave(data, args);
    assert!(
        out.status.success(),
        "conclave {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn models_list_and_info() {
    let data = tempfile::tempdir().unwrap();
    let list = ok(data.path(), &["models", "list"]);
    assert!(list.contains("SmolLM2-135M-Instruct.Q4_1"), "{list}");
    assert!(list.contains("gemma-3-270m"), "{list}");
    let info = ok(data.path(), &["models", "info", "SmolLM2", "--ctx", "2048"]);
    assert!(info.contains("memory @ctx 2048"), "{info}");
    assert!(
        info.contains("Fits"),
        "SmolLM2 fits in any test machine: {info}"
    );
    // Where the layers go, RAM apart from VRAM, from the devices a worker lists.
    let json: serde_json::Value = serde_json::from_str(&ok(
        data.path(),
        &["models", "info", "SmolLM2", "--ctx", "2048", "--json"],
    ))
    .unwrap();
    let placement = &json["placement"];
    assert_eq!(placement["layer_count"], 30, "{json:#}");
    let line = info
        .lines()
        .find(|l| l.trim_start().starts_with("placement"))
        .unwrap_or_else(|| panic!("no placement line: {info}"));
    assert!(line.contains("RAM "), "{line}");
    if placement["has_gpu"] == false {
        // These CPU-only machines: everything stays in RAM, said plainly.
        assert!(line.ends_with("no GPU: all 30 layers on the CPU"), "{line}");
        assert_eq!(placement["gpu_layers"], 0);
        assert_eq!(placement["vram_bytes"], 0);
        assert_eq!(
            placement["ram_bytes"], json["fit"]["total_bytes"],
            "all on the CPU: RAM is the whole estimate"
        );
    } else {
        assert!(line.contains("VRAM "), "{line}");
    }
    let missing = conclave(data.path(), &["models", "info", "no-such-model"]);
    assert!(!missing.status.success());
}

/// An unfinished download (a `.part` with its sidecar, as a cancelled download leaves it)
/// is listed with its progress and address, and `discard` removes it.
#[test]
fn unfinished_downloads_are_listed_and_discarded() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    // Downloads land in the data folder's models folder.
    let models = data.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("x.gguf.part"), vec![0u8; 100]).unwrap();
    std::fs::write(
        models.join("x.gguf.part.json"),
        r#"{"url":"https://example.org/x.gguf","validator":"\"v1\"","total":1000}"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(cli_bin())
            .args(args)
            .env("CONCLAVE_DATA_DIR", data.path())
            .env("CONCLAVE_MODELS_DIR", elsewhere.path())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let list = run(&["models", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{text}");
    assert!(text.contains("unfinished downloads"), "{text}");
    assert!(
        text.contains("x.gguf  100 B of 1000 B (10%)  https://example.org/x.gguf"),
        "{text}"
    );
    let gone = run(&["models", "discard", "x.gguf"]);
    assert!(
        gone.status.success(),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    assert!(!models.join("x.gguf.part").exists());
    assert!(!models.join("x.gguf.part.json").exists());
    let list = run(&["models", "list"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains("unfinished"));
    let resume = run(&["models", "resume", "x.gguf"]);
    assert!(!resume.status.success());
    let err = String::from_utf8_lossy(&resume.stderr);
    assert!(err.contains("x.gguf (unfinished download)"), "{err}");
}

#[tokio::test]
async fn chat_answers_saves_and_follows_a_preset() {
    let data = tempfile::tempdir().unwrap();
    let answer = ok(
        data.path(),
        &[
            "chat",
            "--model",
            "SmolLM2",
            "--temp",
            "0",
            "--max-tokens",
            "24",
            "--think",
            "off",
            "--system",
            "You are a helpful assistant.",
            "What is the capital of France?",
        ],
    );
    assert!(answer.contains("Paris"), "{answer}");
    let history = ok(data.path(), &["history", "list"]);
    assert!(history.contains("capital of France"), "saved: {history}");

    // A preset saved (as the app does) caps the answer at 3 tokens; a flag overrides it.
    {
        let h = History::open(data.path().join("history.sqlite3"))
            .await
            .unwrap();
        let mut s = ChatSettings::default();
        s.sampling.temperature = 0.0;
        s.sampling.max_tokens = 3;
        s.system_prompt = "You are a helpful assistant.".into();
        h.save_preset("Tiny", &s).await.unwrap();
        h.close().await;
    }
    let usage = |out: &str| -> (u64, String) {
        let done: serde_json::Value = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "done")
            .expect("a done event");
        (
            done["usage"]["completion_tokens"].as_u64().unwrap_or(0),
            done["stop_reason"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let capped = ok(
        data.path(),
        &[
            "chat",
            "--model",
            "SmolLM2",
            "--preset",
            "Tiny",
            "--no-save",
            "--json",
            "Tell me a long story.",
        ],
    );
    assert_eq!(usage(&capped), (3, "max_tokens".into()), "{capped}");
    let longer = ok(
        data.path(),
        &[
            "chat",
            "--model",
            "SmolLM2",
            "--preset",
            "Tiny",
            "--max-tokens",
            "6",
            "--no-save",
            "--json",
            "Tell me a long story.",
        ],
    );
    assert_eq!(usage(&longer).0, 6, "{longer}");
    let unknown = conclave(
        data.path(),
        &["chat", "--model", "SmolLM2", "--preset", "Nope", "hi"],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("Nope"));

    let list = ok(data.path(), &["presets", "list"]);
    assert!(list.starts_with("Tiny\t"), "{list}");
    let show = ok(data.path(), &["presets", "show", "Tiny", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["settings"]["sampling"]["max_tokens"], 3);
    ok(data.path(), &["presets", "delete", "Tiny"]);
    assert!(ok(data.path(), &["presets", "list"]).contains("no presets"));
}

#[test]
fn compare_with_a_scripted_blind_vote_feeds_the_leaderboard() {
    let data = tempfile::tempdir().unwrap();
    let out = ok(
        data.path(),
        &[
            "compare",
            "--model",
            "SmolLM2",
            "--model",
            "gemma-3",
            "--blind",
            "--temp",
            "0",
            "--max-tokens",
            "8",
            "--vote",
            "b",
            "Say hello.",
        ],
    );
    assert!(out.contains("vote: b_better"), "{out}");
    assert!(
        out.contains(" was "),
        "names revealed after the vote: {out}"
    );
    let board = ok(data.path(), &["leaderboard", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&board).unwrap();
    assert_eq!(v["votes"], 1);
    assert_eq!(v["games"], 1);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows.iter()
            .map(|r| r["wins"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );
    let csv = ok(data.path(), &["leaderboard", "--csv"]);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // A vote naming a column the run lacks is refused.
    let bad = conclave(
        data.path(),
        &[
            "compare",
            "--model",
            "SmolLM2",
            "--model",
            "gemma-3",
            "--temp",
            "0",
            "--max-tokens",
            "4",
            "--vote",
            "c",
            "Hi.",
        ],
    );
    assert!(!bad.status.success(), "a 'c' vote on two columns");
}

/// A column with its own draft model runs in its own worker and reports what speculation
/// bought; at temperature 0 its text is the plain column's.
#[test]
fn a_compare_column_can_have_its_own_draft_model() {
    let data = tempfile::tempdir().unwrap();
    let out = ok(
        data.path(),
        &[
            "compare",
            "--model",
            "SmolLM2@speculative=off",
            "--model",
            "SmolLM2@draft=SmolLM2,speculative=draft",
            "--temp",
            "0",
            "--max-tokens",
            "32",
            "--no-save",
            "--json",
            "List the days of the week.",
        ],
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut texts = [String::new(), String::new()];
    for l in &lines {
        if l["type"] == "token" {
            let c = usize::try_from(l["column"].as_u64().unwrap()).unwrap();
            texts[c].push_str(l["text"].as_str().unwrap());
        }
    }
    let plan = lines.iter().find(|l| l["type"] == "plan").expect("a plan");
    assert_eq!(
        plan["workers"], 2,
        "a draft model needs its own worker: {plan}"
    );
    let summary = lines
        .iter()
        .find(|l| l["type"] == "summary")
        .expect("a summary");
    let cols = summary["columns"].as_array().unwrap();
    assert_eq!(cols[0]["drafted_tokens"], 0, "{summary}");
    let drafted = cols[1]["drafted_tokens"].as_u64().unwrap();
    let accepted = cols[1]["accepted_tokens"].as_u64().unwrap();
    assert!(drafted > 0 && accepted > 0, "{summary}");
    assert!(!texts[0].is_empty());
    assert_eq!(texts[0], texts[1]);
    // A bad column setting names itself.
    let bad = conclave(
        data.path(),
        &[
            "compare",
            "--model",
            "SmolLM2",
            "--model",
            "SmolLM2@speculative=fast",
            "Hi.",
        ],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("speculative"),
        "{err}"
    );
}
