//! Downloading a model over HTTPS, resumable and verified.
//!
//! Bytes go to `<name>.gguf.part` next to the final file (the catalog ignores `.part`), with
//! a `<name>.gguf.part.json` sidecar recording the URL and the server's validator (its
//! strong ETag, else Last-Modified) for the bytes in it. The `.part` is locked while a
//! download writes it: a second download of the same file fails at once instead of
//! interleaving bytes. A dropped connection is resumed with `Range` and `If-Range`, so a
//! file that changed on the server comes back whole (200) and the download restarts from
//! zero rather than splicing two versions; a server that ignores `Range` also restarts it.
//! Cancelling keeps the `.part` for later.
//!
//! Only https is fetched, on every redirect too (plain http only for this machine, which the
//! tests use); a redirect from https to http is refused. The free space of the destination
//! is checked against the announced length before any byte is written.
//!
//! A download is "verified" only against a sha256 someone vouched for: the user's, or the
//! one the Hugging Face Hub publishes for that file in that revision (its repository
//! metadata, `lfs.sha256`). An ETag is a cache validator, never a checksum, whatever it
//! looks like. The result says which source verified it. Only a file whose sum matches (when
//! there is one) and whose GGUF header checks out is renamed to its final `.gguf` name,
//! atomically; a failed check deletes the `.part`, since resuming it cannot help.
//!
//! Hugging Face page links (`…/blob/…`) are rewritten to their download form (`…/resolve/…`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{store, Library, ModelsError};
use crate::gguf;

/// How long a stalled connection may stay silent before we drop it and resume.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Where `…/resolve/…` and `…/blob/…` URLs are recognised as Hub files.
pub const HUGGING_FACE_HUB: &str = "https://huggingface.co";
/// Repository metadata lists every file; a few megabytes even for the largest repos.
const HUB_METADATA_LIMIT: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct DownloadOptions {
    pub url: String,
    /// Expected sha256 (64 hex digits). Without it, the sha256 the Hugging Face Hub
    /// publishes for the file is used (for Hub URLs); otherwise the file is not verified.
    pub sha256: Option<String>,
    /// Final file name; default: the URL's last path segment (must end in `.gguf`).
    pub file_name: Option<String>,
    /// Destination folder; default: the library's models folder.
    pub dest_dir: Option<PathBuf>,
    /// Automatic resumes after a dropped or stalled connection within one call.
    pub max_retries: u32,
    /// The Hugging Face Hub whose URLs are recognised; default [`HUGGING_FACE_HUB`]
    /// (a mirror, or a local stand-in in tests).
    pub hub_endpoint: Option<String>,
}

impl DownloadOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            sha256: None,
            file_name: None,
            dest_dir: None,
            max_retries: 3,
            hub_endpoint: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DownloadProgress {
    pub bytes_done: u64,
    pub total: Option<u64>,
    /// Average over the current connection.
    pub bytes_per_sec: f64,
    pub eta_secs: Option<f64>,
    /// Bytes already on disk when the current connection started (0 = from scratch).
    pub resumed_from: u64,
    /// 0 for the first connection, then 1, 2… for each automatic resume.
    pub attempt: u32,
    /// The last event: the file is complete (before verification).
    pub done: bool,
}

/// Cancels a download from another task or thread.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    async fn cancelled(&self) {
        while !self.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Who vouched for the sha256 a download was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sha256Source {
    /// The user gave it.
    User,
    /// The Hugging Face Hub's metadata for that file at that revision.
    HuggingFace,
    /// Nothing to check against: computed, recorded, not verified.
    Unverified,
}

