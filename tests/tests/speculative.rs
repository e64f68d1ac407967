//! Speculative decoding on the real SmolLM2: prompt lookup and a draft model (SmolLM2
//! drafting for itself) write the same text as plain decoding at temperature 0, the same
//! distribution at temperature > 0, keep stop strings, budget forcing and cancel working,
//! and a draft model with another vocabulary (Gemma 3) is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use conclave_core::engine::{ChatRequest, LoadOptions, LoadedModel};
use conclave_core::{
    ChatEvent, ErrorCode, Message, Role, SamplingParams, SpeculativeMode, StopReason, ThinkMode,
};
use conclave_tests::{collect, engine, model, Answer, GEMMA3, SMOLLM2};

const SYSTEM: &str = "You are a helpful assistant.";

/// SmolLM2 with itself as the draft model: the draft agrees with the target nearly always,
/// which makes `draft` mode's bookkeeping (long accepted runs) easy to check.
async fn load_pair() -> LoadedModel {
    engine()
        .load(
            model(SMOLLM2),
            LoadOptions {
                n_ctx: 2048,
                threads: Some(2),
                draft_model: Some(model(SMOLLM2)),
                ..LoadOptions::default()
            },
            |_| {},
        )
        .await
        .unwrap()
}

fn request(prompt: &str, params: SamplingParams, mode: SpeculativeMode) -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::new(Role::System, SYSTEM),
            Message::new(Role::User, prompt),
        ],
        params,
        speculative: mode,
        ..ChatRequest::default()
    }
}

fn greedy(max_tokens: u32, stop: &[&str]) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens,
        stop: stop.iter().map(|s| (*s).to_owned()).collect(),
        ..SamplingParams::default()
    }
}

async fn answer(m: &LoadedModel, req: ChatRequest) -> Answer {
    let a = collect(m.chat(req).await.unwrap()).await;
    assert!(a.error.is_none(), "{:?}", a.error);
    a
}

const MODES: [SpeculativeMode; 4] = [
    SpeculativeMode::Lookup,
    SpeculativeMode::Draft,
    SpeculativeMode::Auto,
    SpeculativeMode::Off,
];

#[tokio::test]
async fn temperature_zero_gives_the_same_text_in_every_mode() {
    let m = load_pair().await;
    let copy = "Copy this text exactly, with no changes:\n\nThe lighthouse keeper climbed the stairs every evening at six. He lit the lamp, wrote the weather in his log, and watched the ships pass the rocks until morning.";
    let cases: [(&str, &[&str], u32); 4] = [
        (copy, &[], 120),
        // Non-ASCII text the tokenizer splits inside characters.
        (
            "Repeat after me: Καλημέρα κόσμε! Grüße aus Köln, 日本語のテキスト, naïve café. Καλημέρα κόσμε!",
            &[],
            80,
        ),
        // A stop string inside text that prompt lookup drafts through.
        (copy, &["ships"], 120),
        ("What is the capital of France?", &[], 48),
    ];
    let (mut drafted, mut accepted) = (HashMap::new(), HashMap::new());
    for (prompt, stop, max_tokens) in cases {
        let mut texts = Vec::new();
        for mode in MODES {
            let a = answer(&m, request(prompt, greedy(max_tokens, stop), mode)).await;
            if mode == SpeculativeMode::Off {
                assert_eq!(a.metrics.drafted_tokens, 0, "off drafts nothing");
            }
            assert!(a.metrics.accepted_tokens <= a.metrics.drafted_tokens);
            *drafted.entry(mode).or_insert(0) += a.metrics.drafted_tokens;
            *accepted.entry(mode).or_insert(0) += a.metrics.accepted_tokens;
            texts.push((mode, a.text, a.stop_reason));
        }
        let (_, reference, reason) = texts.last().cloned().unwrap();
        assert!(!reference.is_empty(), "{prompt}: empty answer");
        if !stop.is_empty() {
            assert_eq!(reason, Some(StopReason::StopString), "{reference}");
            assert!(!reference.contains(stop[0]), "{reference}");
        }
        for (mode, text, r) in &texts {
            assert_eq!(text, &reference, "{mode} differs from off on {prompt:?}");
            assert_eq!(r, &reason, "{mode}: stop reason");
        }
    }
    let lookup = (
        drafted[&SpeculativeMode::Lookup],
        accepted[&SpeculativeMode::Lookup],
    );
    assert!(
        lookup.0 > 20 && lookup.1 > 10,
        "prompt lookup drafted {} and kept {} on copying prompts",
        lookup.0,
        lookup.1
    );
    let draft = (
        drafted[&SpeculativeMode::Draft],
        accepted[&SpeculativeMode::Draft],
    );
    assert!(draft.0 > 100, "the draft model drafted only {}", draft.0);
    // The same model drafting for itself: only the slightly different numbers of batched
    // and single-token decoding can make it miss.
    assert!(
        f64::from(draft.1) >= 0.95 * f64::from(draft.0),
        "self-drafting kept {} of {}",
        draft.1,
        draft.0
    );
    m.unload().await;
}

