//! Scanning folders for GGUF models and describing each one from its header.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::store::{self, ModelOverrides, Settings, ShaCache};
use super::ModelsError;
use crate::error::ErrorCode;
use crate::gguf::{self, GgufHeader};
use crate::reasoning::ReasoningFormat;

/// How deep below a search folder we look (HF-style `org/repo/file.gguf` layouts).
const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone, Serialize)]
pub struct ModelEntry {
    /// First 16 hex digits of the sha256 when known, else of a hash of the canonical path.
    pub id: String,
    /// The path-hash id: still accepted by [`Catalog::resolve`] after the sha256 is known.
    pub path_id: String,
    pub display_name: String,
    pub file_name: String,
    /// The model file (the first part of a split model).
    pub path: PathBuf,
    /// Every file of the model, first part first.
    pub parts: Vec<PathBuf>,
    /// Total bytes over all parts.
    pub size: u64,
    /// sha256 of the (first) file, when computed.
    pub sha256: Option<String>,
    pub tags: Vec<String>,
    /// Layers on GPU and RPC devices the user chose for it; None = auto (the fit).
    pub gpu_layers: Option<u32>,
    /// The search folder it was found in.
    pub folder: PathBuf,
    pub meta: Option<ModelMeta>,
    /// Why the model cannot be used, when it cannot.
    pub error: Option<ModelIssue>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelIssue {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelMeta {
    pub architecture: Option<String>,
    pub name: Option<String>,
    pub license: Option<String>,
    pub parameter_count: u64,
    pub quantization: Option<String>,
    pub context_length: Option<u64>,
    pub layer_count: Option<u64>,
    pub embedding_length: Option<u64>,
    pub head_count: Option<u64>,
    pub head_count_kv: Option<u64>,
    pub has_chat_template: bool,
    /// The reasoning format the chat template implies (`None`: not a thinking model).
    pub reasoning_format: Option<ReasoningFormat>,
    pub gguf_version: u32,
    pub split_count: u32,
    /// Bytes of tensor data over all parts: what the weights take in memory.
    pub weights_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    pub models: Vec<ModelEntry>,
    pub folders: Vec<PathBuf>,
}

impl Catalog {
    /// Finds a model by id (content or path id, or a unique id prefix of 6+ digits), by
    /// file name (with or without `.gguf`), by path, or by a unique part of its file name.
    pub fn resolve(&self, query: &str) -> Result<&ModelEntry, ModelsError> {
        let q = query.trim();
        if let Some(m) = self.models.iter().find(|m| m.id == q || m.path_id == q) {
            return Ok(m);
        }
        let as_path = Path::new(q);
        if as_path.components().count() > 1 || as_path.is_absolute() || as_path.exists() {
            if let Ok(canon) = as_path.canonicalize() {
                if let Some(m) = self.models.iter().find(|m| {
                    m.parts
                        .iter()
                        .any(|p| p == &canon || p.canonicalize().is_ok_and(|c| c == canon))
                }) {
                    return Ok(m);
                }
            }
        }
        let by_name: Vec<&ModelEntry> = self
            .models
            .iter()
            .filter(|m| {
                m.file_name == q
                    || m.file_name.strip_suffix(".gguf") == Some(q)
                    || m.display_name == q
            })
            .collect();
        let by_prefix: Vec<&ModelEntry> = if by_name.is_empty() && q.len() >= 6 {
            self.models.iter().filter(|m| m.id.starts_with(q)).collect()
        } else {
            Vec::new()
        };
        // Last, a unique case-insensitive part of the file name ("smollm2", "gemma-3"), as
        // people type model names at a prompt.
        let lower = q.to_lowercase();
        let by_part: Vec<&ModelEntry> =
            if by_name.is_empty() && by_prefix.is_empty() && !lower.is_empty() {
                self.models
                    .iter()
                    .filter(|m| m.file_name.to_lowercase().contains(&lower))
                    .collect()
            } else {
                Vec::new()
            };
        let found = if !by_name.is_empty() {
            by_name
        } else if !by_prefix.is_empty() {
            by_prefix
        } else {
            by_part
        };
        match found.as_slice() {
            [] => Err(ModelsError::NotFound(q.to_string())),
            [one] => Ok(one),
            many => {
                // The same file found twice (e.g. the models folder also added by hand) is
                // one model, not an ambiguity.
                let paths: HashSet<&PathBuf> = many.iter().map(|m| &m.path).collect();
                if paths.len() == 1 {
                    return Ok(many[0]);
                }
                Err(ModelsError::Ambiguous {
                    query: q.to_string(),
                    candidates: many
                        .iter()
                        .map(|m| format!("{} ({})", m.id, m.path.display()))
                        .collect(),
                })
            }
        }
    }
}

/// The reasoning format a chat template implies; `None` for a model that does not think.
fn detect_reasoning_format(template: &str) -> Option<ReasoningFormat> {
    match crate::reasoning::detect_from_template(template) {
        ReasoningFormat::None => None,
        f => Some(f),
    }
}

fn is_gguf_name(name: &str) -> bool {
    // Temp files of imports (`.x.conclave-tmp`) start with a dot; `.part` downloads do not
    // end in `.gguf`.
    !name.starts_with('.') && name.to_ascii_lowercase().ends_with(".gguf")
}

/// Collects candidate files under `dir`. Symlinks are followed only when they stay inside
/// the scanned folder or were made by `import --link`; linked directories are never
/// followed (no loops, no escaping the folder).
fn walk(
    dir: &Path,
    root_canon: &Path,
    links: &HashSet<PathBuf>,
    depth: usize,
    out: &mut Vec<PathBuf>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot read model folder");
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            if depth < MAX_DEPTH && !name.starts_with('.') {
                walk(&path, root_canon, links, depth + 1, out);
            }
        } else if ft.is_symlink() {
            if !is_gguf_name(&name) {
                continue;
            }
            match path.canonicalize() {
                Ok(target) if target.is_file() => {
                    if target.starts_with(root_canon) || links.contains(&path) {
                        out.push(path);
                    } else {
                        tracing::warn!(link = %path.display(), target = %target.display(),
                            "skipping symlink that leads outside the model folder");
                    }
                }
                // A dangling link: listed, so the user sees why the model vanished.
                Err(_) if links.contains(&path) => out.push(path),
                _ => {}
            }
        } else if ft.is_file() && is_gguf_name(&name) {
            out.push(path);
        }
    }
}

