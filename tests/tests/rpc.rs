//! One model spread over several machines with llama.cpp's RPC, on this machine's CPU:
//! real `conclave rpc-server` processes on loopback ports, the real worker, real SmolLM2.
//!
//! - all-remote and local+remote loads answer, at temperature 0, exactly what the local
//!   CPU answers, and report where their layers went;
//! - `conclave devices --rpc` lists both servers with their memory;
//! - killing a server mid-answer ends that answer with an error naming it, while another
//!   model goes on, and the next load without the server works;
//! - a server that stops answering without closing its connection (a hung process; a
//!   machine switched off looks the same) ends the answer after the stall limit, naming it;
//! - `rpc-server` refuses a non-loopback address without `--allow-lan`;
//! - llama.cpp's fit splits layers between the CPU and an RPC device when the free memory
//!   it sees is short (`CONCLAVE_FIT_FREE_MIB`).
//!
//! Needs `cargo build -p conclave-worker -p conclave-cli` (`make test` does), with
//! llama.cpp built with GGML_RPC=ON (`.cargo/config.toml`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conclave_core::engine::{ChatRequest, LoadOptions, ModelInfo};
use conclave_core::protocol::{DeviceList, GpuLayers};
use conclave_core::{ChatEvent, Message, Role, SamplingParams};
use conclave_tests::{collect, engine, model, SMOLLM2};

/// Tests in this file start servers and load models over them: one at a time keeps them
/// from competing for two cores (and for a server: each serves one client at a time).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cli_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CONCLAVE_CLI_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("conclave");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p conclave-cli -p conclave-worker`",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `conclave rpc-server` on a free loopback port, killed when dropped.
struct RpcServer {
    child: Child,
    endpoint: String,
}

