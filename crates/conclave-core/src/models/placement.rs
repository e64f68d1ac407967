//! Where a model's layers will go before it is loaded: how many llama.cpp will offload to
//! this machine's GPUs, and what that leaves in RAM and puts in VRAM. Pure functions over
//! the GGUF header, the memory estimate of [`super::fit`], the devices the worker lists
//! (`conclave devices`) and the model's GPU-layer setting.
//!
//! # What llama.cpp does, and what this assumes (llama.cpp as vendored by llama-cpp-sys-2)
//!
//! - **Layer count.** `n_gpu_layers` (what `--gpu-layers N` sets) counts the repeating
//!   layers *plus the output layer*, and the output layer goes first: with N offloaded the
//!   output layer and the last N − 1 repeating layers are on the GPU
//!   (`i_gpu_start = n_layer + 1 − N` in `llama_model::load_tensors`). N above
//!   `n_layer + 1` is the same as `n_layer + 1`. The text here counts repeating layers
//!   (`23/30 layers + output`), the figure `models info` shows as the model's layers; the
//!   JSON also gives llama.cpp's `gpu_layers`.
//! - **Input embeddings** (`token_embd`, `pos_embd`, `token_types`, and tensors outside
//!   any block that are not `output*`, such as `rope_freqs`) always stay on the CPU: llama.cpp
//!   sees "very little benefit" in offloading them.
//! - **Output tensors** (`output.weight`, `output_norm.*`) go where the output layer goes.
//!   A model with tied embeddings has no `output.weight`: llama.cpp loads `token_embd`
//!   a second time as the output (`TENSOR_DUPLICATED`), so with the output layer on a GPU
//!   its bytes count in VRAM *and* in RAM. On the CPU both are the same mapped file pages.
//! - **Weights** are split by the tensors of each block (`blk.N.*`). Weights of layers on
//!   a GPU are copied there and not counted in RAM (the mapped pages they were read from
//!   are page cache the kernel can drop). A split model's first header lists only its own
//!   tensors: the rest of its bytes are spread evenly over the repeating layers.
//! - **KV cache**: llama.cpp puts each layer's cache on that layer's device (`offload_kqv`,
//!   on by default); the cache is split evenly per layer.
//! - **Compute**: every GPU that holds a layer gets a compute buffer allocated for real,
//!   so VRAM counts the whole reserved buffer ([`super::FitEstimate::compute_reserved_bytes`]);
//!   RAM keeps the resident part of the CPU's buffer and the fixed overhead.
//! - **Auto** (llama.cpp's fit, as the worker runs it): as many layers as fit in each
//!   GPU's free memory less a 1 GiB margin (llama-server's `--fit-target`, which also
//!   covers the backend's own context, e.g. CUDA's few hundred MiB). With several GPUs the
//!   last one takes the output layer and the top layers, the one before it the next ones
//!   down, and so on (llama.cpp gives earlier devices earlier layers). `CONCLAVE_FIT_FREE_MIB`
//!   caps the free memory seen, as in the worker (then the cap is the whole budget).
//! - **A set count N** over several GPUs is split as llama.cpp's default split does: in
//!   proportion to each device's free memory.
//! - **Devices**: the GPUs (`kind` `gpu`; integrated `igpu` ones only when there is no
//!   discrete one), as the worker picks them. RPC devices are not estimated: llama.cpp's
//!   fit decides their share at load, and the text says so.
//!
//! The free memory is what the worker measured when the devices were listed (once per app
//! run or `models info`), so the estimate ages as other programs take VRAM.

use serde::Serialize;
use ts_rs::TS;

use super::fit::{ram_verdict, FitEstimate};
use crate::gguf::GgufHeader;
use crate::protocol::{DeviceInfo, DeviceList, GpuLayers};

/// Memory llama.cpp's fit leaves free on each device (llama-server's default
/// `--fit-target`; the worker uses the same).
pub const FIT_MARGIN_BYTES: u64 = 1 << 30;

/// What the placement needs besides the header: the devices and the user's choices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlacementRequest {
    /// This machine's devices as the worker lists them. CPU and RPC devices are ignored.
    pub devices: Vec<DeviceInfo>,
    /// The model's setting (`auto`, N, 0).
    pub gpu_layers: GpuLayers,
    /// Remote devices (Settings → Remote devices, `--rpc`): named, not estimated.
    pub rpc_servers: Vec<String>,
    /// `CONCLAVE_FIT_FREE_MIB` in bytes: caps the free memory auto sees on each GPU.
    pub free_cap_bytes: Option<u64>,
}

