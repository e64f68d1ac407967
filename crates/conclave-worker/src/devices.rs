//! Devices: listing what llama.cpp sees, adding RPC servers' devices, serving this
//! machine's devices over RPC, choosing GPU layers with llama.cpp's own fit, and learning
//! where the layers went.
//!
//! llama-cpp-2 wraps none of the RPC functions (`ggml-rpc.h` is not in its bindings), so
//! they are declared here; the crate links `ggml-rpc` when llama.cpp is built with
//! `GGML_RPC=ON` (set in the workspace's `.cargo/config.toml`).
//!
//! Network use of the worker is all here: [`add_rpc_servers`] opens TCP connections to the
//! `host:port` the user gave (a probe, then llama.cpp's own client connection), and
//! [`serve_rpc`] listens on the address the user gave. Nothing else in the worker opens a
//! socket.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::net::{TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _};
use conclave_protocol::{
    DeviceInfo, DeviceLayers, DeviceList, GpuLayers, MemoryUse, FIT_FREE_MIB_ENV,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_sys_2 as sys;

// Declared as in llama.cpp's ggml/include/ggml-rpc.h (RPC protocol 7.0.0, the version
// vendored by llama-cpp-sys-2 0.1.161).
extern "C" {
    fn ggml_backend_rpc_add_server(endpoint: *const c_char) -> sys::ggml_backend_reg_t;
    fn ggml_backend_rpc_start_server(
        endpoint: *const c_char,
        cache_dir: *const c_char,
        n_threads: usize,
        n_devices: usize,
        devices: *mut sys::ggml_backend_dev_t,
    );
}

/// llama-server's default `--fit-target`: memory the fit leaves free on each device.
const FIT_MARGIN_BYTES: usize = 1024 * 1024 * 1024;
/// How long a probe of an RPC server may take before the load gives up on it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: llama.cpp returns NUL-terminated strings that live as long as the device.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Connects to one RPC server with a timeout: llama.cpp's client aborts the whole process
/// on a refused connection, so an unreachable server is caught here first with a message.
fn probe(endpoint: &str) -> anyhow::Result<()> {
    let addrs: Vec<_> = endpoint
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the RPC server {endpoint}"))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => bail!(
            "cannot reach the RPC server {endpoint}: {e} (is `conclave rpc-server` running there?)"
        ),
        None => bail!("the RPC server {endpoint} resolves to no address"),
    }
}

/// Registers the devices of each RPC server with llama.cpp, which then offers them to
/// every model load like local GPUs.
pub fn add_rpc_servers(endpoints: &[String]) -> anyhow::Result<()> {
    for endpoint in endpoints {
        conclave_protocol::parse_endpoint(endpoint).map_err(anyhow::Error::msg)?;
        probe(endpoint)?;
        let c = CString::new(endpoint.as_str()).context("endpoint")?;
        // SAFETY: a valid C string; llama.cpp copies it. Returns null for a server with no
        // devices; the registry it returns lives for the process.
        let reg = unsafe { ggml_backend_rpc_add_server(c.as_ptr()) };
        if reg.is_null() {
            bail!("the RPC server {endpoint} offers no devices");
        }
        // SAFETY: a registry llama.cpp just made; registering it once per endpoint (the
        // list is deduplicated) is what llama.cpp's own `--rpc` does.
        unsafe { sys::ggml_backend_register(reg) };
    }
    Ok(())
}

fn device_info(dev: sys::ggml_backend_dev_t) -> DeviceInfo {
    // SAFETY: `dev` comes from ggml_backend_dev_get and lives for the process.
    let (name, description, kind, backend, free, total) = unsafe {
        let mut free = 0usize;
        let mut total = 0usize;
        sys::ggml_backend_dev_memory(dev, &mut free, &mut total);
        let reg = sys::ggml_backend_dev_backend_reg(dev);
        (
            cstr(sys::ggml_backend_dev_name(dev)),
            cstr(sys::ggml_backend_dev_description(dev)),
            sys::ggml_backend_dev_type(dev),
            if reg.is_null() {
                String::new()
            } else {
                cstr(sys::ggml_backend_reg_name(reg))
            },
            free,
            total,
        )
    };
    let rpc = backend == "RPC";
    let kind = match kind {
        _ if rpc => "rpc",
        sys::GGML_BACKEND_DEVICE_TYPE_CPU => "cpu",
        sys::GGML_BACKEND_DEVICE_TYPE_GPU => "gpu",
        sys::GGML_BACKEND_DEVICE_TYPE_IGPU => "igpu",
        sys::GGML_BACKEND_DEVICE_TYPE_ACCEL => "accel",
        _ => "other",
    };
    DeviceInfo {
        // An RPC device's description is its server's endpoint.
        endpoint: rpc.then(|| description.clone()),
        backend: if rpc {
            format!("RPC[{description}]")
        } else {
            backend
        },
        name,
        description,
        kind: kind.to_owned(),
        total_bytes: total as u64,
        free_bytes: free as u64,
    }
}

