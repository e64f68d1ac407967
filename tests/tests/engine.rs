//! The engine on the real models: streaming, seeds, templates, UTF-8, cancellation, prefix
//! reuse, context overflow, budget forcing, broken files and crashed workers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conclave_core::engine::{ChatRequest, EngineError, LoadOptions, LoadedModel};
use conclave_core::{ChatEvent, ErrorCode, Message, Role, SamplingParams, StopReason, ThinkMode};
use conclave_tests::{collect, engine, model, Answer, GEMMA3, SMOLLM2};

fn ask(prompt: &str, params: SamplingParams) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::new(Role::User, prompt)],
        params,
        ..ChatRequest::default()
    }
}

fn greedy(max_tokens: u32) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens,
        ..SamplingParams::default()
    }
}

fn opts(n_ctx: u32) -> LoadOptions {
    LoadOptions {
        n_ctx,
        threads: Some(2),
        ..Default::default()
    }
}

#[tokio::test]
async fn smollm2_streams_a_sensible_answer() {
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = progress.clone();
    let m = engine()
        .load(model(SMOLLM2), opts(2048), move |f| {
            seen.lock().unwrap().push(f)
        })
        .await
        .unwrap();
    let fractions = progress.lock().unwrap().clone();
    assert!(fractions.len() >= 3, "load progress: {fractions:?}");
    assert!(
        fractions.windows(2).all(|w| w[0] <= w[1]) && fractions.last() == Some(&1.0),
        "{fractions:?}"
    );
    let info = m.info().await;
    assert_eq!(info.architecture, "llama");
    assert_eq!(
        info.template_name, "model",
        "SmolLM2 carries its own ChatML template"
    );
    // SmolLM2-135M needs a system line to answer in English at temperature 0; without
    // one its own default prompt makes it drift into French.
    let mut req = ask("What is the capital of France?", greedy(64));
    req.messages.insert(
        0,
        Message::new(Role::System, "You are a helpful assistant."),
    );
    let a = collect(m.chat(req).await.unwrap()).await;
    assert!(a.started && a.error.is_none(), "{a:?}");
    assert!(
        a.token_events > 3,
        "streamed in pieces, got {} events",
        a.token_events
    );
    assert!(a.text.contains("Paris"), "answer: {}", a.text);
    assert_eq!(a.usage.completion_tokens, a.usage.answer_tokens);
    assert!(a.usage.prompt_tokens > 10);
    assert!(
        a.metrics.ttft_ms > 0.0
            && a.metrics.gen_tps > 0.0
            && a.metrics.wall_ms >= a.metrics.ttft_ms
    );
    assert!(
        a.metrics.peak_rss_bytes > 50_000_000,
        "worker RSS {}",
        a.metrics.peak_rss_bytes
    );
    assert!(a.metrics.cpu_seconds > 0.0 && a.metrics.energy_wh > 0.0);
    assert!(matches!(
        a.metrics.energy_method.as_str(),
        "rapl" | "cpu-time"
    ));
    m.unload().await;
}

#[tokio::test]
async fn a_fixed_seed_replays_the_same_text() {
    let m = engine()
        .load(model(SMOLLM2), opts(1024), |_| {})
        .await
        .unwrap();
    let params = SamplingParams {
        temperature: 0.8,
        seed: Some(7),
        max_tokens: 48,
        ..SamplingParams::default()
    };
    let a = collect(
        m.chat(ask("Tell me a short story about a cat.", params.clone()))
            .await
            .unwrap(),
    )
    .await;
    let b = collect(
        m.chat(ask("Tell me a short story about a cat.", params))
            .await
            .unwrap(),
    )
    .await;
    assert!(!a.text.is_empty());
    assert_eq!(a.text, b.text);
    assert_eq!(a.metrics.seed, 7);
    // And an unseeded run reports the seed it drew, which replays it.
    let free = SamplingParams {
        temperature: 0.8,
        max_tokens: 32,
        ..SamplingParams::default()
    };
    let c = collect(
        m.chat(ask("Name three colours.", free.clone()))
            .await
            .unwrap(),
    )
    .await;
    let replay = SamplingParams {
        seed: Some(c.metrics.seed),
        ..free
    };
    let d = collect(m.chat(ask("Name three colours.", replay)).await.unwrap()).await;
    assert_eq!(c.text, d.text);
    m.unload().await;
}