impl RpcServer {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(cli_bin())
            .args(["rpc-server", "--port", &port.to_string(), "--threads", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            endpoint: format!("127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        while TcpStream::connect(&server.endpoint).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("rpc-server on {} exited: {status}", server.endpoint);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "rpc-server on {} never listened",
                server.endpoint
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn opts(rpc: &[&RpcServer], gpu_layers: GpuLayers) -> LoadOptions {
    LoadOptions {
        n_ctx: 1024,
        threads: Some(1),
        rpc: rpc.iter().map(|s| s.endpoint.clone()).collect(),
        gpu_layers,
        ..LoadOptions::default()
    }
}

fn greedy(max_tokens: u32) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::new(
            Role::User,
            "Name three rivers of Europe and one fact about each.",
        )],
        params: SamplingParams {
            temperature: 0.0,
            max_tokens,
            seed: Some(1),
            ..SamplingParams::default()
        },
        ..ChatRequest::default()
    }
}

fn layers_on(info: &ModelInfo, label: &str) -> u32 {
    info.devices
        .iter()
        .filter(|d| d.device.label() == label)
        .map(|d| d.layers)
        .sum()
}

fn total_layers(info: &ModelInfo) -> u32 {
    info.devices.iter().map(|d| d.layers).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_remote_and_split_loads_answer_as_the_local_cpu_does() {
    let _serial = SERIAL.lock().await;
    let e = engine();
    let path = model(SMOLLM2);

    let local = e
        .load(&path, opts(&[], GpuLayers::Auto), |_| {})
        .await
        .unwrap();
    let local_info = local.info().await;
    assert!(
        local_info.devices.iter().all(|d| d.device.kind == "cpu"),
        "{:?}",
        local_info.devices
    );
    let expected = collect(local.chat(greedy(48)).await.unwrap()).await;
    assert!(expected.error.is_none(), "{expected:?}");
    assert!(!expected.text.is_empty());
    assert_eq!(
        expected.metrics.devices, "",
        "the CPU alone is not pointed out"
    );
    local.unload().await;
    // SmolLM2: 30 repeating layers and the output layer.
    let all = total_layers(&local_info);
    assert_eq!(all, 31, "{:?}", local_info.devices);

    let a = RpcServer::start();
    let b = RpcServer::start();
    let rpc_a = format!("rpc {}", a.endpoint);
    let rpc_b = format!("rpc {}", b.endpoint);

    // Everything on one server (auto: the fit finds that it all fits).
    let remote = e
        .load(&path, opts(&[&a], GpuLayers::Auto), |_| {})
        .await
        .unwrap();
    let info = remote.info().await;
    assert_eq!(layers_on(&info, &rpc_a), all, "{:?}", info.devices);
    assert_eq!(info.gpu_layers, all);
    assert_eq!(info.gpu_layers_source, "fit");
    let answer = collect(remote.chat(greedy(48)).await.unwrap()).await;
    assert!(answer.error.is_none(), "{answer:?}");
    assert_eq!(answer.text, expected.text, "all-remote answer differs");
    assert_eq!(answer.metrics.devices, format!("{rpc_a}: {all} layers"));
    remote.unload().await;

    // 20 layers over two servers, the rest on this CPU.
    let split = e
        .load(&path, opts(&[&a, &b], GpuLayers::Count(20)), |_| {})
        .await
        .unwrap();
    let info = split.info().await;
    let (on_a, on_b, on_cpu) = (
        layers_on(&info, &rpc_a),
        layers_on(&info, &rpc_b),
        layers_on(&info, "CPU"),
    );
    assert_eq!(on_a + on_b, 20, "{:?}", info.devices);
    assert!(
        on_a > 0 && on_b > 0,
        "both servers take layers: {:?}",
        info.devices
    );
    assert_eq!(on_cpu, all - 20, "{:?}", info.devices);
    let answer = collect(split.chat(greedy(48)).await.unwrap()).await;
    assert!(answer.error.is_none(), "{answer:?}");
    assert_eq!(answer.text, expected.text, "split answer differs");
    for label in [&rpc_a, &rpc_b] {
        assert!(
            answer.metrics.devices.contains(label.as_str()),
            "{}",
            answer.metrics.devices
        );
    }
    split.unload().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_lists_both_servers_with_their_memory() {
    let _serial = SERIAL.lock().await;
    let a = RpcServer::start();
    let b = RpcServer::start();
    let out = Command::new(cli_bin())
        .args([
            "devices",
            "--json",
            "--rpc",
            &format!("{},{}", a.endpoint, b.endpoint),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: DeviceList = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list.backends.iter().any(|b| b == "CPU"), "{list:?}");
    assert!(
        list.backends.iter().any(|b| b.starts_with("RPC")),
        "{list:?}"
    );
    let cpu = list.devices.iter().find(|d| d.kind == "cpu").unwrap();
    assert!(cpu.total_bytes > 0 && cpu.free_bytes > 0, "{cpu:?}");
    for server in [&a, &b] {
        let d = list
            .devices
            .iter()
            .find(|d| d.endpoint.as_deref() == Some(server.endpoint.as_str()))
            .unwrap_or_else(|| panic!("{} not listed: {list:?}", server.endpoint));
        assert_eq!(d.kind, "rpc");
        // The server lends this machine's CPU: its memory is this machine's RAM.
        assert!(d.total_bytes > 1 << 30, "{d:?}");
        assert!(d.free_bytes > 0 && d.free_bytes <= d.total_bytes, "{d:?}");
    }

    // The table names them too.
    let out = Command::new(cli_bin())
        .args(["devices", "--rpc", &a.endpoint])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.contains(&format!("rpc {}", a.endpoint)), "{table}");
    assert!(table.contains("GiB"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_answer_is_named_and_the_rest_goes_on() {
    let _serial = SERIAL.lock().await;
    let e = engine();
    let path = model(SMOLLM2);
    // Another chat's model, on this CPU: it must not notice.
    let bystander = e
        .load(&path, opts(&[], GpuLayers::Auto), |_| {})
        .await
        .unwrap();

    let a = RpcServer::start();
    let mut b = RpcServer::start();
    let spread = e
        .load(&path, opts(&[&a, &b], GpuLayers::Auto), |_| {})
        .await
        .unwrap();
    let mut stream = spread.chat(greedy(2000)).await.unwrap();
    let mut tokens = 0;
    let mut error = None;
    while let Some(ev) = stream.next_event().await {
        match ev {
            ChatEvent::Token { .. } => {
                tokens += 1;
                if tokens == 3 {
                    b.kill();
                }
            }
            ChatEvent::Error { code, message } => {
                error = Some((code, message));
                break;
            }
            ChatEvent::Done { .. } => break,
            _ => {}
        }
    }
    let (code, message) = error.expect("the answer should fail when its server dies");
    eprintln!("the error: {message}");
    assert_eq!(code, "rpc_lost", "{message}");
    assert!(message.contains(&b.endpoint), "{message}");
    assert!(!message.contains(&a.endpoint), "{message}");

    let other = collect(bystander.chat(greedy(8)).await.unwrap()).await;
    assert!(other.error.is_none(), "the other chat: {other:?}");
    assert!(!other.text.is_empty());

    // A load that still names the dead server fails at once, naming it.
    let again = e
        .load(&path, opts(&[&a, &b], GpuLayers::Auto), |_| {})
        .await;
    let err = again
        .err()
        .expect("a dead server cannot be loaded on")
        .to_string();
    eprintln!("the load error: {err}");
    assert!(err.contains(&b.endpoint), "{err}");

    // Without it, the model loads on the server that is left.
    spread.unload().await;
    let rest = e
        .load(&path, opts(&[&a], GpuLayers::Auto), |_| {})
        .await
        .unwrap();
    let answer = collect(rest.chat(greedy(8)).await.unwrap()).await;
    assert!(answer.error.is_none(), "{answer:?}");
    assert!(!answer.text.is_empty());
    rest.unload().await;
    bystander.unload().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_named_after_the_stall_limit() {
    let _serial = SERIAL.lock().await;
    let e = engine();
    let path = model(SMOLLM2);
    let server = RpcServer::start();
    let spread = e
        .load(
            &path,
            LoadOptions {
                rpc_stall: Some(Duration::from_secs(3)),
                ..opts(&[&server], GpuLayers::Auto)
            },
            |_| {},
        )
        .await
        .unwrap();
    // Slow answers are not stalls: a whole answer of a few dozen tokens goes through.
    let first = collect(spread.chat(greedy(24)).await.unwrap()).await;
    assert!(first.error.is_none(), "{first:?}");

    let pid = server.child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    let mut stream = spread.chat(greedy(2000)).await.unwrap();
    let mut tokens = 0;
    let mut error = None;
    let mut stopped_at = None;
    while let Some(ev) = stream.next_event().await {
        match ev {
            ChatEvent::Token { .. } => {
                tokens += 1;
                if tokens == 3 {
                    // The process stops; its sockets stay open and its kernel still
                    // accepts connections, as a hung server's would.
                    signal("-STOP");
                    stopped_at = Some(Instant::now());
                }
            }
            ChatEvent::Error { code, message } => {
                error = Some((code, message));
                break;
            }
            ChatEvent::Done { .. } => break,
            _ => {}
        }
    }
    let waited = stopped_at.expect("the server was stopped").elapsed();
    // The server is killed when dropped.
    signal("-CONT");
    let (code, message) = error.expect("the answer should fail when its server hangs");
    eprintln!("the error after {waited:?}: {message}");
    assert_eq!(code, "rpc_lost", "{message}");
    assert!(message.contains(&server.endpoint), "{message}");
    assert!(message.contains("no reply for 3 s"), "{message}");
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    spread.unload().await;

    // The model still loads and answers on this CPU.
    let local = e
        .load(&path, opts(&[], GpuLayers::Auto), |_| {})
        .await
        .unwrap();
    let answer = collect(local.chat(greedy(8)).await.unwrap()).await;
    assert!(answer.error.is_none(), "{answer:?}");
    local.unload().await;
}

#[test]
fn rpc_server_refuses_a_lan_address_without_allow_lan() {
    let port = free_port().to_string();
    let out = Command::new(cli_bin())
        .args(["rpc-server", "--host", "0.0.0.0", "--port", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no authentication"), "{err}");
    assert!(err.contains("no encryption"), "{err}");
    assert!(err.contains("--allow-lan"), "{err}");
    // Nothing listens there.
    assert!(TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fit_splits_layers_when_free_memory_is_short() {
    let _serial = SERIAL.lock().await;
    let a = RpcServer::start();
    // The CLI's worker sees the capped memory; the layers it chose come back in the
    // Done event's `devices`.
    let run = |cap: Option<&str>| {
        let mut cmd = Command::new(cli_bin());
        cmd.args([
            "chat",
            "--model",
            model(SMOLLM2).to_str().unwrap(),
            "--rpc",
            &a.endpoint,
            "--ctx",
            "1024",
            "--threads",
            "1",
            "--temp",
            "0",
            "--max-tokens",
            "4",
            "--no-save",
            "--json",
            "hello",
        ]);
        let data = tempfile::tempdir().unwrap();
        cmd.env("CONCLAVE_DATA_DIR", data.path());
        match cap {
            Some(c) => cmd.env("CONCLAVE_FIT_FREE_MIB", c),
            None => cmd.env_remove("CONCLAVE_FIT_FREE_MIB"),
        };
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let done: serde_json::Value = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "done")
            .unwrap_or_else(|| panic!("no done event: {stdout}"));
        done["metrics"]["devices"].as_str().unwrap_or("").to_owned()
    };
    let layers = |devices: &str, label: &str| -> u32 {
        devices
            .split(", ")
            .find_map(|part| part.strip_prefix(&format!("{label}: ")))
            .and_then(|rest| rest.trim_end_matches(" layers").parse().ok())
            .unwrap_or(0)
    };
    let rpc = format!("rpc {}", a.endpoint);

    let roomy = run(None);
    assert_eq!(layers(&roomy, &rpc), 31, "{roomy}");

    // At 1024 tokens SmolLM2 needs about 200 MiB on a device holding all of it, about
    // 100 MiB of which is the compute buffer (measured with `models info --load`).
    let short = run(Some("200"));
    let (on_rpc, on_cpu) = (layers(&short, &rpc), layers(&short, "CPU"));
    assert!(
        on_rpc > 0 && on_rpc < 31,
        "200 MiB takes some layers: {short}"
    );
    assert_eq!(on_rpc + on_cpu, 31, "{short}");

    let tighter = run(Some("150"));
    let fewer = layers(&tighter, &rpc);
    assert!(
        fewer > 0 && fewer < on_rpc,
        "less memory, fewer layers: {tighter} vs {short}"
    );

    // Not even the compute buffer fits: everything stays on the CPU.
    let none = run(Some("48"));
    assert_eq!(none, "", "{none}");
}