pub(crate) fn scan(dirs: &[PathBuf], settings: &Settings, cache: &ShaCache) -> Catalog {
    let links: HashSet<PathBuf> = settings.links.iter().cloned().collect();
    let mut models = Vec::new();
    let mut seen = HashSet::new();
    for dir in dirs {
        let Ok(root_canon) = dir.canonicalize() else {
            continue;
        };
        let mut files = Vec::new();
        walk(dir, &root_canon, &links, 0, &mut files);
        // Group split parts: (folder, prefix, total) → part number → path.
        let mut splits: BTreeMap<(PathBuf, String, u32), BTreeMap<u32, PathBuf>> = BTreeMap::new();
        let mut singles = Vec::new();
        for f in files {
            let key = f.canonicalize().unwrap_or_else(|_| f.clone());
            if !seen.insert(key) {
                continue;
            }
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match gguf::parse_split_file_name(&name) {
                Some((prefix, no, total)) if total > 1 => {
                    let parent = f.parent().map(Path::to_path_buf).unwrap_or_default();
                    splits
                        .entry((parent, prefix.to_string(), total))
                        .or_default()
                        .insert(no, f);
                }
                _ => singles.push(f),
            }
        }
        for f in singles {
            models.push(describe(vec![f], None, dir, settings, cache));
        }
        for ((parent, prefix, total), parts) in splits {
            let missing: Vec<String> = (1..=total)
                .filter(|n| !parts.contains_key(n))
                .map(|n| gguf::split_file_name(&prefix, n, total))
                .collect();
            let issue = (!missing.is_empty()).then(|| ModelIssue {
                code: "model_split_part_missing".into(),
                message: format!(
                    "split model is missing {} in {}",
                    missing.join(", "),
                    parent.display()
                ),
            });
            models.push(describe(
                parts.into_values().collect(),
                issue,
                dir,
                settings,
                cache,
            ));
        }
    }
    Catalog {
        models,
        folders: dirs.to_vec(),
    }
}