/// Every device llama.cpp sees now, in its registry order.
pub fn list() -> DeviceList {
    // SAFETY: plain registry queries.
    let n_dev = unsafe { sys::ggml_backend_dev_count() };
    let devices = (0..n_dev)
        .map(|i| device_info(unsafe { sys::ggml_backend_dev_get(i) }))
        .collect();
    let n_reg = unsafe { sys::ggml_backend_reg_count() };
    let backends = (0..n_reg)
        .map(|i| cstr(unsafe { sys::ggml_backend_reg_name(sys::ggml_backend_reg_get(i)) }))
        .collect();
    DeviceList { backends, devices }
}

/// The devices a model is offloaded to, as llama.cpp's default selection orders them:
/// RPC servers first (fewest network transfers), then discrete GPUs, then integrated GPUs
/// when there is no discrete one. Indices into the registry.
pub fn offload_devices(list: &DeviceList) -> Vec<usize> {
    let of = |kind: &str| -> Vec<usize> {
        list.devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.kind == kind)
            .map(|(i, _)| i)
            .collect()
    };
    let mut out = of("rpc");
    let gpus = of("gpu");
    if gpus.is_empty() {
        out.extend(of("igpu"));
    } else {
        out.extend(gpus);
    }
    out
}

/// Serves this machine's local devices (not RPC ones) over llama.cpp's RPC protocol.
/// Returns only if the server could not start (the address is taken, for one).
pub fn serve_rpc(endpoint: &str, threads: u32) -> anyhow::Result<()> {
    let list = list();
    let mut devs: Vec<sys::ggml_backend_dev_t> = list
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.kind != "rpc" && d.kind != "accel")
        // SAFETY: an index below ggml_backend_dev_count.
        .map(|(i, _)| unsafe { sys::ggml_backend_dev_get(i) })
        .collect();
    // A GPU machine lends its GPUs; a CPU-only one lends its CPU.
    let has_gpu = list
        .devices
        .iter()
        .any(|d| d.kind == "gpu" || d.kind == "igpu");
    if has_gpu {
        devs.retain(|&d| {
            // SAFETY: a device from the registry.
            let kind = unsafe { sys::ggml_backend_dev_type(d) };
            kind != sys::GGML_BACKEND_DEVICE_TYPE_CPU
        });
    }
    if devs.is_empty() {
        bail!("no local device to serve");
    }
    let c = CString::new(endpoint).context("endpoint")?;
    // SAFETY: valid C string and device array; the call blocks while it serves.
    unsafe {
        ggml_backend_rpc_start_server(
            c.as_ptr(),
            std::ptr::null(),
            threads.max(1) as usize,
            devs.len(),
            devs.as_mut_ptr(),
        )
    };
    bail!("the RPC server on {endpoint} could not start or stopped (is the port taken?)")
}

/// How the model's layers will be placed: the params to load with, and why.
pub struct Placement {
    pub params: LlamaModelParams,
    pub source: String,
}

fn base_params(offload: &[usize]) -> anyhow::Result<LlamaModelParams> {
    let params = LlamaModelParams::default().with_use_mmap(true);
    if offload.is_empty() {
        return Ok(params);
    }
    params
        .with_devices(offload)
        .map_err(|e| anyhow::anyhow!("choosing devices: {e}"))
}