impl std::fmt::Display for Sha256Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sha256Source::User => "the sha256 you gave",
            Sha256Source::HuggingFace => "the sha256 Hugging Face publishes for this file",
            Sha256Source::Unverified => "no published sha256",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DownloadedModel {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub sha256_source: Sha256Source,
    /// Whether any bytes came from an earlier, interrupted download.
    pub resumed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartMeta {
    url: String,
    /// What the server said identifies the bytes in the `.part` (a strong ETag, else
    /// Last-Modified), sent back as `If-Range` when resuming.
    #[serde(default)]
    validator: Option<String>,
    /// The whole file's length, once a server said it: the Models screen shows how far
    /// an unfinished download got.
    #[serde(default)]
    total: Option<u64>,
    /// The sha256 the user gave, so that a resume from the list checks the same sum.
    #[serde(default)]
    sha256: Option<String>,
}

/// A download that stopped before its end (cancelled, failed, or the app closed): its
/// bytes wait in `<file_name>.part` in the models folder.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct PartialDownload {
    /// The model's file name once finished (`x.gguf` for `x.gguf.part`).
    pub file_name: String,
    /// Where it came from; None when the sidecar is missing or unreadable (it can then
    /// only be deleted, or downloaded again from its URL).
    pub url: Option<String>,
    pub bytes_done: u64,
    pub total: Option<u64>,
    /// Whether a sha256 given by the user will check the finished file.
    pub has_sha256: bool,
    /// A download is writing it right now (its lock is held).
    pub in_progress: bool,
    /// Last write, seconds since the Unix epoch.
    pub modified_secs: Option<u64>,
}

fn normalize_sha(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

fn file_name_from_url(url: &reqwest::Url) -> Option<String> {
    percent_decode(url.path_segments()?.next_back()?)
}

/// `%XX` escapes of a URL path segment decoded; None when they do not make UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// https anywhere; plain http only to this machine (nothing on the way can read or change
/// it there, and the tests serve files that way).
fn scheme_allowed(url: &reqwest::Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url))
}

/// Whether a redirect from the chain `previous` to `next` may be followed: never to a
/// scheme the download would not accept to start with, never from https down to http.
fn redirect_allowed(previous: &[reqwest::Url], next: &reqwest::Url) -> bool {
    let downgrade = previous.iter().any(|p| p.scheme() == "https") && next.scheme() != "https";
    scheme_allowed(next) && !downgrade
}

/// The refusal carried through reqwest's error, to be told apart from network errors.
#[derive(Debug)]
struct RefusedRedirect(String);

impl std::fmt::Display for RefusedRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused redirect to {}", self.0)
    }
}

impl std::error::Error for RefusedRedirect {}

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 10 {
            attempt.error("too many redirects")
        } else if redirect_allowed(attempt.previous(), attempt.url()) {
            attempt.follow()
        } else {
            let to = attempt.url().to_string();
            attempt.error(RefusedRedirect(to))
        }
    })
}

/// The refused redirect in a reqwest error's causes, if that is what stopped it.
fn refused_redirect(e: &reqwest::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<RefusedRedirect>() {
            return Some(r.0.clone());
        }
        cur = c.source();
    }
    None
}

