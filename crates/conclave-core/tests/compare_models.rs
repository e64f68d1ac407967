//! Side-by-side runs with the real models on real history files: concurrency and storage,
//! one worker per model, a worker killed mid-run, the memory fallback, blind mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use conclave_core::compare::{
    self, ColumnStatus, CompareColumn, CompareError, CompareOptions, CompareOutput, CompareRequest,
    CompareSummary,
};
use conclave_core::engine::Engine;
use conclave_core::history::{History, MessageStatus, Vote};
use conclave_core::models::Library;
use conclave_core::session::{ChatSettings, Conclave};
use conclave_core::{ChatEvent, Role};

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
/// Both models write on and on for this one (greedy), so no column ends early on EOS.
const PROMPT: &str = "Write a long story about a lighthouse keeper.";

fn model(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(name);
    assert!(p.is_file(), "{} is missing (models/fetch)", p.display());
    p
}

async fn conclave(dir: &tempfile::TempDir) -> Arc<Conclave> {
    let engine = Engine::new().expect("build the worker first: cargo build -p conclave-worker");
    let history = History::open(dir.path().join("history.sqlite3"))
        .await
        .unwrap();
    Conclave::new(engine, history, Library::with_root(dir.path()))
}

fn column(name: &str, max_tokens: u32) -> CompareColumn {
    let mut s = ChatSettings::default();
    s.sampling.temperature = 0.0;
    s.sampling.seed = Some(1);
    s.sampling.max_tokens = max_tokens;
    CompareColumn::new(model(name), s)
}

fn options() -> CompareOptions {
    CompareOptions {
        // The plan must not depend on the machine the tests run on.
        cores: Some(2),
        memory_limit_bytes: Some(64 << 30),
        ..CompareOptions::default()
    }
}

async fn run_all(c: &Arc<Conclave>, req: CompareRequest) -> (Vec<CompareOutput>, CompareSummary) {
    let mut outs = Vec::new();
    let summary = compare::run(c, req, |o| outs.push(o.clone()))
        .await
        .unwrap();
    (outs, summary)
}

/// Index in `outs` of the first output matching `f`.
fn first(outs: &[CompareOutput], f: impl Fn(&CompareOutput) -> bool) -> usize {
    outs.iter().position(f).expect("no such output")
}

