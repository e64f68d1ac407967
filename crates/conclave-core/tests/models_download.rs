//! Downloads against a local HTTP server (std threads, hand-rolled so that dropped
//! connections, ignored Range headers and ETags are under the test's control) serving the
//! real SmolLM2 file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "gguf_builder.rs"]
mod gguf_builder;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave_core::models::{
    CancelToken, DownloadOptions, DownloadProgress, Library, Sha256Source,
};
use conclave_core::ErrorCode;
use gguf_builder::{real_model, SMOL};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    range_from: Option<u64>,
    if_range: Option<String>,
}

struct Server {
    base: String,
    log: Arc<Mutex<Vec<Req>>>,
}

/// Behaviour by the first path segment:
/// ok, etag-good (its ETag is the file's sha256), etag-bad (an X-Linked-ETag that is not),
/// drop (first GET dies half-way), norange (ignores Range, first GET dies half-way),
/// changing (first GET serves version 1 and dies half-way, later ones version 2), slow
/// (trickles), huge (announces a petabyte), redirect-out (redirects to plain http off this
/// machine), 404, 500, junk (serves non-GGUF bytes), and a Hugging Face Hub stand-in:
/// `/hub/{good,bad}/resolve/main/FILE` serves the file, `/hub/…/blob/…` is a page (404
/// here), `/api/models/hub/{good,bad}/revision/main` publishes the right or a wrong sha256.
/// Every kind honours `If-Range`: a validator that is not the current ETag gets the whole
/// file.
fn serve(data: Arc<Vec<u8>>, changed: Arc<Vec<u8>>, sha: String) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::<Req>::new()));
    let counts = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (data, changed, sha, log, counts) = (
                data.clone(),
                changed.clone(),
                sha.clone(),
                log2.clone(),
                counts.clone(),
            );
            std::thread::spawn(move || {
                let _ = handle(stream, &data, &changed, &sha, &log, &counts);
            });
        }
    });
    Server { base, log }
}

fn handle(
    mut stream: TcpStream,
    data: &[u8],
    changed: &[u8],
    sha: &str,
    log: &Mutex<Vec<Req>>,
    counts: &Mutex<HashMap<String, usize>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut range_from = None;
    let mut if_range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_from = v.trim().trim_end_matches('-').parse().ok();
        }
        if lower.starts_with("if-range:") {
            if_range = Some(h["if-range:".len()..].trim().to_string());
        }
    }
    log.lock().unwrap().push(Req {
        method: method.clone(),
        path: path.clone(),
        range_from,
        if_range: if_range.clone(),
    });
    let kind = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let nth = if method == "GET" {
        let mut c = counts.lock().unwrap();
        let n = c.entry(path.clone()).or_default();
        *n += 1;
        *n
    } else {
        0
    };
    let status_only = |stream: &mut TcpStream, code: &str| {
        write!(
            stream,
            "HTTP/1.1 {code}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match kind.as_str() {
        "404" => return status_only(&mut stream, "404 Not Found"),
        "500" => return status_only(&mut stream, "500 Internal Server Error"),
        "redirect-out" => {
            return write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: http://downloads.example/x.gguf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        }
        "huge" => {
            return write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: 1125899906842624\r\nConnection: close\r\n\r\n"
            )
        }
        "api" => {
            // /api/models/hub/NAME/revision/main?blobs=true
            let published = if segs.get(3) == Some(&"good") {
                sha.to_string()
            } else {
                "ab".repeat(32)
            };
            let body = format!(
                r#"{{"id":"hub/x","sha":"{c}","siblings":[{{"rfilename":"README.md"}},{{"rfilename":"{SMOL}","size":{n},"lfs":{{"sha256":"{published}","size":{n},"pointerSize":135}}}}]}}"#,
                c = "c".repeat(40),
                n = data.len()
            );
            return write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        "hub" if segs.get(2) != Some(&"resolve") => {
            return status_only(&mut stream, "404 Not Found")
        }
        _ => {}
    }
    let body: Vec<u8>;
    let data: &[u8] = match kind.as_str() {
        "junk" => {
            body = (0..4096u32).map(|i| (i % 200) as u8).collect();
            &body
        }
        "changing" if nth > 1 => changed,
        _ => data,
    };
    let etag_value = match kind.as_str() {
        "etag-good" => format!("\"{sha}\""),
        "changing" if nth > 1 => "\"v2\"".to_string(),
        "changing" => "\"v1\"".to_string(),
        _ => "\"not-a-sha\"".to_string(),
    };
    let mut etag = format!("ETag: {etag_value}\r\n");
    if kind == "etag-bad" {
        etag.push_str(&format!("X-Linked-ETag: \"{}\"\r\n", "ab".repeat(32)));
    }
    let honour_range = kind != "norange" && if_range.as_ref().is_none_or(|v| *v == etag_value);
    let start = if honour_range {
        range_from.unwrap_or(0)
    } else {
        0
    };
    let start = start.min(data.len() as u64) as usize;
    let len = data.len() - start;
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\n",
            data.len() - 1,
            data.len()
        )
    } else {
        "HTTP/1.1 200 OK\r\n".to_string()
    };
    write!(
        stream,
        "{head}Content-Length: {len}\r\n{etag}Accept-Ranges: bytes\r\nConnection: close\r\n\r\n"
    )?;
    if method == "HEAD" {
        return Ok(());
    }
    let cut = match kind.as_str() {
        "drop" | "norange" | "changing" if nth == 1 => Some(data.len() / 2),
        _ => None,
    };
    let mut pos = start;
    while pos < data.len() {
        if cut.is_some_and(|c| pos >= c) {
            // Drop the connection mid-body.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        let end = (pos + 256 * 1024).min(data.len());
        stream.write_all(&data[pos..end])?;
        pos = end;
        if kind == "slow" {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

struct Fixture {
    _tmp: tempfile::TempDir,
    lib: Library,
    server: Server,
    sha: String,
    /// The sha256 of the "changing" file's second version.
    sha_changed: String,
    size: u64,
}

fn fixture() -> Option<Fixture> {
    let model = real_model(SMOL)?;
    let data = std::fs::read(&model).unwrap();
    let sha = hex::encode(Sha256::digest(&data));
    let size = data.len() as u64;
    // A second version that differs in its first half (tensor bytes, past the header): a
    // resume that spliced version 1's first half to version 2's second half would be
    // neither.
    let mut changed = data.clone();
    let at = changed.len() / 4;
    changed[at] ^= 0xff;
    let sha_changed = hex::encode(Sha256::digest(&changed));
    let server = serve(Arc::new(data), Arc::new(changed), sha.clone());
    let tmp = tempfile::tempdir().unwrap();
    let lib = Library::with_root(tmp.path().join("data"));
    Some(Fixture {
        _tmp: tmp,
        lib,
        server,
        sha,
        sha_changed,
        size,
    })
}

fn gguf_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".gguf"))
                .collect()
        })
        .unwrap_or_default()
}

