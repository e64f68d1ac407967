//! The wire protocol between the core and a `conclave-worker` process: one JSON object per
//! line, requests on the worker's stdin, events on its stdout. The worker prints `Ready`
//! once its model is loaded and exits when its stdin closes, so a dead parent never leaves
//! an orphan holding gigabytes of weights.
//!
//! The worker knows nothing of templates, reasoning formats or history: it turns a rendered
//! prompt into a stream of complete UTF-8 text pieces, and applies the thinking budget as a
//! plain "if N tokens pass without `close`, inject `close`" rule.

//!
//! This crate is all the two sides share, so the worker builds without the core (no
//! database, HTTP or template engine in the process that holds the model).

mod params;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

pub use params::{SamplingParams, SpeculativeMode, StopReason};

/// The version of this protocol, carried in [`ReadyInfo::protocol`]. The core refuses a
/// worker that reports another one, so a stale `conclave-worker` left next to a newer app
/// fails its load with a clear message instead of misreading (or hanging on) its output.
/// Raise it with any change that an older or newer peer would misread.
pub const PROTOCOL_VERSION: u32 = 4;

/// Command-line flags the core passes when it starts a worker.
pub const ARG_MODEL: &str = "--model";
pub const ARG_N_CTX: &str = "--n-ctx";
pub const ARG_THREADS: &str = "--threads";
/// A second, smaller model with the same vocabulary that drafts tokens for the first one
/// (speculative decoding); both live in the same worker.
pub const ARG_DRAFT_MODEL: &str = "--draft-model";
/// `--sandbox off` starts the worker without its sandbox (for debugging only).
pub const ARG_SANDBOX: &str = "--sandbox";
/// Allows TCP connects to this port (repeatable): llama.cpp RPC servers the user entered.
/// Without it the worker has no network at all.
pub const ARG_ALLOW_TCP_CONNECT: &str = "--allow-tcp-connect";
/// Applies the sandbox, tries what it must deny, prints a [`SandboxCheck`] as JSON, exits.
pub const ARG_SANDBOX_CHECK: &str = "--sandbox-check";
/// With `--sandbox-check`: the TCP address the check tries to connect to.
pub const ARG_CHECK_CONNECT: &str = "--check-connect";
/// With `--sandbox-check`: the file outside the sandbox the check tries to read.
pub const ARG_CHECK_OPEN: &str = "--check-open";
/// Comma-separated `host:port` of llama.cpp RPC servers whose devices hold part of the model.
pub const ARG_RPC: &str = "--rpc";
/// `auto` (llama.cpp's own fit to measured free memory) or a layer count for the GPU and
/// RPC devices; absent = auto.
pub const ARG_GPU_LAYERS: &str = "--gpu-layers";
/// Instead of loading a model: serve this machine's devices to other machines over
/// llama.cpp's RPC protocol (with `--host`, `--port`, `--threads`) until killed.
pub const ARG_RPC_SERVER: &str = "--rpc-server";
/// Instead of loading a model: print the devices llama.cpp sees (with those of `--rpc`
/// servers) as one JSON [`DeviceList`] line, then exit.
pub const ARG_LIST_DEVICES: &str = "--list-devices";
pub const ARG_HOST: &str = "--host";
pub const ARG_PORT: &str = "--port";
/// With `--rpc-server`: accept a host other than loopback.
pub const ARG_ALLOW_LAN: &str = "--allow-lan";
/// Test seam (and a way to keep headroom): caps the free memory llama.cpp's fit sees on
/// each GPU or RPC device, in MiB, so the split logic can be exercised on a CPU machine.
pub const FIT_FREE_MIB_ENV: &str = "CONCLAVE_FIT_FREE_MIB";

/// Whether an RPC server may listen on `host`: loopback always; anything else only with
/// `--allow-lan`, because llama.cpp's RPC has no authentication and no encryption (anyone
/// who reaches the port can run code-like graph work and read what it computes).
pub fn rpc_host_allowed(host: &str, allow_lan: bool) -> bool {
    allow_lan || is_loopback(host)
}

pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The plain words every refusal and warning about RPC exposure uses.
pub const RPC_NO_AUTH: &str = "llama.cpp's RPC protocol has no authentication and no \
encryption: anyone who can reach the port can use this machine's memory and CPU and see \
the model's weights and activations";

