//! Downloading a model over HTTP(S), resumable and verified.
//!
//! Bytes go to `<name>.gguf.part` next to the final file (the catalog ignores `.part`), with
//! a `<name>.gguf.part.json` sidecar recording the URL so a later call resumes only the same
//! download. A dropped connection is resumed with an HTTP `Range` request (a server that
//! ignores `Range` makes us start over); cancelling keeps the `.part` for later. Only a file
//! whose sha256 matches (the user's, or the server's when its ETag is a sha256, as Hugging
//! Face's `X-Linked-ETag` is) and whose GGUF header checks out is renamed to its final
//! `.gguf` name, atomically. A failed check deletes the `.part`: resuming it cannot help.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{store, Library, ModelsError};
use crate::gguf;

/// How long a stalled connection may stay silent before we drop it and resume.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct DownloadOptions {
    pub url: String,
    /// Expected sha256 (64 hex digits). Without it, a sha256 ETag from the server is used.
    pub sha256: Option<String>,
    /// Final file name; default: the URL's last path segment (must end in `.gguf`).
    pub file_name: Option<String>,
    /// Destination folder; default: the library's models folder.
    pub dest_dir: Option<PathBuf>,
    /// Automatic resumes after a dropped or stalled connection within one call.
    pub max_retries: u32,
}

impl DownloadOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            sha256: None,
            file_name: None,
            dest_dir: None,
            max_retries: 3,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sha256Source {
    User,
    ServerEtag,
    /// Nothing to check against: computed, recorded, not verified.
    Unverified,
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
}

fn normalize_sha(s: &str) -> Option<String> {
    let s = s
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_ascii_lowercase();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

fn etag_sha(headers: &reqwest::header::HeaderMap) -> Option<String> {
    ["x-linked-etag", "etag"]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .find_map(normalize_sha)
}

fn file_name_from_url(url: &reqwest::Url) -> Option<String> {
    let seg = url.path_segments()?.next_back()?;
    Some(seg.replace("%20", " "))
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
    let url_str = opts.url.trim().to_string();
    let url = reqwest::Url::parse(&url_str).map_err(|e| ModelsError::InvalidUrl {
        url: url_str.clone(),
        reason: e.to_string(),
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ModelsError::InvalidUrl {
            url: url_str,
            reason: "only http and https are supported".into(),
        });
    }
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

    // A leftover .part from another URL is not ours to resume.
    let previous: Option<PartMeta> = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if previous.as_ref().is_none_or(|m| m.url != url_str) && part.exists() {
        tracing::info!(part = %part.display(), "discarding partial download of another URL");
        remove_quietly(&part);
    }
    store::write_json_atomic(
        &meta_path,
        &PartMeta {
            url: url_str.clone(),
        },
    )?;

    let client = reqwest::Client::builder()
        .user_agent(concat!("conclave/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ModelsError::Network {
            url: url_str.clone(),
            message: e.to_string(),
        })?;
    let mut server_sha = probe_linked_etag(&url_str).await;
    let resumed = part.metadata().map(|m| m.len() > 0).unwrap_or(false);

    let mut attempt = 0u32;
    let total = loop {
        if cancel.is_cancelled() {
            return Err(ModelsError::Cancelled { part });
        }
        match fetch_once(
            &client,
            &url_str,
            &part,
            attempt,
            &mut server_sha,
            &mut on_progress,
            cancel,
        )
        .await?
        {
            Attempt::Complete { total } => break total,
            Attempt::Retry(e) if attempt < opts.max_retries => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "download interrupted; resuming");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))) => {}
                    _ = cancel.cancelled() => return Err(ModelsError::Cancelled { part }),
                }
            }
            Attempt::Retry(e) => return Err(e),
        }
    };

    let size = part.metadata().map_err(ModelsError::io(&part))?.len();
    if let Some(t) = total {
        if size != t {
            return Err(ModelsError::Incomplete {
                url: url_str,
                got: size,
                expected: t,
            });
        }
    }

    let part_for_hash = part.clone();
    let actual = tokio::task::spawn_blocking(move || store::sha256_file(&part_for_hash))
        .await
        .map_err(|e| ModelsError::Network {
            url: url_str.clone(),
            message: format!("hashing task failed: {e}"),
        })??;
    let (expected, source) = match (user_sha, server_sha) {
        (Some(u), _) => (Some(u), Sha256Source::User),
        (None, Some(s)) => (Some(s), Sha256Source::ServerEtag),
        (None, None) => (None, Sha256Source::Unverified),
    };
    if let Some(expected) = expected {
        if expected != actual {
            remove_quietly(&part);
            remove_quietly(&meta_path);
            return Err(ModelsError::ChecksumMismatch {
                url: url_str,
                expected,
                actual,
            });
        }
    }
    if let Err(source) = gguf::read_header(&part) {
        remove_quietly(&part);
        remove_quietly(&meta_path);
        return Err(ModelsError::NotGguf {
            path: final_path,
            cause: source,
        });
    }
    // Checked again: another download may have finished the same name meanwhile.
    if final_path.symlink_metadata().is_ok() {
        return Err(ModelsError::AlreadyExists(final_path));
    }
    crate::files::sync_and_rename(&part, &final_path).map_err(ModelsError::io(&final_path))?;
    remove_quietly(&meta_path);
    if let Err(e) = store::record_sha(&lib.sha_cache_path(), &final_path, &actual) {
        tracing::warn!(error = %e, "could not cache sha256");
    }
    tracing::info!(path = %final_path.display(), size, ?source, "model downloaded");
    Ok(DownloadedModel {
        path: final_path,
        sha256: actual,
        size,
        sha256_source: source,
        resumed,
    })
}

