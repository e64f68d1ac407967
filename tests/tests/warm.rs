//! Reading a message while it is typed (`Conclave::warm`, the app's `warm_prompt`) on the
//! real SmolLM2 and a real history file: sending it afterwards decodes only what was
//! typed since; in a conversation whose cache is gone (a restart), the warm-up reads the
//! history too, even before anything is typed; and a warm-up never holds up an answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use conclave_core::engine::{ChatRequest, LoadOptions, LoadedModel};
use conclave_core::history::History;
use conclave_core::models::Library;
use conclave_core::session::{ChatSettings, Conclave, SendRequest};
use conclave_core::{ChatEvent, Message, Role, SamplingParams, ThinkMode};
use conclave_tests::{collect, engine, model, SMOLLM2};

const N_CTX: u32 = 4096;
const FIRST: &str = "Tell me about lighthouses.";
/// What the user has typed when typing pauses, and what they send in the end.
const TYPED: &str = "Tell me more about the light";
const SENT: &str = "Tell me more about the lighthouse keepers and their lamps.";

fn opts() -> LoadOptions {
    LoadOptions {
        n_ctx: N_CTX,
        threads: Some(2),
        ..Default::default()
    }
}

fn settings() -> ChatSettings {
    let mut s = ChatSettings {
        system_prompt: "You are a helpful assistant.".into(),
        think: ThinkMode::Off,
        n_ctx: N_CTX,
        threads: Some(2),
        ..ChatSettings::default()
    };
    s.sampling.temperature = 0.0;
    s.sampling.max_tokens = 48;
    s
}

struct Sent {
    conversation_id: String,
    prompt_tokens: u32,
    cached_tokens: u32,
}

impl Sent {
    fn decoded(&self) -> u32 {
        self.prompt_tokens - self.cached_tokens
    }
}

async fn send(
    app: &Arc<Conclave>,
    m: &LoadedModel,
    conversation: Option<&str>,
    text: &str,
) -> Sent {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let req = SendRequest {
        conversation_id: conversation.map(str::to_owned),
        content: text.into(),
        settings: settings(),
        ..SendRequest::default()
    };
    let handle = app
        .send(m, req, move |ev| {
            let _ = tx.send(ev);
        })
        .await
        .unwrap();
    let mut started = None;
    while let Some(ev) = rx.recv().await {
        match ev {
            ChatEvent::Started {
                prompt_tokens,
                cached_prompt_tokens,
                ..
            } => started = Some((prompt_tokens, cached_prompt_tokens)),
            ChatEvent::Done { .. } => break,
            ChatEvent::Error { code, message } => panic!("{code}: {message}"),
            _ => {}
        }
    }
    let (prompt_tokens, cached_tokens) = started.expect("the answer started");
    Sent {
        conversation_id: handle.conversation_id,
        prompt_tokens,
        cached_tokens,
    }
}

fn typing(conversation: &str, text: &str) -> SendRequest {
    SendRequest {
        conversation_id: Some(conversation.to_owned()),
        content: text.into(),
        settings: settings(),
        ..SendRequest::default()
    }
}

async fn setup() -> (Arc<Conclave>, LoadedModel, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path().join("history.sqlite3"))
        .await
        .unwrap();
    let app = Conclave::new(engine(), history, Library::with_root(dir.path()));
    let m = app.load(&model(SMOLLM2), opts(), |_| {}).await.unwrap();
    (app, m, dir)
}

#[tokio::test]
async fn a_follow_up_read_while_typed_decodes_only_the_rest() {
    let (app, m, _dir) = setup().await;
    // The app warms only the model that is loaded as the send would use it.
    let path = model(SMOLLM2);
    assert!(app.loaded_as(&path, &opts()).await.is_some());
    let other_ctx = LoadOptions {
        n_ctx: 1024,
        ..opts()
    };
    assert!(app.loaded_as(&path, &other_ctx).await.is_none());

    // The reference: a follow-up sent without a warm-up decodes all of its new message.
    let plain = send(&app, &m, None, FIRST).await;
    let plain_follow = send(&app, &m, Some(&plain.conversation_id), SENT).await;

    let first = send(&app, &m, None, FIRST).await;
    let warm = app
        .warm(&m, &typing(&first.conversation_id, TYPED))
        .await
        .unwrap();
    assert!(warm.complete, "{warm:?}");
    assert!(
        warm.decoded_tokens >= 5,
        "the typed words were read: {warm:?}"
    );
    // Typing paused again on the same text: nothing more to read.
    let again = app
        .warm(&m, &typing(&first.conversation_id, TYPED))
        .await
        .unwrap();
    assert_eq!(again.decoded_tokens, 0, "{again:?}");

    let follow = send(&app, &m, Some(&first.conversation_id), SENT).await;
    println!(
        "follow-up: {} of {} prompt tokens decoded after a warm-up of {} tokens ({} read); \
         without one: {} of {}",
        follow.decoded(),
        follow.prompt_tokens,
        warm.prompt_tokens,
        warm.decoded_tokens,
        plain_follow.decoded(),
        plain_follow.prompt_tokens
    );
    // Everything the warm-up read is kept, but for the word being typed ("light" is
    // "lighthouse" in the end).
    assert!(
        follow.cached_tokens + 2 >= warm.prompt_tokens,
        "follow-up {}/{} cached, warmed {}",
        follow.cached_tokens,
        follow.prompt_tokens,
        warm.prompt_tokens
    );
    assert!(
        follow.decoded() + 4 <= plain_follow.decoded(),
        "decoded {} after a warm-up, {} without",
        follow.decoded(),
        plain_follow.decoded()
    );
    m.unload().await;
}

