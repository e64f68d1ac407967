//! The model library on temporary folders: catalog, import, duplicates, split models,
//! broken files, overrides, removal and the fit estimate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "gguf_builder.rs"]
mod gguf_builder;

use conclave_core::gguf::read_header;
use conclave_core::models::{
    estimate_fit, Fit, FitRequest, ImportMode, KvCacheType, Library, ModelsError,
};
use conclave_core::ErrorCode;
use gguf_builder::{real_model, s, Builder, GEMMA, SMOL, V};

fn lib() -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    let lib = Library::with_root(dir.path().join("data"));
    (dir, lib)
}

fn split_part(no: u16, count: u16) -> Builder {
    let mut b = Builder::tiny()
        .kv("split.no", V::Raw(2, no.to_le_bytes().to_vec()))
        .kv("split.count", V::Raw(2, count.to_le_bytes().to_vec()));
    if no > 0 {
        b = b.without("general.architecture");
        for t in &mut b.tensors {
            t.name = format!("{}.p{no}", t.name);
        }
    }
    b
}

#[test]
fn import_real_model_then_duplicate_refused() {
    let Some(smol) = real_model(SMOL) else { return };
    let (_t, lib) = lib();
    let report = lib.import(&smol, ImportMode::Copy).unwrap();
    assert_eq!(report.imported.len(), 1);
    let m = &report.imported[0];
    assert!(m.path.starts_with(lib.models_dir()));
    assert!(m.error.is_none(), "{:?}", m.error);
    let meta = m.meta.as_ref().unwrap();
    assert_eq!(meta.architecture.as_deref(), Some("llama"));
    assert_eq!(meta.parameter_count, 134_515_008);
    assert_eq!(meta.quantization.as_deref(), Some("Q4_1"));
    assert_eq!(meta.context_length, Some(8192));
    assert_eq!(meta.layer_count, Some(30));
    assert!(meta.has_chat_template);
    assert_eq!(meta.reasoning_format, None, "SmolLM2 does not think");
    assert_eq!(meta.license.as_deref(), Some("apache-2.0"));
    assert_eq!(m.size, 98_362_432);
    // The sha256 is known from the import, so the id is content-based.
    let sha = m.sha256.clone().expect("sha256 recorded on import");
    assert_eq!(m.id, &sha[..16]);
    assert_eq!(sha, lib.ensure_sha256(&m.path).unwrap());

    // Same content again (even under another name) is refused.
    let e = lib.import(&smol, ImportMode::Copy).unwrap_err();
    assert_eq!(e.code(), "model_duplicate", "{e}");
    assert!(e.to_string().contains(&sha), "{e}");
    let other = _t.path().join("renamed.gguf");
    std::fs::copy(&smol, &other).unwrap();
    assert!(matches!(
        lib.import(&other, ImportMode::Link),
        Err(ModelsError::Duplicate { .. })
    ));

    // Resolve by id, path id, file name (with and without .gguf), path.
    let cat = lib.catalog();
    assert_eq!(cat.models.len(), 1);
    for q in [
        m.id.as_str(),
        m.path_id.as_str(),
        SMOL,
        SMOL.trim_end_matches(".gguf"),
        &m.path.to_string_lossy(),
    ] {
        assert_eq!(cat.resolve(q).unwrap().path, m.path, "{q}");
    }
    assert_eq!(cat.resolve("nope").unwrap_err().code(), "model_not_found");

    // Rename and tags persist; removal deletes the file.
    lib.rename(&m.id, Some("Small one".into())).unwrap();
    lib.set_tags(&m.id, vec!["chat".into(), "tiny".into(), "chat".into()])
        .unwrap();
    let again = lib.catalog();
    let m2 = again.resolve("Small one").unwrap();
    assert_eq!(m2.display_name, "Small one");
    assert_eq!(
        lib.display_name(&m.path),
        "Small one",
        "one name everywhere"
    );
    assert_eq!(m2.tags, vec!["chat", "tiny"]);
    let removed = lib.remove(&m.id).unwrap();
    assert!(!removed.path.exists());
    assert!(lib.catalog().models.is_empty());
}

