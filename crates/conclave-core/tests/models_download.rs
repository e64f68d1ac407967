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
    CancelToken, DownloadOptions, DownloadProgress, Library, ModelsError, Sha256Source,
};
use conclave_core::ErrorCode;
use gguf_builder::{real_model, SMOL};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    range_from: Option<u64>,
}

struct Server {
    base: String,
    log: Arc<Mutex<Vec<Req>>>,
}

/// Behaviour by the first path segment:
/// ok, etag-good, etag-bad, drop (first GET dies half-way), norange (ignores Range, first
/// GET dies half-way), slow (trickles), 404, 500, junk (serves non-GGUF bytes).
fn serve(data: Arc<Vec<u8>>, sha: String) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::<Req>::new()));
    let counts = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (data, sha, log, counts) =
                (data.clone(), sha.clone(), log2.clone(), counts.clone());
            std::thread::spawn(move || {
                let _ = handle(stream, &data, &sha, &log, &counts);
            });
        }
    });
    Server { base, log }
}

fn handle(
    mut stream: TcpStream,
    data: &[u8],
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
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_from = v.trim().trim_end_matches('-').parse().ok();
        }
    }
    log.lock().unwrap().push(Req {
        method: method.clone(),
        path: path.clone(),
        range_from,
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
    match kind.as_str() {
        "404" => return status_only(&mut stream, "404 Not Found"),
        "500" => return status_only(&mut stream, "500 Internal Server Error"),
        _ => {}
    }
    let body: Vec<u8>;
    let data: &[u8] = if kind == "junk" {
        body = (0..4096u32).map(|i| (i % 200) as u8).collect();
        &body
    } else {
        data
    };
    let etag = match kind.as_str() {
        "etag-good" => format!("ETag: \"{sha}\"\r\n"),
        "etag-bad" => format!("X-Linked-ETag: \"{}\"\r\n", "ab".repeat(32)),
        _ => "ETag: \"not-a-sha\"\r\n".to_string(),
    };
    let honour_range = kind != "norange";
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
        "drop" | "norange" if nth == 1 => Some(data.len() / 2),
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
    size: u64,
}

fn fixture() -> Option<Fixture> {
    let model = real_model(SMOL)?;
    let data = std::fs::read(&model).unwrap();
    let sha = hex::encode(Sha256::digest(&data));
    let size = data.len() as u64;
    let server = serve(Arc::new(data), sha.clone());
    let tmp = tempfile::tempdir().unwrap();
    let lib = Library::with_root(tmp.path().join("data"));
    Some(Fixture {
        _tmp: tmp,
        lib,
        server,
        sha,
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
async fn server_etag_sha256_is_used() {
    let Some(f) = fixture() else { return };
    let got = f
        .lib
        .download(opts(&f, "etag-good"), |_| {}, &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(got.sha256_source, Sha256Source::ServerEtag);
    // A plain (non-sha) ETag verifies nothing but is accepted.
    let mut o = opts(&f, "ok");
    o.file_name = Some("plain.gguf".into());
    let got = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(got.sha256_source, Sha256Source::Unverified);
    // A server sha256 (X-Linked-ETag) that does not match the bytes is a failure.
    let mut o = opts(&f, "etag-bad");
    o.file_name = Some("bad.gguf".into());
    let e = f
        .lib
        .download(o, |_| {}, &CancelToken::new())
        .await
        .unwrap_err();
    assert!(matches!(e, ModelsError::ChecksumMismatch { .. }), "{e}");
    assert_eq!(gguf_files(f.lib.models_dir()).len(), 2);
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