/// The chi-square value a statistic of `df` degrees of freedom exceeds with probability
/// about 0.001 (Wilson–Hilferty).
fn chi2_critical_001(df: usize) -> f64 {
    let k = df as f64;
    let z = 3.090_f64; // one-sided normal quantile for 0.001
    let t = 1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt();
    k * t.powi(3)
}

/// Two-sample chi-square test of homogeneity over the outcomes' counts; outcomes seen
/// fewer than 10 times in both samples together are pooled so every cell has a usable
/// expected count. Returns the statistic and its degrees of freedom.
fn chi2_two_samples(a: &HashMap<String, u32>, b: &HashMap<String, u32>) -> (f64, usize) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut cells: Vec<(f64, f64)> = Vec::new();
    let mut pooled = (0.0, 0.0);
    for k in keys {
        let (x, y) = (
            f64::from(*a.get(k).unwrap_or(&0)),
            f64::from(*b.get(k).unwrap_or(&0)),
        );
        if x + y < 10.0 {
            pooled.0 += x;
            pooled.1 += y;
        } else {
            cells.push((x, y));
        }
    }
    if pooled.0 + pooled.1 > 0.0 {
        cells.push(pooled);
    }
    let na: f64 = cells.iter().map(|c| c.0).sum();
    let nb: f64 = cells.iter().map(|c| c.1).sum();
    let n = na + nb;
    let mut stat = 0.0;
    for (x, y) in &cells {
        let total = x + y;
        let (ea, eb) = (total * na / n, total * nb / n);
        stat += (x - ea).powi(2) / ea + (y - eb).powi(2) / eb;
    }
    (stat, cells.len().saturating_sub(1))
}