/// Checks one `host:port` as llama.cpp's RPC client parses it (it splits at the first
/// `:`, so IPv6 literals are not supported).
pub fn parse_endpoint(endpoint: &str) -> Result<(String, u16), String> {
    let endpoint = endpoint.trim();
    let Some((host, port)) = endpoint.split_once(':') else {
        return Err(format!("`{endpoint}` is not host:port"));
    };
    if host.is_empty() || port.contains(':') {
        return Err(format!(
            "`{endpoint}` is not host:port (IPv6 addresses are not supported by llama.cpp's RPC)"
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{endpoint}`: the port must be a number from 1 to 65535"))?;
    if port == 0 {
        return Err(format!(
            "`{endpoint}`: the port must be a number from 1 to 65535"
        ));
    }
    Ok((host.to_owned(), port))
}

/// Splits a `--rpc` value (`host:port[,host:port…]`), checking each endpoint.
pub fn parse_rpc_list(list: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        parse_endpoint(part)?;
        if !out.iter().any(|e| e == part) {
            out.push(part.to_owned());
        }
    }
    Ok(out)
}

/// How many layers go to the GPU and RPC devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case", tag = "mode", content = "layers")]
pub enum GpuLayers {
    /// llama.cpp's fit (as `llama-server --fit`): as many as measured free memory allows.
    #[default]
    Auto,
    /// Exactly this many (0 = CPU only; more than the model has = all).
    Count(u32),
}

impl GpuLayers {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" | "" => Ok(Self::Auto),
            n => n
                .parse()
                .map(Self::Count)
                .map_err(|_| format!("gpu layers must be auto or a number, not `{n}`")),
        }
    }
}

impl std::fmt::Display for GpuLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for GpuLayers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// One device llama.cpp sees, with its memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct DeviceInfo {
    /// llama.cpp's name: `CPU`, `CUDA0`, `Vulkan0`, `RPC0`…
    pub name: String,
    pub description: String,
    /// `cpu`, `gpu`, `igpu`, `accel` or `rpc`.
    pub kind: String,
    /// The backend that provides it (`CPU`, `CUDA`, `RPC[host:port]`…).
    pub backend: String,
    /// For RPC devices: the server's `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

impl DeviceInfo {
    /// How answers, `models info` and bench name it: `CPU`, `CUDA0`, `rpc 10.0.0.2:50052`.
    pub fn label(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("rpc {e}"),
            None => self.name.clone(),
        }
    }
}

/// What `--list-devices` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct DeviceList {
    /// Backends compiled in (`CPU`, `RPC`, `CUDA`…).
    pub backends: Vec<String>,
    pub devices: Vec<DeviceInfo>,
}

/// Memory a loaded model took on one device, from llama.cpp's own buffer report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct MemoryUse {
    /// `RAM` for host memory (the CPU's buffers, mapped weights, pinned host buffers), else
    /// the device's label (`CUDA0`, `rpc host:port`).
    pub device: String,
    /// False for host RAM: GPU memory (VRAM), or the memory of an RPC server.
    pub host: bool,
    pub model_bytes: u64,
    pub kv_bytes: u64,
    pub compute_bytes: u64,
}

impl MemoryUse {
    pub fn total(&self) -> u64 {
        self.model_bytes + self.kv_bytes + self.compute_bytes
    }
}

/// Where a loaded model's layers went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct DeviceLayers {
    pub device: DeviceInfo,
    /// Layers on this device, llama.cpp's way of counting (the repeating layers plus the
    /// output layer; the input embeddings always stay on the CPU).
    pub layers: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerRequest {
    /// Boxed: a request carries every sampling parameter, far larger than the others.
    Generate(Box<GenerateRequest>),
    /// Stop the generation with this id within one token (also during prompt decoding).
    Cancel { id: u64 },
    /// Count tokens of a text, as the model would see it as message text in a prompt
    /// (special tokens not parsed).
    Tokenize { id: u64, text: String },
    /// Raw llama.cpp speed, measured the way llama-bench does: no template, no sampling.
    Bench(BenchRequest),
    /// Use this many threads from the next token on (also mid-answer): a side-by-side run
    /// gives the cores of a finished column to the ones still generating.
    SetThreads { threads: u32 },
    /// Decode a prompt into the cache without answering it: the conversation and the
    /// message the user is still typing, so that sending it decodes only what was typed
    /// since. Gives way to any other request between chunks; answered by `Warmed`.
    Warm(WarmRequest),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmRequest {
    pub id: u64,
    /// The rendered prompt up to the end of the message being typed (no end-of-turn, no
    /// generation prompt: those depend on what is typed next).
    pub segments: Vec<PromptSegment>,
    pub add_bos: bool,
    /// The threads the answer will use: a different count would rebuild the context
    /// twice.
    pub threads: u32,
}

/// What a warm-up left in the cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WarmInfo {
    pub id: u64,
    /// The warmed prompt's length in tokens.
    pub prompt_tokens: u32,
    /// How many of them were in the cache already.
    pub cached_tokens: u32,
    /// How many this warm-up decoded.
    pub decoded_tokens: u32,
    pub prompt_ms: f64,
    /// False when it stopped early: another request came, or the prompt leaves too little
    /// room in the context (the answer will drop turns, so its prompt will differ).
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub id: u64,
    /// The rendered prompt, in the order the model reads it: the template's markup, whose
    /// special tokens are parsed, and message text, which is always read as plain text (a
    /// pasted `<|im_end|>` is a few ordinary tokens, never the end of a turn).
    pub segments: Vec<PromptSegment>,
    /// Prepend BOS: only when the model wants one and the template did not write it.
    pub add_bos: bool,
    pub params: SamplingParams,
    /// The seed actually used (the core draws one when the user gave none).
    pub seed: u32,
    /// Threads for this request; the worker rebuilds its context when this changes.
    pub threads: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<ThinkBudget>,
    /// A GBNF grammar constraining the output (JSON mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<String>,
    /// How tokens are drafted for speculative decoding (the output is the same either way).
    #[serde(default)]
    pub speculative: SpeculativeMode,
}

/// One piece of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSegment {
    pub text: String,
    /// Tokenize with special-token parsing: true only for text the chat template wrote
    /// itself, never for what a user, a document or a model wrote.
    pub special: bool,
}