/// Once typing has paused, the app reads the message's whole turn (`warm_whole`): sending
/// the text as it is then decodes one token, the prompt's last, for its logits; where the
/// text alone was read, the end of its turn is still to decode.
#[tokio::test]
async fn once_typing_pauses_the_whole_turn_is_read_and_enter_decodes_one_token() {
    let (app, m, _dir) = setup().await;
    let first = send(&app, &m, None, FIRST).await;
    let text_only = app
        .warm(&m, &typing(&first.conversation_id, SENT))
        .await
        .unwrap();
    let whole = app
        .warm_whole(&m, &typing(&first.conversation_id, SENT))
        .await
        .unwrap();
    assert!(whole.complete, "{whole:?}");
    // ChatML's `<|im_end|>\n<|im_start|>assistant\n`: five tokens after the text.
    assert!(
        whole.prompt_tokens >= text_only.prompt_tokens + 4 && whole.decoded_tokens >= 4,
        "the whole turn {whole:?}, the text alone {text_only:?}"
    );
    let follow = send(&app, &m, Some(&first.conversation_id), SENT).await;
    println!(
        "after the whole turn was read ({} tokens, {} decoded by it), the send decoded {} of {}",
        whole.prompt_tokens,
        whole.decoded_tokens,
        follow.decoded(),
        follow.prompt_tokens
    );
    assert_eq!(follow.prompt_tokens, whole.prompt_tokens);
    assert_eq!(
        follow.decoded(),
        1,
        "{} of {}",
        follow.decoded(),
        follow.prompt_tokens
    );

    // Typing on after the pause: the text read is kept, only the turn's end goes.
    let second = send(&app, &m, Some(&first.conversation_id), FIRST).await;
    let whole = app
        .warm_whole(&m, &typing(&second.conversation_id, TYPED))
        .await
        .unwrap();
    let more = app
        .warm(
            &m,
            &typing(&second.conversation_id, &format!("{TYPED}house")),
        )
        .await
        .unwrap();
    assert!(
        more.cached_tokens + 8 >= whole.prompt_tokens && more.decoded_tokens <= 4,
        "after the whole turn {whole:?}, typing on read {more:?}"
    );
    m.unload().await;
}

#[tokio::test]
async fn after_a_restart_the_history_is_read_while_the_user_types() {
    let (app, m, _dir) = setup().await;
    let first = send(&app, &m, None, FIRST).await;
    let second = send(&app, &m, Some(&first.conversation_id), "Who invented them?").await;
    let history_tokens = second.prompt_tokens;
    // A new worker: nothing of the conversation is cached any more.
    app.unload(&model(SMOLLM2)).await;
    let m = app.load(&model(SMOLLM2), opts(), |_| {}).await.unwrap();

    let warm = app
        .warm(&m, &typing(&first.conversation_id, TYPED))
        .await
        .unwrap();
    assert!(warm.complete && warm.cached_tokens == 0, "{warm:?}");
    assert!(
        warm.decoded_tokens > history_tokens,
        "the whole history and the typed words were read: {warm:?}, history {history_tokens}"
    );
    let follow = send(&app, &m, Some(&first.conversation_id), SENT).await;
    println!(
        "after a restart: the warm-up read {} tokens in {:.0} ms; the send then decoded {} of {}",
        warm.decoded_tokens,
        warm.prompt_ms,
        follow.decoded(),
        follow.prompt_tokens
    );
    assert!(
        f64::from(follow.cached_tokens) >= 0.95 * f64::from(warm.prompt_tokens),
        "{} of {} cached, warmed {}",
        follow.cached_tokens,
        follow.prompt_tokens,
        warm.prompt_tokens
    );
    m.unload().await;
}