/// Chooses GPU layers. `Auto` runs llama.cpp's fit against measured free memory (minus
/// a 1 GiB margin per device, llama-server's default), unless there is nothing to offload
/// to. [`FIT_FREE_MIB_ENV`] caps the free memory the fit sees on each offload device.
pub fn place(
    model_path: &std::path::Path,
    n_ctx: u32,
    gpu_layers: GpuLayers,
    list: &DeviceList,
) -> anyhow::Result<Placement> {
    let offload = offload_devices(list);
    let params = base_params(&offload)?;
    match gpu_layers {
        GpuLayers::Count(n) => {
            return Ok(Placement {
                params: params.with_n_gpu_layers(n),
                source: "set".into(),
            })
        }
        GpuLayers::Auto if offload.is_empty() => {
            return Ok(Placement {
                params: params.with_n_gpu_layers(0),
                source: "cpu only".into(),
            });
        }
        GpuLayers::Auto => {}
    }
    let cap = std::env::var(FIT_FREE_MIB_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|mib| mib.saturating_mul(1024 * 1024));
    // SAFETY: a plain query.
    let max_devices = unsafe { sys::llama_max_devices() }.max(offload.len());
    let mut margins = vec![FIT_MARGIN_BYTES; max_devices];
    if let Some(cap) = cap {
        for (slot, &i) in offload.iter().enumerate() {
            let free = list.devices[i].free_bytes;
            margins[slot] = usize::try_from(free.saturating_sub(cap)).unwrap_or(usize::MAX);
        }
    }
    let path = CString::new(model_path.as_os_str().as_encoded_bytes())
        .context("model path contains a NUL byte")?;
    let mut cparams = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(n_ctx.max(1)))
        .with_n_batch(512)
        .with_n_ubatch(512);
    let mut params = Box::pin(params);
    let outcome = params.as_mut().fit_params(
        &path,
        &mut cparams,
        &mut margins,
        n_ctx.max(1),
        sys::GGML_LOG_LEVEL_ERROR,
    );
    match outcome {
        Ok(_) => Ok(Placement {
            // Moving the params out is sound: what the fit wrote lives in their heap
            // buffers, which do not move with them.
            params: *Pin::into_inner(params),
            source: match cap {
                Some(c) => format!("fit ({FIT_FREE_MIB_ENV}: {} MiB)", c / 1024 / 1024),
                None => "fit".to_owned(),
            },
        }),
        Err(e) => {
            // No placement is projected to fit even with few layers offloaded: load on the
            // CPU rather than fail.
            tracing::warn!("fit: {e}");
            Ok(Placement {
                params: base_params(&offload)?.with_n_gpu_layers(0),
                source: format!("fit found no placement ({e}): CPU only"),
            })
        }
    }
}

/// Where llama.cpp put each layer, read from its debug log while [`LayerLog::start`] is
/// on (`load_tensors: layer N assigned to device X`): the one authoritative account, which
/// llama.cpp offers no function for.
pub struct LayerLog;

static CAPTURING: AtomicBool = AtomicBool::new(false);
static ASSIGNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// (buffer name, kind: model/KV/RS/compute, bytes)
static BUFFERS: Mutex<Vec<(String, String, u64)>> = Mutex::new(Vec::new());

impl LayerLog {
    pub fn start() {
        if let Ok(mut a) = ASSIGNED.lock() {
            a.clear();
        }
        if let Ok(mut b) = BUFFERS.lock() {
            b.clear();
        }
        CAPTURING.store(true, Ordering::SeqCst);
    }

    /// Stops recording; the memory per device, host RAM first, from the buffers llama.cpp
    /// reported (weights at load, KV cache and compute buffers when the context is made).
    pub fn memory(list: &DeviceList) -> Vec<MemoryUse> {
        CAPTURING.store(false, Ordering::SeqCst);
        let buffers = BUFFERS
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default();
        let mut out: Vec<MemoryUse> = Vec::new();
        for (name, kind, bytes) in buffers {
            let (device, host) = buffer_device(&name, list);
            let i = match out.iter().position(|m| m.device == device) {
                Some(i) => i,
                None => {
                    out.push(MemoryUse {
                        device,
                        host,
                        ..MemoryUse::default()
                    });
                    out.len() - 1
                }
            };
            let m = &mut out[i];
            match kind.as_str() {
                "model" => m.model_bytes += bytes,
                "compute" => m.compute_bytes += bytes,
                _ => m.kv_bytes += bytes,
            }
        }
        out.sort_by_key(|m| !m.host);
        out
    }

    /// Counts layers per device, in `list` order (recording goes on, for the buffers of
    /// the context, until [`LayerLog::memory`]).
    pub fn finish(list: &DeviceList) -> Vec<DeviceLayers> {
        let assigned = ASSIGNED
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default();
        let mut counts: HashMap<String, u32> = HashMap::new();
        for name in assigned {
            *counts.entry(name).or_default() += 1;
        }
        list.devices
            .iter()
            .filter_map(|d| {
                counts.get(&d.name).map(|&layers| DeviceLayers {
                    device: d.clone(),
                    layers,
                })
            })
            .collect()
    }

    /// Whether the capture layer wants llama.cpp's debug events now.
    pub fn capturing() -> bool {
        CAPTURING.load(Ordering::Relaxed)
    }