impl PlacementRequest {
    /// From a worker's device list, with the cap from `CONCLAVE_FIT_FREE_MIB` if set.
    pub fn new(list: &DeviceList, gpu_layers: GpuLayers, rpc_servers: Vec<String>) -> Self {
        Self {
            devices: list.devices.clone(),
            gpu_layers,
            rpc_servers,
            free_cap_bytes: std::env::var(crate::protocol::FIT_FREE_MIB_ENV)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|mib| mib.saturating_mul(1024 * 1024)),
        }
    }
}

/// One GPU's share.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct DevicePlacement {
    /// llama.cpp's name (`CUDA0`, `Vulkan0`).
    pub name: String,
    pub description: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Repeating layers on this device.
    pub layers: u32,
    /// Whether the output layer is here.
    pub output: bool,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub compute_bytes: u64,
    /// weights + KV cache + compute.
    pub vram_bytes: u64,
    /// Against its free memory: `fits` within the free memory less the margin, `tight`
    /// within the free memory, `wont_fit` beyond.
    pub fit: super::Fit,
}

/// The placement before loading: layers offloaded, RAM and VRAM apart.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct PlacementEstimate {
    /// The model's repeating layers (`block_count`).
    pub layer_count: u32,
    /// The setting it was estimated for.
    pub gpu_layers_setting: GpuLayers,
    /// llama.cpp's `n_gpu_layers` this comes to (repeating layers offloaded + the output
    /// layer), what `--gpu-layers` and the cost line after loading count.
    pub gpu_layers: u32,
    /// Repeating layers on GPUs, all devices together.
    pub layers_on_gpu: u32,
    pub output_on_gpu: bool,
    /// The GPUs that would be used (all of them, with 0 layers where none fit), in the
    /// worker's order. Empty on a machine without a GPU.
    pub devices: Vec<DevicePlacement>,
    /// Whether the machine has a GPU llama.cpp can use.
    pub has_gpu: bool,
    pub ram_weights_bytes: u64,
    pub ram_kv_cache_bytes: u64,
    pub ram_compute_bytes: u64,
    pub ram_overhead_bytes: u64,
    /// What stays in RAM: weights + KV cache + compute + overhead on the CPU side.
    pub ram_bytes: u64,
    pub ram_available_bytes: Option<u64>,
    pub ram_fit: super::Fit,
    /// All GPUs together.
    pub vram_bytes: u64,
    /// The worst of the GPUs' verdicts; None when nothing goes to a GPU.
    pub vram_fit: Option<super::Fit>,
    /// Remote devices configured: their share is decided at load.
    pub rpc_servers: Vec<String>,
    /// One line: `RAM 1.2 GiB · VRAM 3.4 GiB (CUDA0: 23/30 layers + output)`.
    pub summary: String,
    pub notes: Vec<String>,
}

/// Bytes of the model in the pieces llama.cpp places apart.
#[derive(Debug, Clone, Default, PartialEq)]
struct LayerBytes {
    /// Per repeating layer.
    layers: Vec<u64>,
    /// Input embeddings and the other tensors that stay on the CPU.
    input: u64,
    /// `output*` tensors.
    output: u64,
    /// `token_embd` again, when it doubles as the output (tied embeddings): loaded a
    /// second time where the output layer goes.
    tied_output: u64,
}

impl LayerBytes {
    fn of(header: &GgufHeader, n_layer: usize, weights_total: u64) -> (Self, Option<String>) {
        let mut out = Self {
            layers: vec![0; n_layer],
            ..Self::default()
        };
        let mut has_output_weight = false;
        let mut token_embd = 0;
        let mut seen = 0u64;
        for t in &header.tensors {
            let Some(bytes) = t.n_bytes else { continue };
            seen = seen.saturating_add(bytes);
            let block = t
                .name
                .strip_prefix("blk.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&i| i < n_layer);
            if let Some(i) = block {
                out.layers[i] = out.layers[i].saturating_add(bytes);
            } else if t.name.starts_with("output") {
                has_output_weight |= t.name == "output.weight";
                out.output = out.output.saturating_add(bytes);
            } else {
                if t.name == "token_embd.weight" {
                    token_embd = bytes;
                }
                out.input = out.input.saturating_add(bytes);
            }
        }
        if !has_output_weight {
            out.tied_output = token_embd;
        }
        let mut note = None;
        let missing = weights_total.saturating_sub(seen);
        if missing > 0 && n_layer > 0 {
            // A split model's other parts (their tensors are not in the first header).
            let each = missing / n_layer as u64;
            let rest = missing % n_layer as u64;
            for (i, l) in out.layers.iter_mut().enumerate() {
                *l = l.saturating_add(each + u64::from((i as u64) < rest));
            }
            note = Some(
                "tensors of the other parts of a split model spread evenly over its layers".into(),
            );
        }
        (out, note)
    }
}

/// The devices llama.cpp offloads to on this machine, as the worker picks them: discrete
/// GPUs, else integrated ones. Remote (RPC) devices are left to the load.
pub fn local_gpus(devices: &[DeviceInfo]) -> Vec<&DeviceInfo> {
    let of =
        |kind: &str| -> Vec<&DeviceInfo> { devices.iter().filter(|d| d.kind == kind).collect() };
    let gpus = of("gpu");
    if gpus.is_empty() {
        of("igpu")
    } else {
        gpus
    }
}

/// Which device holds each offloaded slot. Slots are the llama.cpp layer indices from
/// `n_layer + 1 − n_gpu` to `n_layer` (the output layer), lowest first.
type Assignment = Vec<Option<usize>>;

/// What one device holds for an assignment.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    layers: u32,
    output: bool,
    weights: u64,
    kv: u64,
    compute: u64,
}