impl PromptSegment {
    pub fn markup(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            special: true,
        }
    }

    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            special: false,
        }
    }
}

/// Budget forcing: once `max_tokens` tokens have been spent thinking without the closing
/// marker, the worker feeds `inject` (lead-in + closing marker) as if the model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinkBudget {
    pub max_tokens: u32,
    /// The prompt already ends inside the opening marker.
    pub starts_in_thinking: bool,
    pub open: String,
    pub close: String,
    pub inject: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRequest {
    pub id: u64,
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
    pub reps: u32,
    pub threads: u32,
    /// Tokens already in the cache before the timed prompt (llama-bench's `-d`): what a
    /// follow-up's new tokens sit on.
    #[serde(default)]
    pub depth: u32,
}

// `Ready` is sent once per worker; boxing it would buy nothing on the token path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerEvent {
    LoadProgress {
        fraction: f32,
    },
    Ready(ReadyInfo),
    /// A chunk of a long prompt has been decoded (`done` of `total` new tokens). It shows
    /// the worker is alive: a worker whose layers sit on an RPC server that stopped
    /// answering says nothing, and the core gives it up after a while.
    PromptProgress {
        id: u64,
        done: u32,
        total: u32,
    },
    /// The prompt has been decoded; generation begins.
    Started {
        id: u64,
        prompt_tokens: u32,
        cached_tokens: u32,
        prompt_ms: f64,
    },
    /// Complete UTF-8 text; `tokens` is how many generated tokens it covers (0 when the
    /// bytes of a token ended inside a character and wait for the next one).
    Delta {
        id: u64,
        text: String,
        tokens: u32,
    },
    Done(DoneInfo),
    Tokenized {
        id: u64,
        tokens: u32,
    },
    BenchResult(BenchResult),
    Warmed(WarmInfo),
    /// A request failed; the worker stays usable. `id` is absent for load failures.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        code: WorkerErrorCode,
        message: String,
        /// For `context_overflow`: the prompt's length in tokens.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt_tokens: Option<u32>,
    },
}

/// Why a request failed, named the same on both sides. The core passes these codes on to
/// the UI and API clients (`ChatEvent::Error`), which match on them: the wire spelling of
/// a variant never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerErrorCode {
    /// The model could not be loaded; the worker exits after saying so.
    LoadFailed,
    /// A request line the worker could not read.
    BadRequest,
    /// The prompt tokenized to nothing.
    EmptyPrompt,
    /// The prompt does not fit the context (`prompt_tokens` says how long it is).
    ContextOverflow,
    GenerationFailed,
    BenchFailed,
    ThreadsFailed,
    /// Never sent by a worker: the core fails the requests of a worker that died with it.
    WorkerCrashed,
    /// Never sent by a worker: the core fails the pending requests with it when the worker
    /// writes a line that is not part of this protocol.
    BadOutput,
    /// A message could not be serialised (not expected with these types).
    Internal,
    /// Never sent by a worker: the core fails the requests of a worker that died because
    /// an RPC server it had layers on stopped answering.
    RpcLost,
}

