//! The worker's sandbox on this machine's kernel (#16): no network, no files but the
//! model's, no inherited environment, and no life after its parent. Also: a worker whose
//! stdin closes while it loads stops loading.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conclave_core::engine::{find_worker, LoadOptions};
use conclave_tests::{engine, model, GEMMA3, SMOLLM2};

fn kernel() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm")
        .unwrap_or_else(|_| "(securityfs not mounted)".into());
    format!("kernel {}, lsm list {}", release.trim(), lsm.trim())
}

#[tokio::test]
async fn the_sandbox_check_denies_files_and_network() {
    let check = engine().sandbox_check(Some(&model(SMOLLM2))).await.unwrap();
    let probe = |name: &str| {
        check
            .probes
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name} probe in {check:?}"))
    };
    let s = &check.status;
    assert!(
        s.enabled && s.no_new_privs && s.parent_death_signal,
        "{s:?}"
    );
    // The network rule is seccomp's, which every kernel built in the last decade has.
    assert!(s.seccomp, "{s:?}");
    assert!(probe("connect_tcp").denied, "{check:?}");
    assert!(probe("udp_socket").denied, "{check:?}");
    assert_eq!(probe("read_model").result, "ok", "{check:?}");
    assert_eq!(probe("read_proc_self").result, "ok", "{check:?}");
    // Files are Landlock's: say so plainly where this kernel lacks it.
    assert!(
        s.landlock_abi > 0,
        "this kernel has no Landlock ({}): the worker cannot restrict file access here; warnings: {:?}",
        kernel(),
        s.warnings
    );
    assert_eq!(s.landlock, "full", "{} {s:?}", kernel());
    assert!(probe("open_outside").denied, "{check:?}");
    assert!(probe("create_outside").denied, "{check:?}");
    assert!(s.complete() && s.warnings.is_empty(), "{s:?}");
}

#[tokio::test]
async fn a_loaded_worker_is_confined_and_inherits_no_environment() {
    let m = engine()
        .load(
            model(SMOLLM2),
            LoadOptions {
                n_ctx: 1024,
                threads: Some(1),
                ..Default::default()
            },
            |_| {},
        )
        .await
        .unwrap();
    let info = m.info().await;
    assert!(info.sandbox.complete(), "{:?} ({})", info.sandbox, kernel());
    assert_eq!(info.sandbox.network, "none");
    let status = std::fs::read_to_string(format!("/proc/{}/status", info.pid)).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(field("Seccomp:"), "2", "filter mode");
    assert_eq!(field("NoNewPrivs:"), "1");
    let environ = std::fs::read(format!("/proc/{}/environ", info.pid)).unwrap();
    let names: Vec<String> = environ
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            String::from_utf8_lossy(v)
                .split('=')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert!(std::env::var_os("PATH").is_some());
    assert!(
        names
            .iter()
            .all(|n| n == "CONCLAVE_WORKER_LOG" || n == "LD_LIBRARY_PATH"),
        "the worker inherited {names:?}"
    );
    m.unload().await;
}

fn alive(pid: u32) -> bool {
    // A zombie is dead: nobody may reap it in a container without an init.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn a_worker_dies_with_its_parent_even_with_stdin_open() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stdin");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // This test holds the pipe open, so the worker never sees its stdin close: only the
    // parent-death signal can end it.
    let _hold = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let script = format!(
        "'{}' --model '{}' --n-ctx 512 < '{}' > /dev/null 2>&1 & echo $!; wait",
        find_worker().unwrap().display(),
        model(SMOLLM2).display(),
        fifo.display()
    );
    let mut parent = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let worker: u32 = line.trim().parse().unwrap();
    // Wait until it has applied its sandbox (the signal is set first).
    let t = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{worker}/status"))
        .unwrap_or_default()
        .contains("Seccomp:\t2")
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the worker never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    parent.kill().unwrap();
    parent.wait().unwrap();
    let t = Instant::now();
    while alive(worker) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = alive(worker);
    if survived {
        let _ = Command::new("kill")
            .arg("-9")
            .arg(worker.to_string())
            .status();
    }
    assert!(!survived, "the worker outlived its parent");
}

#[test]
fn a_worker_whose_stdin_closes_while_loading_stops() {
    let mut child = Command::new(find_worker().unwrap())
        .arg("--model")
        .arg(model(GEMMA3))
        .arg("--n-ctx")
        .arg("512")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The parent gives up at once, before the weights can be loaded.
    drop(child.stdin.take());
    let out = BufReader::new(child.stdout.take().unwrap());
    let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(
        !lines.iter().any(|l| l.contains("\"type\":\"ready\"")),
        "the worker finished loading for nobody: {lines:?}"
    );
    assert!(status.success(), "{status:?}");
}
