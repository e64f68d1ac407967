//! `conclave history replay`: a saved answer, sampled at temperature 0.8 with a seed,
//! replayed by the built binary in a fresh process is identical; a saved answer that no
//! longer matches what the model writes is shown as a word diff; another model file (a
//! different sha256) is refused.
//!
//! Needs `cargo build -p conclave-cli -p conclave-worker` (`make test` does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use conclave_tests::{model, SMOLLM2};

fn cli_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CONCLAVE_CLI_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("conclave")
}

fn conclave(data: &Path, args: &[&str]) -> Output {
    let models = model(SMOLLM2).parent().unwrap().to_path_buf();
    Command::new(cli_bin())
        .args(args)
        .env("CONCLAVE_DATA_DIR", data)
        .env("CONCLAVE_MODELS_DIR", models)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
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

/// The one saved conversation and its last answer.
fn saved_answer(data: &Path) -> (String, serde_json::Value) {
    let list: serde_json::Value =
        serde_json::from_str(&ok(data, &["history", "list", "--json"])).unwrap();
    let conv = list[0]["id"].as_str().unwrap().to_owned();
    let tree: serde_json::Value =
        serde_json::from_str(&ok(data, &["history", "show", &conv, "--json"])).unwrap();
    let answer = tree["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|m| m["role"] == "assistant")
        .unwrap()
        .clone();
    (conv, answer)
}

#[test]
fn a_sampled_answer_replays_identically_and_a_changed_one_shows_a_diff() {
    let data = tempfile::tempdir().unwrap();
    let answer = ok(
        data.path(),
        &[
            "chat",
            "--model",
            "SmolLM2",
            "--temp",
            "0.8",
            "--seed",
            "1234",
            "--max-tokens",
            "40",
            "Write one sentence about the sea.",
        ],
    );
    let (conv, saved) = saved_answer(data.path());
    let id = saved["id"].as_str().unwrap().to_owned();
    assert_eq!(
        saved["content"].as_str().unwrap(),
        answer.trim_end_matches('\n')
    );
    // Recorded before the answer started, not only when a background hash was quick enough.
    let sha = saved["model"]["sha256"].as_str().expect("sha256 recorded");
    assert_eq!(sha.len(), 64, "{saved}");
    assert_eq!(saved["seed"], 1234);

    let out = ok(data.path(), &["history", "replay", &id]);
    assert!(out.contains("identical ✓"), "{out}");
    assert!(out.contains("seed 1234"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&ok(data.path(), &["history", "replay", &id, "--json"])).unwrap();
    assert_eq!(report["identical"], true, "{report}");
    assert_eq!(report["replayed"], saved["content"]);
    assert_eq!(report["sha256"], sha);

    // The saved text edited outside the app (an export changed and imported again): the
    // replay shows what the model really writes against it, word by word.
    let export = ok(
        data.path(),
        &["history", "export", &conv, "--format", "json"],
    );
    let original = saved["content"].as_str().unwrap();
    let first_word = original.split_whitespace().next().unwrap().to_owned();
    let tampered = export.replacen(
        &serde_json::to_string(original).unwrap(),
        &serde_json::to_string(&original.replacen(&first_word, "Zebras", 1)).unwrap(),
        1,
    );
    assert_ne!(tampered, export, "the answer text is in the export");
    let file = data.path().join("edited.json");
    std::fs::write(&file, tampered).unwrap();
    ok(data.path(), &["history", "delete", &conv]);
    ok(data.path(), &["history", "import", file.to_str().unwrap()]);
    let out = ok(data.path(), &["history", "replay", &id]);
    assert!(!out.contains("identical"), "{out}");
    assert!(out.contains("[-Zebras-]"), "{out}");
    assert!(out.contains(&format!("{{+{first_word}+}}")), "{out}");

    // Another model file is not the model that wrote the answer.
    let gemma = model(conclave_tests::GEMMA3);
    let wrong = conclave(
        data.path(),
        &["history", "replay", &id, "--model", gemma.to_str().unwrap()],
    );
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("sha256"), "{err}");

    // A question is not replayable.
    let question = conclave(
        data.path(),
        &["history", "replay", saved["parent_id"].as_str().unwrap()],
    );
    assert!(!question.status.success());
}