/// The user's settings for a model file, kept under the path it was found at or under its
/// canonical path.
pub(super) fn overrides_for<'a>(settings: &'a Settings, path: &Path) -> Option<&'a ModelOverrides> {
    settings.models.get(&store::settings_key(path)).or_else(|| {
        let canon = path.canonicalize().ok()?;
        settings.models.get(&store::settings_key(&canon))
    })
}

fn describe(
    parts: Vec<PathBuf>,
    issue: Option<ModelIssue>,
    folder: &Path,
    settings: &Settings,
    cache: &ShaCache,
) -> ModelEntry {
    let path = parts.first().cloned().unwrap_or_default();
    let canon = path.canonicalize().unwrap_or_else(|_| path.clone());
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size = parts
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let sha256 = store::cached_sha(cache, &path);
    let path_id = store::short_hash(&store::settings_key(&canon));
    let id = sha256
        .as_deref()
        .map(|s| s.chars().take(16).collect())
        .unwrap_or_else(|| path_id.clone());

    let mut error = issue;
    let mut meta = None;
    match read_all_headers(&parts) {
        Ok(headers) => meta = headers.first().map(|h| meta_from(h, &headers)),
        Err(e) => {
            if error.is_none() {
                error = Some(ModelIssue {
                    code: e.code().into(),
                    message: e.to_string(),
                });
            }
        }
    }
    let overrides = overrides_for(settings, &path);
    let display_name =
        super::display_name(&path, overrides.and_then(|o| o.display_name.as_deref()));
    ModelEntry {
        id,
        path_id,
        display_name,
        file_name,
        path,
        parts,
        size,
        sha256,
        tags: overrides.map(|o| o.tags.clone()).unwrap_or_default(),
        gpu_layers: overrides.and_then(|o| o.gpu_layers),
        folder: folder.to_path_buf(),
        meta,
        error,
    }
}

fn read_all_headers(parts: &[PathBuf]) -> Result<Vec<GgufHeader>, gguf::GgufError> {
    parts.iter().map(gguf::read_header).collect()
}

fn meta_from(h: &GgufHeader, all: &[GgufHeader]) -> ModelMeta {
    let template = h.chat_template();
    ModelMeta {
        architecture: h.architecture().map(str::to_string),
        name: h.name().map(str::to_string),
        license: h.license().map(str::to_string),
        parameter_count: all.iter().map(GgufHeader::parameter_count).sum(),
        quantization: h.file_type(),
        context_length: h.context_length(),
        layer_count: h.block_count(),
        embedding_length: h.embedding_length(),
        head_count: h.head_count(),
        head_count_kv: h.head_count_kv(),
        has_chat_template: template.is_some(),
        reasoning_format: template.and_then(detect_reasoning_format),
        gguf_version: h.version,
        split_count: h
            .split_count()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
        weights_bytes: all.iter().map(GgufHeader::tensor_data_size).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::{detect_reasoning_format, ReasoningFormat};

    #[test]
    fn reasoning_markers() {
        assert_eq!(
            detect_reasoning_format("<|start|>assistant<|channel|>analysis"),
            Some(ReasoningFormat::GptOss)
        );
        assert_eq!(
            detect_reasoning_format("[THINK]x[/THINK]"),
            Some(ReasoningFormat::Magistral)
        );
        assert_eq!(detect_reasoning_format("<|im_start|>"), None);
    }
}