#[test]
fn import_link_and_folder() {
    let Some(gemma) = real_model(GEMMA) else {
        return;
    };
    let (t, lib) = lib();
    let r = lib.import(&gemma, ImportMode::Link).unwrap();
    let m = &r.imported[0];
    assert!(m.path.symlink_metadata().unwrap().file_type().is_symlink());
    let meta = m.meta.as_ref().unwrap();
    assert_eq!(meta.architecture.as_deref(), Some("gemma3"));
    assert!(!meta.has_chat_template);
    assert_eq!(meta.reasoning_format, None);
    assert_eq!(
        lib.catalog().models.len(),
        1,
        "the import's link is followed"
    );
    // As people type it: a unique, case-insensitive part of the file name.
    let catalog = lib.catalog();
    assert_eq!(catalog.resolve("GEMMA-3").unwrap().path, m.path);
    assert!(catalog.resolve("llama-70b").is_err());

    // A symlink leading outside the folder that import did not make is not followed.
    std::os::unix::fs::symlink(&gemma, lib.models_dir().join("sneaky.gguf")).unwrap();
    let cat = lib.catalog();
    assert_eq!(cat.models.len(), 1);
    assert!(cat.models.iter().all(|m| m.file_name != "sneaky.gguf"));

    // Folder import: a good tiny model, a non-GGUF .gguf and an unrelated file.
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    Builder::tiny().write(&src, "tiny.gguf");
    std::fs::write(src.join("page.gguf"), b"<!DOCTYPE html><html>404</html>").unwrap();
    std::fs::write(src.join("README.md"), b"hello").unwrap();
    let r = lib.import(&src, ImportMode::Copy).unwrap();
    assert_eq!(r.imported.len(), 1);
    assert_eq!(r.imported[0].file_name, "tiny.gguf");
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].1, "model_not_gguf");
    assert!(!lib.models_dir().join("page.gguf").exists());

    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(
        lib.import(&empty, ImportMode::Copy).unwrap_err().code(),
        "model_nothing_to_import"
    );
}

#[test]
fn non_gguf_refused_with_reason() {
    let (t, lib) = lib();
    let txt = t.path().join("notes.txt");
    std::fs::write(&txt, b"just some text, long enough to have a header").unwrap();
    let e = lib.import(&txt, ImportMode::Copy).unwrap_err();
    assert_eq!(e.code(), "model_not_gguf");
    assert!(e.to_string().contains("not a GGUF file"), "{e}");
    let empty = t.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = lib.import(&empty, ImportMode::Copy).unwrap_err();
    assert!(e.to_string().contains("empty file"), "{e}");
    assert!(!lib.models_dir().join("empty.gguf").exists());
}

#[test]
fn split_models_are_one_entry() {
    let (t, lib) = lib();
    let dir = lib.models_dir().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    for no in 0..3u16 {
        split_part(no, 3).write(&dir, &format!("big-{:05}-of-00003.gguf", no + 1));
    }
    // A second split model with a part missing.
    split_part(0, 2).write(&dir, "half-00001-of-00002.gguf");
    let cat = lib.catalog();
    assert_eq!(cat.models.len(), 2, "{:#?}", cat.models);
    let big = cat.resolve("big-00001-of-00003.gguf").unwrap();
    assert_eq!(big.parts.len(), 3);
    assert!(big.error.is_none(), "{:?}", big.error);
    let meta = big.meta.as_ref().unwrap();
    assert_eq!(meta.split_count, 3);
    assert_eq!(meta.parameter_count, 3 * (64 * 3 + 64));
    let half = cat.resolve("half-00001-of-00002").unwrap();
    let err = half.error.as_ref().unwrap();
    assert_eq!(err.code, "model_split_part_missing");
    assert!(
        err.message.contains("half-00002-of-00002.gguf"),
        "{}",
        err.message
    );

    // Importing a split model brings every part; importing part 2 is refused.
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for no in 0..2u16 {
        let mut b = split_part(no, 2).kv("general.name", s("other"));
        b.tensors[0].dims = vec![64, 5];
        b.write(&src, &format!("other-{:05}-of-00002.gguf", no + 1));
    }
    let e = lib
        .import(src.join("other-00002-of-00002.gguf"), ImportMode::Copy)
        .unwrap_err();
    assert_eq!(e.code(), "model_not_first_split_part");
    let r = lib
        .import(src.join("other-00001-of-00002.gguf"), ImportMode::Copy)
        .unwrap();
    assert_eq!(r.imported[0].parts.len(), 2);
    assert!(dir.join("other-00002-of-00002.gguf").exists());
}