impl Load {
    fn vram(&self) -> u64 {
        self.weights
            .saturating_add(self.kv)
            .saturating_add(self.compute)
    }
}

struct Model<'a> {
    bytes: &'a LayerBytes,
    n_layer: usize,
    kv_total: u64,
    compute_reserved: u64,
}

impl Model<'_> {
    fn kv_per_layer(&self, layers: u64) -> u64 {
        match self.n_layer {
            0 => 0,
            n => (u128::from(self.kv_total) * u128::from(layers) / n as u128) as u64,
        }
    }

    /// Weights of llama.cpp layer index `il` (`n_layer` is the output layer).
    fn slot_weights(&self, il: usize) -> u64 {
        if il < self.n_layer {
            self.bytes.layers[il]
        } else {
            self.bytes.output.saturating_add(self.bytes.tied_output)
        }
    }

    /// Per-device loads for `slots[il] = Some(device)`.
    fn loads(&self, slots: &Assignment, n_devices: usize) -> Vec<Load> {
        let mut loads = vec![Load::default(); n_devices];
        for (il, dev) in slots.iter().enumerate() {
            let Some(d) = *dev else { continue };
            let l = &mut loads[d];
            l.weights = l.weights.saturating_add(self.slot_weights(il));
            if il < self.n_layer {
                l.layers += 1;
            } else {
                l.output = true;
            }
        }
        for l in &mut loads {
            l.kv = self.kv_per_layer(u64::from(l.layers));
            if l.layers > 0 || l.output {
                l.compute = self.compute_reserved;
            }
        }
        loads
    }
}

/// What auto may use on a device: its free memory less the margin, or with the cap, the
/// cap (the worker turns the cap into the margin `free − cap`).
fn budget(d: &DeviceInfo, cap: Option<u64>) -> u64 {
    let margin = match cap {
        Some(c) => d.free_bytes.saturating_sub(c),
        None => FIT_MARGIN_BYTES,
    };
    d.free_bytes.saturating_sub(margin)
}

/// llama.cpp with `n_gpu_layers = n`: the top `n` slots, split over the devices in
/// proportion to their free memory (its default split).
fn assign_count(m: &Model, n: usize, gpus: &[&DeviceInfo]) -> Assignment {
    let slots = m.n_layer + 1;
    let mut out = vec![None; slots];
    let act = n.min(slots);
    if gpus.is_empty() || act == 0 {
        return out;
    }
    let frees: Vec<f64> = gpus.iter().map(|d| d.free_bytes as f64).collect();
    let sum: f64 = frees.iter().sum();
    let mut splits = Vec::with_capacity(gpus.len());
    let mut acc = 0.0;
    for f in &frees {
        acc += if sum > 0.0 {
            *f / sum
        } else {
            1.0 / gpus.len() as f64
        };
        splits.push(acc);
    }
    let start = slots - act;
    for (k, slot) in out.iter_mut().enumerate().skip(start) {
        let x = (k - start) as f64 / act as f64;
        // upper_bound: the first split point above x.
        let dev = splits.iter().position(|&s| s > x).unwrap_or(gpus.len() - 1);
        *slot = Some(dev);
    }
    out
}

/// Auto: from the output layer down, each slot to the last device that still has room,
/// moving to the device before it when it is full; stops at the first slot nowhere fits.
fn assign_auto(m: &Model, gpus: &[&DeviceInfo], cap: Option<u64>) -> Assignment {
    let slots = m.n_layer + 1;
    let mut out: Assignment = vec![None; slots];
    if gpus.is_empty() {
        return out;
    }
    let mut dev = gpus.len() - 1;
    let mut il = slots;
    while il > 0 {
        let slot = il - 1;
        out[slot] = Some(dev);
        let load = m.loads(&out, gpus.len())[dev];
        if load.vram() <= budget(gpus[dev], cap) {
            il -= 1;
            continue;
        }
        out[slot] = None;
        if dev == 0 {
            break;
        }
        dev -= 1;
    }
    out
}