#[tokio::test]
async fn sampling_keeps_the_target_distribution() {
    let m = load_pair().await;
    // A prompt with a few likely continuations: the first tokens vary between seeds.
    let prompt = "Name one fruit. Answer with one word.";
    const N: u32 = 150;
    let params = |seed: u32| SamplingParams {
        temperature: 1.0,
        top_k: 40,
        top_p: 1.0,
        min_p: 0.0,
        seed: Some(seed),
        max_tokens: 4,
        ..SamplingParams::default()
    };
    let mut samples: HashMap<SpeculativeMode, HashMap<String, u32>> = HashMap::new();
    // The first two words of each answer: the first token is sampled from the prompt's
    // logits (nothing is drafted before it), the next ones at drafted positions. Whole
    // four-token answers vary too much to compare by themselves (most are seen once).
    let mut openings: HashMap<SpeculativeMode, HashMap<String, u32>> = HashMap::new();
    let (mut drafted, mut accepted) = (0, 0);
    // Different seeds for each mode: this compares distributions, not seed replays. The
    // draft model drafts at every step (prompt lookup would rarely find anything to copy
    // in so short a prompt); verification is the same code whatever drafted.
    for (k, mode) in [SpeculativeMode::Off, SpeculativeMode::Draft]
        .into_iter()
        .enumerate()
    {
        for i in 0..N {
            let seed = 1 + i + N * u32::try_from(k).unwrap();
            let a = answer(&m, request(prompt, params(seed), mode)).await;
            let opening = a
                .text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            *openings
                .entry(mode)
                .or_default()
                .entry(opening)
                .or_insert(0) += 1;
            let counts = samples.entry(mode).or_default();
            *counts.entry(a.text).or_insert(0) += 1;
            if mode == SpeculativeMode::Draft {
                drafted += a.metrics.drafted_tokens;
                accepted += a.metrics.accepted_tokens;
            }
        }
    }
    // The check must have exercised verification, rejections included.
    assert!(drafted > 0 && accepted < drafted, "{accepted} of {drafted}");
    let off = &samples[&SpeculativeMode::Off];
    assert!(off.len() >= 3, "too little variety to compare: {off:?}");
    let draft = &samples[&SpeculativeMode::Draft];
    let (stat, df) = chi2_two_samples(off, draft);
    assert!(df >= 1, "{off:?}");
    let critical = chi2_critical_001(df);
    // Shown with --nocapture: what was compared, so a pass can be read, not only trusted.
    eprintln!(
        "off {off:?}\ndraft {draft:?}\nchi-square {stat:.2}, {df} df, limit {critical:.2}; \
         draft mode kept {accepted} of {drafted} drafted tokens"
    );
    assert!(
        stat < critical,
        "chi-square {stat:.1} over {df} degrees of freedom (limit {critical:.1}); off {off:?}, draft {draft:?}"
    );
    let (off, draft) = (
        &openings[&SpeculativeMode::Off],
        &openings[&SpeculativeMode::Draft],
    );
    let (stat, df) = chi2_two_samples(off, draft);
    let critical = chi2_critical_001(df);
    eprintln!("openings: chi-square {stat:.2}, {df} df, limit {critical:.2}");
    // Enough common openings for the test to have power (it tells 100/50 from 50/100
    // apart, see below); a real change of distribution moves several of them.
    assert!(
        df >= 3,
        "too few common openings to compare: {off:?} {draft:?}"
    );
    assert!(
        stat < critical,
        "openings: chi-square {stat:.1} over {df} degrees of freedom (limit {critical:.1}); off {off:?}, draft {draft:?}"
    );
    m.unload().await;
}

