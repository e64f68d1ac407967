//! Vulkan smoke test: a `GPU=vulkan` build of the CLI and worker, on whatever Vulkan device
//! the machine has (on the CPU-only build machines: Mesa's lavapipe, a software Vulkan
//! driver), answers at temperature 0 exactly what the same build answers on the CPU alone,
//! and the answer's `--json` metrics name the Vulkan device it ran on.
//!
//! Not part of `make test` (the Vulkan build compiles llama.cpp a second time, with a few
//! hundred shaders): `make test-vulkan` installs the apt packages, builds with
//! `GPU=vulkan` and runs this file with CONCLAVE_VULKAN=1.
//!
//! The binary is the Vulkan build's `conclave`, named by CONCLAVE_VULKAN_CLI (its
//! `conclave-worker` sits next to it). Without it the test prints SKIPPED and passes,
//! unless CONCLAVE_VULKAN=1, where a missing binary is a failure.
//!
//! llama.cpp's Vulkan backend leaves out devices of the CPU type (lavapipe) unless
//! GGML_VK_VISIBLE_DEVICES names them: when the caller has not set it, this test sets it to
//! the first device, which on these machines is lavapipe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use conclave_tests::{model, SMOLLM2};

const PROMPT: &str = "Name three primary colors.";
const MAX_TOKENS: &str = "32";

/// The Vulkan build's `conclave`, or None (after printing SKIPPED) when there is none and
/// CONCLAVE_VULKAN=1 is not set.
fn vulkan_cli(test: &str) -> Option<PathBuf> {
    let required = std::env::var("CONCLAVE_VULKAN").is_ok_and(|v| v == "1");
    let problem = match std::env::var_os("CONCLAVE_VULKAN_CLI").map(PathBuf::from) {
        None => "CONCLAVE_VULKAN_CLI is not set (`make test-vulkan` sets it)".to_owned(),
        Some(cli) if !cli.is_file() => format!("{} does not exist", cli.display()),
        Some(cli) if !cli.with_file_name("conclave-worker").is_file() => {
            format!("{} has no conclave-worker next to it", cli.display())
        }
        Some(cli) => return Some(cli),
    };
    let msg = format!(
        "no Vulkan build of the CLI: {problem}; build one with \
         `make build-release GPU=vulkan` or run `make test-vulkan`"
    );
    if required {
        panic!("{msg} (CONCLAVE_VULKAN=1)");
    }
    eprintln!("SKIPPED {test}: {msg}");
    None
}

fn conclave(cli: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(cli);
    cmd.args(args)
        .env("CONCLAVE_DATA_DIR", data)
        .env("CONCLAVE_MODELS_DIR", model(SMOLLM2).parent().unwrap())
        .env("RUST_LOG", "warn");
    if std::env::var_os("GGML_VK_VISIBLE_DEVICES").is_none() {
        cmd.env("GGML_VK_VISIBLE_DEVICES", "0");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "conclave {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// One greedy answer from `conclave chat --json`.
struct Answer {
    text: String,
    tokens: u64,
    gen_tps: f64,
    devices: String,
    wall_s: f64,
}

fn chat(cli: &Path, data: &Path, gpu_layers: &str) -> Answer {
    let t0 = Instant::now();
    let out = conclave(
        cli,
        data,
        &[
            "chat",
            "--model",
            "SmolLM2",
            "--temp",
            "0",
            "--seed",
            "1",
            "--max-tokens",
            MAX_TOKENS,
            "--threads",
            "2",
            "--gpu-layers",
            gpu_layers,
            "--no-save",
            "--json",
            PROMPT,
        ],
    );
    let wall_s = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut text = String::new();
    let mut done = None;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        match ev["type"].as_str() {
            Some("token") => text.push_str(ev["text"].as_str().unwrap()),
            Some("done") => done = Some(ev),
            Some("error") => panic!("--gpu-layers {gpu_layers}: {line}"),
            _ => {}
        }
    }
    let done = done.unwrap_or_else(|| panic!("no done event: {stdout}"));
    Answer {
        text,
        tokens: done["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        gen_tps: done["metrics"]["gen_tps"].as_f64().unwrap_or(0.0),
        devices: done["metrics"]["devices"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        wall_s,
    }
}

#[test]
fn vulkan_answers_the_same_text_as_the_cpu() {
    let Some(cli) = vulkan_cli("vulkan_answers_the_same_text_as_the_cpu") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();

    let devices = conclave(&cli, data.path(), &["devices", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
    let vulkan: Vec<&serde_json::Value> = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["name"].as_str().is_some_and(|n| n.starts_with("Vulkan")))
        .collect();
    assert!(
        !vulkan.is_empty(),
        "the Vulkan build lists no Vulkan device (is a Vulkan driver installed? \
         `vulkaninfo --summary`): {list}"
    );
    eprintln!(
        "Vulkan devices: {}",
        vulkan
            .iter()
            .map(|d| format!("{} ({})", d["name"], d["description"]))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let cpu = chat(&cli, data.path(), "0");
    let gpu = chat(&cli, data.path(), "99");
    eprintln!(
        "CPU:    {} tokens, {:.1} t/s, {:.1} s in all, devices {:?}\n\
         Vulkan: {} tokens, {:.1} t/s, {:.1} s in all, devices {:?}\ntext: {:?}",
        cpu.tokens,
        cpu.gen_tps,
        cpu.wall_s,
        cpu.devices,
        gpu.tokens,
        gpu.gen_tps,
        gpu.wall_s,
        gpu.devices,
        gpu.text
    );
    assert!(
        cpu.tokens > 0 && !cpu.text.trim().is_empty(),
        "empty CPU answer"
    );
    assert!(
        !cpu.devices.contains("Vulkan"),
        "--gpu-layers 0 still put layers on Vulkan: {}",
        cpu.devices
    );
    assert!(
        gpu.devices.contains("Vulkan"),
        "--gpu-layers 99 did not name a Vulkan device in the metrics: {:?}",
        gpu.devices
    );
    assert_eq!(
        gpu.text, cpu.text,
        "at temperature 0 the Vulkan answer differs from the CPU's"
    );
}