fn device_verdict(vram: u64, d: &DeviceInfo, cap: Option<u64>) -> super::Fit {
    if vram <= budget(d, cap) {
        super::Fit::Fits
    } else if vram <= d.free_bytes {
        super::Fit::Tight
    } else {
        super::Fit::WontFit
    }
}

/// `1.2 GiB`, `180 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        _ if v >= 100.0 => format!("{v:.0} {}", UNITS[u]),
        _ => format!("{v:.1} {}", UNITS[u]),
    }
}

/// Where the layers go for `req`, and RAM apart from VRAM. `fit` is [`super::estimate_fit`]
/// of the same header and context (its weights, KV cache and compute figures are split
/// here); `available_ram` is normally [`super::mem_available_bytes`].
pub fn estimate_placement(
    header: &GgufHeader,
    fit: &FitEstimate,
    req: &PlacementRequest,
    available_ram: Option<u64>,
) -> PlacementEstimate {
    let mut notes = Vec::new();
    let n_layer = usize::try_from(header.block_count().unwrap_or(0)).unwrap_or(0);
    let (bytes, split_note) = LayerBytes::of(header, n_layer, fit.weights_bytes);
    notes.extend(split_note);
    let model = Model {
        bytes: &bytes,
        n_layer,
        kv_total: fit.kv_cache_bytes,
        compute_reserved: fit.compute_reserved_bytes,
    };
    let gpus = local_gpus(&req.devices);
    let slots = match req.gpu_layers {
        GpuLayers::Count(n) => {
            if n as usize > n_layer + 1 && !gpus.is_empty() {
                notes.push(format!(
                    "{n} GPU layers asked; the model has {} (llama.cpp counts the output layer as one)",
                    n_layer + 1
                ));
            }
            assign_count(&model, n as usize, &gpus)
        }
        GpuLayers::Auto => assign_auto(&model, &gpus, req.free_cap_bytes),
    };
    let loads = model.loads(&slots, gpus.len());
    let devices: Vec<DevicePlacement> = gpus
        .iter()
        .zip(&loads)
        .map(|(d, l)| DevicePlacement {
            name: d.name.clone(),
            description: d.description.clone(),
            free_bytes: d.free_bytes,
            total_bytes: d.total_bytes,
            layers: l.layers,
            output: l.output,
            weights_bytes: l.weights,
            kv_cache_bytes: l.kv,
            compute_bytes: l.compute,
            vram_bytes: l.vram(),
            fit: device_verdict(l.vram(), d, req.free_cap_bytes),
        })
        .collect();
    let layers_on_gpu: u32 = loads.iter().map(|l| l.layers).sum();
    let output_on_gpu = loads.iter().any(|l| l.output);
    let gpu_layers = layers_on_gpu + u32::from(output_on_gpu);

    // RAM: the input embeddings always, the layers left on the CPU, the output layer if
    // it stayed (tied embeddings then share the input's pages).
    let cpu_layer_weights: u64 = slots
        .iter()
        .take(n_layer)
        .enumerate()
        .filter(|(_, d)| d.is_none())
        .map(|(i, _)| bytes.layers[i])
        .fold(0, u64::saturating_add);
    let ram_weights = bytes
        .input
        .saturating_add(cpu_layer_weights)
        .saturating_add(if output_on_gpu { 0 } else { bytes.output });
    let ram_kv = fit
        .kv_cache_bytes
        .saturating_sub(model.kv_per_layer(u64::from(layers_on_gpu)));
    let ram_bytes = ram_weights
        .saturating_add(ram_kv)
        .saturating_add(fit.compute_bytes)
        .saturating_add(fit.overhead_bytes);
    let ram_fit = ram_verdict(ram_bytes, available_ram);
    let vram_bytes: u64 = loads.iter().map(Load::vram).fold(0, u64::saturating_add);
    let vram_fit = devices
        .iter()
        .filter(|d| d.layers > 0 || d.output)
        .map(|d| d.fit)
        .max_by_key(|f| match f {
            super::Fit::Fits => 0,
            super::Fit::Tight => 1,
            super::Fit::WontFit => 2,
        });
    if n_layer == 0 {
        notes.push("no layer count in the metadata: nothing estimated on a GPU".into());
    }

    let mut est = PlacementEstimate {
        layer_count: n_layer as u32,
        gpu_layers_setting: req.gpu_layers,
        gpu_layers,
        layers_on_gpu,
        output_on_gpu,
        has_gpu: !gpus.is_empty(),
        devices,
        ram_weights_bytes: ram_weights,
        ram_kv_cache_bytes: ram_kv,
        ram_compute_bytes: fit.compute_bytes,
        ram_overhead_bytes: fit.overhead_bytes,
        ram_bytes,
        ram_available_bytes: available_ram,
        ram_fit,
        vram_bytes,
        vram_fit,
        rpc_servers: req.rpc_servers.clone(),
        summary: String::new(),
        notes,
    };
    est.summary = summary(&est);
    est
}