#[test]
fn broken_files_are_listed_with_their_error() {
    let (_t, lib) = lib();
    let dir = lib.models_dir().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let good = Builder::tiny().bytes();
    std::fs::write(dir.join("cut.gguf"), &good[..good.len() / 2]).unwrap();
    std::fs::write(dir.join("html.gguf"), b"<html>nope</html>").unwrap();
    Builder::tiny()
        .kv("general.architecture", s("martian"))
        .write(&dir, "alien.gguf");
    std::fs::write(dir.join("partial.gguf.part"), &good).unwrap();
    std::fs::write(dir.join(".hidden.gguf.conclave-tmp"), &good).unwrap();
    Builder::tiny().write(&dir, "ok.gguf");
    let cat = lib.catalog();
    let names: Vec<&str> = cat.models.iter().map(|m| m.file_name.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let code = |n: &str| {
        cat.resolve(n)
            .unwrap()
            .error
            .as_ref()
            .map(|e| e.code.clone())
    };
    assert_eq!(
        code("cut.gguf").as_deref(),
        Some("gguf_tensor_out_of_bounds")
    );
    assert_eq!(code("html.gguf").as_deref(), Some("gguf_not_gguf"));
    assert_eq!(
        code("alien.gguf").as_deref(),
        Some("gguf_unknown_architecture")
    );
    assert_eq!(code("ok.gguf"), None);
    assert!(cat.resolve("partial").is_err(), ".part files are ignored");
}

#[test]
fn settings_and_added_folders() {
    let (t, lib) = lib();
    let extra = t.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    Builder::tiny().write(&extra, "x.gguf");
    assert!(lib.catalog().models.is_empty());
    lib.add_folder(&extra).unwrap();
    assert_eq!(lib.catalog().models.len(), 1);
    assert_eq!(lib.settings().unwrap().folders.len(), 1);
    lib.remove_folder(&extra).unwrap();
    assert!(lib.catalog().models.is_empty());

    // A corrupt settings file is reported, never silently overwritten.
    std::fs::create_dir_all(lib.root()).unwrap();
    std::fs::write(lib.root().join("models-settings.json"), b"{not json").unwrap();
    assert_eq!(
        lib.add_folder(&extra).unwrap_err().code(),
        "model_settings_corrupt"
    );
    assert_eq!(
        std::fs::read(lib.root().join("models-settings.json")).unwrap(),
        b"{not json"
    );
}

#[test]
fn fit_estimates() {
    let (Some(smol), Some(gemma)) = (real_model(SMOL), real_model(GEMMA)) else {
        return;
    };
    let gib = 1u64 << 30;
    let h = read_header(&smol).unwrap();
    let req = FitRequest {
        n_ctx: 8192,
        ..FitRequest::default()
    };
    let e = estimate_fit(&h, None, &req, Some(8 * gib));
    // 30 layers × 8192 cells × 3 kv heads × (64 + 64) dims × 2 bytes (f16).
    assert_eq!(e.kv_cache_bytes, 30 * 8192 * 3 * 128 * 2);
    assert_eq!(e.weights_bytes, 96_576_768);
    assert_eq!(
        e.total_bytes,
        e.weights_bytes + e.kv_cache_bytes + e.compute_bytes + e.overhead_bytes
    );
    assert_eq!(e.fit, Fit::Fits);
    println!("SmolLM2 @8192: {e:#?}");
    let q8 = estimate_fit(
        &h,
        None,
        &FitRequest {
            type_k: KvCacheType::Q8_0,
            type_v: KvCacheType::Q8_0,
            ..req
        },
        None,
    );
    assert_eq!(q8.kv_cache_bytes, 30 * 8192 * 3 * 128 * 34 / 32);
    assert_eq!(q8.fit, Fit::Tight, "unknown free memory is never 'fits'");
    assert_eq!(
        estimate_fit(&h, None, &req, Some(e.total_bytes + 1)).fit,
        Fit::Tight
    );
    assert_eq!(
        estimate_fit(&h, None, &req, Some(e.total_bytes - 1)).fit,
        Fit::WontFit
    );

    let g = read_header(&gemma).unwrap();
    let e = estimate_fit(&g, None, &FitRequest::default(), Some(8 * gib));
    assert_eq!(e.n_ctx, 32768, "0 = the model's context length");
    // llama.cpp keeps full-size caches for the sliding-window layers too (swa_full, its
    // default; its log shows 12 + 60 MiB at 4096 tokens): 18 layers × 32768 cells,
    // 1 kv head × (256 + 256) × 2 bytes.
    assert_eq!(e.kv_cache_bytes, 18 * 32768 * 512 * 2);
    assert!(
        e.notes.iter().any(|n| n.contains("sliding-window")),
        "{:?}",
        e.notes
    );
    println!("Gemma 3 @32768: {e:#?}");
}