/// A file on the Hub: `ENDPOINT/OWNER/NAME/resolve/REVISION/PATH`.
#[derive(Debug, PartialEq, Eq)]
struct HubFile {
    repo: String,
    revision: String,
    path: String,
}

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Rewrites a Hub page link (`…/blob/…`, what the browser's address bar shows) to the
/// file itself (`…/resolve/…`); other URLs are returned unchanged.
fn hub_download_url(url: &reqwest::Url, hub: &reqwest::Url) -> reqwest::Url {
    if !same_origin(url, hub) {
        return url.clone();
    }
    let segs: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    if segs.len() >= 5 && segs[2] == "blob" {
        let mut out = url.clone();
        let mut rewritten = segs.clone();
        rewritten[2] = "resolve";
        out.set_path(&rewritten.join("/"));
        return out;
    }
    url.clone()
}

fn hub_file(url: &reqwest::Url, hub: &reqwest::Url) -> Option<HubFile> {
    if !same_origin(url, hub) {
        return None;
    }
    let segs: Vec<&str> = url.path_segments()?.collect();
    if segs.len() < 5 || segs[2] != "resolve" {
        return None;
    }
    let path: Vec<String> = segs[4..]
        .iter()
        .map(|s| percent_decode(s))
        .collect::<Option<_>>()?;
    Some(HubFile {
        repo: format!("{}/{}", segs[0], segs[1]),
        revision: segs[3].to_owned(),
        path: path.join("/"),
    })
}

/// The sha256 (and size) the Hub's repository metadata gives for the file, at the
/// revision the URL names. Any failure (offline, a private repo, not an LFS file) means
/// "none published": the download goes on unverified rather than failing.
async fn hub_sha256(
    client: &reqwest::Client,
    hub: &reqwest::Url,
    file: &HubFile,
) -> Option<(String, Option<u64>)> {
    let api = format!(
        "{}/api/models/{}/revision/{}?blobs=true",
        hub.as_str().trim_end_matches('/'),
        file.repo,
        file.revision
    );
    let resp = client
        .get(&api)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?;
    if resp
        .content_length()
        .is_some_and(|n| n > HUB_METADATA_LIMIT as u64)
    {
        return None;
    }
    let body = resp.bytes().await.ok()?;
    if body.len() > HUB_METADATA_LIMIT {
        return None;
    }
    let info: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let sibling = info
        .get("siblings")?
        .as_array()?
        .iter()
        .find(|s| s.get("rfilename").and_then(|n| n.as_str()) == Some(file.path.as_str()))?;
    let lfs = sibling.get("lfs")?;
    let sha = normalize_sha(lfs.get("sha256")?.as_str()?)?;
    let size = lfs.get("size").and_then(|n| n.as_u64());
    tracing::debug!(repo = %file.repo, path = %file.path, "the Hub publishes a sha256");
    Some((sha, size))
}

fn check_file_name(url: &str, name: &str) -> Result<(), ModelsError> {
    let bad = |reason: &str| ModelsError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return Err(bad("the file name is empty or unsafe"));
    }
    if !name.to_ascii_lowercase().ends_with(".gguf") {
        return Err(bad(&format!(
            "\"{name}\" is not a .gguf file (link to the .gguf file itself)"
        )));
    }
    Ok(())
}

fn append_ext(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(ext);
    PathBuf::from(s)
}

fn remove_quietly(p: &Path) {
    if let Err(e) = std::fs::remove_file(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), error = %e, "could not remove file");
        }
    }
}

/// Parses `Content-Range: bytes start-end/total` → (start, total).
fn content_range(headers: &reqwest::header::HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

enum Attempt {
    Complete {
        total: Option<u64>,
    },
    /// Worth resuming: the connection dropped or stalled.
    Retry(ModelsError),
}

pub(crate) async fn download(
    lib: &Library,
    opts: DownloadOptions,
    mut on_progress: impl FnMut(&DownloadProgress) + Send,
    cancel: &CancelToken,
) -> Result<DownloadedModel, ModelsError> {
    let given = opts.url.trim().to_string();
    let invalid = |url: &str, reason: &str| ModelsError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let url = reqwest::Url::parse(&given).map_err(|e| invalid(&given, &e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(&given, "only https is supported"));
    }
    if !scheme_allowed(&url) {
        return Err(invalid(
            &given,
            "plain http can be read and changed on the way: use https (http is only accepted for this machine)",
        ));
    }
    let hub_str = opts.hub_endpoint.as_deref().unwrap_or(HUGGING_FACE_HUB);
    let hub = reqwest::Url::parse(hub_str).map_err(|e| invalid(hub_str, &e.to_string()))?;
    let url = hub_download_url(&url, &hub);
    let url_str = url.to_string();
    let user_sha = match &opts.sha256 {
        Some(s) => Some(normalize_sha(s).ok_or_else(|| ModelsError::InvalidSha256(s.clone()))?),
        None => None,
    };
    let name = match &opts.file_name {
        Some(n) => n.clone(),
        None => file_name_from_url(&url).unwrap_or_default(),
    };
    check_file_name(&url_str, &name)?;

    let dest_dir = opts
        .dest_dir
        .clone()
        .unwrap_or_else(|| lib.models_dir().to_path_buf());
    std::fs::create_dir_all(&dest_dir).map_err(ModelsError::io(&dest_dir))?;
    let final_path = dest_dir.join(&name);
    if final_path.symlink_metadata().is_ok() {
        return Err(ModelsError::AlreadyExists(final_path));
    }
    let part = append_ext(&final_path, ".part");
    let meta_path = append_ext(&part, ".json");
    let mut file = tokio::fs::File::from_std(lock_part(&part, true)?);
    let result = download_locked(
        &opts,
        &url_str,
        &hub,
        user_sha,
        &mut file,
        Paths {
            part: &part,
            meta: &meta_path,
            dest_dir: &dest_dir,
            final_path: &final_path,
            sha_cache: &lib.sha_cache_path(),
        },
        &mut on_progress,
        cancel,
    )
    .await;
    // A failure before any byte arrived (a 404, no space) leaves nothing worth resuming.
    // Removed while still locked, so it cannot be another download's file by then.
    if result.is_err() && file.metadata().await.is_ok_and(|m| m.len() == 0) {
        remove_quietly(&part);
        remove_quietly(&meta_path);
    }
    // Closing the handle releases the lock (on the final file, after a success).
    drop(file);
    result
}

/// Opens (creating it if needed) and locks the `.part`. The lock is the file's own: it
/// moves with the rename to the final name and is released when the download's handle
/// closes, also when the process dies.
fn lock_part(part: &Path, create: bool) -> Result<std::fs::File, ModelsError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(part)
        .map_err(ModelsError::io(part))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ModelsError::InProgress {
            part: part.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(ModelsError::io(part)(e)),
    }
}