#[test]
fn the_chi_square_check_can_tell_different_distributions_apart() {
    let a: HashMap<String, u32> = [("x", 100), ("y", 50)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let b: HashMap<String, u32> = [("x", 50), ("y", 100)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let (stat, df) = chi2_two_samples(&a, &b);
    assert!(stat > chi2_critical_001(df), "{stat} {df}");
    let (stat, df) = chi2_two_samples(&a, &a);
    assert!(stat < chi2_critical_001(df));
    // Reference values: the 0.999 quantiles for 1 and 10 degrees of freedom.
    assert!((chi2_critical_001(1) - 10.83).abs() < 0.6);
    assert!((chi2_critical_001(10) - 29.59).abs() < 0.3);
}

#[tokio::test]
async fn a_draft_model_with_another_vocabulary_is_refused() {
    let err = engine()
        .load(
            model(SMOLLM2),
            LoadOptions {
                n_ctx: 512,
                threads: Some(1),
                draft_model: Some(model(GEMMA3)),
                ..LoadOptions::default()
            },
            |_| {},
        )
        .await
        .err()
        .expect("Gemma 3 cannot draft for SmolLM2");
    let message = err.to_string();
    assert_eq!(err.code(), "load_failed");
    assert!(
        message.contains("another vocabulary") && message.contains("262144"),
        "{message}"
    );
}

#[tokio::test]
async fn draft_mode_without_a_draft_model_is_a_clear_error() {
    let m = engine()
        .load(
            model(SMOLLM2),
            LoadOptions {
                n_ctx: 512,
                threads: Some(1),
                ..LoadOptions::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    let a = collect(
        m.chat(request("Hi", greedy(8, &[]), SpeculativeMode::Draft))
            .await
            .unwrap(),
    )
    .await;
    let (code, message) = a.error.expect("refused");
    assert!(message.contains("--draft-model"), "{code}: {message}");
    // The worker stays usable.
    let a = answer(&m, request("Hi", greedy(8, &[]), SpeculativeMode::Lookup)).await;
    assert!(!a.text.is_empty());
    m.unload().await;
}

#[tokio::test]
async fn budget_forcing_works_with_speculation() {
    let m = load_pair().await;
    let mut texts = Vec::new();
    for mode in MODES {
        let req = ChatRequest {
            think: ThinkMode::On,
            think_budget: Some(24),
            ..request("Why is the sky blue?", greedy(64, &[]), mode)
        };
        let a = answer(&m, req).await;
        assert_eq!(a.metrics.budget_cut_at, Some(24), "{mode}: {a:?}");
        assert!(
            !a.reasoning.is_empty() && !a.text.is_empty(),
            "{mode}: {a:?}"
        );
        texts.push((mode, a.reasoning, a.text));
    }
    let (_, reasoning, text) = texts.last().cloned().unwrap();
    for (mode, r, t) in &texts {
        assert_eq!((r, t), (&reasoning, &text), "{mode} differs from off");
    }
    m.unload().await;
}

#[tokio::test]
async fn cancel_stops_a_speculative_answer_and_leaves_the_cache_consistent() {
    let m = load_pair().await;
    let prompt = "Write a very long essay about the history of Europe.";
    for mode in [SpeculativeMode::Draft, SpeculativeMode::Lookup] {
        let mut stream = m
            .chat(request(prompt, greedy(1000, &[]), mode))
            .await
            .unwrap();
        let handle = stream.cancel_handle();
        let (mut before, mut after) = (0, 0);
        let mut reason = None;
        while let Some(ev) = stream.next_event().await {
            match ev {
                ChatEvent::Token { .. } if before < 5 => {
                    before += 1;
                    if before == 5 {
                        handle.cancel();
                    }
                }
                ChatEvent::Token { .. } => after += 1,
                ChatEvent::Done { stop_reason, .. } => {
                    reason = Some(stop_reason);
                    break;
                }
                ChatEvent::Error { message, .. } => panic!("{message}"),
                _ => {}
            }
        }
        assert_eq!(reason, Some(StopReason::Cancelled), "{mode}");
        assert!(
            after <= 3,
            "{mode}: {after} tokens arrived after the cancel"
        );
    }
    // The cache the cancelled answers left behind (drafted positions included) must not
    // change what comes next: the same short answer as off, reusing the cached prompt.
    let short = |mode| request(prompt, greedy(40, &[]), mode);
    let a = answer(&m, short(SpeculativeMode::Draft)).await;
    let b = answer(&m, short(SpeculativeMode::Off)).await;
    assert_eq!(a.text, b.text);
    assert!(a.usage.cached_prompt_tokens > 0 && b.usage.cached_prompt_tokens > 0);
    m.unload().await;
}

/// `auto` speculates only for greedy answers, so a seeded sampled answer is the one plain
/// decoding gives whatever the machine's load (its pauses are timed), and stays
/// replayable; a greedy answer still gets drafts.
#[tokio::test]
async fn auto_leaves_sampled_answers_to_plain_decoding() {
    let m = load_pair().await;
    let prompt = "Repeat exactly: the quick brown fox jumps over the lazy dog. \
                  The quick brown fox jumps over the lazy dog.";
    let sampled = SamplingParams {
        temperature: 0.9,
        seed: Some(7),
        max_tokens: 40,
        ..SamplingParams::default()
    };
    let auto = answer(&m, request(prompt, sampled.clone(), SpeculativeMode::Auto)).await;
    let off = answer(&m, request(prompt, sampled, SpeculativeMode::Off)).await;
    assert_eq!(
        auto.metrics.drafted_tokens, 0,
        "auto drafted while sampling"
    );
    assert_eq!(auto.text, off.text);
    let greedy_auto = answer(&m, request(prompt, greedy(40, &[]), SpeculativeMode::Auto)).await;
    assert!(
        greedy_auto.metrics.drafted_tokens > 0,
        "auto drafted nothing for a greedy answer: {}",
        greedy_auto.text
    );
    m.unload().await;
}

/// `conclave serve --model M --draft-model D`: requests that ask for `draft` get it, the
/// response says what it bought, and the text is the plain answer's (temperature 0).
#[tokio::test]
async fn the_api_server_drafts_with_the_draft_model_it_was_given() {
    use conclave_core::api::{ApiConfig, ApiServer};
    use conclave_core::history::History;
    use conclave_core::models::Library;
    use conclave_core::session::Conclave;
    use serde_json::{json, Value};

    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path().join("history.sqlite3"))
        .await
        .unwrap();
    let app = Conclave::new(engine(), history, Library::with_root(dir.path()));
    let server = ApiServer::start(
        ApiConfig {
            port: 0,
            models: vec![model(SMOLLM2), model(GEMMA3)],
            draft_models: vec![(model(SMOLLM2), model(SMOLLM2))],
            n_ctx: 1024,
            threads: Some(2),
            ..ApiConfig::default()
        },
        app.clone(),
    )
    .await
    .unwrap();
    let url = format!("http://{}/v1/chat/completions", server.addr());
    let client = reqwest::Client::new();
    let ask = |model: &str, mode: &str, stream: bool| {
        let mut body = json!({
            "model": model,
            "temperature": 0, "max_tokens": 40, "stream": stream,
            "speculative": mode,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "List the days of the week."}
            ]
        });
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        let req = client.post(&url).json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let smol = "SmolLM2-135M-Instruct.Q4_1";
    let (status, body) = ask(smol, "off", false).await;
    assert_eq!(status, 200, "{body}");
    let off: Value = serde_json::from_str(&body).unwrap();
    assert!(
        off["usage"].get("speculative").is_none(),
        "no speculation, no figures: {off}"
    );
    let (status, body) = ask(smol, "draft", false).await;
    assert_eq!(status, 200, "{body}");
    let drafted: Value = serde_json::from_str(&body).unwrap();
    let spec = &drafted["usage"]["speculative"];
    let (d, a) = (
        spec["drafted_tokens"].as_u64().unwrap(),
        spec["accepted_tokens"].as_u64().unwrap(),
    );
    assert!(d > 0 && a > 0 && a <= d, "{spec}");
    assert_eq!(
        drafted["choices"][0]["message"]["content"],
        off["choices"][0]["message"]["content"]
    );
    // Streamed, the usage chunk carries the same figures.
    let (status, body) = ask(smol, "draft", true).await;
    assert_eq!(status, 200, "{body}");
    let usage_chunk = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|c| c["usage"].is_object())
        .expect("a usage chunk");
    assert!(usage_chunk["usage"]["speculative"]["drafted_tokens"].as_u64() > Some(0));
    // The model without a draft model refuses `draft` with a reason.
    let (status, body) = ask(GEMMA3, "draft", false).await;
    assert_eq!(status, 400, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["param"], "speculative", "{body}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no draft model") && m.contains("--draft-model")),
        "{body}"
    );
    // The loaded model kept its draft model: no reload between requests.
    let loaded = app.loaded().await;
    let smol_info = loaded
        .iter()
        .find(|m| m.path == model(SMOLLM2))
        .expect("SmolLM2 loaded");
    assert!(
        smol_info.draft_model.is_some(),
        "{:?}",
        smol_info.draft_model
    );
    server.shutdown().await.unwrap();
    for m in app.loaded().await {
        app.unload(&m.path).await;
    }
}
