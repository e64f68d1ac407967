//! Presets in the history database: created, replaced, renamed, deleted, refused when
//! malformed, and carried by a whole-history export into another database.
#![allow(clippy::unwrap_used)]

use conclave_core::events::ThinkMode;
use conclave_core::history::{ExportFormat, ExportScope, History};
use conclave_core::session::ChatSettings;
use conclave_core::ErrorCode;

fn precise() -> ChatSettings {
    let mut s = ChatSettings {
        system_prompt: "Answer in one line.".into(),
        think: ThinkMode::Off,
        think_budget: Some(64),
        keep_thoughts: true,
        n_ctx: 2048,
        threads: Some(2),
        template: Some("chatml".into()),
        ..ChatSettings::default()
    };
    s.sampling.temperature = 0.25;
    s.sampling.top_k = 5;
    s.sampling.seed = Some(42);
    s.sampling.max_tokens = 77;
    s.sampling.stop = vec!["\n\n".into(), "END".into()];
    s
}

#[tokio::test]
async fn create_rename_delete() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
    assert!(h.list_presets().await.unwrap().is_empty());
    let p = h.save_preset("  Precise ", &precise()).await.unwrap();
    assert_eq!(p.name, "Precise", "names are trimmed");
    assert_eq!(
        p.settings,
        precise(),
        "every setting survives the typed columns"
    );

    // Saving under the same name replaces the settings and keeps the creation time.
    let mut warmer = precise();
    warmer.sampling.temperature = 0.9;
    let again = h.save_preset("Precise", &warmer).await.unwrap();
    assert_eq!(again.settings.sampling.temperature, 0.9);
    assert_eq!(again.created_at, p.created_at);
    h.save_preset("Creative", &ChatSettings::default())
        .await
        .unwrap();
    let names: Vec<String> = h
        .list_presets()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["Creative", "Precise"]);

    let clash = h.rename_preset("Precise", "Creative").await.unwrap_err();
    assert_eq!(clash.code(), "invalid_input");
    h.rename_preset("Precise", "Exact").await.unwrap();
    assert_eq!(h.get_preset("Exact").await.unwrap().settings, warmer);
    assert_eq!(
        h.get_preset("Precise").await.unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        h.rename_preset("Nope", "X").await.unwrap_err().code(),
        "not_found"
    );

    for bad in ["", "   ", "a\nb", &"x".repeat(81)] {
        assert_eq!(
            h.save_preset(bad, &precise()).await.unwrap_err().code(),
            "invalid_input",
            "{bad:?}"
        );
    }
    h.delete_preset("Exact").await.unwrap();
    assert_eq!(
        h.delete_preset("Exact").await.unwrap_err().code(),
        "not_found"
    );
    assert_eq!(h.list_presets().await.unwrap().len(), 1);
}

#[tokio::test]
async fn whole_history_export_carries_presets() {
    let dir = tempfile::tempdir().unwrap();
    let a = History::open(dir.path().join("a.sqlite3")).await.unwrap();
    a.save_preset("Precise", &precise()).await.unwrap();
    a.save_preset("Shared", &ChatSettings::default())
        .await
        .unwrap();
    let json = a
        .export(&ExportScope::All, ExportFormat::Json)
        .await
        .unwrap();

    let b = History::open(dir.path().join("b.sqlite3")).await.unwrap();
    let mut mine = ChatSettings::default();
    mine.sampling.temperature = 1.5;
    b.save_preset("Shared", &mine).await.unwrap();
    let report = b.import_json(&json).await.unwrap();
    assert_eq!(report.presets, 1);
    assert_eq!(report.skipped_presets, ["Shared"]);
    assert_eq!(b.get_preset("Precise").await.unwrap().settings, precise());
    assert_eq!(
        b.get_preset("Shared")
            .await
            .unwrap()
            .settings
            .sampling
            .temperature,
        1.5,
        "the local preset is kept"
    );
    // Exports made before presets lived in the history still import.
    let old = serde_json::json!({"format": "conclave-history", "version": 1, "exported_at": 0, "conversations": []});
    assert_eq!(b.import_json(&old.to_string()).await.unwrap().presets, 0);
}