/// The unfinished downloads in `dir`, most recently written first.
pub(crate) fn partial_downloads(dir: &Path) -> Vec<PartialDownload> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PartialDownload> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let file_name = name.strip_suffix(".part")?;
            if !file_name.to_ascii_lowercase().ends_with(".gguf") {
                return None;
            }
            let path = e.path();
            let md = path.symlink_metadata().ok().filter(|m| m.is_file())?;
            let meta: Option<PartMeta> = std::fs::read(append_ext(&path, ".json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            Some(PartialDownload {
                file_name: file_name.to_owned(),
                url: meta.as_ref().map(|m| m.url.clone()),
                bytes_done: md.len(),
                total: meta.as_ref().and_then(|m| m.total),
                has_sha256: meta.as_ref().is_some_and(|m| m.sha256.is_some()),
                in_progress: is_locked(&path),
                modified_secs: md
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
            })
        })
        .collect();
    found.sort_by(|a, b| {
        b.modified_secs
            .cmp(&a.modified_secs)
            .then_with(|| a.file_name.cmp(&b.file_name))
    });
    found
}

/// Whether a download holds the file's lock. A separate open has its own lock state, so
/// this also sees a download running in this very process.
fn is_locked(path: &Path) -> bool {
    std::fs::File::open(path)
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// The `.part` of an unfinished download named by its final file name, which must be a
/// plain `.gguf` name in `dir` (never a path).
fn existing_part(dir: &Path, file_name: &str) -> Result<PathBuf, ModelsError> {
    let plain = !file_name.is_empty()
        && !file_name.starts_with('.')
        && !file_name.contains(['/', '\\', '\0'])
        && file_name.to_ascii_lowercase().ends_with(".gguf");
    let part = dir.join(format!("{file_name}.part"));
    if !plain || !part.symlink_metadata().is_ok_and(|m| m.is_file()) {
        return Err(ModelsError::NotFound(format!(
            "{file_name} (unfinished download)"
        )));
    }
    Ok(part)
}

/// Deletes an unfinished download's bytes and its sidecar; refused while a download
/// writes them.
pub(crate) fn discard_partial(dir: &Path, file_name: &str) -> Result<(), ModelsError> {
    let part = existing_part(dir, file_name)?;
    // Held across the removal, so no download can start writing it in between.
    let lock = lock_part(&part, false)?;
    std::fs::remove_file(&part).map_err(ModelsError::io(&part))?;
    remove_quietly(&append_ext(&part, ".json"));
    drop(lock);
    tracing::info!(part = %part.display(), "unfinished download deleted");
    Ok(())
}

/// What continues an unfinished download where it stopped: its URL and the sha256 the
/// user gave for it, into the same folder under the same name.
pub(crate) fn resume_options(dir: &Path, file_name: &str) -> Result<DownloadOptions, ModelsError> {
    let part = existing_part(dir, file_name)?;
    let meta_path = append_ext(&part, ".json");
    let meta: PartMeta = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            ModelsError::Unsupported(format!(
                "{} does not record where {file_name} came from: delete it and download again from its address",
                meta_path.display()
            ))
        })?;
    Ok(DownloadOptions {
        sha256: meta.sha256,
        file_name: Some(file_name.to_owned()),
        dest_dir: Some(dir.to_path_buf()),
        ..DownloadOptions::new(meta.url)
    })
}

