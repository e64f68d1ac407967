//! The context overflow policies on the real SmolLM2 with a 256-token context, where a few
//! turns no longer fit: `drop_oldest` leaves out the oldest turns, `truncate_middle` keeps
//! the first exchange and leaves out the middle, `stop` refuses with a clear error and
//! loses nothing (the conversation goes on once the policy changes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use conclave_core::engine::{LoadOptions, LoadedModel};
use conclave_core::history::{History, MessageStatus};
use conclave_core::models::Library;
use conclave_core::session::{ChatSettings, Conclave, SendRequest};
use conclave_core::{ChatEvent, ContextOverflow, Metrics, Role, ThinkMode};
use conclave_tests::{engine, model, SMOLLM2};

const N_CTX: u32 = 256;
const FIRST: &str = "My name is Zorblax. Remember my name: Zorblax.";
const FILLER: [&str; 6] = [
    "Describe the colour of the sky on a clear summer day, the clouds, and the way the light changes toward the evening.",
    "Describe a busy harbour in the morning with fishing boats, seagulls, ropes, nets, and people unloading the catch.",
    "Describe a quiet library in the afternoon with tall shelves, old books, reading lamps, and students taking notes.",
    "Describe a mountain trail in autumn with red leaves, cold streams, rocky paths, and hikers resting on a bench.",
    "Describe a city market at noon with fruit stalls, spice sellers, street musicians, and children running around.",
    "Describe a snowy village at night with warm windows, chimney smoke, quiet streets, and a bell ringing somewhere.",
];
const LAST: &str = "What is my name? Answer with my name only.";

struct Setup {
    app: Arc<Conclave>,
    model: LoadedModel,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path().join("history.sqlite3"))
        .await
        .unwrap();
    let app = Conclave::new(engine(), history, Library::with_root(dir.path()));
    let model = app
        .load(
            &model(SMOLLM2),
            LoadOptions {
                n_ctx: N_CTX,
                threads: Some(2),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    Setup {
        app,
        model,
        _dir: dir,
    }
}

fn settings(policy: ContextOverflow) -> ChatSettings {
    let mut s = ChatSettings {
        think: ThinkMode::Off,
        n_ctx: N_CTX,
        threads: Some(2),
        context_overflow: policy,
        ..ChatSettings::default()
    };
    s.sampling.temperature = 0.0;
    s.sampling.max_tokens = 12;
    s
}

enum Outcome {
    Done { text: String, metrics: Box<Metrics> },
    Failed { code: String, message: String },
}

async fn send(s: &Setup, req: SendRequest) -> (String, Outcome) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = s
        .app
        .send(&s.model, req, move |ev| {
            let _ = tx.send(ev);
        })
        .await;
    let handle = match handle {
        Ok(h) => h,
        Err(e) => {
            return (
                String::new(),
                Outcome::Failed {
                    code: conclave_core::ErrorCode::code(&e).to_owned(),
                    message: e.to_string(),
                },
            )
        }
    };
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            ChatEvent::Token { text: t, .. } => text.push_str(&t),
            ChatEvent::Done { metrics, .. } => {
                let metrics = Box::new(metrics);
                return (handle.conversation_id, Outcome::Done { text, metrics });
            }
            ChatEvent::Error { code, message } => {
                return (handle.conversation_id, Outcome::Failed { code, message })
            }
            _ => {}
        }
    }
    panic!("the answer ended without Done or Error");
}

/// A conversation that starts with FIRST and grows with FILLER turns until a turn had to
/// leave messages out (or, under `stop`, failed). Returns the conversation and that outcome.
async fn fill_until_overflow(s: &Setup, policy: ContextOverflow) -> (String, Outcome) {
    let (conv, first) = send(
        s,
        SendRequest {
            content: FIRST.into(),
            settings: settings(policy),
            ..SendRequest::default()
        },
    )
    .await;
    assert!(matches!(first, Outcome::Done { .. }), "the first turn fits");
    for filler in FILLER {
        let (_, out) = send(
            s,
            SendRequest {
                conversation_id: Some(conv.clone()),
                content: filler.into(),
                settings: settings(policy),
                ..SendRequest::default()
            },
        )
        .await;
        match &out {
            Outcome::Done { metrics, .. } if metrics.dropped_messages == 0 => continue,
            _ => return (conv, out),
        }
    }
    panic!("{} tokens never overflowed", N_CTX);
}

