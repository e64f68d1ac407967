//! DRY and XTC end to end on the real SmolLM2: each changes the answer through the engine,
//! the CLI (flags, stored with the answer, exported) and the API (llama-server's field
//! names, stored with the answer, ranges enforced). The app's path is in e2e_templates.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use conclave_core::api::{ApiConfig, ApiServer};
use conclave_core::engine::{ChatRequest, LoadOptions, LoadedModel};
use conclave_core::history::{History, StoredMessage};
use conclave_core::models::Library;
use conclave_core::session::Conclave;
use conclave_core::{Message, Role, SamplingParams};
use conclave_tests::{collect, engine, model, SMOLLM2};
use serde_json::{json, Value};

/// SmolLM2 at temperature 0 answers this with "la" over and over: what DRY is for.
const REPEAT: &str = "Repeat after me: la la la la la la la la la la la la";
/// An open question: several candidates above XTC's threshold at many steps.
const STORY: &str = "Tell me a short story about a cat.";

fn greedy(max_tokens: u32) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        seed: Some(1),
        max_tokens,
        ..SamplingParams::default()
    }
}

fn dry() -> SamplingParams {
    SamplingParams {
        dry_multiplier: 0.8,
        ..greedy(40)
    }
}

fn xtc() -> SamplingParams {
    SamplingParams {
        xtc_probability: 1.0,
        xtc_threshold: 0.1,
        ..greedy(32)
    }
}

async fn text(m: &LoadedModel, prompt: &str, params: SamplingParams) -> String {
    let req = ChatRequest {
        messages: vec![
            Message::new(Role::System, "You are a helpful assistant."),
            Message::new(Role::User, prompt),
        ],
        params,
        ..ChatRequest::default()
    };
    let a = collect(m.chat(req).await.unwrap()).await;
    assert!(a.error.is_none(), "{a:?}");
    a.text
}

fn las(t: &str) -> usize {
    t.split_whitespace()
        .filter(|w| w.trim_matches(|c: char| !c.is_alphabetic()) == "la")
        .count()
}