struct Paths<'a> {
    part: &'a Path,
    meta: &'a Path,
    dest_dir: &'a Path,
    final_path: &'a Path,
    sha_cache: &'a Path,
}

#[allow(clippy::too_many_arguments)]
async fn download_locked(
    opts: &DownloadOptions,
    url_str: &str,
    hub: &reqwest::Url,
    user_sha: Option<String>,
    file: &mut tokio::fs::File,
    paths: Paths<'_>,
    on_progress: &mut (impl FnMut(&DownloadProgress) + Send),
    cancel: &CancelToken,
) -> Result<DownloadedModel, ModelsError> {
    let Paths {
        part,
        meta: meta_path,
        dest_dir,
        final_path,
        sha_cache,
    } = paths;
    let part_buf = part.to_path_buf();

    // A leftover .part from another URL is not ours to resume.
    let previous: Option<PartMeta> = std::fs::read(meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut meta = match previous {
        Some(m) if m.url == url_str => m,
        _ => {
            let len = file.metadata().await.map_err(ModelsError::io(part))?.len();
            if len > 0 {
                tracing::info!(part = %part.display(), "discarding partial download of another URL");
                file.set_len(0).await.map_err(ModelsError::io(part))?;
            }
            PartMeta {
                url: url_str.to_string(),
                validator: None,
                total: None,
                sha256: None,
            }
        }
    };
    // A sum given now wins; without one, the sum given for these bytes earlier still
    // checks them.
    let user_sha = user_sha.or_else(|| meta.sha256.clone());
    meta.sha256.clone_from(&user_sha);
    store::write_json_atomic(meta_path, &meta)?;

    let client = reqwest::Client::builder()
        .user_agent(concat!("conclave/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .redirect(redirect_policy())
        .build()
        .map_err(|e| ModelsError::Network {
            url: url_str.to_string(),
            message: e.to_string(),
        })?;
    // Asked before the download, so a Hub that will not say costs nothing later.
    let published = match (
        &user_sha,
        reqwest::Url::parse(url_str)
            .ok()
            .and_then(|u| hub_file(&u, hub)),
    ) {
        (None, Some(f)) => hub_sha256(&client, hub, &f).await,
        _ => None,
    };
    let resumed = file.metadata().await.map(|m| m.len() > 0).unwrap_or(false);

    let mut attempt = 0u32;
    let total = loop {
        if cancel.is_cancelled() {
            return Err(ModelsError::Cancelled { part: part_buf });
        }
        let mut target = Target {
            file: &mut *file,
            path: part,
            meta_path,
            meta: &mut meta,
            dest_dir,
        };
        match fetch_once(&client, url_str, &mut target, attempt, on_progress, cancel).await? {
            Attempt::Complete { total } => break total,
            Attempt::Retry(e) if attempt < opts.max_retries => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "download interrupted; resuming");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))) => {}
                    _ = cancel.cancelled() => return Err(ModelsError::Cancelled { part: part_buf }),
                }
            }
            Attempt::Retry(e) => return Err(e),
        }
    };

    let size = file.metadata().await.map_err(ModelsError::io(part))?.len();
    let expected_size = total.or(published.as_ref().and_then(|(_, s)| *s));
    if let Some(t) = expected_size {
        if size != t {
            return Err(ModelsError::Incomplete {
                url: url_str.to_string(),
                got: size,
                expected: t,
            });
        }
    }

    let part_for_hash = part_buf.clone();
    let actual = tokio::task::spawn_blocking(move || store::sha256_file(&part_for_hash))
        .await
        .map_err(|e| ModelsError::Network {
            url: url_str.to_string(),
            message: format!("hashing task failed: {e}"),
        })??;
    let (expected, source) = match (user_sha, published) {
        (Some(u), _) => (Some(u), Sha256Source::User),
        (None, Some((s, _))) => (Some(s), Sha256Source::HuggingFace),
        (None, None) => (None, Sha256Source::Unverified),
    };
    if let Some(expected) = expected {
        if expected != actual {
            remove_quietly(part);
            remove_quietly(meta_path);
            return Err(ModelsError::ChecksumMismatch {
                url: url_str.to_string(),
                expected,
                actual,
                from: source,
            });
        }
    }
    if let Err(cause) = gguf::read_header(part) {
        remove_quietly(part);
        remove_quietly(meta_path);
        return Err(ModelsError::NotGguf {
            path: final_path.to_path_buf(),
            cause,
        });
    }
    // Checked again: another download may have finished the same name meanwhile.
    if final_path.symlink_metadata().is_ok() {
        return Err(ModelsError::AlreadyExists(final_path.to_path_buf()));
    }
    // Still locked: nobody can open the .part between the flush and the rename.
    crate::files::sync_and_rename(part, final_path).map_err(ModelsError::io(final_path))?;
    remove_quietly(meta_path);
    if let Err(e) = store::record_sha(sha_cache, final_path, &actual) {
        tracing::warn!(error = %e, "could not cache sha256");
    }
    tracing::info!(path = %final_path.display(), size, ?source, "model downloaded");
    Ok(DownloadedModel {
        path: final_path.to_path_buf(),
        sha256: actual,
        size,
        sha256_source: source,
        resumed,
    })
}