fn is_event(o: &CompareOutput, column: usize, kind: &str) -> bool {
    match o {
        CompareOutput::Column(e) if e.column == column => matches!(
            (&e.event, kind),
            (ChatEvent::Started { .. }, "started")
                | (ChatEvent::Token { .. }, "token")
                | (ChatEvent::Done { .. }, "done")
                | (ChatEvent::Error { .. }, "error")
        ),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_answer_concurrently_as_siblings_of_one_user_message() {
    let dir = tempfile::tempdir().unwrap();
    let c = conclave(&dir).await;
    let req = CompareRequest {
        prompt: PROMPT.into(),
        // SmolLM2 writes 3× more tokens than Gemma needs to start: if the columns ran one
        // after the other, SmolLM2 would be done before Gemma started.
        columns: vec![column(SMOLLM2, 96), column(GEMMA3, 24)],
        options: options(),
    };
    let (outs, summary) = run_all(&c, req).await;

    let CompareOutput::Plan(plan) = &outs[0] else {
        panic!("the first output is not the plan: {:?}", outs[0])
    };
    assert!(!plan.sequential && plan.reason.is_none(), "{plan:?}");
    assert_eq!(
        (plan.workers, plan.concurrency, plan.threads_per_worker),
        (2, 2, 1)
    );
    let pids: Vec<u32> = outs
        .iter()
        .filter_map(|o| match o {
            CompareOutput::Loaded(l) => Some(l.pid),
            _ => None,
        })
        .collect();
    assert_eq!(pids.len(), 2);
    assert_ne!(pids[0], pids[1], "one worker per model");

    // Both columns were generating at once.
    let first_done = first(&outs, |o| is_event(o, 0, "done") || is_event(o, 1, "done"));
    assert!(first(&outs, |o| is_event(o, 0, "started")) < first_done);
    assert!(first(&outs, |o| is_event(o, 1, "started")) < first_done);

    assert_eq!(summary.columns.len(), 2);
    for f in &summary.columns {
        assert_eq!(f.status, ColumnStatus::Done, "{f:?}");
        assert!(f.completion_tokens > 0 && f.answer_tokens > 0, "{f:?}");
        assert!(
            f.tokens_per_second > 0.0 && f.tokens_per_second < 10_000.0,
            "{f:?}"
        );
        assert!(f.ttft_ms > 0.0 && f.ttft_ms <= f.seconds * 1000.0, "{f:?}");
        // One thread each while both run; the column that finishes last may end on two,
        // since the first one's core is handed over.
        assert!(f.energy_wh > 0.0 && (1..=2).contains(&f.threads), "{f:?}");
    }
    assert!(
        summary.columns.iter().any(|f| f.threads == 1),
        "{:?}",
        summary.columns
    );
    assert_eq!(summary.columns[0].completion_tokens, 96);
    assert!(summary.fastest.is_some() && summary.cheapest.is_some());
    assert!(summary.aggregate_tokens_per_second > 0.0);

    // Stored: one user message, two sibling answers tied to the run.
    let run_id = summary.run_id.clone().unwrap();
    let conv_id = plan.conversation_id.clone().unwrap();
    let tree = c.history.get_conversation(&conv_id).await.unwrap();
    let users: Vec<_> = tree
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .collect();
    assert_eq!(users.len(), 1);
    assert_eq!(Some(&users[0].id), plan.user_message_id.as_ref());
    let mut answers: Vec<_> = tree
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .collect();
    answers.sort_by_key(|m| m.column_index);
    assert_eq!(answers.len(), 2);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.parent_id.as_deref(), Some(users[0].id.as_str()));
        assert_eq!(a.compare_run_id.as_deref(), Some(run_id.as_str()));
        assert_eq!(a.column_index, Some(i as u32));
        assert_eq!(a.status, MessageStatus::Complete);
        assert!(!a.content.is_empty());
        let m = a.model.as_ref().unwrap();
        assert_eq!(m.file, [SMOLLM2, GEMMA3][i]);
        assert_eq!(
            m.sha256.as_deref().map(str::len),
            Some(64),
            "content id recorded"
        );
    }
    assert_eq!(tree.compare_runs.len(), 1);
    assert_eq!(tree.compare_runs[0].user_message_id, users[0].id);
    // Column 0 is the branch on screen.
    assert_eq!(tree.current_leaf_id(), Some(answers[0].id.as_str()));
    let siblings = c.history.siblings(&answers[1].id).await.unwrap();
    assert_eq!(siblings.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_model_with_other_settings_shares_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let c = conclave(&dir).await;
    let mut hot = column(SMOLLM2, 8);
    hot.settings.sampling.temperature = 1.5;
    hot.settings.system_prompt = "Answer like a pirate.".into();
    let req = CompareRequest {
        prompt: "Say hello.".into(),
        columns: vec![column(SMOLLM2, 8), hot],
        options: CompareOptions {
            no_save: true,
            ..options()
        },
    };
    let (outs, summary) = run_all(&c, req).await;
    let CompareOutput::Plan(plan) = &outs[0] else {
        panic!()
    };
    assert_eq!(plan.workers, 1);
    assert!(plan.sequential && plan.reason.is_some(), "{plan:?}");
    assert_eq!(plan.threads_per_worker, 2, "a lone worker gets every core");
    assert!(plan.columns[0].label != plan.columns[1].label);
    assert_eq!(
        outs.iter()
            .filter(|o| matches!(o, CompareOutput::Loaded(_)))
            .count(),
        1
    );
    // One after the other on the shared worker.
    assert!(first(&outs, |o| is_event(o, 0, "done")) < first(&outs, |o| is_event(o, 1, "started")));
    assert!(summary
        .columns
        .iter()
        .all(|f| f.status == ColumnStatus::Done && f.completion_tokens > 0));
    assert!(summary.run_id.is_none() && summary.columns.iter().all(|f| f.message_id.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_fails_only_its_column() {
    let dir = tempfile::tempdir().unwrap();
    let c = conclave(&dir).await;
    let req = CompareRequest {
        prompt: PROMPT.into(),
        columns: vec![column(SMOLLM2, 48), column(GEMMA3, 2000)],
        options: options(),
    };
    let mut stream = compare::start(&c, req).await.unwrap();
    let mut gemma_pid = None;
    let mut killed = false;
    let mut outs = Vec::new();
    let mut summary = None;
    while let Some(o) = stream.next_event().await {
        match &o {
            CompareOutput::Loaded(l) if l.columns == [1] => gemma_pid = Some(l.pid),
            CompareOutput::Column(e)
                if e.column == 1 && matches!(e.event, ChatEvent::Token { .. }) && !killed =>
            {
                let pid = gemma_pid.expect("loaded before its tokens");
                #[allow(unsafe_code)]
                // SAFETY: kill(2) on the worker this test started; no memory is touched.
                let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                assert_eq!(rc, 0);
                killed = true;
            }
            CompareOutput::Summary(s) => summary = Some(s.clone()),
            _ => {}
        }
        outs.push(o);
    }
    assert!(killed);
    let summary = summary.unwrap();
    let (smol, gemma) = (&summary.columns[0], &summary.columns[1]);
    assert_eq!(smol.status, ColumnStatus::Done, "{smol:?}");
    assert_eq!(smol.completion_tokens, 48);
    assert_eq!(gemma.status, ColumnStatus::Error, "{gemma:?}");
    assert!(
        gemma
            .error
            .as_deref()
            .is_some_and(|e| e.contains("crashed")),
        "{gemma:?}"
    );
    let code = outs.iter().find_map(|o| match o {
        CompareOutput::Column(e) if e.column == 1 => match &e.event {
            ChatEvent::Error { code, .. } => Some(code.clone()),
            _ => None,
        },
        _ => None,
    });
    assert_eq!(code.as_deref(), Some("worker_crashed"));
    assert_eq!(summary.fastest, Some(0));

    let tree = c
        .history
        .get_conversation(stream.conversation_id().unwrap())
        .await
        .unwrap();
    let status = |col: u32| {
        tree.messages
            .iter()
            .find(|m| m.column_index == Some(col))
            .map(|m| m.status)
    };
    assert_eq!(status(0), Some(MessageStatus::Complete));
    assert_eq!(status(1), Some(MessageStatus::Error));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_that_do_not_fit_together_run_one_after_another() {
    let dir = tempfile::tempdir().unwrap();
    let c = conclave(&dir).await;
    let req = CompareRequest {
        prompt: "Name three colours.".into(),
        columns: vec![column(SMOLLM2, 12), column(GEMMA3, 12)],
        options: CompareOptions {
            // Less than either model alone: one at a time is all that can be tried.
            memory_limit_bytes: Some(32 << 20),
            ..options()
        },
    };
    let (outs, summary) = run_all(&c, req).await;
    let CompareOutput::Plan(plan) = &outs[0] else {
        panic!()
    };
    assert!(plan.sequential && summary.sequential);
    assert_eq!((plan.concurrency, plan.threads_per_worker), (1, 2));
    let reason = plan.reason.as_deref().unwrap();
    assert!(
        reason.contains("memory") && reason.contains("one after another"),
        "{reason}"
    );
    assert_eq!(summary.reason, plan.reason);
    // Column 1's worker loads only after column 0 is done.
    let done0 = first(&outs, |o| is_event(o, 0, "done"));
    let loaded1 = first(
        &outs,
        |o| matches!(o, CompareOutput::Loaded(l) if l.columns == [1]),
    );
    assert!(done0 < loaded1);
    assert!(summary
        .columns
        .iter()
        .all(|f| f.status == ColumnStatus::Done && f.threads == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_mode_hides_names_until_the_vote_and_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = conclave(&dir).await;
    let req = CompareRequest {
        prompt: "What is 2 + 2?".into(),
        columns: vec![column(SMOLLM2, 8), column(GEMMA3, 8)],
        options: CompareOptions {
            blind: true,
            tag: Some("arith".into()),
            // Seed 3 swaps the two columns (checked below), so order really is hidden.
            shuffle_seed: Some(3),
            ..options()
        },
    };
    let (outs, summary) = run_all(&c, req).await;
    let json: String = outs
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect();
    for name in ["SmolLM2", "smollm", "gemma"] {
        assert!(!json.contains(name), "{name} shown in a blind run: {json}");
    }
    let CompareOutput::Plan(plan) = &outs[0] else {
        panic!()
    };
    assert_eq!(plan.columns[0].label, "Model A");
    assert!(plan.columns.iter().all(|c| c.model.is_none()));
    assert!(summary.columns.iter().all(|c| c.model.is_none()));
    let started_models: Vec<String> = outs
        .iter()
        .filter_map(|o| match o {
            CompareOutput::Column(e) => match &e.event {
                ChatEvent::Started { model, .. } => Some(model.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(started_models.len(), 2);
    assert!(started_models.iter().all(|m| m.starts_with("Model ")));

    let run_id = summary.run_id.clone().unwrap();
    assert!(matches!(
        compare::reveal(&c.history, &run_id).await,
        Err(CompareError::StillBlind)
    ));
    let revealed = compare::vote(&c.history, &run_id, Vote::BBetter)
        .await
        .unwrap();
    assert_eq!(revealed.len(), 2);
    assert_eq!(
        revealed[0].model, GEMMA3,
        "seed 3 shuffles Gemma to column A"
    );
    assert_eq!(revealed[1].model, SMOLLM2);
    assert_eq!(
        revealed[1].message_id, summary.columns[1].message_id,
        "the revealed column is the one that was shown"
    );
    let conv = c
        .history
        .get_conversation(plan.conversation_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(conv.compare_runs[0].vote, Some(Vote::BBetter));
    assert!(conv.compare_runs[0].blind);
    assert_eq!(conv.compare_runs[0].tag.as_deref(), Some("arith"));

    // The vote counts on the leaderboard: SmolLM2 (column B) won.
    let board = conclave_core::leaderboard::leaderboard(&c.history, Some("arith"))
        .await
        .unwrap();
    assert_eq!(board.votes, 1);
    assert_eq!(board.rows[0].name, SMOLLM2);
    assert_eq!((board.rows[0].wins, board.rows[1].losses), (1, 1));
    assert!(board.rows[0].model_id.starts_with("sha256:"));
}