    fn record(message: &str) {
        const SIZE: &str = " buffer size = ";
        if let Some(at) = message.find(SIZE) {
            let mut words = message[..at].split_whitespace().collect::<Vec<_>>();
            let mib = message[at + SIZE.len()..]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<f64>().ok());
            if let (Some(kind), Some(mib)) = (words.pop(), mib) {
                if let Ok(mut b) = BUFFERS.lock() {
                    b.push((
                        words.join(" "),
                        kind.to_owned(),
                        (mib * 1024.0 * 1024.0) as u64,
                    ));
                }
            }
            return;
        }
        const KEY: &str = "assigned to device ";
        let Some(at) = message.find(KEY) else { return };
        let rest = &message[at + KEY.len()..];
        let name = rest.split(',').next().unwrap_or(rest).trim();
        if let Ok(mut a) = ASSIGNED.lock() {
            a.push(name.to_owned());
        }
    }
}

/// Which device a llama.cpp buffer lives on: `RPC0[host:port]` on that server, the CPU's
/// buffers and pinned host buffers (`CUDA_Host`) in RAM, others on the device of that name.
fn buffer_device(name: &str, list: &DeviceList) -> (String, bool) {
    if let (Some(open), Some(close)) = (name.find('['), name.rfind(']')) {
        if open < close && name.starts_with("RPC") {
            return (format!("rpc {}", &name[open + 1..close]), false);
        }
    }
    if name.starts_with("CPU") || name.ends_with("_Host") || name.ends_with("_Mapped") {
        return ("RAM".to_owned(), true);
    }
    match list.devices.iter().find(|d| d.name == name) {
        Some(d) if d.kind == "cpu" => ("RAM".to_owned(), true),
        Some(d) => (d.label(), false),
        None => (name.to_owned(), false),
    }
}

/// A tracing layer that hands llama.cpp's log messages to [`LayerLog`].
pub struct LayerLogLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LayerLogLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0 = value.to_owned();
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        LayerLog::record(&m.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> DeviceList {
        let dev = |name: &str, kind: &str, endpoint: Option<&str>| DeviceInfo {
            name: name.into(),
            kind: kind.into(),
            endpoint: endpoint.map(str::to_owned),
            ..DeviceInfo::default()
        };
        DeviceList {
            backends: vec![],
            devices: vec![
                dev("CPU", "cpu", None),
                dev("CUDA0", "gpu", None),
                dev("RPC0", "rpc", Some("10.0.0.2:50052")),
            ],
        }
    }

    #[test]
    fn buffers_are_told_apart_by_where_they_live() {
        let l = list();
        assert_eq!(buffer_device("CPU_Mapped", &l), ("RAM".into(), true));
        assert_eq!(buffer_device("CPU", &l), ("RAM".into(), true));
        assert_eq!(buffer_device("CUDA_Host", &l), ("RAM".into(), true));
        assert_eq!(buffer_device("CUDA0", &l), ("CUDA0".into(), false));
        assert_eq!(
            buffer_device("RPC0[10.0.0.2:50052]", &l),
            ("rpc 10.0.0.2:50052".into(), false)
        );
    }

    #[test]
    fn llama_cpp_log_lines_give_layers_and_buffers() {
        let l = list();
        LayerLog::start();
        for line in [
            "layer   0 assigned to device CPU, is_swa = 0",
            "layer   1 assigned to device RPC0, is_swa = 0",
            "layer   2 assigned to device RPC0, is_swa = 0",
            "  CPU_Mapped model buffer size =    20.50 MiB",
            "RPC0[10.0.0.2:50052] model buffer size =    64.00 MiB",
            "RPC0[10.0.0.2:50052] KV buffer size =     8.00 MiB",
            "       CPU compute buffer size =     2.00 MiB",
            "  CUDA0 compute buffer size is   1.0000 MiB, matches expectation of   1.0000 MiB",
        ] {
            LayerLog::record(line);
        }
        let layers = LayerLog::finish(&l);
        let count = |name: &str| {
            layers
                .iter()
                .find(|d| d.device.name == name)
                .map(|d| d.layers)
        };
        assert_eq!(count("CPU"), Some(1));
        assert_eq!(count("RPC0"), Some(2));
        assert_eq!(count("CUDA0"), None);
        let memory = LayerLog::memory(&l);
        assert_eq!(memory.len(), 2, "{memory:?}");
        assert!(memory[0].host);
        assert_eq!(memory[0].model_bytes, 20 * 1024 * 1024 + 512 * 1024);
        assert_eq!(memory[0].compute_bytes, 2 * 1024 * 1024);
        assert_eq!(memory[1].device, "rpc 10.0.0.2:50052");
        assert_eq!(memory[1].kv_bytes, 8 * 1024 * 1024);
        assert!(!LayerLog::capturing());
    }

    #[test]
    fn offload_order_is_rpc_then_gpus() {
        assert_eq!(offload_devices(&list()), vec![2, 1]);
    }
}