impl WorkerErrorCode {
    pub const ALL: [WorkerErrorCode; 11] = [
        Self::LoadFailed,
        Self::BadRequest,
        Self::EmptyPrompt,
        Self::ContextOverflow,
        Self::GenerationFailed,
        Self::BenchFailed,
        Self::ThreadsFailed,
        Self::WorkerCrashed,
        Self::BadOutput,
        Self::Internal,
        Self::RpcLost,
    ];

    /// The wire spelling, for callers that hand codes on as strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadFailed => "load_failed",
            Self::BadRequest => "bad_request",
            Self::EmptyPrompt => "empty_prompt",
            Self::ContextOverflow => "context_overflow",
            Self::GenerationFailed => "generation_failed",
            Self::BenchFailed => "bench_failed",
            Self::ThreadsFailed => "threads_failed",
            Self::WorkerCrashed => "worker_crashed",
            Self::BadOutput => "bad_output",
            Self::Internal => "internal",
            Self::RpcLost => "rpc_lost",
        }
    }

    /// The code a string names, if any (for codes that arrive as strings, such as a
    /// streamed `ChatEvent::Error`).
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for WorkerErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// [`PROTOCOL_VERSION`] of the worker; 0 for workers built before it existed.
    #[serde(default)]
    pub protocol: u32,
    pub pid: u32,
    pub load_ms: f64,
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    pub n_vocab: i32,
    pub n_params: u64,
    pub size_bytes: u64,
    pub threads: u32,
    pub architecture: String,
    pub name: Option<String>,
    pub chat_template: Option<String>,
    pub bos_token: String,
    pub eos_token: String,
    pub add_bos: bool,
    /// The draft model's name when the worker holds one (`--draft-model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_model: Option<String>,
    /// Where the layers went, CPU first; empty from workers that predate it.
    #[serde(default)]
    pub devices: Vec<DeviceLayers>,
    /// Layers offloaded to GPU and RPC devices (llama.cpp's `n_gpu_layers` after the fit).
    #[serde(default)]
    pub gpu_layers: u32,
    /// How the layer count was chosen: "fit", "fit failed: …", "set", "cpu only".
    #[serde(default)]
    pub gpu_layers_source: String,
    /// Weights, KV cache and compute buffers per device, host RAM first.
    #[serde(default)]
    pub memory: Vec<MemoryUse>,
    /// What confines this worker (absent from workers built before the sandbox).
    #[serde(default)]
    pub sandbox: SandboxStatus,
}

/// What of the worker's sandbox holds on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct SandboxStatus {
    /// False when the worker was started with `--sandbox off`, or by a worker without one.
    pub enabled: bool,
    pub no_new_privs: bool,
    pub parent_death_signal: bool,
    /// The seccomp filter on `socket()` and `io_uring_setup()` is installed.
    pub seccomp: bool,
    /// Landlock enforcement: "full", "partial" or "none".
    pub landlock: String,
    /// The kernel's Landlock ABI version (0: none).
    pub landlock_abi: i32,
    /// "none", or "tcp-connect:PORTS" when RPC servers were given.
    pub network: String,
    /// Every layer the kernel lacks, said in words (also logged by the worker).
    pub warnings: Vec<String>,
}

impl SandboxStatus {
    /// Every layer is in force.
    pub fn complete(&self) -> bool {
        self.enabled
            && self.no_new_privs
            && self.parent_death_signal
            && self.seccomp
            && self.landlock == "full"
    }
}

/// What `conclave-worker --sandbox-check` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxCheck {
    pub status: SandboxStatus,
    pub probes: Vec<SandboxProbe>,
}

