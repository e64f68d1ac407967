//! Votes on runs of three and four columns: codes round-trip, the leaderboard counts the
//! pairwise games each vote implies (rule in leaderboard.rs), migration 0004 keeps runs and
//! their answers' links, and a vote naming a missing column is refused.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use conclave_core::history::{History, Ranking, Vote};
use conclave_core::leaderboard::{compute, games_for_vote, ModelKey, VoteRecord};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

#[test]
fn codes_round_trip_and_bad_ones_are_refused() {
    for code in [
        "a_better",
        "b_better",
        "c_better",
        "d_better",
        "tie",
        "both_bad",
        "rank:a>b>c",
        "rank:c>a=b",
        "rank:d>a=b=c",
        "rank:a=b",
    ] {
        let v = Vote::parse(code).unwrap_or_else(|| panic!("{code}"));
        assert_eq!(v.code(), code);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, format!("\"{code}\""), "serialised as its code");
        assert_eq!(serde_json::from_str::<Vote>(&json).unwrap(), v);
    }
    // Written in another order, a ranking is stored best first, columns in order.
    assert_eq!(Vote::parse("rank:b=a>c").unwrap().code(), "rank:a=b>c");
    for bad in [
        "rank:a",
        "rank:a>a",
        "rank:a>c",
        "rank:a>e>b",
        "rank:",
        "rank:ab>c",
        "e_better",
        "A",
    ] {
        assert!(Vote::parse(bad).is_none(), "{bad} accepted");
    }
    assert!(serde_json::from_str::<Vote>("\"rank:a>a\"").is_err());
}

#[test]
fn each_vote_is_the_games_it_implies() {
    // Picking the best of three: it beats the other two; the losers play no game.
    assert_eq!(games_for_vote(Vote::CBetter, 3), [(2, 0, 1.0), (2, 1, 1.0)]);
    assert_eq!(games_for_vote(Vote::DBetter, 4).len(), 3);
    // A full ranking: every pair once.
    let r = Vote::parse("rank:c>a=b").unwrap();
    assert_eq!(
        games_for_vote(r, 3),
        [(0, 1, 0.5), (0, 2, 0.0), (1, 2, 0.0)]
    );
    let r4 = Vote::Ranked(Ranking::from_places(&[0, 1, 2, 3]).unwrap());
    assert_eq!(games_for_vote(r4, 4).len(), 6);
    assert!(games_for_vote(r4, 4).iter().all(|g| g.2 == 1.0));
    // A ranking of another size, or a best column the run lacks, counts nothing.
    assert_eq!(games_for_vote(r, 4), []);
    assert_eq!(games_for_vote(Vote::DBetter, 3), []);
    assert!(Vote::CBetter.fits_columns(3) && !Vote::CBetter.fits_columns(2));
    assert!(r.fits_columns(3) && !r.fits_columns(4));
}

#[test]
fn the_leaderboard_counts_rankings_as_pairwise_results() {
    let rec = |vote: Vote| VoteRecord {
        run_id: String::new(),
        tag: None,
        created_at: 0,
        vote,
        columns: ["A", "B", "C"]
            .iter()
            .map(|m| ModelKey::new(m, None))
            .collect(),
    };
    let board = compute(
        &[rec(Vote::parse("rank:a>b>c").unwrap()), rec(Vote::CBetter)],
        None,
    );
    assert_eq!(board.votes, 2);
    assert_eq!(board.games, 3 + 2);
    let row = |name: &str| board.rows.iter().find(|r| r.name == name).unwrap().clone();
    // A: beat B and C, lost to C. B: lost to A, beat C, lost to C. C: lost twice, beat A and B.
    assert_eq!((row("A").wins, row("A").losses), (2, 1));
    assert_eq!((row("B").wins, row("B").losses), (1, 2));
    assert_eq!((row("C").wins, row("C").losses), (2, 2));
    let tied = compute(&[rec(Vote::parse("rank:a=b>c").unwrap())], None);
    assert_eq!(tied.rows.iter().map(|r| r.ties).sum::<u32>(), 2);
}

/// A database at schema 0003 with a voted three-column run: after the upgrade the run,
/// its vote and the answers' links to it are all still there, and N-way votes store.
#[tokio::test]
async fn migration_keeps_runs_and_links_and_stores_n_way_votes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.sqlite3");
    let full = sqlx::migrate!("./migrations");
    let upto = full
        .migrations
        .iter()
        .position(|m| m.version == 4)
        .expect("migration 0004");
    let mut old = sqlx::migrate::Migrator::DEFAULT;
    old.migrations = Cow::Owned(full.migrations[..upto].to_vec());
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .foreign_keys(true)
        .connect()
        .await
        .unwrap();
    old.run_direct(&mut conn).await.unwrap();
    for sql in [
        "INSERT INTO conversations (id, title, created_at, updated_at) VALUES ('c1', 'Run', 1, 1)",
        "INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at, updated_at) VALUES ('u1', 'c1', NULL, 'user', 'q', 1, 1)",
        "INSERT INTO compare_runs (id, user_message_id, blind, vote, tag, created_at) VALUES ('r1', 'u1', 1, 'tie', 'x', 5)",
        "INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at, updated_at, compare_run_id, column_index, model_file) VALUES ('a0', 'c1', 'u1', 'assistant', 'x', 2, 2, 'r1', 0, 'a.gguf')",
        "INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at, updated_at, compare_run_id, column_index, model_file) VALUES ('a1', 'c1', 'u1', 'assistant', 'y', 2, 2, 'r1', 1, 'b.gguf')",
        "INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at, updated_at, compare_run_id, column_index, model_file) VALUES ('a2', 'c1', 'u1', 'assistant', 'z', 2, 2, 'r1', 2, 'c.gguf')",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    // The old schema refuses what the new one allows.
    assert!(sqlx::query("UPDATE compare_runs SET vote = 'c_better'")
        .execute(&mut conn)
        .await
        .is_err());
    conn.close().await.unwrap();

    let h = History::open(&path).await.unwrap();
    let tree = h.get_conversation("c1").await.unwrap();
    assert_eq!(tree.compare_runs.len(), 1);
    assert_eq!(tree.compare_runs[0].vote, Some(Vote::Tie));
    assert_eq!(tree.compare_runs[0].tag.as_deref(), Some("x"));
    let linked = tree
        .messages
        .iter()
        .filter(|m| m.compare_run_id.as_deref() == Some("r1"))
        .count();
    assert_eq!(linked, 3, "answers still point at their run");

    let ranked = Vote::parse("rank:c>a=b").unwrap();
    conclave_core::compare::vote(&h, "r1", ranked)
        .await
        .unwrap();
    let tree = h.get_conversation("c1").await.unwrap();
    assert_eq!(tree.compare_runs[0].vote, Some(ranked));
    conclave_core::compare::vote(&h, "r1", Vote::CBetter)
        .await
        .unwrap();
    // Column D does not exist in this run; a ranking of four neither.
    assert!(conclave_core::compare::vote(&h, "r1", Vote::DBetter)
        .await
        .is_err());
    let four = Vote::parse("rank:a>b>c>d").unwrap();
    assert!(conclave_core::compare::vote(&h, "r1", four).await.is_err());
    let tree = h.get_conversation("c1").await.unwrap();
    assert_eq!(
        tree.compare_runs[0].vote,
        Some(Vote::CBetter),
        "refused votes change nothing"
    );
    let board = conclave_core::leaderboard::leaderboard(&h, None)
        .await
        .unwrap();
    assert_eq!(board.games, 2);
    assert_eq!(h.integrity_check().await.unwrap(), "ok");
}