/// Where a download writes, and what it knows about the bytes already there.
struct Target<'a> {
    file: &'a mut tokio::fs::File,
    path: &'a Path,
    meta_path: &'a Path,
    meta: &'a mut PartMeta,
    dest_dir: &'a Path,
}

/// The validator for `If-Range`: a strong ETag (a weak one may not be used there), else
/// Last-Modified.
fn validator(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let get = |h| headers.get(h)?.to_str().ok().map(str::to_owned);
    get(reqwest::header::ETAG)
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| get(reqwest::header::LAST_MODIFIED))
}

/// Free bytes for an unprivileged user on the file system holding `dir`.
#[cfg(unix)]
#[allow(unsafe_code, clippy::unnecessary_cast)]
fn available_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value for it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and outlives the call; `st` is a valid out-pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    // The field widths differ between platforms (u32 on some), hence the casts.
    (rc == 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
fn available_space(_dir: &Path) -> Option<u64> {
    None
}

async fn fetch_once(
    client: &reqwest::Client,
    url: &str,
    target: &mut Target<'_>,
    attempt: u32,
    on_progress: &mut (impl FnMut(&DownloadProgress) + Send),
    cancel: &CancelToken,
) -> Result<Attempt, ModelsError> {
    let part = target.path;
    let net = |message: String| ModelsError::Network {
        url: url.to_string(),
        message,
    };
    let mut offset = target
        .file
        .metadata()
        .await
        .map_err(ModelsError::io(part))?
        .len();
    let mut req = client.get(url);
    if offset > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        // If the file changed since these bytes came, the server sends it whole (200).
        if let Some(v) = &target.meta.validator {
            req = req.header(reqwest::header::IF_RANGE, v.as_str());
        }
    }
    let resp = tokio::select! {
        r = req.send() => match r {
            Ok(r) => r,
            Err(e) => {
                if let Some(to) = refused_redirect(&e) {
                    return Err(ModelsError::InsecureRedirect { url: url.to_string(), to });
                }
                return Ok(Attempt::Retry(net(error_chain(&e))));
            }
        },
        _ = cancel.cancelled() => return Err(ModelsError::Cancelled { part: part.to_path_buf() }),
    };
    let status = resp.status();
    let total;
    let append = match status.as_u16() {
        206 => match content_range(resp.headers()) {
            Some((start, t))
                if start == offset && !validator_changed(target.meta, resp.headers()) =>
            {
                total = t;
                true
            }
            _ => {
                // A range we did not ask for, or bytes of another version of the file:
                // safest is to start over.
                tracing::warn!("unexpected range or changed file; restarting download");
                target
                    .file
                    .set_len(0)
                    .await
                    .map_err(ModelsError::io(part))?;
                return Ok(Attempt::Retry(
                    net("server sent an unexpected range".into()),
                ));
            }
        },
        200 => {
            if offset > 0 {
                tracing::info!(
                    "the server sent the whole file (it changed, or ignores Range); restarting from zero"
                );
                offset = 0;
            }
            total = resp.content_length();
            false
        }
        416 if offset > 0 => {
            // Nothing left to send: the .part already holds the whole file (verified next).
            return Ok(Attempt::Complete { total: None });
        }
        _ => {
            return Err(ModelsError::HttpStatus {
                url: url.to_string(),
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("error").to_string(),
            })
        }
    };
    // Refused before a byte is written, rather than failing on a full disk at 90 %.
    let needed = total
        .map(|t| t.saturating_sub(offset))
        .or(resp.content_length());
    if let (Some(needed), Some(available)) = (needed, available_space(target.dest_dir)) {
        if needed > available {
            return Err(ModelsError::NoSpace {
                dir: target.dest_dir.to_path_buf(),
                needed,
                available,
            });
        }
    }
    if append {
        target
            .file
            .seek(std::io::SeekFrom::End(0))
            .await
            .map_err(ModelsError::io(part))?;
        if total.is_some() && target.meta.total != total {
            target.meta.total = total;
            store::write_json_atomic(target.meta_path, &*target.meta)?;
        }
    } else {
        // A fresh start: these bytes are identified by this response's validator.
        target
            .file
            .set_len(0)
            .await
            .map_err(ModelsError::io(part))?;
        target
            .file
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(ModelsError::io(part))?;
        target.meta.validator = validator(resp.headers());
        target.meta.total = total;
        store::write_json_atomic(target.meta_path, &*target.meta)?;
    }
    let file = &mut *target.file;
    let started = Instant::now();
    let mut last_emit = Instant::now() - PROGRESS_INTERVAL;
    let mut done = offset;
    let mut stream = resp.bytes_stream();
    let emit =
        |done: u64, finished: bool, on_progress: &mut (dyn FnMut(&DownloadProgress) + Send)| {
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            let speed = (done - offset) as f64 / secs;
            let eta = total
                .filter(|_| speed > 0.0)
                .map(|t| t.saturating_sub(done) as f64 / speed);
            on_progress(&DownloadProgress {
                bytes_done: done,
                total,
                bytes_per_sec: speed,
                eta_secs: eta,
                resumed_from: offset,
                attempt,
                done: finished,
            });
        };
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(STALL_TIMEOUT, stream.next()) => n,
            _ = cancel.cancelled() => {
                let _ = file.flush().await;
                return Err(ModelsError::Cancelled { part: part.to_path_buf() });
            }
        };
        let chunk = match next {
            Err(_) => {
                file.flush().await.map_err(ModelsError::io(part))?;
                return Ok(Attempt::Retry(net(format!(
                    "no data for {}s",
                    STALL_TIMEOUT.as_secs()
                ))));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                file.flush().await.map_err(ModelsError::io(part))?;
                return Ok(Attempt::Retry(net(error_chain(&e))));
            }
            Ok(Some(Ok(c))) => c,
        };
        file.write_all(&chunk)
            .await
            .map_err(ModelsError::io(part))?;
        done += chunk.len() as u64;
        if last_emit.elapsed() >= PROGRESS_INTERVAL {
            last_emit = Instant::now();
            emit(done, false, on_progress);
        }
    }
    file.flush().await.map_err(ModelsError::io(part))?;
    file.sync_all().await.map_err(ModelsError::io(part))?;
    if let Some(t) = total {
        if done < t {
            return Ok(Attempt::Retry(ModelsError::Incomplete {
                url: url.to_string(),
                got: done,
                expected: t,
            }));
        }
    }
    emit(done, true, on_progress);
    Ok(Attempt::Complete { total })
}