fn opts(f: &Fixture, kind: &str) -> DownloadOptions {
    DownloadOptions::new(format!("{}/{kind}/{SMOL}", f.server.base))
}

#[tokio::test]
async fn downloads_with_progress_and_user_checksum() {
    let Some(f) = fixture() else { return };
    let mut events: Vec<DownloadProgress> = Vec::new();
    let mut o = opts(&f, "ok");
    o.sha256 = Some(f.sha.to_uppercase());
    let got = f
        .lib
        .download(o, |p| events.push(p.clone()), &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(got.sha256, f.sha);
    assert_eq!(got.size, f.size);
    assert_eq!(got.sha256_source, Sha256Source::User);
    assert!(!got.resumed);
    assert_eq!(got.path, f.lib.models_dir().join(SMOL));
    let last = events.last().unwrap();
    assert!(last.done);
    assert_eq!(last.bytes_done, f.size);
    assert_eq!(last.total, Some(f.size));
    assert!(events
        .windows(2)
        .all(|w| w[0].bytes_done <= w[1].bytes_done));
    assert!(events.iter().all(|e| e.bytes_per_sec >= 0.0));
    println!("{} progress events, last: {last:?}", events.len());
    // The catalog sees it, with the sha256 already cached.
    let cat = f.lib.catalog();
    let m = cat.resolve(SMOL).unwrap();
    assert_eq!(m.sha256.as_deref(), Some(f.sha.as_str()));
    assert!(!f.lib.models_dir().join(format!("{SMOL}.part")).exists());
    // Same name again: refused, nothing overwritten.
    let e = f
        .lib
        .download(opts(&f, "ok"), |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "model_exists");
}

#[tokio::test]
async fn resumes_after_the_connection_drops() {
    let Some(f) = fixture() else { return };
    let mut attempts = Vec::new();
    let got = f
        .lib
        .download(
            opts(&f, "drop"),
            |p| attempts.push((p.attempt, p.resumed_from)),
            &CancelToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(got.sha256, f.sha);
    let ranges: Vec<Option<u64>> = f
        .server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/drop/"))
        .map(|r| r.range_from)
        .collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let resumed_at = ranges[1].expect("second request resumes with Range");
    assert!(resumed_at > 0 && resumed_at < f.size, "{resumed_at}");
    assert!(attempts
        .iter()
        .any(|&(a, from)| a == 1 && from == resumed_at));
}

#[tokio::test]
async fn resumes_across_calls_and_restarts_when_range_is_ignored() {
    let Some(f) = fixture() else { return };
    // No automatic retry: the first call fails and leaves a .part (never a .gguf).
    let mut o = opts(&f, "drop");
    o.max_retries = 0;
    let e = f
        .lib
        .download(o.clone(), |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_network", "{e}");
    let part = f.lib.models_dir().join(format!("{SMOL}.part"));
    assert!(part.metadata().unwrap().len() > 0);
    assert!(gguf_files(f.lib.models_dir()).is_empty());
    assert!(f.lib.catalog().models.is_empty(), ".part is not a model");
    // The next call resumes it.
    let got = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap();
    assert!(got.resumed);
    assert_eq!(got.sha256, f.sha);

    // A server that ignores Range: the download restarts from zero and still verifies.
    let dir2 = f._tmp.path().join("other");
    let mut o = opts(&f, "norange");
    o.dest_dir = Some(dir2.clone());
    let got = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(got.sha256, f.sha);
    assert_eq!(std::fs::metadata(&got.path).unwrap().len(), f.size);
}

#[tokio::test]
async fn wrong_checksum_leaves_nothing_that_looks_like_a_model() {
    let Some(f) = fixture() else { return };
    let mut o = opts(&f, "ok");
    o.sha256 = Some("0".repeat(64));
    let e = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_checksum_mismatch");
    assert!(e.to_string().contains(&f.sha), "{e}");
    assert!(gguf_files(f.lib.models_dir()).is_empty());
    assert!(!f.lib.models_dir().join(format!("{SMOL}.part")).exists());

    let mut o = opts(&f, "ok");
    o.sha256 = Some("xyz".into());
    assert_eq!(
        f.lib
            .download(o, |_| {}, &CancelToken::new())
            .await
            .unwrap_err()
            .code(),
        "download_invalid_sha256"
    );
}

#[tokio::test]
async fn an_etag_is_never_taken_for_a_checksum() {
    let Some(f) = fixture() else { return };
    // An ETag that happens to be the file's sha256 verifies nothing: it is a validator.
    let got = f
        .lib
        .download(opts(&f, "etag-good"), |_| {}, &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(got.sha256_source, Sha256Source::Unverified);
    // Nor does an X-Linked-ETag that does not match make the download fail.
    let mut o = opts(&f, "etag-bad");
    o.file_name = Some("bad.gguf".into());
    let got = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(got.sha256_source, Sha256Source::Unverified);
    assert_eq!(got.sha256, f.sha);
}

fn hub(f: &Fixture, path: &str) -> DownloadOptions {
    let mut o = DownloadOptions::new(format!("{}/{path}", f.server.base));
    o.hub_endpoint = Some(f.server.base.clone());
    o
}

#[tokio::test]
async fn the_sha256_the_hub_publishes_verifies_and_page_links_work() {
    let Some(f) = fixture() else { return };
    // A page link (…/blob/…), as copied from the browser: fetched as …/resolve/…, and
    // verified against the sha256 in the Hub's metadata for that revision.
    let got = f
        .lib
        .download(
            hub(&f, &format!("hub/good/blob/main/{SMOL}")),
            |_| {},
            &CancelToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(got.sha256_source, Sha256Source::HuggingFace);
    assert_eq!(got.sha256, f.sha);
    let log = f.server.log.lock().unwrap().clone();
    assert!(log
        .iter()
        .any(|r| r.path == "/api/models/hub/good/revision/main?blobs=true"));
    assert!(log
        .iter()
        .any(|r| r.method == "GET" && r.path == format!("/hub/good/resolve/main/{SMOL}")));
    assert!(!log.iter().any(|r| r.path.contains("/blob/")), "{log:?}");

    // A published sum the bytes do not match: refused, labelled by its source.
    let mut o = hub(&f, &format!("hub/bad/resolve/main/{SMOL}"));
    o.dest_dir = Some(f._tmp.path().join("bad"));
    let e = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_checksum_mismatch", "{e}");
    assert!(e.to_string().contains("Hugging Face"), "{e}");
    assert!(gguf_files(&f._tmp.path().join("bad")).is_empty());

    // The user's own sum wins over the Hub's (and the Hub is not even asked).
    let mut o = hub(&f, &format!("hub/bad/resolve/main/{SMOL}"));
    o.dest_dir = Some(f._tmp.path().join("mine"));
    o.sha256 = Some(f.sha.clone());
    let got = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(got.sha256_source, Sha256Source::User);
}

#[tokio::test]
async fn a_file_changed_on_the_server_restarts_instead_of_splicing() {
    let Some(f) = fixture() else { return };
    let mut o = opts(&f, "changing");
    // The second version's sum: only a download that restarted from zero matches it.
    o.sha256 = Some(f.sha_changed.clone());
    let got = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(got.sha256, f.sha_changed);
    let gets: Vec<Req> = f
        .server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/changing/"))
        .cloned()
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets[1].range_from.is_some_and(|n| n > 0), "{gets:?}");
    assert_eq!(gets[1].if_range.as_deref(), Some("\"v1\""), "{gets:?}");
}

#[tokio::test]
async fn plain_http_off_this_machine_and_downgrading_redirects_are_refused() {
    let Some(f) = fixture() else { return };
    let e = f
        .lib
        .download(
            DownloadOptions::new("http://downloads.example/model.gguf"),
            |_| {},
            &CancelToken::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_invalid_url", "{e}");
    assert!(e.to_string().contains("https"), "{e}");
    let mut o = opts(&f, "redirect-out");
    o.max_retries = 3;
    let e = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_insecure_redirect", "{e}");
    assert!(
        e.to_string().contains("http://downloads.example/x.gguf"),
        "{e}"
    );
    // Refused at once, not retried as a network error.
    let tries = f
        .server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.starts_with("/redirect-out/"))
        .count();
    assert_eq!(tries, 1);
    assert!(gguf_files(f.lib.models_dir()).is_empty());
    assert!(std::fs::read_dir(f.lib.models_dir())
        .unwrap()
        .filter_map(Result::ok)
        .all(|e| !e.file_name().to_string_lossy().contains(".part")));
}

#[tokio::test]
async fn a_second_download_of_the_same_file_fails_clearly() {
    let Some(f) = fixture() else { return };
    let cancel = CancelToken::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let first = f.lib.download(
        opts(&f, "slow"),
        move |p| {
            if p.bytes_done > 0 {
                if let Some(tx) = started_tx.take() {
                    let _ = tx.send(());
                }
            }
        },
        &cancel,
    );
    let second = async {
        started_rx.await.unwrap();
        let e = f
            .lib
            .download(opts(&f, "slow"), |_| {}, &CancelToken::new())
            .await
            .unwrap_err();
        cancel.cancel();
        e
    };
    let (first, e) = tokio::join!(first, second);
    assert_eq!(e.code(), "download_in_progress", "{e}");
    assert!(e.to_string().contains(".part"), "{e}");
    // The first kept its bytes (cancelled, resumable), untouched by the second.
    assert_eq!(first.unwrap_err().code(), "download_cancelled");
    let part = f.lib.models_dir().join(format!("{SMOL}.part"));
    assert!(part.metadata().unwrap().len() > 0);
}

#[tokio::test]
async fn free_space_is_checked_before_writing() {
    let Some(f) = fixture() else { return };
    let mut o = opts(&f, "huge");
    o.file_name = Some("huge.gguf".into());
    let e = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_no_space", "{e}");
    assert!(e.to_string().contains("1125899906842624"), "{e}");
    // Nothing was written, and nothing is left to resume.
    assert!(!f.lib.models_dir().join("huge.gguf.part").exists());
    assert!(!f.lib.models_dir().join("huge.gguf.part.json").exists());
}

#[tokio::test]
async fn cancel_keeps_only_the_part_file() {
    let Some(f) = fixture() else { return };
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let e = f
        .lib
        .download(
            opts(&f, "slow"),
            move |p| {
                if p.bytes_done > 4 * 1024 * 1024 {
                    c2.cancel();
                }
            },
            &cancel,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_cancelled", "{e}");
    let part = f.lib.models_dir().join(format!("{SMOL}.part"));
    let kept = part.metadata().unwrap().len();
    assert!(kept > 0 && kept < f.size, "{kept}");
    assert!(gguf_files(f.lib.models_dir()).is_empty());
}

#[tokio::test]
async fn http_errors_and_bad_urls_are_clear() {
    let Some(f) = fixture() else { return };
    let e = f
        .lib
        .download(opts(&f, "404"), |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_http_status");
    assert!(e.to_string().contains("HTTP 404 Not Found"), "{e}");
    let e = f
        .lib
        .download(opts(&f, "500"), |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    // Not a GGUF: refused after download, nothing left behind.
    let e = f
        .lib
        .download(opts(&f, "junk"), |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "model_not_gguf", "{e}");
    assert!(std::fs::read_dir(f.lib.models_dir())
        .unwrap()
        .filter_map(Result::ok)
        .all(|e| !e.file_name().to_string_lossy().contains(".gguf")));
    for (url, code) in [
        ("ftp://example.org/x.gguf", "download_invalid_url"),
        ("not a url", "download_invalid_url"),
        (
            &format!("{}/ok/readme.md", f.server.base),
            "download_invalid_url",
        ),
    ] {
        let e = f
            .lib
            .download(DownloadOptions::new(url), |_| {}, &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{url}: {e}");
    }
    // Nothing listens here: a network error, not a hang.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let mut o = DownloadOptions::new(format!("http://{addr}/x.gguf"));
    o.max_retries = 0;
    let e = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_network", "{e}");
}

/// The Models screen's list of unfinished downloads: a cancelled download is listed with
/// its address, progress and sum; while one runs it is marked and cannot be deleted; a
/// resume continues the same bytes and checks the sum given at the start; delete removes
/// the bytes and the sidecar, and only names in the models folder are accepted.
#[tokio::test]
async fn unfinished_downloads_are_listed_resumed_and_deleted() {
    let Some(f) = fixture() else { return };
    assert!(f.lib.partial_downloads().is_empty());
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let mut o = opts(&f, "slow");
    o.sha256 = Some(f.sha.clone());
    let e = f
        .lib
        .download(
            o,
            move |p| {
                if p.bytes_done > 4 * 1024 * 1024 {
                    c2.cancel();
                }
            },
            &cancel,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "download_cancelled", "{e}");
    let listed = f.lib.partial_downloads();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let p = &listed[0];
    assert_eq!(p.file_name, SMOL);
    assert_eq!(
        p.url.as_deref(),
        Some(format!("{}/slow/{SMOL}", f.server.base).as_str())
    );
    assert_eq!(p.total, Some(f.size));
    assert!(
        p.bytes_done > 4 * 1024 * 1024 && p.bytes_done < f.size,
        "{p:?}"
    );
    assert!(
        p.has_sha256 && !p.in_progress && p.modified_secs.is_some(),
        "{p:?}"
    );
    let kept = p.bytes_done;

    // While a resume writes it, it is listed as in progress and cannot be deleted.
    let cancel = CancelToken::new();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<()>();
    let mut seen_tx = Some(seen_tx);
    let resumed_from = Arc::new(Mutex::new(None));
    let rf = resumed_from.clone();
    let resume = f.lib.resume_download(
        SMOL,
        move |p| {
            rf.lock().unwrap().get_or_insert(p.resumed_from);
            if p.bytes_done > kept {
                if let Some(tx) = seen_tx.take() {
                    let _ = tx.send(());
                }
            }
        },
        &cancel,
    );
    let during = async {
        seen_rx.await.unwrap();
        let busy = f.lib.partial_downloads();
        let refused = f.lib.discard_partial_download(SMOL).unwrap_err();
        (busy, refused)
    };
    let (done, (busy, refused)) = tokio::join!(resume, during);
    assert!(busy[0].in_progress, "{busy:?}");
    assert_eq!(refused.code(), "download_in_progress", "{refused}");
    let done = done.unwrap();
    assert!(done.resumed);
    assert_eq!(*resumed_from.lock().unwrap(), Some(kept));
    // Checked against the sum given when the download started, not left unverified.
    assert_eq!(done.sha256_source, Sha256Source::User);
    assert_eq!(done.sha256, f.sha);
    assert!(f.lib.partial_downloads().is_empty());
    let dir = f.lib.models_dir();
    assert!(!dir.join(format!("{SMOL}.part.json")).exists());

    // Delete: a second file stopped early goes, with its sidecar; the model stays.
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let mut o = opts(&f, "slow");
    o.file_name = Some("second.gguf".into());
    let _ = f
        .lib
        .download(
            o,
            move |p| {
                if p.bytes_done > 0 {
                    c2.cancel();
                }
            },
            &cancel,
        )
        .await
        .unwrap_err();
    assert_eq!(f.lib.partial_downloads().len(), 1);
    for bad in ["../second.gguf", "second", "", SMOL] {
        let e = f.lib.discard_partial_download(bad).unwrap_err();
        assert_eq!(e.code(), "model_not_found", "{bad}: {e}");
    }
    f.lib.discard_partial_download("second.gguf").unwrap();
    assert!(f.lib.partial_downloads().is_empty());
    assert!(!dir.join("second.gguf.part").exists());
    assert!(!dir.join("second.gguf.part.json").exists());
    assert!(dir.join(SMOL).exists());
    let e = f
        .lib
        .resume_download("second.gguf", |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "model_not_found", "{e}");
}
