//! Schema upgrades keep data; damaged and foreign files are refused, untouched.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use conclave_core::history::{History, SearchQuery};
use conclave_core::ErrorCode;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Builds a database with every migration before the last one applied and data written
/// in that old schema, then opens it with the current code.
#[tokio::test]
async fn upgrade_from_the_previous_schema_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    let full = sqlx::migrate!("./migrations");
    let n = full.migrations.len();
    assert!(n >= 2);
    for upto in 1..n {
        let path = dir.path().join(format!("old{upto}.sqlite3"));
        let mut old = sqlx::migrate::Migrator::DEFAULT;
        old.migrations = Cow::Owned(full.migrations[..upto].to_vec());
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        old.run_direct(&mut conn).await.unwrap();
        // Data as the schema-1 code wrote it.
        sqlx::query("INSERT INTO conversations (id, title, created_at, updated_at, current_leaf_id) VALUES ('c1', 'Old chat', 1, 2, NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at, updated_at) \
             VALUES ('m1', 'c1', NULL, 'user', 'ancient aardvark question', 1, 1)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, reasoning, created_at, updated_at, status, \
             model_file, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, frequency_penalty, presence_penalty, \
             max_tokens, stop_strings, seed) \
             VALUES ('m2', 'c1', 'm1', 'assistant', 'old answer', 'old thoughts', 2, 2, 'streaming', 'x.gguf', \
             0.5, 40, 0.9, 0.05, 1.1, 64, 0, 0, 256, '[]', 5)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("UPDATE conversations SET current_leaf_id = 'm2' WHERE id = 'c1'")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        let h = History::open(&path).await.unwrap();
        let tree = h.get_conversation("c1").await.unwrap();
        assert_eq!(tree.conversation.title, "Old chat");
        assert_eq!(tree.current_leaf_id(), Some("m2"));
        assert_eq!(tree.messages.len(), 2);
        let m2 = &tree.messages[1];
        assert_eq!(m2.content, "old answer");
        assert_eq!(m2.reasoning.as_deref(), Some("old thoughts"));
        assert_eq!(
            m2.status,
            conclave_core::history::MessageStatus::Interrupted,
            "left streaming by the old version"
        );
        assert_eq!(m2.sampling.as_ref().unwrap().temperature, 0.5);
        assert_eq!(m2.seed, Some(5));
        // Text stored before the search index existed is found.
        assert_eq!(
            h.search(&SearchQuery::new("aardvark")).await.unwrap()[0].message_id,
            "m1"
        );
        assert_eq!(h.integrity_check().await.unwrap(), "ok");
        h.close().await;
        // Opening again is a no-op.
        History::open(&path).await.unwrap();
    }
    drop(path);
}

#[tokio::test]
async fn random_bytes_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.sqlite3");
    let bytes: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let err = History::open(&path).await.unwrap_err();
    assert_eq!(err.code(), "corrupt_database");
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
    assert!(err.to_string().contains("junk.sqlite3"));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // A file with an SQLite header but garbage after it.
    let mut fake = b"SQLite format 3\0".to_vec();
    fake.extend_from_slice(&bytes);
    std::fs::write(&path, &fake).unwrap();
    let err = History::open(&path).await.unwrap_err();
    assert_eq!(err.code(), "corrupt_database", "{err}");
}

#[tokio::test]
async fn a_foreign_sqlite_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO invoices (amount) VALUES (12.5)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = History::open(&path).await.unwrap_err();
    assert_eq!(err.code(), "corrupt_database");
    assert!(err.to_string().contains("another application"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the foreign file is not modified"
    );
    assert!(!dir.path().join("other.db-wal").exists());
}

#[tokio::test]
async fn default_location_follows_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    // Only this test in this binary touches the variable.
    std::env::set_var("CONCLAVE_DATA_DIR", dir.path());
    let h = History::open_default().await.unwrap();
    assert_eq!(h.path(), dir.path().join("history.sqlite3"));
    assert!(dir.path().join("history.sqlite3").exists());
}

/// The app and a `conclave` command (or two scripts) starting together on a new data
/// folder: both must open the history; neither may fail on the other's first migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_opens_all_succeed() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.sqlite3");
        let opens = (0..4).map(|_| {
            let path = path.clone();
            tokio::spawn(async move { History::open(&path).await })
        });
        for (i, h) in futures::future::join_all(opens)
            .await
            .into_iter()
            .enumerate()
        {
            let h = h.unwrap();
            assert!(h.is_ok(), "round {round}, open {i}: {:?}", h.err());
        }
        let h = History::open(&path).await.unwrap();
        assert!(h.list_conversations(10, None).await.unwrap().is_empty());
    }
}
