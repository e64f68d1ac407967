//! Bringing GGUF files into the library's models folder: by copy (atomic: temp name, then
//! rename) or by symlink. Every file is header-checked first, and a file whose content is
//! already in the library is refused.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::catalog::ModelEntry;
use super::{store, Library, ModelsError};
use crate::error::ErrorCode;
use crate::gguf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    Copy,
    /// A symlink in the models folder pointing at the original file.
    Link,
}

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub imported: Vec<ModelEntry>,
    /// Files of a folder import that were not imported, with the reason.
    pub skipped: Vec<(PathBuf, String, String)>,
}

pub(crate) fn import(
    lib: &Library,
    src: &Path,
    mode: ImportMode,
) -> Result<ImportReport, ModelsError> {
    let md = std::fs::metadata(src).map_err(ModelsError::io(src))?;
    let mut report = ImportReport::default();
    if !md.is_dir() {
        report.imported.push(import_file(lib, src, mode)?);
        return Ok(report);
    }
    let mut files = Vec::new();
    collect_gguf(src, 0, &mut files);
    if files.is_empty() {
        return Err(ModelsError::NothingToImport(src.to_path_buf()));
    }
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Later parts come along with part 1.
        if gguf::parse_split_file_name(&name).is_some_and(|(_, no, total)| no > 1 && total > 1) {
            continue;
        }
        match import_file(lib, &f, mode) {
            Ok(e) => report.imported.push(e),
            Err(e) => {
                tracing::warn!(path = %f.display(), error = %e, "not imported");
                report
                    .skipped
                    .push((f, e.code().to_string(), e.to_string()));
            }
        }
    }
    Ok(report)
}

fn collect_gguf(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_ascii_lowercase();
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() && depth < 4 {
            collect_gguf(&p, depth + 1, out);
        } else if p.is_file() && name.ends_with(".gguf") {
            out.push(p);
        }
    }
}

fn import_file(lib: &Library, src: &Path, mode: ImportMode) -> Result<ModelEntry, ModelsError> {
    let src = src.canonicalize().map_err(ModelsError::io(src))?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ModelsError::NotFound(src.display().to_string()))?;

    // The parts to bring in: one file, or every part of a split model.
    let parts: Vec<PathBuf> = match gguf::parse_split_file_name(&name) {
        Some((prefix, no, total)) if total > 1 => {
            if no != 1 {
                return Err(ModelsError::NotFirstSplitPart {
                    path: src.clone(),
                    no,
                    first: gguf::split_file_name(prefix, 1, total),
                });
            }
            let dir = src.parent().unwrap_or(Path::new("."));
            let mut v = Vec::new();
            for n in 1..=total {
                let p = dir.join(gguf::split_file_name(prefix, n, total));
                if !p.is_file() {
                    return Err(ModelsError::MissingSplitPart {
                        path: src.clone(),
                        missing: p.display().to_string(),
                    });
                }
                v.push(p);
            }
            v
        }
        _ => vec![src.clone()],
    };
    for p in &parts {
        gguf::read_header(p).map_err(|source| ModelsError::NotGguf {
            path: p.clone(),
            cause: source,
        })?;
    }

    let sha = lib.ensure_sha256(&src)?;
    let src_size = std::fs::metadata(&src)
        .map_err(ModelsError::io(&src))?
        .len();
    // Only files of the same size can have the same content: hash just those.
    for m in lib.catalog().models {
        let Some(first) = m.parts.first() else {
            continue;
        };
        let same_size = std::fs::metadata(first).is_ok_and(|md| md.len() == src_size);
        if !same_size {
            continue;
        }
        let other = match m.sha256.clone() {
            Some(s) => s,
            None => match lib.ensure_sha256(first) {
                Ok(s) => s,
                Err(_) => continue,
            },
        };
        if other == sha {
            return Err(ModelsError::Duplicate {
                path: src.clone(),
                existing: m.path.clone(),
                sha256: sha,
            });
        }
    }

    let dest_dir = lib.models_dir().to_path_buf();
    std::fs::create_dir_all(&dest_dir).map_err(ModelsError::io(&dest_dir))?;
    let dests: Vec<PathBuf> = parts
        .iter()
        .map(|p| {
            let mut n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !n.to_ascii_lowercase().ends_with(".gguf") {
                n.push_str(".gguf");
            }
            dest_dir.join(n)
        })
        .collect();
    for d in &dests {
        if d.symlink_metadata().is_ok() {
            return Err(ModelsError::AlreadyExists(d.clone()));
        }
    }

    match mode {
        ImportMode::Copy => {
            let mut done: Vec<PathBuf> = Vec::new();
            for (p, d) in parts.iter().zip(&dests) {
                if let Err(e) = copy_atomic(p, d) {
                    // All or nothing: a split model with a missing part is useless.
                    for x in &done {
                        let _ = std::fs::remove_file(x);
                    }
                    return Err(e);
                }
                done.push(d.clone());
            }
            store::record_sha(&lib.sha_cache_path(), &dests[0], &sha)?;
        }
        ImportMode::Link => link(lib, &parts, &dests)?,
    }
    tracing::info!(src = %src.display(), dest = %dests[0].display(), ?mode, "model imported");
    let catalog = lib.catalog();
    let entry = catalog.resolve(&dests[0].to_string_lossy())?.clone();
    Ok(entry)
}

fn copy_atomic(src: &Path, dest: &Path) -> Result<(), ModelsError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.conclave-tmp",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let result = std::fs::copy(src, &tmp)
        .map_err(ModelsError::io(src))
        .and_then(|_| crate::files::sync_and_rename(&tmp, dest).map_err(ModelsError::io(dest)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn link(lib: &Library, parts: &[PathBuf], dests: &[PathBuf]) -> Result<(), ModelsError> {
    for (p, d) in parts.iter().zip(dests) {
        std::os::unix::fs::symlink(p, d).map_err(ModelsError::io(d))?;
    }
    let dests = dests.to_vec();
    store::update_settings(&lib.settings_path(), |s| {
        for d in dests {
            if !s.links.contains(&d) {
                s.links.push(d);
            }
        }
    })
}

#[cfg(not(unix))]
fn link(_lib: &Library, _parts: &[PathBuf], _dests: &[PathBuf]) -> Result<(), ModelsError> {
    Err(ModelsError::Unsupported(
        "importing by link is only supported on Unix; import by copy instead".into(),
    ))
}