/// The one line `models info` prints (the Models screen builds the same from the fields).
fn summary(p: &PlacementEstimate) -> String {
    let n = p.layer_count;
    let mut s = format!("RAM {}", human_bytes(p.ram_bytes));
    if !p.has_gpu {
        s.push_str(&format!(" · no GPU: all {n} layers on the CPU"));
    } else if p.gpu_layers == 0 {
        let why = match p.gpu_layers_setting {
            GpuLayers::Count(0) => "GPU layers set to 0".to_owned(),
            _ => format!(
                "too little free VRAM ({} free on {})",
                human_bytes(p.devices.iter().map(|d| d.free_bytes).max().unwrap_or(0)),
                p.devices
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        s.push_str(&format!(" · {why}: all {n} layers on the CPU"));
    } else {
        let per_device = p
            .devices
            .iter()
            .filter(|d| d.layers > 0 || d.output)
            .map(|d| {
                format!(
                    "{}: {}/{n} layers{}",
                    d.name,
                    d.layers,
                    if d.output { " + output" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!(
            " · VRAM {} ({per_device})",
            human_bytes(p.vram_bytes)
        ));
    }
    if !p.rpc_servers.is_empty() {
        s.push_str(&format!(
            " · remote devices {}: their share is decided at load",
            p.rpc_servers.join(", ")
        ));
    }
    s
}

impl super::ModelEntry {
    /// [`super::estimate_fit`] and [`estimate_placement`] for this model against the memory
    /// available right now, from one read of its header.
    pub fn estimate_fit_placed(
        &self,
        req: &super::FitRequest,
        placement: &PlacementRequest,
    ) -> Result<(FitEstimate, PlacementEstimate), super::ModelsError> {
        let header =
            crate::gguf::read_header(&self.path).map_err(|source| super::ModelsError::NotGguf {
                path: self.path.clone(),
                cause: source,
            })?;
        let weights = self.meta.as_ref().map(|m| m.weights_bytes);
        let available = super::mem_available_bytes();
        let fit = super::estimate_fit(&header, weights, req, available);
        let placed = estimate_placement(&header, &fit, placement, available);
        Ok((fit, placed))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::gguf::{GgufValue, TensorInfo};
    use crate::models::{estimate_fit, Fit, FitRequest};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn tensor(name: &str, n_bytes: u64) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: vec![n_bytes],
            type_id: 0,
            type_name: "F32",
            offset: 0,
            n_bytes: Some(n_bytes),
        }
    }

    /// A llama-shaped header: `n_layer` blocks of `layer` bytes, embeddings of `embd`
    /// bytes, tied (no output.weight) or not.
    fn header(n_layer: u64, layer: u64, embd: u64, tied: bool) -> GgufHeader {
        let mut kv = BTreeMap::new();
        let mut put = |k: &str, v: GgufValue| {
            kv.insert(k.to_owned(), v);
        };
        put("general.architecture", GgufValue::String("llama".into()));
        put("llama.block_count", GgufValue::U32(n_layer as u32));
        put("llama.context_length", GgufValue::U32(8192));
        put("llama.embedding_length", GgufValue::U32(4096));
        put("llama.attention.head_count", GgufValue::U32(32));
        put("llama.attention.head_count_kv", GgufValue::U32(8));
        put("llama.feed_forward_length", GgufValue::U32(14336));
        put("llama.vocab_size", GgufValue::U32(128_256));
        let mut tensors = vec![tensor("token_embd.weight", embd)];
        for i in 0..n_layer {
            tensors.push(tensor(&format!("blk.{i}.attn_q.weight"), layer / 2));
            tensors.push(tensor(&format!("blk.{i}.ffn_up.weight"), layer - layer / 2));
        }
        tensors.push(tensor("output_norm.weight", 16 * 1024));
        if !tied {
            tensors.push(tensor("output.weight", embd));
        }
        GgufHeader {
            path: "fake.gguf".into(),
            version: 3,
            tensor_count: tensors.len() as u64,
            kv,
            tensors,
            alignment: 32,
            data_offset: 0,
            file_size: 0,
        }
    }

    fn gpu(name: &str, free: u64) -> DeviceInfo {
        DeviceInfo {
            name: name.into(),
            description: "Fake GPU".into(),
            kind: "gpu".into(),
            backend: "CUDA".into(),
            endpoint: None,
            total_bytes: 24 * GIB,
            free_bytes: free,
        }
    }

    fn cpu() -> DeviceInfo {
        DeviceInfo {
            name: "CPU".into(),
            description: "Fake CPU".into(),
            kind: "cpu".into(),
            backend: "CPU".into(),
            endpoint: None,
            total_bytes: 64 * GIB,
            free_bytes: 32 * GIB,
        }
    }

    /// An 8B-like model: 32 layers of 200 MiB, 500 MiB embeddings, 4096 tokens.
    fn eight_b() -> (GgufHeader, FitEstimate) {
        let h = header(32, 200 * MIB, 500 * MIB, false);
        let fit = estimate_fit(
            &h,
            None,
            &FitRequest {
                n_ctx: 4096,
                ..FitRequest::default()
            },
            Some(64 * GIB),
        );
        (h, fit)
    }

    fn place(
        h: &GgufHeader,
        fit: &FitEstimate,
        devices: Vec<DeviceInfo>,
        layers: GpuLayers,
    ) -> PlacementEstimate {
        let req = PlacementRequest {
            devices,
            gpu_layers: layers,
            ..PlacementRequest::default()
        };
        estimate_placement(h, fit, &req, Some(64 * GIB))
    }

    #[test]
    fn no_gpu_keeps_everything_in_ram() {
        let (h, fit) = eight_b();
        for layers in [GpuLayers::Auto, GpuLayers::Count(20), GpuLayers::Count(0)] {
            let p = place(&h, &fit, vec![cpu()], layers);
            assert!(!p.has_gpu);
            assert_eq!(
                (p.gpu_layers, p.layers_on_gpu, p.output_on_gpu),
                (0, 0, false)
            );
            assert_eq!(p.vram_bytes, 0);
            assert_eq!(p.vram_fit, None);
            assert!(p.devices.is_empty());
            assert_eq!(p.ram_bytes, fit.total_bytes, "all-CPU RAM is the old total");
            assert_eq!(p.ram_fit, Fit::Fits);
            assert_eq!(
                p.summary,
                format!(
                    "RAM {} · no GPU: all 32 layers on the CPU",
                    human_bytes(fit.total_bytes)
                )
            );
        }
        // An empty list (no devices at all) is the same.
        let p = place(&h, &fit, vec![], GpuLayers::Auto);
        assert!(
            p.summary.ends_with("no GPU: all 32 layers on the CPU"),
            "{}",
            p.summary
        );
    }

    #[test]
    fn four_gib_free_gives_a_partial_offload() {
        let (h, fit) = eight_b();
        let p = place(
            &h,
            &fit,
            vec![cpu(), gpu("CUDA0", 4 * GIB)],
            GpuLayers::Auto,
        );
        // Budget 3 GiB: output (500 MiB + norm) + compute + 16 KiB per… layers of 200 MiB
        // plus their KV cache.
        let kv_layer = fit.kv_cache_bytes / 32;
        let fixed = 500 * MIB + 16 * 1024 + fit.compute_reserved_bytes;
        let expect = ((3 * GIB - fixed) / (200 * MIB + kv_layer)) as u32;
        assert!(expect > 0 && expect < 32, "test model must split: {expect}");
        assert_eq!(p.layers_on_gpu, expect);
        assert!(p.output_on_gpu, "llama.cpp offloads the output layer first");
        assert_eq!(p.gpu_layers, expect + 1);
        let d = &p.devices[0];
        assert_eq!(d.name, "CUDA0");
        assert!(d.vram_bytes <= 3 * GIB && d.vram_bytes + 200 * MIB + kv_layer > 3 * GIB);
        assert_eq!(p.vram_bytes, d.vram_bytes);
        assert_eq!(p.vram_fit, Some(Fit::Fits));
        assert_eq!(
            d.weights_bytes,
            u64::from(expect) * 200 * MIB + 500 * MIB + 16 * 1024
        );
        assert_eq!(d.kv_cache_bytes, kv_layer * u64::from(expect));
        // RAM: input embeddings + the CPU's layers + their KV + compute + overhead.
        let cpu_layers = 32 - u64::from(expect);
        assert_eq!(p.ram_weights_bytes, 500 * MIB + cpu_layers * 200 * MIB);
        assert_eq!(
            p.ram_kv_cache_bytes,
            fit.kv_cache_bytes - kv_layer * u64::from(expect)
        );
        assert_eq!(
            p.ram_bytes,
            p.ram_weights_bytes + p.ram_kv_cache_bytes + fit.compute_bytes + fit.overhead_bytes
        );
        // Nothing lost or invented: weights on both sides are the file's weights.
        assert_eq!(p.ram_weights_bytes + d.weights_bytes, fit.weights_bytes);
        assert_eq!(
            p.summary,
            format!(
                "RAM {} · VRAM {} (CUDA0: {expect}/32 layers + output)",
                human_bytes(p.ram_bytes),
                human_bytes(p.vram_bytes)
            )
        );
    }

    #[test]
    fn plenty_of_vram_takes_every_layer() {
        let (h, fit) = eight_b();
        let p = place(&h, &fit, vec![gpu("CUDA0", 40 * GIB)], GpuLayers::Auto);
        assert_eq!(
            (p.layers_on_gpu, p.gpu_layers, p.output_on_gpu),
            (32, 33, true)
        );
        assert_eq!(
            p.ram_weights_bytes,
            500 * MIB,
            "only the input embeddings stay"
        );
        assert_eq!(p.ram_kv_cache_bytes, 0);
        assert!(
            p.summary.contains("(CUDA0: 32/32 layers + output)"),
            "{}",
            p.summary
        );
    }

    #[test]
    fn too_little_vram_for_anything_stays_on_the_cpu() {
        let (h, fit) = eight_b();
        let p = place(&h, &fit, vec![gpu("CUDA0", GIB / 2)], GpuLayers::Auto);
        assert_eq!(p.gpu_layers, 0);
        assert_eq!(p.ram_bytes, fit.total_bytes);
        assert_eq!(p.vram_fit, None);
        assert!(
            p.summary
                .contains("too little free VRAM (512 MiB free on CUDA0): all 32 layers on the CPU"),
            "{}",
            p.summary
        );
    }

    #[test]
    fn a_set_count_is_obeyed_and_clamped() {
        let (h, fit) = eight_b();
        let p = place(&h, &fit, vec![gpu("CUDA0", 40 * GIB)], GpuLayers::Count(10));
        // llama.cpp: N counts the output layer, which goes first.
        assert_eq!(
            (p.gpu_layers, p.layers_on_gpu, p.output_on_gpu),
            (10, 9, true)
        );
        assert!(
            p.summary.contains("CUDA0: 9/32 layers + output"),
            "{}",
            p.summary
        );

        let p = place(
            &h,
            &fit,
            vec![gpu("CUDA0", 40 * GIB)],
            GpuLayers::Count(1000),
        );
        assert_eq!(
            (p.gpu_layers, p.layers_on_gpu, p.output_on_gpu),
            (33, 32, true)
        );
        assert!(
            p.notes.iter().any(|n| n.contains("1000 GPU layers asked")),
            "{:?}",
            p.notes
        );

        let p = place(&h, &fit, vec![gpu("CUDA0", 40 * GIB)], GpuLayers::Count(0));
        assert_eq!(p.gpu_layers, 0);
        assert_eq!(p.ram_bytes, fit.total_bytes);
        assert!(
            p.summary
                .ends_with("GPU layers set to 0: all 32 layers on the CPU"),
            "{}",
            p.summary
        );

        // More than fits: obeyed, and the verdict says so.
        let p = place(&h, &fit, vec![gpu("CUDA0", 4 * GIB)], GpuLayers::Count(33));
        assert_eq!(p.gpu_layers, 33);
        assert_eq!(p.vram_fit, Some(Fit::WontFit));
        assert_eq!(p.devices[0].fit, Fit::WontFit);
    }

    #[test]
    fn tied_embeddings_are_copied_to_the_gpu_with_the_output() {
        let h = header(30, 3 * MIB, 28 * MIB, true);
        let fit = estimate_fit(
            &h,
            None,
            &FitRequest {
                n_ctx: 2048,
                ..FitRequest::default()
            },
            None,
        );
        let p = place(&h, &fit, vec![gpu("Vulkan0", 8 * GIB)], GpuLayers::Auto);
        assert_eq!(p.gpu_layers, 31);
        let d = &p.devices[0];
        assert_eq!(d.weights_bytes, 30 * 3 * MIB + 16 * 1024 + 28 * MIB);
        assert_eq!(p.ram_weights_bytes, 28 * MIB, "the input copy stays in RAM");
        assert_eq!(p.ram_fit, Fit::Fits);
    }

    #[test]
    fn two_gpus_share_the_layers() {
        let (h, fit) = eight_b();
        // Auto: the last GPU takes the output layer and the top layers, the first the rest.
        let p = place(
            &h,
            &fit,
            vec![gpu("CUDA0", 4 * GIB), gpu("CUDA1", 4 * GIB)],
            GpuLayers::Auto,
        );
        let (a, b) = (&p.devices[0], &p.devices[1]);
        assert!(b.output && !a.output);
        assert!(
            a.layers > b.layers,
            "the first GPU has no output layer to hold: {a:?} {b:?}"
        );
        assert_eq!(p.layers_on_gpu, a.layers + b.layers);
        assert!(a.vram_bytes <= 3 * GIB && b.vram_bytes <= 3 * GIB);
        assert!(
            p.summary.contains(&format!(
                "CUDA0: {}/32 layers, CUDA1: {}/32 layers + output",
                a.layers, b.layers
            )),
            "{}",
            p.summary
        );

        // A count is split in proportion to free memory, as llama.cpp's default split.
        let p = place(
            &h,
            &fit,
            vec![gpu("CUDA0", 30 * GIB), gpu("CUDA1", 10 * GIB)],
            GpuLayers::Count(33),
        );
        assert_eq!(p.devices[0].layers + p.devices[1].layers, 32);
        assert!(
            p.devices[0].layers >= 24 && p.devices[0].layers <= 25,
            "{:?}",
            p.devices[0]
        );
        assert!(p.devices[1].output);
    }

    #[test]
    fn integrated_gpus_count_only_without_a_discrete_one() {
        let (h, fit) = eight_b();
        let mut igpu = gpu("Vulkan1", 40 * GIB);
        igpu.kind = "igpu".into();
        let p = place(&h, &fit, vec![igpu.clone()], GpuLayers::Auto);
        assert_eq!(p.devices.len(), 1);
        assert_eq!(p.gpu_layers, 33);
        let p = place(
            &h,
            &fit,
            vec![gpu("Vulkan0", 40 * GIB), igpu],
            GpuLayers::Auto,
        );
        assert_eq!(
            p.devices
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["Vulkan0"]
        );
    }

    #[test]
    fn the_free_memory_cap_is_the_whole_budget() {
        let (h, fit) = eight_b();
        let req = PlacementRequest {
            devices: vec![gpu("CUDA0", 40 * GIB)],
            free_cap_bytes: Some(4 * GIB),
            ..PlacementRequest::default()
        };
        let p = estimate_placement(&h, &fit, &req, Some(64 * GIB));
        assert!(p.layers_on_gpu > 0 && p.layers_on_gpu < 32, "{}", p.summary);
        assert!(
            p.vram_bytes <= 4 * GIB && p.vram_bytes > 3 * GIB,
            "{}",
            p.vram_bytes
        );
    }

    #[test]
    fn remote_devices_are_named_and_left_to_the_load() {
        let (h, fit) = eight_b();
        let req = PlacementRequest {
            devices: vec![cpu()],
            rpc_servers: vec!["10.0.0.2:50052".into()],
            ..PlacementRequest::default()
        };
        let p = estimate_placement(&h, &fit, &req, Some(64 * GIB));
        assert!(
            p.summary.ends_with(
                "no GPU: all 32 layers on the CPU · remote devices 10.0.0.2:50052: their share is decided at load"
            ),
            "{}",
            p.summary
        );
    }

    #[test]
    fn ram_verdict_is_apart_from_vram() {
        let (h, fit) = eight_b();
        // Little RAM, plenty of VRAM: everything offloaded fits though the CPU alone won't.
        let req = PlacementRequest {
            devices: vec![gpu("CUDA0", 40 * GIB)],
            ..PlacementRequest::default()
        };
        let small = 2 * GIB;
        assert_eq!(
            estimate_placement(&h, &fit, &PlacementRequest::default(), Some(small)).ram_fit,
            Fit::WontFit
        );
        let p = estimate_placement(&h, &fit, &req, Some(small));
        assert_eq!(p.ram_fit, Fit::Fits);
        assert_eq!(p.vram_fit, Some(Fit::Fits));
    }

    #[test]
    fn split_models_spread_the_unseen_bytes_over_the_layers() {
        let h = header(10, 100 * MIB, 50 * MIB, false);
        let all = h.tensor_data_size() + 10 * 40 * MIB;
        let fit = estimate_fit(
            &h,
            Some(all),
            &FitRequest {
                n_ctx: 1024,
                ..FitRequest::default()
            },
            None,
        );
        let p = place(&h, &fit, vec![gpu("CUDA0", 40 * GIB)], GpuLayers::Count(11));
        assert_eq!(p.devices[0].weights_bytes + p.ram_weights_bytes, all);
        assert_eq!(p.ram_weights_bytes, 50 * MIB);
        assert!(p.notes.iter().any(|n| n.contains("split model")));
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(180 * MIB), "180 MiB");
        assert_eq!(human_bytes(1288 * MIB), "1.3 GiB");
        assert_eq!(human_bytes(GIB / 2), "512 MiB");
    }
}