/// A 206 whose own strong ETag differs from the one recorded for our bytes: a server that
/// honoured Range but not If-Range is about to splice two versions.
fn validator_changed(meta: &PartMeta, headers: &reqwest::header::HeaderMap) -> bool {
    match (&meta.validator, validator(headers)) {
        (Some(ours), Some(theirs)) if ours.starts_with('"') && theirs.starts_with('"') => {
            ours != &theirs
        }
        _ => false,
    }
}

/// reqwest's top-level message ("error decoding response body") hides the cause.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn u(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn https_only_except_on_this_machine() {
        assert!(scheme_allowed(&u(
            "https://huggingface.co/a/b/resolve/main/x.gguf"
        )));
        assert!(scheme_allowed(&u("http://127.0.0.1:8000/x.gguf")));
        assert!(scheme_allowed(&u("http://[::1]:8000/x.gguf")));
        assert!(scheme_allowed(&u("http://localhost/x.gguf")));
        assert!(!scheme_allowed(&u("http://example.org/x.gguf")));
        assert!(!scheme_allowed(&u("http://127.0.0.1.example.org/x.gguf")));
        assert!(!scheme_allowed(&u("ftp://127.0.0.1/x.gguf")));
    }

    #[test]
    fn redirects_never_go_down_from_https() {
        let hf = u("https://huggingface.co/a/b/resolve/main/x.gguf");
        assert!(redirect_allowed(
            std::slice::from_ref(&hf),
            &u("https://cdn.example/x")
        ));
        assert!(!redirect_allowed(
            std::slice::from_ref(&hf),
            &u("http://cdn.example/x")
        ));
        // Not even to this machine once https was used.
        assert!(!redirect_allowed(&[hf], &u("http://127.0.0.1/x")));
        let local = u("http://127.0.0.1:9/x.gguf");
        assert!(redirect_allowed(
            std::slice::from_ref(&local),
            &u("http://localhost:9/y.gguf")
        ));
        assert!(!redirect_allowed(&[local], &u("http://example.org/y.gguf")));
    }

    #[test]
    fn hub_urls_are_recognised_and_page_links_rewritten() {
        let hub = u(HUGGING_FACE_HUB);
        let page = u("https://huggingface.co/org/repo/blob/main/dir/My%20Model.gguf");
        let file = hub_download_url(&page, &hub);
        assert_eq!(
            file.as_str(),
            "https://huggingface.co/org/repo/resolve/main/dir/My%20Model.gguf"
        );
        assert_eq!(
            hub_file(&file, &hub),
            Some(HubFile {
                repo: "org/repo".into(),
                revision: "main".into(),
                path: "dir/My Model.gguf".into(),
            })
        );
        // Elsewhere nothing is rewritten or looked up.
        let other = u("https://example.org/org/repo/blob/main/x.gguf");
        assert_eq!(hub_download_url(&other, &hub), other);
        assert_eq!(hub_file(&other, &hub), None);
        assert_eq!(file_name_from_url(&file).as_deref(), Some("My Model.gguf"));
        assert_eq!(percent_decode("a%2"), Some("a%2".into()));
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn if_range_uses_strong_validators_only() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("etag", "W/\"weak\"".parse().unwrap());
        assert_eq!(validator(&h), None);
        h.insert(
            "last-modified",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            validator(&h).as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        h.insert("etag", "\"v1\"".parse().unwrap());
        assert_eq!(validator(&h).as_deref(), Some("\"v1\""));
    }
}