/// Hugging Face answers `resolve/` URLs with a redirect that carries the file's sha256 in
/// `X-Linked-ETag`; the CDN response we end up reading may not. Ask once without following
/// redirects. Any failure just means "no server checksum".
async fn probe_linked_etag(url: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
        .build()
        .ok()?;
    let resp = client.head(url).send().await.ok()?;
    let sha = etag_sha(resp.headers());
    if sha.is_some() {
        tracing::debug!(url, "server publishes a sha256 ETag");
    }
    sha
}

async fn fetch_once(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    attempt: u32,
    server_sha: &mut Option<String>,
    on_progress: &mut (impl FnMut(&DownloadProgress) + Send),
    cancel: &CancelToken,
) -> Result<Attempt, ModelsError> {
    let net = |message: String| ModelsError::Network {
        url: url.to_string(),
        message,
    };
    let mut offset = part.metadata().map(|m| m.len()).unwrap_or(0);
    let mut req = client.get(url);
    if offset > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
    }
    let resp = tokio::select! {
        r = req.send() => match r {
            Ok(r) => r,
            Err(e) => return Ok(Attempt::Retry(net(error_chain(&e)))),
        },
        _ = cancel.cancelled() => return Err(ModelsError::Cancelled { part: part.to_path_buf() }),
    };
    let status = resp.status();
    if server_sha.is_none() {
        *server_sha = etag_sha(resp.headers());
    }
    let total;
    let append = match status.as_u16() {
        206 => match content_range(resp.headers()) {
            Some((start, t)) if start == offset => {
                total = t;
                true
            }
            _ => {
                // A range we did not ask for: safest is to start over.
                tracing::warn!("unexpected Content-Range; restarting download");
                let _ = std::fs::remove_file(part);
                return Ok(Attempt::Retry(
                    net("server sent an unexpected range".into()),
                ));
            }
        },
        200 => {
            if offset > 0 {
                tracing::info!("server ignored the Range request; restarting from zero");
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

    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .await
        .map_err(ModelsError::io(part))?;
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
