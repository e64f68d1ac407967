//! Will this model fit in memory at this context size? Estimated from the GGUF header alone,
//! before anything is loaded, so the UI can warn instead of letting the OOM killer decide.
//!
//! # The formula (CPU inference, llama.cpp defaults, as Conclave's worker runs it)
//!
//! The estimate is of the worker's resident memory (RSS) once it has answered: that is what
//! competes with the rest of the machine. Calibrated against measured peak RSS of both test
//! models at 512 and 4096 tokens of context (see `tests/tests/fit.rs`, within 20 %).
//!
//! ```text
//! total    = weights + kv_cache + compute + overhead
//! weights  = Σ tensor bytes (mmap'd; every page is touched during inference, so all of it
//!            ends up resident)
//! kv_cache = n_layer × pad256(n_ctx) × n_head_kv × (head_dim_k × bytes(type_k)
//!                                                  + head_dim_v × bytes(type_v))
//!   head_dim_k/v = {arch}.attention.key_length/value_length, else n_embd / n_head.
//!   Sliding-window layers count in full: llama.cpp keeps a full-size cache for them by
//!   default (`swa_full`), which its own log confirms for Gemma 3 (72 MiB at 4096 tokens).
//! compute  = what is touched of llama.cpp's compute buffer: activations of one prompt
//!            chunk (the worker decodes 256 tokens at a time and asks logits for the last
//!            token only) = 256 × (4 × n_embd + 2 × n_ff) × 4 + n_vocab × 4.
//!   llama.cpp reserves far more address space for the worst case (n_ubatch logits rows),
//!   reported as `compute_reserved_bytes`; it stays untouched, so it is not resident.
//! overhead = 24 MiB (process, llama.cpp/ggml code and heap) + n_vocab × 128 bytes (the
//!            tokenizer's strings, scores and lookup tables).
//! ```
//!
//! Verdict against `MemAvailable` from `/proc/meminfo`: `Fits` when the total is at most
//! 80 % of it, `Tight` up to 100 %, `WontFit` beyond.

use serde::Serialize;
use ts_rs::TS;

use crate::gguf::{self, GgufHeader};

/// Fixed cost of a worker process with a model loaded, beyond the model's own buffers.
pub const FIXED_OVERHEAD_BYTES: u64 = 24 * 1024 * 1024;
/// Tokenizer memory per vocabulary entry (measured: 262k-token Gemma 3 vs 49k SmolLM2).
const PER_VOCAB_BYTES: u64 = 128;
/// Tokens the worker decodes per llama_decode call (see conclave-worker's PROMPT_CHUNK).
const PROMPT_CHUNK: u64 = 256;
/// llama.cpp pads KV cache cell counts to this.
const KV_PAD: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheType {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q5_1,
    Q5_0,
    Q4_1,
    Q4_0,
}