#[tokio::test]
async fn gemma3_base_runs_through_the_fallback_template() {
    let m = engine()
        .load(model(GEMMA3), opts(1024), |_| {})
        .await
        .unwrap();
    let info = m.info().await;
    assert_eq!(info.architecture, "gemma3");
    assert!(!info.has_chat_template);
    assert_eq!(info.template_name, "gemma");
    let a = collect(
        m.chat(ask("The capital of France is", greedy(16)))
            .await
            .unwrap(),
    )
    .await;
    assert!(a.error.is_none(), "{a:?}");
    assert_eq!(a.metrics.template, "gemma");
    assert!(a.usage.completion_tokens > 0 && !a.text.trim().is_empty());
    m.unload().await;
}

#[tokio::test]
async fn multilingual_text_streams_without_replacement_characters() {
    let m = engine()
        .load(model(SMOLLM2), opts(1024), |_| {})
        .await
        .unwrap();
    // A prompt in three scripts with emoji; SmolLM2's tokenizer splits such characters
    // across tokens, so the answer (in Greek) exercises the UTF-8 reassembly.
    let mut req = ask(
        "Translate 'good morning' into Greek and Chinese. 你好，世界。Καλημέρα! 😀🎉",
        greedy(60),
    );
    req.messages.insert(
        0,
        Message::new(Role::System, "You are a helpful assistant."),
    );
    let mut stream = m.chat(req).await.unwrap();
    let mut pieces = Vec::new();
    while let Some(ev) = stream.next_event().await {
        match ev {
            ChatEvent::Token { text, .. } => pieces.push(text),
            ChatEvent::Done { .. } => break,
            ChatEvent::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    let text: String = pieces.concat();
    assert!(
        !pieces.iter().any(|p| p.contains('\u{fffd}')),
        "a delta held U+FFFD: {pieces:?}"
    );
    assert!(
        text.chars().filter(|c| c.len_utf8() > 1).count() >= 5,
        "the answer should hold non-ASCII text: {text}"
    );
    m.unload().await;
}

#[tokio::test]
async fn cancel_stops_within_one_token() {
    let m = engine()
        .load(model(SMOLLM2), opts(2048), |_| {})
        .await
        .unwrap();
    let params = SamplingParams {
        temperature: 0.7,
        seed: Some(1),
        max_tokens: 1000,
        ..SamplingParams::default()
    };
    let mut stream = m
        .chat(ask(
            "Write a very long essay about the history of Europe.",
            params,
        ))
        .await
        .unwrap();
    let handle = stream.cancel_handle();
    let mut before = 0;
    let mut after = 0;
    let mut cancelled = false;
    let mut reason = None;
    let mut completion = 0;
    while let Some(ev) = stream.next_event().await {
        match ev {
            ChatEvent::Token { .. } if !cancelled => {
                before += 1;
                if before == 5 {
                    handle.cancel();
                    cancelled = true;
                }
            }
            ChatEvent::Token { .. } => after += 1,
            ChatEvent::Done {
                stop_reason, usage, ..
            } => {
                reason = Some(stop_reason);
                completion = usage.completion_tokens;
                break;
            }
            ChatEvent::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    assert_eq!(reason, Some(StopReason::Cancelled));
    // Tokens already in the pipe when the cancel was sent may still arrive: at most a couple.
    assert!(after <= 2, "{after} tokens arrived after the cancel");
    assert!(
        completion <= before as u32 + 2,
        "generated {completion} tokens"
    );
    m.unload().await;
}

#[tokio::test]
async fn later_turns_reuse_the_cached_prefix() {
    let m = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    let mut messages = vec![Message::new(Role::System, "You are a terse assistant.")];
    let mut cached = Vec::new();
    let mut prompts = Vec::new();
    for turn in 1..=10 {
        messages.push(Message::new(
            Role::User,
            format!("Turn {turn}: name a fruit."),
        ));
        let req = ChatRequest {
            messages: messages.clone(),
            params: greedy(12),
            ..ChatRequest::default()
        };
        let a = collect(m.chat(req).await.unwrap()).await;
        assert!(a.error.is_none(), "{a:?}");
        cached.push(a.usage.cached_prompt_tokens);
        prompts.push(a.usage.prompt_tokens);
        messages.push(Message::new(Role::Assistant, a.text));
    }
    assert_eq!(cached[0], 0, "nothing is cached before the first turn");
    for t in 1..10 {
        // Everything up to the previous answer is reused: only the new turn is decoded.
        assert!(
            cached[t] + 40 >= prompts[t - 1],
            "turn {}: cached {} of previous prompt {}",
            t + 1,
            cached[t],
            prompts[t - 1]
        );
        assert!(
            prompts[t] - cached[t] < 45,
            "turn {}: decoded {} new tokens",
            t + 1,
            prompts[t] - cached[t]
        );
    }
    assert!(
        prompts[9] > prompts[0] * 3,
        "the conversation grew: {prompts:?}"
    );
    m.unload().await;
}

#[tokio::test]
async fn oldest_turns_are_dropped_when_the_context_is_full() {
    let m = engine()
        .load(model(SMOLLM2), opts(512), |_| {})
        .await
        .unwrap();
    let filler = "The quick brown fox jumps over the lazy dog. ".repeat(12);
    let mut messages = vec![Message::new(Role::System, "Be brief.")];
    for i in 0..8 {
        messages.push(Message::new(Role::User, format!("{i}: {filler}")));
        messages.push(Message::new(
            Role::Assistant,
            format!("Noted {i}. {filler}"),
        ));
    }
    messages.push(Message::new(Role::User, "Say hello."));
    let req = ChatRequest {
        messages,
        params: greedy(16),
        ..ChatRequest::default()
    };
    let a = collect(m.chat(req).await.unwrap()).await;
    assert!(a.error.is_none(), "{a:?}");
    assert!(
        a.metrics.dropped_messages >= 2 && a.metrics.dropped_messages % 2 == 0,
        "dropped {}",
        a.metrics.dropped_messages
    );
    assert!(a.usage.prompt_tokens < 512);

    // One message longer than the whole context cannot be answered: a clear error.
    let huge = "word ".repeat(2000);
    let a = collect(m.chat(ask(&huge, greedy(16))).await.unwrap()).await;
    let (code, message) = a.error.expect("an overflow error");
    assert_eq!(code, "context_overflow", "{message}");
    assert!(message.contains("context"), "{message}");
    m.unload().await;
}

#[tokio::test]
async fn stop_strings_end_the_answer_and_never_leak() {
    let m = engine()
        .load(model(SMOLLM2), opts(1024), |_| {})
        .await
        .unwrap();
    let base = collect(
        m.chat(ask("Count from 1 to 10, separated by commas.", greedy(40)))
            .await
            .unwrap(),
    )
    .await;
    assert!(base.text.contains('5'), "{}", base.text);
    let params = SamplingParams {
        stop: vec!["5".into()],
        ..greedy(40)
    };
    let a = collect(
        m.chat(ask("Count from 1 to 10, separated by commas.", params))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.stop_reason, Some(StopReason::StopString));
    assert!(!a.text.contains('5'), "{}", a.text);
    assert!(
        base.text.starts_with(&a.text),
        "{:?} vs {:?}",
        a.text,
        base.text
    );
    m.unload().await;
}

/// Budget forcing on SmolLM2: "thinking on" opens a `<think>` block in the prompt, the
/// model writes thoughts, and after 32 thinking tokens the engine injects the closing
/// marker so the model answers.
#[tokio::test]
async fn thinking_budget_forces_an_answer() {
    let m = engine()
        .load(model(SMOLLM2), opts(2048), |_| {})
        .await
        .unwrap();
    let req = ChatRequest {
        think: ThinkMode::On,
        think_budget: Some(32),
        ..ask("Why is the sky blue?", greedy(160))
    };
    let a = collect(m.chat(req).await.unwrap()).await;
    assert!(a.error.is_none(), "{a:?}");
    assert!(!a.reasoning.trim().is_empty(), "no thinking streamed");
    assert!(
        !a.text.trim().is_empty(),
        "no answer after the forced close"
    );
    assert!(
        !a.text.contains("</think>") && !a.reasoning.contains("</think>"),
        "marker leaked"
    );
    assert!(
        a.usage.reasoning_tokens <= 32,
        "{} thinking tokens",
        a.usage.reasoning_tokens
    );
    assert!(a.usage.reasoning_tokens > 0 && a.usage.answer_tokens > 0);
    assert_eq!(
        a.usage.reasoning_tokens + a.usage.answer_tokens,
        a.usage.completion_tokens
    );
    if let Some(cut) = a.metrics.budget_cut_at {
        assert_eq!(cut, 32);
        assert!(
            a.reasoning.contains("Considering the limited time"),
            "{}",
            a.reasoning
        );
    }
    assert!(a.metrics.thinking_ms > 0.0 && a.metrics.thinking_ms <= a.metrics.wall_ms);
    assert!(
        a.metrics.energy_thinking_wh > 0.0 && a.metrics.energy_thinking_wh <= a.metrics.energy_wh
    );
    assert!(!a.metrics.reasoning_cut_off);
    m.unload().await;
}

/// Broken files are refused in Rust, before any worker starts, with the file and the reason.
#[tokio::test]
async fn broken_gguf_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(model(SMOLLM2)).unwrap();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty.gguf".into(), Vec::new()),
        (
            "magic.gguf".into(),
            b"GGML\x03\x00\x00\x00 not a model at all".to_vec(),
        ),
        (
            "text.gguf".into(),
            b"hello, I am a text file pretending to be a model\n".to_vec(),
        ),
    ];
    for cut in [3usize, 8, 16, 24, 100, 1000, 100_000, real.len() / 2] {
        cases.push((format!("cut-{cut}.gguf"), real[..cut].to_vec()));
    }
    let mut absurd = real[..4096].to_vec();
    absurd[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    cases.push(("absurd-tensors.gguf".into(), absurd));
    let mut absurd_kv = real[..4096].to_vec();
    absurd_kv[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes()); // metadata count
    cases.push(("absurd-kv.gguf".into(), absurd_kv));

    let e = engine();
    for (name, bytes) in cases {
        let path = dir.path().join(&name);
        std::fs::write(&path, &bytes).unwrap();
        match e.load(&path, opts(512), |_| {}).await {
            Ok(_) => panic!("{name} was accepted"),
            Err(err) => {
                assert!(
                    matches!(err, EngineError::InvalidModel(_)),
                    "{name}: {err:?}"
                );
                assert_eq!(err.code(), "invalid_model");
                let msg = err.to_string();
                assert!(
                    msg.contains(&name),
                    "{name}: the message does not name the file: {msg}"
                );
            }
        }
    }
}

/// A worker killed mid-answer fails that answer with `worker_crashed`; another model keeps
/// answering, and the crashed model comes back on the next request.
#[tokio::test]
async fn a_killed_worker_fails_only_its_own_answer() {
    let e = engine();
    let smol = e
        .load(
            model(SMOLLM2),
            LoadOptions {
                n_ctx: 1024,
                threads: Some(1),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    let gemma = e
        .load(
            model(GEMMA3),
            LoadOptions {
                n_ctx: 1024,
                threads: Some(1),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    let long = SamplingParams {
        temperature: 0.7,
        seed: Some(3),
        max_tokens: 400,
        ..SamplingParams::default()
    };
    let mut victim = smol
        .chat(ask("Write a long story about a dragon.", long.clone()))
        .await
        .unwrap();
    let other = gemma
        .chat(ask(
            "Once upon a time",
            SamplingParams {
                max_tokens: 48,
                ..long
            },
        ))
        .await
        .unwrap();
    let other_task = tokio::spawn(collect(other));

    let mut tokens = 0;
    let pid = smol.pid().await;
    let mut error = None;
    while let Some(ev) = victim.next_event().await {
        match ev {
            ChatEvent::Token { .. } => {
                tokens += 1;
                if tokens == 3 {
                    // SAFETY: kill(2) on the worker's pid, which is our child.
                    #[allow(unsafe_code)]
                    unsafe {
                        libc::kill(pid as i32, libc::SIGKILL);
                    }
                }
            }
            ChatEvent::Error { code, message } => {
                error = Some((code, message));
                break;
            }
            ChatEvent::Done { .. } => break,
            _ => {}
        }
    }
    let (code, message) = error.expect("the killed worker's answer must end in an error");
    assert_eq!(code, "worker_crashed", "{message}");
    assert!(message.contains("signal 9"), "{message}");

    let survivor = other_task.await.unwrap();
    assert!(
        survivor.error.is_none(),
        "the other model failed: {survivor:?}"
    );
    assert!(survivor.usage.completion_tokens > 0);

    let again = collect(smol.chat(ask("Say hi.", greedy(8))).await.unwrap()).await;
    assert!(again.error.is_none(), "no restart: {again:?}");
    assert_ne!(smol.pid().await, pid, "a new worker process answers");
    smol.unload().await;
    gemma.unload().await;
}

/// A cancel that arrives while a long prompt is being decoded stops between prompt chunks:
/// the worker does not finish the prompt first.
#[tokio::test]
async fn cancel_during_a_long_prompt_stops_the_prompt() {
    let m = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(300);
    let stream = m.chat(ask(&long, greedy(8))).await.unwrap();
    stream.cancel_handle().cancel();
    let a = collect(stream).await;
    assert_eq!(a.stop_reason, Some(StopReason::Cancelled), "{a:?}");
    assert_eq!(a.usage.completion_tokens, 0);
    // The same prompt again: only the chunks decoded before the cancel are cached.
    let b = collect(m.chat(ask(&long, greedy(1))).await.unwrap()).await;
    assert!(b.usage.prompt_tokens > 3000, "{}", b.usage.prompt_tokens);
    assert!(
        b.usage.cached_prompt_tokens < b.usage.prompt_tokens / 2,
        "the cancelled prompt was decoded anyway: {} of {} cached",
        b.usage.cached_prompt_tokens,
        b.usage.prompt_tokens
    );
    m.unload().await;
}

/// Changing the thread count, mid-answer or between turns, swaps the worker's context but
/// keeps its cache: the answer goes on exactly as it would have, and the next turn still
/// reuses the prefix.
#[tokio::test]
async fn thread_changes_keep_the_answer_and_the_cache() {
    let m = engine()
        .load(
            model(SMOLLM2),
            LoadOptions {
                n_ctx: 2048,
                threads: Some(1),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    let prompt = "Write a long story about a lighthouse keeper.";
    let reference = collect(m.chat(ask(prompt, greedy(64))).await.unwrap()).await;
    assert_eq!(reference.metrics.threads, 1);

    let mut stream = m.chat(ask(prompt, greedy(64))).await.unwrap();
    let mut text = String::new();
    let mut tokens = 0;
    let mut threads = 0;
    while let Some(ev) = stream.next_event().await {
        match ev {
            ChatEvent::Token { text: t, .. } => {
                text.push_str(&t);
                tokens += 1;
                if tokens == 5 {
                    m.set_threads(2).await.unwrap();
                }
            }
            ChatEvent::Done { metrics, .. } => {
                threads = metrics.threads;
                break;
            }
            ChatEvent::Error { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    assert_eq!(threads, 2, "the answer finished on two threads");
    assert_eq!(text, reference.text, "the switch changed the answer");

    // Next turn asks for one thread again: a new context, and still the cached prefix.
    let next = ChatRequest {
        threads: Some(1),
        ..ask(prompt, greedy(4))
    };
    let a = collect(m.chat(next).await.unwrap()).await;
    assert!(
        a.usage.cached_prompt_tokens + 1 >= a.usage.prompt_tokens,
        "{:?}",
        a.usage
    );
    m.unload().await;
}

/// A conversation's next turn after `messages` got the answer `answer`: the answer and the
/// new question appended. The follow-up asks for one greedy token: only its prompt matters.
fn next_turn(messages: &[Message], answer: &str, question: &str) -> ChatRequest {
    let mut messages = messages.to_vec();
    messages.push(Message::new(Role::Assistant, answer));
    messages.push(Message::new(Role::User, question));
    ChatRequest {
        messages,
        params: greedy(1),
        ..ChatRequest::default()
    }
}

fn story(prompt: &str) -> Vec<Message> {
    vec![
        Message::new(Role::System, "You are a helpful assistant."),
        Message::new(Role::User, prompt),
    ]
}

fn sampled(temperature: f32, seed: u32, max_tokens: u32) -> SamplingParams {
    SamplingParams {
        temperature,
        seed: Some(seed),
        max_tokens,
        ..SamplingParams::default()
    }
}

/// Answers `messages`, then asks a follow-up; returns the answer, the follow-up, and the
/// share of the first turn (its prompt and every generated token) the follow-up reused.
async fn answer_and_follow_up(
    m: &LoadedModel,
    messages: &[Message],
    params: SamplingParams,
    case: &str,
) -> (Answer, Answer, f64) {
    let req = ChatRequest {
        messages: messages.to_vec(),
        params,
        ..ChatRequest::default()
    };
    let a = collect(m.chat(req).await.unwrap()).await;
    assert!(a.error.is_none(), "{case}: {a:?}");
    let b = collect(
        m.chat(next_turn(messages, &a.text, "Give it a title."))
            .await
            .unwrap(),
    )
    .await;
    assert!(b.error.is_none(), "{case}: {b:?}");
    let first = a.usage.prompt_tokens + a.usage.completion_tokens;
    let share = f64::from(b.usage.cached_prompt_tokens) / f64::from(first);
    println!(
        "{case}: answer {:?}, {} prompt + {} generated tokens; follow-up cached {} of {} \
         ({:.1}% of the first turn), prompt {:.0} ms",
        a.stop_reason,
        a.usage.prompt_tokens,
        a.usage.completion_tokens,
        b.usage.cached_prompt_tokens,
        b.usage.prompt_tokens,
        share * 100.0,
        b.metrics.prompt_eval_ms,
    );
    (a, b, share)
}

/// The prompts and seeds of these cases were found by trying, each in a fresh worker (a
/// cached prompt prefix can change the logits slightly, and so a sampled answer): with them
/// SmolLM2 samples an answer (an invented town name, "Ravenshire", Greek letters) whose
/// tokens are not the ones the tokenizer makes of its text. A follow-up that compared token
/// ids reused the first turn only up to that word: 50% of it in the EOS case, 22% at max
/// tokens, 23% after the stop string, 57% in Greek.
const LIGHTHOUSE: &str = "Write a short story about a lighthouse keeper.";

#[tokio::test]
async fn a_sampled_answer_is_reused_although_it_tokenizes_differently() {
    let m = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    let messages = story("Invent the name of a fantasy town and describe it in one paragraph.");
    let (a, _, share) =
        answer_and_follow_up(&m, &messages, sampled(1.0, 3, 300), "ended on EOS").await;
    assert_eq!(a.stop_reason, Some(StopReason::Eos), "{}", a.text);
    // Every generated token is in the text; the tokenizer spells that text differently.
    let retokenized = m.count_tokens(&a.text).await.unwrap();
    assert_ne!(
        retokenized, a.usage.completion_tokens,
        "this seed no longer gives an answer that tokenizes differently: pick another"
    );
    assert!(share >= 0.95, "reused {:.1}%", share * 100.0);
    m.unload().await;
}

#[tokio::test]
async fn an_answer_cut_at_max_tokens_is_reused() {
    let m = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    let (a, _, share) = answer_and_follow_up(
        &m,
        &story(LIGHTHOUSE),
        sampled(1.0, 14, 250),
        "cut at max tokens",
    )
    .await;
    assert_eq!(a.stop_reason, Some(StopReason::MaxTokens));
    let retokenized = m.count_tokens(&a.text).await.unwrap();
    assert_ne!(
        retokenized, a.usage.completion_tokens,
        "this seed no longer gives an answer that tokenizes differently: pick another"
    );
    assert!(share >= 0.95, "reused {:.1}%", share * 100.0);
    m.unload().await;
}

#[tokio::test]
async fn a_non_ascii_answer_is_reused() {
    let m = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    // SmolLM2 splits Greek letters and emoji across tokens, and a sampled answer splits
    // them differently from the tokenizer.
    let (a, _, share) = answer_and_follow_up(
        &m,
        &story("Γράψε μια σύντομη ιστορία για έναν φάρο στα ελληνικά. 🌊"),
        sampled(1.0, 7, 160),
        "non-ASCII",
    )
    .await;
    assert_eq!(a.stop_reason, Some(StopReason::MaxTokens));
    let retokenized = m.count_tokens(&a.text).await.unwrap();
    assert_ne!(
        retokenized, a.usage.completion_tokens,
        "this seed no longer gives an answer that tokenizes differently: pick another"
    );
    assert!(
        a.text.chars().filter(|c| !c.is_ascii()).count() >= 40,
        "the answer should be mostly Greek: {}",
        a.text
    );
    assert!(share >= 0.95, "reused {:.1}%", share * 100.0);
    m.unload().await;
}

/// Regenerate, then go back: the first answer's branch was saved as a snapshot when the
/// regenerated one replaced it in the cache, and a follow-up on it decodes only what is new.
#[tokio::test]
async fn a_regenerated_answer_keeps_the_first_branch_cached() {
    let m = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    let messages = story(LIGHTHOUSE);
    let first = |seed| ChatRequest {
        messages: messages.clone(),
        params: sampled(1.0, seed, 100),
        ..ChatRequest::default()
    };
    let a = collect(m.chat(first(14)).await.unwrap()).await;
    let b = collect(m.chat(first(16)).await.unwrap()).await;
    assert!(a.error.is_none() && b.error.is_none(), "{a:?} {b:?}");
    assert_ne!(a.text, b.text);
    assert!(
        a.usage.completion_tokens >= 64 && b.usage.completion_tokens >= 64,
        "answers long enough to be worth a snapshot"
    );
    let title = "Give it a title.";
    let back_to_a = collect(m.chat(next_turn(&messages, &a.text, title)).await.unwrap()).await;
    let back_to_b = collect(m.chat(next_turn(&messages, &b.text, title)).await.unwrap()).await;
    let share = |turn: &Answer, first: &Answer| {
        f64::from(turn.usage.cached_prompt_tokens)
            / f64::from(first.usage.prompt_tokens + first.usage.completion_tokens)
    };
    // What the snapshots save: the same follow-up decoded from nothing.
    let fresh = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    let full = collect(
        fresh
            .chat(next_turn(&messages, &a.text, title))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(full.usage.cached_prompt_tokens, 0);
    println!(
        "regenerate (1 token decoded, {} cached tokens saved as a snapshot): prompt {:.1} ms\n\
         back to A: cached {} of {} ({:.1}%), prompt {:.1} ms (restore + save B + decode {})\n\
         back to B: cached {} of {} ({:.1}%), prompt {:.1} ms (restore + decode {})\n\
         the same follow-up decoded in full in a fresh worker: {} tokens, prompt {:.1} ms",
        a.usage.prompt_tokens + a.usage.completion_tokens - 1,
        b.metrics.prompt_eval_ms,
        back_to_a.usage.cached_prompt_tokens,
        back_to_a.usage.prompt_tokens,
        share(&back_to_a, &a) * 100.0,
        back_to_a.metrics.prompt_eval_ms,
        back_to_a.usage.prompt_tokens - back_to_a.usage.cached_prompt_tokens,
        back_to_b.usage.cached_prompt_tokens,
        back_to_b.usage.prompt_tokens,
        share(&back_to_b, &b) * 100.0,
        back_to_b.metrics.prompt_eval_ms,
        back_to_b.usage.prompt_tokens - back_to_b.usage.cached_prompt_tokens,
        full.usage.prompt_tokens,
        full.metrics.prompt_eval_ms,
    );
    assert!(share(&back_to_a, &a) >= 0.95, "{:?}", back_to_a.usage);
    assert!(share(&back_to_b, &b) >= 0.95, "{:?}", back_to_b.usage);
    fresh.unload().await;
    m.unload().await;
}

/// Reuse must not change what the model says: a greedy follow-up answered from the cache
/// is the answer a fresh worker gives, and asking the first question again after the
/// cache moved on gives the first answer again.
#[tokio::test]
async fn greedy_answers_do_not_depend_on_the_cache() {
    let m = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    let messages = story("What is the capital of France?");
    let first = ChatRequest {
        messages: messages.clone(),
        params: greedy(48),
        ..ChatRequest::default()
    };
    let a1 = collect(m.chat(first.clone()).await.unwrap()).await;
    assert_eq!(a1.stop_reason, Some(StopReason::Eos), "{}", a1.text);
    // Greedy output here is spelled as the tokenizer spells it, so a fresh worker reading
    // the conversation sees the very tokens this one has cached.
    assert_eq!(
        m.count_tokens(&a1.text).await.unwrap(),
        a1.usage.completion_tokens
    );
    let second = ChatRequest {
        params: greedy(64),
        ..next_turn(&messages, &a1.text, "Tell me about its history.")
    };
    let a2 = collect(m.chat(second.clone()).await.unwrap()).await;
    assert!(
        f64::from(a2.usage.cached_prompt_tokens)
            >= 0.95 * f64::from(a1.usage.prompt_tokens + a1.usage.completion_tokens),
        "{:?}",
        a2.usage
    );
    let again = collect(m.chat(first).await.unwrap()).await;
    assert_eq!(again.text, a1.text);
    assert_eq!(
        again.usage.cached_prompt_tokens + 1,
        again.usage.prompt_tokens
    );

    let fresh = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    let f2 = collect(fresh.chat(second).await.unwrap()).await;
    assert_eq!(f2.usage.cached_prompt_tokens, 0);
    assert_eq!(f2.usage.prompt_tokens, a2.usage.prompt_tokens);
    assert_eq!(
        f2.text, a2.text,
        "the cached follow-up answered differently"
    );
    fresh.unload().await;
    m.unload().await;
}

#[tokio::test]
async fn an_answer_ended_by_a_stop_string_is_reused() {
    let m = engine()
        .load(model(SMOLLM2), opts(4096), |_| {})
        .await
        .unwrap();
    // The answer of the max-tokens case, stopped near its end. " look" is decoded while
    // "look" could still begin the stop string, so the cache holds a token the stored
    // answer does not.
    let params = SamplingParams {
        stop: vec!["look around".into()],
        ..sampled(1.0, 14, 250)
    };
    let (a, _, share) =
        answer_and_follow_up(&m, &story(LIGHTHOUSE), params, "ended by a stop string").await;
    assert_eq!(a.stop_reason, Some(StopReason::StopString));
    assert!(
        a.usage.completion_tokens > 150,
        "the stop string should come late: {}",
        a.text
    );
    assert!(share >= 0.95, "reused {:.1}%", share * 100.0);
    m.unload().await;
}

/// A prompt long enough to be decoded in several chunks is answered once. The worker
/// reports each chunk (`PromptProgress`); the client once took such a report for a reason
/// to send the request again, and the worker then generated the whole answer two more
/// times after it was done, in the background, delaying whatever came next by as long.
#[tokio::test]
async fn a_long_prompt_is_answered_once_and_the_worker_is_idle_after() {
    use conclave_core::metrics::sample_process;
    let m = engine()
        .load(model(SMOLLM2), opts(2048), |_| {})
        .await
        .unwrap();
    let text = "The lighthouse keeper wrote in his log every evening: the weather, the ships that passed, the state of the lamp and of the stores. ".repeat(24);
    let mut req = ask(
        &format!("Copy this text exactly, without any change:\n\n{text}"),
        greedy(300),
    );
    req.messages.insert(
        0,
        Message::new(Role::System, "You are a helpful assistant."),
    );
    let t = std::time::Instant::now();
    let a = collect(m.chat(req).await.unwrap()).await;
    let answer_time = t.elapsed();
    assert!(a.error.is_none(), "{a:?}");
    // More than two of the worker's 256-token prompt chunks, so progress was reported.
    assert!(a.usage.prompt_tokens > 600, "{:?}", a.usage);
    assert!(a.usage.completion_tokens > 50, "{:?}", a.usage);
    let pid = m.pid().await;
    let before = sample_process(pid).cpu_seconds;
    let window = answer_time.max(std::time::Duration::from_secs(2));
    tokio::time::sleep(window).await;
    let busy = sample_process(pid).cpu_seconds - before;
    // An idle worker blocks on its input; generating again would keep its threads busy
    // for about the whole window.
    assert!(
        busy < 0.25 * window.as_secs_f64(),
        "the worker used {busy:.2} s of CPU in the {:.1} s after the answer",
        window.as_secs_f64()
    );
    m.unload().await;
}
