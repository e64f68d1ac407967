//! Thinking through the engine on the real SmolLM2: keep thoughts (the second turn's
//! prompt holds or omits the first turn's thinking, and the "tokens saved" figure matches
//! the prompt token counts), token accounting whichever way the thinking was found, and
//! the times of the first thought and the first answer text.
//!
//! SmolLM2's ChatML template has no thinking markers, so Think On makes the engine
//! prefill `<think>\n`; the budget then forces `</think>` so that every answer has both
//! thinking and answer text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use conclave_core::engine::{ChatRequest, LoadOptions, LoadedModel};
use conclave_core::{Message, Role, SamplingParams, ThinkMode};
use conclave_tests::{collect, engine, model, Answer, SMOLLM2};

const SYSTEM: &str = "You are a helpful assistant.";
const BUDGET: u32 = 24;

fn greedy(max_tokens: u32) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens,
        ..SamplingParams::default()
    }
}

async fn load() -> LoadedModel {
    engine()
        .load(
            model(SMOLLM2),
            LoadOptions {
                n_ctx: 2048,
                threads: Some(2),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap()
}

async fn ask(m: &LoadedModel, messages: Vec<Message>, think: ThinkMode, keep: bool) -> Answer {
    let req = ChatRequest {
        messages,
        params: greedy(64),
        think,
        think_budget: Some(BUDGET),
        keep_thoughts: keep,
        ..ChatRequest::default()
    };
    let a = collect(m.chat(req).await.unwrap()).await;
    assert!(a.error.is_none(), "{a:?}");
    a
}

#[tokio::test]
async fn keep_thoughts_sends_the_first_turns_thinking_back_or_saves_its_tokens() {
    let m = load().await;
    let q1 = vec![
        Message::new(Role::System, SYSTEM),
        Message::new(Role::User, "Why is the sky blue?"),
    ];
    let first = ask(&m, q1.clone(), ThinkMode::On, false).await;
    assert!(!first.reasoning.trim().is_empty(), "{first:?}");
    assert!(!first.text.trim().is_empty(), "{first:?}");

    // The conversation as history stores it: the answer, its thinking apart.
    let mut history = q1;
    let mut reply = Message::new(Role::Assistant, first.text.trim());
    reply.reasoning = Some(first.reasoning.trim().to_owned());
    history.push(reply);
    history.push(Message::new(Role::User, "And why is it red at sunset?"));

    for think in [ThinkMode::Auto, ThinkMode::On] {
        let dropped = ask(&m, history.clone(), think, false).await;
        let kept = ask(&m, history.clone(), think, true).await;
        let thoughts = m.count_tokens(first.reasoning.trim()).await.unwrap();
        // Dropping reports what it saved; keeping saves nothing.
        assert_eq!(
            dropped.metrics.thoughts_dropped_tokens, thoughts,
            "{think:?}"
        );
        assert_eq!(kept.metrics.thoughts_dropped_tokens, 0, "{think:?}");
        // The kept prompt is longer by the thoughts in the markers the engine wraps them
        // in (ChatML has none of its own: the generic block); a token may merge where the
        // block meets the answer, hence the one-token slack.
        let block = format!("<think>\n{}\n</think>\n\n", first.reasoning.trim());
        let wrapped = m.count_tokens(&block).await.unwrap();
        let extra = kept.usage.prompt_tokens - dropped.usage.prompt_tokens;
        assert!(
            extra.abs_diff(wrapped) <= 1 && wrapped > thoughts,
            "{think:?}: kept {} vs dropped {} prompt tokens, the block is {wrapped}",
            kept.usage.prompt_tokens,
            dropped.usage.prompt_tokens
        );
    }
    m.unload().await;
}

#[tokio::test]
async fn reasoning_and_answer_tokens_add_up_whichever_way_thinking_was_found() {
    let m = load().await;
    let q = vec![
        Message::new(Role::System, SYSTEM),
        Message::new(Role::User, "Why is the sky blue?"),
    ];
    // Think On: the engine prefilled the block and the budget forced the close.
    let on = ask(&m, q.clone(), ThinkMode::On, false).await;
    assert!(
        on.usage.reasoning_tokens > 0 && on.usage.answer_tokens > 0,
        "{:?}",
        on.usage
    );
    assert!(on.usage.reasoning_tokens <= BUDGET, "{:?}", on.usage);
    assert_eq!(
        on.usage.reasoning_tokens + on.usage.answer_tokens,
        on.usage.completion_tokens
    );

    // The auto splitter alone: ChatML has no thinking markers, so the engine neither
    // prefills nor budgets (the worker counts no thinking tokens), and a grammar makes
    // SmolLM2 write a `<think>` block of its own that only the splitter sees.
    let req = ChatRequest {
        messages: q.clone(),
        params: greedy(48),
        grammar: Some(r#"root ::= "<think>" [a-z ]{4,40} "</think>" [A-Za-z0-9 .]{1,40}"#.into()),
        ..ChatRequest::default()
    };
    let auto = collect(m.chat(req).await.unwrap()).await;
    assert!(auto.error.is_none(), "{auto:?}");
    assert!(!auto.reasoning.trim().is_empty(), "{auto:?}");
    assert!(!auto.reasoning.contains("<think>"), "{auto:?}");
    assert_eq!(auto.metrics.reasoning_format, "deepseek-r1");
    assert!(auto.usage.reasoning_tokens > 0, "{:?}", auto.usage);
    assert_eq!(
        auto.usage.reasoning_tokens + auto.usage.answer_tokens,
        auto.usage.completion_tokens
    );
    if !auto.text.trim().is_empty() {
        assert!(auto.usage.answer_tokens > 0, "{:?}", auto.usage);
    }

    // A plain answer: no thinking, every token an answer token.
    let plain = ask(&m, q, ThinkMode::Auto, false).await;
    assert_eq!(plain.usage.reasoning_tokens, 0, "{:?}", plain.usage);
    assert_eq!(plain.usage.answer_tokens, plain.usage.completion_tokens);
    m.unload().await;
}

#[tokio::test]
async fn the_first_thought_and_the_first_answer_text_are_timed() {
    let m = load().await;
    let q = vec![
        Message::new(Role::System, SYSTEM),
        Message::new(Role::User, "Why is the sky blue?"),
    ];
    let on = ask(&m, q.clone(), ThinkMode::On, false).await;
    let x = &on.metrics;
    let (r, a) = (x.first_reasoning_ms.unwrap(), x.first_answer_ms.unwrap());
    assert!(r > 0.0 && r <= a && a <= x.wall_ms, "{x:?}");
    assert!(
        (x.ttft_ms - r).abs() < 1e-6,
        "the first output was the first thought: {x:?}"
    );

    let plain = ask(&m, q, ThinkMode::Auto, false).await;
    assert_eq!(plain.metrics.first_reasoning_ms, None);
    let a = plain.metrics.first_answer_ms.unwrap();
    assert!(
        (plain.metrics.ttft_ms - a).abs() < 1e-6,
        "{:?}",
        plain.metrics
    );
    m.unload().await;
}