async fn ask_name(s: &Setup, conv: &str, policy: ContextOverflow) -> (String, Metrics) {
    let (_, out) = send(
        s,
        SendRequest {
            conversation_id: Some(conv.to_owned()),
            content: LAST.into(),
            settings: settings(policy),
            ..SendRequest::default()
        },
    )
    .await;
    match out {
        Outcome::Done { text, metrics } => (text, *metrics),
        Outcome::Failed { code, message } => panic!("{code}: {message}"),
    }
}

#[tokio::test]
async fn drop_oldest_forgets_the_first_turn() {
    let s = setup().await;
    let (conv, out) = fill_until_overflow(&s, ContextOverflow::DropOldest).await;
    let Outcome::Done { metrics, .. } = out else {
        panic!("drop_oldest answers")
    };
    assert!(metrics.dropped_messages >= 2, "{metrics:?}");
    assert_eq!(metrics.context_overflow, ContextOverflow::DropOldest);
    let (name, metrics) = ask_name(&s, &conv, ContextOverflow::DropOldest).await;
    assert!(metrics.dropped_messages >= 2);
    assert!(
        !name.contains("Zorblax"),
        "the first turn was left out: {name}"
    );
    // The dropped turns are left out of the prompt, not out of the history.
    let stored = s.app.history.get_conversation(&conv).await.unwrap();
    assert_eq!(stored.messages[0].content, FIRST);
    let last = (*stored.current_path().last().unwrap()).clone();
    let saved = last.metrics.clone().unwrap();
    assert_eq!(saved.dropped_messages, metrics.dropped_messages);
    assert_eq!(saved.context_overflow, ContextOverflow::DropOldest);
    s.model.unload().await;
}

#[tokio::test]
async fn truncate_middle_keeps_the_first_exchange() {
    let s = setup().await;
    let (conv, out) = fill_until_overflow(&s, ContextOverflow::TruncateMiddle).await;
    let Outcome::Done { metrics, .. } = out else {
        panic!("truncate_middle answers")
    };
    assert!(metrics.dropped_messages >= 2, "{metrics:?}");
    assert_eq!(metrics.context_overflow, ContextOverflow::TruncateMiddle);
    let (name, metrics) = ask_name(&s, &conv, ContextOverflow::TruncateMiddle).await;
    assert!(metrics.dropped_messages >= 2);
    assert!(
        name.contains("Zorblax"),
        "the first exchange is still in the prompt: {name}"
    );
    let stored = s.app.history.conversation(&conv).await.unwrap();
    assert_eq!(
        stored.settings.context_overflow,
        ContextOverflow::TruncateMiddle
    );
    s.model.unload().await;
}

#[tokio::test]
async fn stop_refuses_clearly_and_loses_nothing() {
    let s = setup().await;
    let (conv, out) = fill_until_overflow(&s, ContextOverflow::Stop).await;
    let Outcome::Failed { code, message } = out else {
        panic!("stop never drops")
    };
    assert_eq!(code, "context_overflow", "{message}");
    assert!(message.contains("'stop'"), "{message}");
    assert!(message.contains("nothing is lost"), "{message}");
    let tree = s.app.history.get_conversation(&conv).await.unwrap();
    let users: Vec<_> = tree
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .collect();
    let answers: Vec<_> = tree
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .collect();
    // Every question is kept, the refused one too; its answer is marked failed.
    assert_eq!(users[0].content, FIRST);
    assert_eq!(users.len(), answers.len());
    let failed = answers.last().unwrap();
    assert_eq!(failed.status, MessageStatus::Error);
    assert!(answers[..answers.len() - 1]
        .iter()
        .all(|a| a.status == MessageStatus::Complete
            && a.metrics.as_ref().unwrap().dropped_messages == 0));
    // With another policy the same question is answered: nothing was lost.
    let (_, retry) = send(
        &s,
        SendRequest {
            conversation_id: Some(conv.clone()),
            regenerate_of: Some(failed.id.clone()),
            settings: settings(ContextOverflow::DropOldest),
            ..SendRequest::default()
        },
    )
    .await;
    let Outcome::Done { metrics, .. } = retry else {
        panic!("drop_oldest answers the refused question")
    };
    assert!(metrics.dropped_messages >= 2);
    s.model.unload().await;
}