#[tokio::test]
async fn engine_dry_breaks_a_loop_and_xtc_changes_a_greedy_answer() {
    let m = engine()
        .load(
            model(SMOLLM2),
            LoadOptions {
                n_ctx: 1024,
                threads: Some(2),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    let plain = text(&m, REPEAT, greedy(40)).await;
    assert!(las(&plain) >= 10, "the plain answer repeats: {plain:?}");
    let with_dry = text(&m, REPEAT, dry()).await;
    assert!(
        las(&with_dry) < las(&plain),
        "DRY 0.8 repeats less: {with_dry:?} vs {plain:?}"
    );

    let plain = text(&m, STORY, greedy(32)).await;
    let with_xtc = text(&m, STORY, xtc()).await;
    assert_ne!(with_xtc, plain, "XTC at probability 1 changed nothing");
    // Off means off: the defaults give the plain answer again.
    assert_eq!(text(&m, STORY, greedy(32)).await, plain);
    m.unload().await;
}

fn cli_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CONCLAVE_CLI_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("conclave")
}

fn chat(data: &Path, prompt: &str, extra: &[&str]) -> String {
    let models = model(SMOLLM2).parent().unwrap().to_path_buf();
    let mut args = vec![
        "chat",
        "--model",
        "SmolLM2",
        "--temp",
        "0",
        "--seed",
        "1",
        "--max-tokens",
        "40",
        "--think",
        "off",
        "--system",
        "You are a helpful assistant.",
    ];
    args.extend_from_slice(extra);
    args.push(prompt);
    let out = Command::new(cli_bin())
        .args(&args)
        .env("CONCLAVE_DATA_DIR", data)
        .env("CONCLAVE_MODELS_DIR", models)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "conclave {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every answer in the history, oldest first.
async fn answers(db: &Path) -> Vec<StoredMessage> {
    let h = History::open(db).await.unwrap();
    let mut out = Vec::new();
    let mut convs = h.list_conversations(100, None).await.unwrap();
    convs.reverse();
    for c in convs {
        let tree = h.get_conversation(&c.id).await.unwrap();
        out.extend(
            tree.messages
                .into_iter()
                .filter(|m| m.role == Role::Assistant),
        );
    }
    h.close().await;
    out
}

#[tokio::test]
async fn cli_flags_change_the_answer_and_are_stored_and_exported() {
    let data = tempfile::tempdir().unwrap();
    let plain = chat(data.path(), REPEAT, &[]);
    let with_dry = chat(data.path(), REPEAT, &["--dry-multiplier", "0.8"]);
    assert!(
        las(&with_dry) < las(&plain),
        "--dry-multiplier 0.8: {with_dry:?} vs {plain:?}"
    );
    let story = chat(data.path(), STORY, &[]);
    let with_xtc = chat(
        data.path(),
        STORY,
        &["--xtc-probability", "1", "--xtc-threshold", "0.1"],
    );
    assert_ne!(with_xtc, story, "--xtc-probability 1 changed nothing");
    // The other DRY options parse and are kept as given.
    chat(
        data.path(),
        REPEAT,
        &[
            "--dry-multiplier",
            "0.5",
            "--dry-base",
            "2",
            "--dry-allowed-length",
            "3",
            "--dry-penalty-last-n",
            "64",
        ],
    );

    let stored = answers(&data.path().join("history.sqlite3")).await;
    assert_eq!(stored.len(), 5);
    let s: Vec<SamplingParams> = stored.iter().map(|m| m.sampling.clone().unwrap()).collect();
    assert_eq!(s[0].dry_multiplier, 0.0);
    assert_eq!(s[1].dry_multiplier, 0.8);
    assert_eq!(s[3].xtc_probability, 1.0);
    assert_eq!(s[3].xtc_threshold, 0.1);
    assert_eq!(
        (
            s[4].dry_multiplier,
            s[4].dry_base,
            s[4].dry_allowed_length,
            s[4].dry_penalty_last_n
        ),
        (0.5, 2.0, 3, 64)
    );

    // Out of range: refused before anything loads.
    let out = Command::new(cli_bin())
        .args(["chat", "--model", "SmolLM2", "--xtc-probability", "2", "hi"])
        .env("CONCLAVE_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("xtc_probability"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The JSON export carries them with each answer.
    let file = data.path().join("all.json");
    let out = Command::new(cli_bin())
        .args(["history", "export", "--all", "--format", "json", "--output"])
        .arg(&file)
        .env("CONCLAVE_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("\"dry_multiplier\": 0.8") || text.contains("\"dry_multiplier\":0.8"),
        "{text}"
    );
    assert!(text.contains("xtc_probability"), "{text}");
}

#[tokio::test]
async fn api_fields_change_the_answer_are_stored_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path().join("history.sqlite3"))
        .await
        .unwrap();
    let app = Conclave::new(engine(), history, Library::with_root(dir.path()));
    let server = ApiServer::start(
        ApiConfig {
            port: 0,
            models: vec![model(SMOLLM2)],
            n_ctx: 1024,
            threads: Some(2),
            save_history: true,
            ..ApiConfig::default()
        },
        app.clone(),
    )
    .await
    .unwrap();
    let url = format!("http://{}/v1/chat/completions", server.addr());
    let client = reqwest::Client::new();
    let ask = |prompt: &str, extra: Value| {
        let mut body = json!({
            "model": "SmolLM2-135M-Instruct.Q4_1",
            "temperature": 0, "seed": 1, "max_tokens": 40,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": prompt}
            ]
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let req = client.post(&url).json(&body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let v: Value = res.json().await.unwrap();
            (status, v)
        }
    };
    let content = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let (st, plain) = ask(REPEAT, json!({})).await;
    assert_eq!(st, 200, "{plain}");
    let (st, with_dry) = ask(
        REPEAT,
        json!({"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": -1}),
    )
    .await;
    assert_eq!(st, 200, "{with_dry}");
    assert!(
        las(&content(&with_dry)) < las(&content(&plain)),
        "dry_multiplier 0.8: {with_dry} vs {plain}"
    );
    let (_, story) = ask(STORY, json!({"max_tokens": 32})).await;
    let (st, with_xtc) = ask(
        STORY,
        json!({"max_tokens": 32, "xtc_probability": 1.0, "xtc_threshold": 0.1}),
    )
    .await;
    assert_eq!(st, 200, "{with_xtc}");
    assert_ne!(
        content(&with_xtc),
        content(&story),
        "xtc_probability 1 changed nothing"
    );

    for bad in [
        json!({"xtc_probability": 1.5}),
        json!({"dry_allowed_length": 1.5}),
        json!({"dry_multiplier": "high"}),
    ] {
        let (st, e) = ask(REPEAT, bad.clone()).await;
        assert_eq!(st, 400, "{bad} → {e}");
    }

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.shutdown().await.unwrap();
    for m in app.loaded().await {
        app.unload(&m.path).await;
    }
    let mut seen = Vec::new();
    for c in app.history.list_conversations(100, None).await.unwrap() {
        let tree = app.history.get_conversation(&c.id).await.unwrap();
        for m in tree.messages.iter().filter(|m| m.role == Role::Assistant) {
            let s = m.sampling.clone().unwrap();
            seen.push((s.dry_multiplier, s.xtc_probability));
        }
    }
    seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(seen, vec![(0.0, 0.0), (0.0, 0.0), (0.0, 1.0), (0.8, 0.0)]);
}