/// Nothing typed yet: the app warms when a conversation is opened or an answer has ended,
/// so that a message pasted and sent at once decodes only its own text and the end of its
/// turn, not the history and not the turn's header.
#[tokio::test]
async fn with_nothing_typed_the_history_and_the_turn_header_are_read() {
    let (app, m, _dir) = setup().await;
    let first = send(&app, &m, None, FIRST).await;
    let conversation = first.conversation_id.clone();
    let second = send(&app, &m, Some(&conversation), "Who invented them?").await;
    app.unload(&model(SMOLLM2)).await;
    let m = app.load(&model(SMOLLM2), opts(), |_| {}).await.unwrap();

    // The conversation is opened after a restart: its history is read.
    let opened = app.warm(&m, &typing(&conversation, "")).await.unwrap();
    assert!(opened.complete && opened.cached_tokens == 0, "{opened:?}");
    assert!(
        opened.decoded_tokens > second.prompt_tokens,
        "the history was read: {opened:?}, the last prompt was {}",
        second.prompt_tokens
    );
    let pasted = send(&app, &m, Some(&conversation), SENT).await;
    // The reference: the same message's tokens alone. What was decoded is the message
    // and the end of its turn (`<|im_end|>`, the assistant's header: 5 tokens in ChatML),
    // never any of the history.
    let message_tokens = m.count_tokens(SENT).await.unwrap();
    println!(
        "opened after a restart: {} tokens read; the pasted message then decoded {} of {}          ({} of them its text)",
        opened.decoded_tokens,
        pasted.decoded(),
        pasted.prompt_tokens,
        message_tokens
    );
    assert!(pasted.cached_tokens >= opened.prompt_tokens, "{opened:?}");
    assert!(
        pasted.decoded() <= message_tokens + 6,
        "decoded {} for a message of {message_tokens} tokens",
        pasted.decoded()
    );

    // The answer has ended: the end of its turn and the next one's header are read, and
    // nothing more when that is asked again.
    let ended = app.warm(&m, &typing(&conversation, "")).await.unwrap();
    assert!(
        ended.complete && ended.decoded_tokens > 0 && ended.decoded_tokens <= 8,
        "{ended:?}"
    );
    let again = app.warm(&m, &typing(&conversation, " ")).await.unwrap();
    assert_eq!(again.decoded_tokens, 0, "{again:?}");
    let follow = send(&app, &m, Some(&conversation), "And who keeps them now?").await;
    let follow_tokens = m.count_tokens("And who keeps them now?").await.unwrap();
    assert!(
        follow.decoded() <= follow_tokens + 6,
        "decoded {} for a message of {follow_tokens} tokens",
        follow.decoded()
    );
    m.unload().await;
}

#[tokio::test]
async fn a_warm_up_gives_way_to_an_answer() {
    let m = engine().load(model(SMOLLM2), opts(), |_| {}).await.unwrap();
    // About 3,000 tokens: a dozen prompt chunks, seconds of work on two cores.
    let pasted = "The keeper climbed the spiral stairs at dusk, trimmed the wick, wound the \
                  clockwork that turned the lens, and wrote the weather in the log. "
        .repeat(100);
    let typing = ChatRequest {
        messages: vec![Message::new(Role::User, pasted)],
        threads: Some(2),
        ..ChatRequest::default()
    };
    let warming = {
        let m = m.clone();
        tokio::spawn(async move { m.warm(&typing).await })
    };
    // The warm-up is on its way; the user sends something else meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let question = ChatRequest {
        messages: vec![Message::new(Role::User, "What is a lighthouse?")],
        params: SamplingParams {
            temperature: 0.0,
            max_tokens: 8,
            ..SamplingParams::default()
        },
        threads: Some(2),
        ..ChatRequest::default()
    };
    let answer = collect(m.chat(question).await.unwrap()).await;
    assert!(
        answer.error.is_none() && !answer.text.is_empty(),
        "{answer:?}"
    );
    let warm = warming.await.unwrap().unwrap();
    println!(
        "the warm-up stopped after {} of {} tokens",
        warm.decoded_tokens, warm.prompt_tokens
    );
    assert!(
        !warm.complete && warm.decoded_tokens < warm.prompt_tokens,
        "the warm-up gave way: {warm:?}"
    );
    m.unload().await;
}