/// One thing the check tried under the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxProbe {
    /// "open_outside", "connect_tcp", "open_model", ...
    pub name: String,
    pub target: String,
    /// The sandbox refused it (EACCES / EPERM).
    pub denied: bool,
    /// What happened, in words ("ok" when it succeeded).
    pub result: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneInfo {
    pub id: u64,
    pub stop_reason: StopReason,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub completion_tokens: u32,
    pub prompt_ms: f64,
    /// From the first generated token to the last.
    pub gen_ms: f64,
    pub threads: u32,
    /// Thinking tokens counted by the budget rule (0 without a budget).
    pub thinking_tokens: u32,
    pub budget_cut_at: Option<u32>,
    /// Speculative decoding: tokens drafted and verified, and how many of them the target
    /// model kept (0 and 0 when nothing was drafted).
    #[serde(default)]
    pub drafted_tokens: u32,
    #[serde(default)]
    pub accepted_tokens: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub id: u64,
    pub threads: u32,
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
    pub reps: u32,
    /// Mean prompt-processing speed (tokens/s).
    pub prompt_tps: f64,
    /// Mean single-token decode speed (tokens/s).
    pub gen_tps: f64,
    /// Prompt batch plus the first single-token decode, in ms.
    pub ttft_ms: f64,
    pub gen_tps_stddev: f64,
}

/// Serialises one message as a line. Serialising these plain types cannot fail.
pub fn to_line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value).unwrap_or_else(|e| {
        // Quoted by serde_json too, so the reason cannot break the line's JSON.
        let message = serde_json::to_string(&format!("serialise: {e}"))
            .unwrap_or_else(|_| "\"serialise\"".to_owned());
        format!("{{\"type\":\"error\",\"code\":\"internal\",\"message\":{message}}}")
    });
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_spelled_on_the_wire_as_as_str_says() {
        for code in WorkerErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(WorkerErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(WorkerErrorCode::parse("nonsense"), None);
    }

    #[test]
    fn rpc_endpoints_are_host_and_port() {
        assert_eq!(
            parse_endpoint(" 10.0.0.2:50052 "),
            Ok(("10.0.0.2".to_owned(), 50052))
        );
        assert!(parse_endpoint("localhost").is_err());
        assert!(parse_endpoint(":50052").is_err());
        assert!(parse_endpoint("host:0").is_err());
        assert!(parse_endpoint("host:70000").is_err());
        assert!(
            parse_endpoint("::1:50052").is_err(),
            "IPv6 is not parsed by llama.cpp"
        );
        assert_eq!(
            parse_rpc_list("a:1, b:2,a:1,,"),
            Ok(vec!["a:1".to_owned(), "b:2".to_owned()])
        );
        assert!(parse_rpc_list("a:1,b").is_err());
    }

    #[test]
    fn rpc_servers_bind_loopback_unless_lan_is_allowed() {
        for host in ["127.0.0.1", "localhost", "::1", "127.0.0.2"] {
            assert!(rpc_host_allowed(host, false), "{host}");
        }
        for host in ["0.0.0.0", "192.168.1.20", "::", "example.org"] {
            assert!(!rpc_host_allowed(host, false), "{host}");
            assert!(rpc_host_allowed(host, true), "{host}");
        }
    }

    #[test]
    fn gpu_layers_parse_and_print() {
        assert_eq!(GpuLayers::parse("auto"), Ok(GpuLayers::Auto));
        assert_eq!(GpuLayers::parse("0"), Ok(GpuLayers::Count(0)));
        assert_eq!(GpuLayers::parse(" 12 "), Ok(GpuLayers::Count(12)));
        assert!(GpuLayers::parse("-1").is_err());
        assert!(GpuLayers::parse("many").is_err());
        assert_eq!(GpuLayers::Count(7).to_string(), "7");
        assert_eq!(GpuLayers::Auto.to_string(), "auto");
    }

    #[test]
    fn ready_info_from_a_worker_without_devices_still_reads() {
        let old = r#"{"type":"ready","protocol":1,"pid":1,"load_ms":1.0,"n_ctx":512,"n_ctx_train":2048,"n_vocab":10,"n_params":1,"size_bytes":1,"threads":1,"architecture":"llama","name":null,"chat_template":null,"bos_token":"","eos_token":"","add_bos":false}"#;
        let event: WorkerEvent = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
        let WorkerEvent::Ready(info) = event else {
            panic!("not ready")
        };
        assert!(info.devices.is_empty() && info.memory.is_empty());
    }

    #[test]
    fn the_serialisation_fallback_is_itself_a_readable_event() {
        let fallback = "{\"type\":\"error\",\"code\":\"internal\",\"message\":\"serialise: x\"}";
        let event: Result<WorkerEvent, _> = serde_json::from_str(fallback);
        assert!(
            matches!(
                event,
                Ok(WorkerEvent::Error {
                    code: WorkerErrorCode::Internal,
                    ..
                })
            ),
            "{event:?}"
        );
    }
}
