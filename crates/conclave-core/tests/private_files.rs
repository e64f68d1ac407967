//! The data folder and the files with conversations or secrets in them are owner-only,
//! checked on real files whatever the umask.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use conclave_core::history::{ConversationSettings, History};
use conclave_core::models::Library;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn sibling(p: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// A permissive umask, as some desktops set: the modes must not come from it.
#[allow(unsafe_code)]
fn open_umask() {
    // SAFETY: umask(2) only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o002);
    }
}

async fn write_something(h: &History) {
    let conv = h
        .create_conversation("Private", ConversationSettings::default())
        .await
        .unwrap();
    h.add_user_message(&conv.id, None, "a secret")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_history_database_and_its_wal_and_shm_are_0600() {
    open_umask();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.sqlite3");
    let h = History::open(&db).await.unwrap();
    write_something(&h).await;
    for p in [db.clone(), sibling(&db, "-wal"), sibling(&db, "-shm")] {
        assert!(
            p.exists(),
            "{} should exist while the history is open",
            p.display()
        );
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    h.close().await;

    // A database from before this rule (or copied in) is tightened when opened.
    for p in [db.clone(), sibling(&db, "-wal"), sibling(&db, "-shm")] {
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let h = History::open(&db).await.unwrap();
    write_something(&h).await;
    for p in [db.clone(), sibling(&db, "-wal"), sibling(&db, "-shm")] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    h.close().await;
}

#[tokio::test]
async fn the_data_folder_is_0700_and_library_settings_0600() {
    open_umask();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("conclave-data");
    // The only test in this binary that reads CONCLAVE_DATA_DIR.
    std::env::set_var("CONCLAVE_DATA_DIR", &root);
    let h = History::open_default().await.unwrap();
    write_something(&h).await;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("history.sqlite3")), 0o600);
    h.close().await;

    // An existing, world-readable data folder is tightened too.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lib = Library::open_default();
    assert_eq!(mode(&root), 0o700);
    lib.add_folder(dir.path()).unwrap();
    let settings = root.join("models-settings.json");
    assert!(settings.is_file());
    assert_eq!(mode(&settings), 0o600);
    std::env::remove_var("CONCLAVE_DATA_DIR");
}
