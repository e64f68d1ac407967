//! Leaderboard maths on known vote sets (checked against hand computations written out
//! below) through a real history file, and the word diff on a known pair. No models needed.
#![allow(clippy::unwrap_used)]

use conclave_core::compare::{diff_columns, diff_words, DiffOp};
use conclave_core::events::{Metrics, StopReason, Usage};
use conclave_core::history::{
    AnswerMeta, CompareSlot, ConversationSettings, History, MessageStatus, ModelInfo, Vote,
};
use conclave_core::leaderboard::{self, ModelKey, VoteRecord};

const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-6, "{what}: {a} != {b}");
}

/// Stores a voted run whose columns are `(file, sha256)`, in column order.
async fn voted_run(h: &History, columns: &[(&str, Option<&str>)], vote: Vote, tag: Option<&str>) {
    let conv = h
        .create_conversation("q", ConversationSettings::default())
        .await
        .unwrap();
    let user = h.add_user_message(&conv.id, None, "q").await.unwrap();
    let run = h.create_compare_run(&user.id, true, tag).await.unwrap();
    for (i, (file, sha)) in columns.iter().enumerate() {
        let meta = AnswerMeta {
            model: ModelInfo {
                file: (*file).into(),
                sha256: sha.map(str::to_owned),
                ..ModelInfo::default()
            },
            compare: Some(CompareSlot {
                run_id: run.id.clone(),
                column_index: i as u32,
            }),
            ..AnswerMeta::default()
        };
        let mut w = h.begin_answer(&conv.id, &user.id, meta).await.unwrap();
        w.push_answer("answer").await.unwrap();
        w.finish(
            MessageStatus::Complete,
            &Metrics::default(),
            &Usage::default(),
            StopReason::Eos,
        )
        .await
        .unwrap();
    }
    h.set_vote(&run.id, Some(vote)).await.unwrap();
}

#[tokio::test]
async fn elo_follows_the_stored_vote_order_and_models_are_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
    // Model A is one file under two names (same sha256); C has no recorded hash.
    voted_run(
        &h,
        &[("a.gguf", Some(SHA_A)), ("b.gguf", Some(SHA_B))],
        Vote::ABetter,
        Some("t"),
    )
    .await;
    voted_run(
        &h,
        &[("b.gguf", Some(SHA_B)), ("a-copy.gguf", Some(SHA_A))],
        Vote::ABetter,
        Some("t"),
    )
    .await;
    voted_run(
        &h,
        &[("a.gguf", Some(SHA_A)), ("c.gguf", None)],
        Vote::Tie,
        Some("t"),
    )
    .await;
    voted_run(
        &h,
        &[("b.gguf", Some(SHA_B)), ("c.gguf", None)],
        Vote::BothBad,
        Some("other"),
    )
    .await;
    // A run without a vote counts for nothing.
    let conv = h
        .create_conversation("x", ConversationSettings::default())
        .await
        .unwrap();
    let u = h.add_user_message(&conv.id, None, "x").await.unwrap();
    h.create_compare_run(&u.id, false, Some("t")).await.unwrap();

    // By hand, K = 32, start 1000, E_a = 1 / (1 + 10^((R_b − R_a)/400)):
    // run 1, A beats B: E_A = 0.5 → A = 1000 + 32·0.5 = 1016, B = 984.
    // run 2, B (column A of that run) beats A: E_B = 1/(1 + 10^(32/400)) = 0.4540780772
    //        → B = 984 + 32·(1 − 0.4540780772) = 1001.4695015290, A = 998.5304984710.
    // run 3, A ties C: E_A = 1/(1 + 10^((1000 − 998.5304984710)/400)) = 0.4978852299
    //        → A = 998.5304984710 + 32·(0.5 − 0.4978852299) = 998.5981711138,
    //          C = 999.9323273572.
    let board = leaderboard::leaderboard(&h, Some("t")).await.unwrap();
    assert_eq!((board.votes, board.games), (3, 3));
    assert_eq!(board.rows.len(), 3, "a.gguf and a-copy.gguf are one model");
    let row = |id: &str| board.rows.iter().find(|r| r.model_id == id).unwrap();
    let a = row(&format!("sha256:{SHA_A}"));
    let b = row(&format!("sha256:{SHA_B}"));
    let c = row("file:c.gguf");
    close(a.elo, 998.598171113783, "Elo A");
    close(b.elo, 1001.4695015289755, "Elo B");
    close(c.elo, 999.9323273572415, "Elo C");
    assert_eq!((a.votes, a.wins, a.losses, a.ties), (3, 1, 1, 1));
    assert_eq!((b.votes, b.wins, b.losses, b.ties), (2, 1, 1, 0));
    assert_eq!(a.name, "a.gguf", "shown under the name last seen");

    // Everything: the both-bad run adds a B–C tie.
    let all = leaderboard::leaderboard(&h, None).await.unwrap();
    assert_eq!((all.votes, all.games), (4, 4));
    let b_all = all.rows.iter().find(|r| r.model_id == b.model_id).unwrap();
    assert_eq!((b_all.votes, b_all.ties, b_all.both_bad), (3, 1, 1));

    let csv = board.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "rank,model,model_id,votes,wins,losses,ties,both_bad,elo,bt_score,bt_ci_low,bt_ci_high"
    );
    assert_eq!(lines.len(), 4);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",file:c.gguf,1,0,0,1,0,999.9,")),
        "{csv}"
    );
}