impl KvCacheType {
    /// Bytes per element (block size / elements per block for quantised caches).
    pub fn bytes_per_element(self) -> f64 {
        match self {
            KvCacheType::F32 => 4.0,
            KvCacheType::F16 | KvCacheType::Bf16 => 2.0,
            KvCacheType::Q8_0 => 34.0 / 32.0,
            KvCacheType::Q5_1 => 24.0 / 32.0,
            KvCacheType::Q5_0 => 22.0 / 32.0,
            KvCacheType::Q4_1 => 20.0 / 32.0,
            KvCacheType::Q4_0 => 18.0 / 32.0,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" => KvCacheType::F32,
            "f16" => KvCacheType::F16,
            "bf16" => KvCacheType::Bf16,
            "q8_0" => KvCacheType::Q8_0,
            "q5_1" => KvCacheType::Q5_1,
            "q5_0" => KvCacheType::Q5_0,
            "q4_1" => KvCacheType::Q4_1,
            "q4_0" => KvCacheType::Q4_0,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitRequest {
    /// Context size; 0 means the model's trained context length.
    pub n_ctx: u64,
    pub type_k: KvCacheType,
    pub type_v: KvCacheType,
    /// Physical batch size (llama.cpp default 512).
    pub n_ubatch: u64,
}

impl Default for FitRequest {
    fn default() -> Self {
        Self {
            n_ctx: 0,
            type_k: KvCacheType::F16,
            type_v: KvCacheType::F16,
            n_ubatch: 512,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    Fits,
    Tight,
    WontFit,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct FitEstimate {
    pub n_ctx: u64,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    /// The part of llama.cpp's compute buffer that becomes resident.
    pub compute_bytes: u64,
    /// The whole compute buffer llama.cpp reserves (address space, mostly untouched).
    pub compute_reserved_bytes: u64,
    pub overhead_bytes: u64,
    pub total_bytes: u64,
    /// `MemAvailable`, when it could be read.
    pub available_bytes: Option<u64>,
    pub fit: Fit,
    /// Approximations made (sliding window, missing metadata…), for the UI to show.
    pub notes: Vec<String>,
}

/// `MemAvailable` from `/proc/meminfo`, in bytes (Linux only; `None` elsewhere).
pub fn mem_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        kb.checked_mul(1024)
    })
}

fn pad(n: u64, to: u64) -> u64 {
    n.div_ceil(to).saturating_mul(to)
}

/// Estimates memory for `header`'s model. `weights_bytes` is the tensor data over all
/// parts (for a split model the first header does not see the others' tensors); pass
/// `None` to use the first header's. `available` is normally [`mem_available_bytes`].
pub fn estimate_fit(
    header: &GgufHeader,
    weights_bytes: Option<u64>,
    req: &FitRequest,
    available: Option<u64>,
) -> FitEstimate {
    let mut notes = Vec::new();
    let weights = weights_bytes.unwrap_or_else(|| header.tensor_data_size());

    let n_ctx = if req.n_ctx > 0 {
        req.n_ctx
    } else {
        header.context_length().unwrap_or_else(|| {
            notes.push("no context length in metadata; assumed 4096".into());
            4096
        })
    };
    let n_ubatch = req.n_ubatch.max(1);
    let n_layer = header.block_count().unwrap_or(0);
    let n_embd = header.embedding_length().unwrap_or(0);
    let n_head = header.head_count().unwrap_or(0);
    let n_head_kv = header.head_count_kv().unwrap_or(n_head);
    let default_head_dim = n_embd.checked_div(n_head).unwrap_or(0);
    let head_k = header.key_length().unwrap_or(default_head_dim);
    let head_v = header.value_length().unwrap_or(default_head_dim);
    let n_vocab = header.vocab_size().unwrap_or(0);
    let n_ff = header.feed_forward_length().unwrap_or(4 * n_embd);
    if n_layer == 0 || n_head == 0 {
        notes.push("attention shape missing from metadata; KV cache not estimated".into());
    }

    let cells_full = pad(n_ctx, KV_PAD);
    if header.sliding_window().is_some() {
        notes.push(
            "sliding-window layers counted with a full-size cache, as llama.cpp allocates by default"
                .into(),
        );
    }
    let per_cell = n_head_kv as f64
        * (head_k as f64 * req.type_k.bytes_per_element()
            + head_v as f64 * req.type_v.bytes_per_element());
    let kv = ((n_layer * cells_full) as f64 * per_cell) as u64;

    let activations = |tokens: u64| {
        tokens
            .saturating_mul(4 * n_embd + 2 * n_ff)
            .saturating_mul(4)
    };
    let compute = activations(PROMPT_CHUNK.min(n_ubatch)).saturating_add(n_vocab.saturating_mul(4));
    let logits = n_vocab.saturating_mul(n_ubatch).saturating_mul(4);
    let attention = n_head
        .saturating_mul(cells_full)
        .saturating_mul(n_ubatch)
        .saturating_mul(4)
        / 4;
    let compute_reserved = logits.max(attention).saturating_add(activations(n_ubatch));
    let overhead = FIXED_OVERHEAD_BYTES.saturating_add(n_vocab.saturating_mul(PER_VOCAB_BYTES));
    let total = weights
        .saturating_add(kv)
        .saturating_add(compute)
        .saturating_add(overhead);

    let fit = match available {
        Some(avail) if total.saturating_mul(10) <= avail.saturating_mul(8) => Fit::Fits,
        Some(avail) if total <= avail => Fit::Tight,
        Some(_) => Fit::WontFit,
        None => {
            notes.push("free memory unknown on this system".into());
            Fit::Tight
        }
    };
    FitEstimate {
        n_ctx,
        weights_bytes: weights,
        kv_cache_bytes: kv,
        compute_bytes: compute,
        compute_reserved_bytes: compute_reserved,
        overhead_bytes: overhead,
        total_bytes: total,
        available_bytes: available,
        fit,
        notes,
    }
}

impl super::ModelEntry {
    /// [`estimate_fit`] for this model against the memory available right now.
    pub fn estimate_fit(&self, req: &FitRequest) -> Result<FitEstimate, super::ModelsError> {
        let header =
            gguf::read_header(&self.path).map_err(|source| super::ModelsError::NotGguf {
                path: self.path.clone(),
                cause: source,
            })?;
        let weights = self.meta.as_ref().map(|m| m.weights_bytes);
        Ok(estimate_fit(&header, weights, req, mem_available_bytes()))
    }
}