fn record(a: &str, b: &str, vote: Vote) -> VoteRecord {
    VoteRecord {
        run_id: String::new(),
        tag: None,
        created_at: 0,
        vote,
        columns: vec![ModelKey::new(a, None), ModelKey::new(b, None)],
    }
}

#[test]
fn bradley_terry_matches_a_hand_solved_set() {
    // Games: A beats B 2×, B beats A 1×; A beats C 4×, C beats A 1×; B beats C 2×, C beats
    // B 1×. Wins: A 6, B 3, C 2 (11 games).
    // Claim: strengths ∝ (4, 2, 1). The maximum-likelihood equations are
    //   W_i = Σ_j n_ij · p_i / (p_i + p_j):
    //   A: 3·4/6 + 5·4/5 = 2 + 4 = 6 ✓   B: 3·2/6 + 3·2/3 = 1 + 2 = 3 ✓
    //   C: 5·1/5 + 3·1/3 = 1 + 1 = 2 ✓   and every pair has wins both ways, so the solution
    //   is unique. Normalised to geometric mean 1 (∛8 = 2): p = (2, 1, 0.5); on the Elo scale
    //   1000 + 400·log10(p) = (1120.4119982656, 1000, 879.5880017344).
    let mut recs = Vec::new();
    let mut add = |w: &str, l: &str, n: usize| {
        for _ in 0..n {
            recs.push(record(w, l, Vote::ABetter));
        }
    };
    add("A", "B", 2);
    add("B", "A", 1);
    add("A", "C", 4);
    add("C", "A", 1);
    add("B", "C", 2);
    add("C", "B", 1);
    let board = leaderboard::compute(&recs, None);
    assert!(!board.regularized);
    let names: Vec<&str> = board.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["A", "B", "C"]);
    close(board.rows[0].bt_strength, 2.0, "p_A");
    close(board.rows[1].bt_strength, 1.0, "p_B");
    close(board.rows[2].bt_strength, 0.5, "p_C");
    close(board.rows[0].bt_score, 1120.4119982655925, "score A");
    close(board.rows[2].bt_score, 879.5880017344075, "score C");
    assert_eq!(board.rows[0].votes, 8, "3 games with B, 5 with C");
}

#[test]
fn bradley_terry_interval_matches_the_fisher_information_by_hand() {
    // A beats B 3×, B beats A 1× (ties count half; none here). p_A/p_B = 3, normalised
    // p_A = √3, p_B = 1/√3. Information on θ = ln p for the pair:
    //   w = n·p_A·p_B/(p_A + p_B)² = 4·1/(4/√3)² = 0.75, I = w·[[1, −1], [−1, 1]],
    //   pseudo-inverse = [[1, −1], [−1, 1]]/(4w) → Var θ_A = 1/3, SE = 0.5773502692.
    // 95 %: θ_A = ln √3 = 0.5493061443 ± 1.959963985·0.5773502692; on the Elo scale
    //   (×400/ln 10): score 1095.4242509439, interval 898.8476749000 – 1292.0008269878,
    //   and B's score 1000 − 95.4242509439 = 904.5757490561.
    let mut recs = vec![record("A", "B", Vote::ABetter); 3];
    recs.push(record("A", "B", Vote::BBetter));
    let board = leaderboard::compute(&recs, None);
    let a = &board.rows[0];
    close(a.bt_score, 1095.4242509439325, "score A");
    close(a.bt_ci_low, 898.8476749000438, "low A");
    close(a.bt_ci_high, 1292.0008269878213, "high A");
    close(board.rows[1].bt_score, 904.5757490560675, "score B");
    // B has the same spread around its own score.
    close(
        board.rows[1].bt_ci_high - board.rows[1].bt_score,
        a.bt_ci_high - a.bt_score,
        "spread",
    );
}

#[test]
fn word_diff_of_a_known_pair() {
    let ops = diff_words("The cat sat on the mat.", "The dog sat on the red mat.");
    let expected = vec![
        DiffOp::Equal {
            text: "The ".into(),
        },
        DiffOp::Delete { text: "cat".into() },
        DiffOp::Insert { text: "dog".into() },
        DiffOp::Equal {
            text: " sat on the ".into(),
        },
        DiffOp::Insert {
            text: "red ".into(),
        },
        DiffOp::Equal {
            text: "mat.".into(),
        },
    ];
    assert_eq!(ops, expected);
    let json = serde_json::to_value(&ops[1]).unwrap();
    assert_eq!(json, serde_json::json!({"op": "delete", "text": "cat"}));

    let d = diff_columns("4", "two plus two", "4", "2 plus 2");
    assert_eq!(d.answer, vec![DiffOp::Equal { text: "4".into() }]);
    assert_eq!(
        d.thinking,
        vec![
            DiffOp::Delete { text: "two".into() },
            DiffOp::Insert { text: "2".into() },
            DiffOp::Equal {
                text: " plus ".into()
            },
            DiffOp::Delete { text: "two".into() },
            DiffOp::Insert { text: "2".into() },
        ]
    );
}
