//! Measurements of the machine and of worker processes: physical cores (for thread
//! scheduling), a worker's CPU time and peak RSS from /proc, and the energy estimate.

use std::path::Path;

/// Physical cores, counted from /proc/cpuinfo's (physical id, core id) pairs; hyper-threads
/// share a core's arithmetic units, so llama.cpp gains nothing from them.
pub fn physical_cores() -> usize {
    if let Some(n) = std::env::var("CONCLAVE_CORES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.max(1);
    }
    let logical = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut pairs = std::collections::HashSet::new();
    let (mut phys, mut core) = (None, None);
    for line in info.lines() {
        let mut kv = line.splitn(2, ':').map(str::trim);
        match (kv.next(), kv.next()) {
            (Some("physical id"), Some(v)) => phys = Some(v.to_owned()),
            (Some("core id"), Some(v)) => core = Some(v.to_owned()),
            (Some(""), _) | (None, _) => {
                if let (Some(p), Some(c)) = (phys.take(), core.take()) {
                    pairs.insert((p, c));
                }
            }
            _ => {}
        }
    }
    if let (Some(p), Some(c)) = (phys, core) {
        pairs.insert((p, c));
    }
    // Containers may show a cpuinfo for more CPUs than we may use.
    if pairs.is_empty() {
        logical
    } else {
        pairs.len().min(logical)
    }
}

/// Threads for each of `busy` workers running at once so that together they never
/// oversubscribe the physical cores.
pub fn threads_per_worker(busy: usize) -> u32 {
    let cores = physical_cores();
    u32::try_from((cores / busy.max(1)).max(1)).unwrap_or(1)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    pub rss_bytes: u64,
}

/// CPU time (user + system) and memory of a process, from /proc. Zeros where unreadable.
pub fn sample_process(pid: u32) -> ProcessSample {
    let base = Path::new("/proc").join(pid.to_string());
    let mut s = ProcessSample::default();
    if let Ok(stat) = std::fs::read_to_string(base.join("stat")) {
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the full line, 12 and 13 after ')'.
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let hz = clock_ticks_per_second();
            s.cpu_seconds = (ticks(11) + ticks(12)) as f64 / hz;
        }
    }
    if let Ok(status) = std::fs::read_to_string(base.join("status")) {
        for line in status.lines() {
            let kb = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            };
            if line.starts_with("VmHWM:") {
                s.peak_rss_bytes = kb(line);
            } else if line.starts_with("VmRSS:") {
                s.rss_bytes = kb(line);
            }
        }
    }
    s
}

#[allow(unsafe_code)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// How the energy of an answer is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnergyMethod {
    /// Package energy counter (Intel RAPL), readable only on some machines.
    Rapl,
    /// Worker CPU seconds × watts per core (`CONCLAVE_WATTS_PER_CORE`, default 12 W).
    CpuTime,
}

impl EnergyMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyMethod::Rapl => "rapl",
            EnergyMethod::CpuTime => "cpu-time",
        }
    }
}

const RAPL: &str = "/sys/class/powercap/intel-rapl:0/energy_uj";

/// Reads the RAPL package counter in microjoules, if the machine exposes it to us.
pub fn rapl_microjoules() -> Option<u64> {
    std::fs::read_to_string(RAPL).ok()?.trim().parse().ok()
}

pub fn watts_per_core() -> f64 {
    std::env::var("CONCLAVE_WATTS_PER_CORE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|w| w.is_finite() && *w > 0.0)
        .unwrap_or(12.0)
}

/// An energy meter started at the beginning of an answer. RAPL measures the whole package
/// (other programs included), so it is used only when readable; otherwise the worker's own
/// CPU time is priced at a configurable wattage per busy core.
pub struct EnergyMeter {
    pid: u32,
    method: EnergyMethod,
    start_uj: u64,
    start_cpu: f64,
}

impl EnergyMeter {
    pub fn start(pid: u32) -> Self {
        let start_cpu = sample_process(pid).cpu_seconds;
        match rapl_microjoules() {
            Some(uj) => Self {
                pid,
                method: EnergyMethod::Rapl,
                start_uj: uj,
                start_cpu,
            },
            None => Self {
                pid,
                method: EnergyMethod::CpuTime,
                start_uj: 0,
                start_cpu,
            },
        }
    }

    pub fn method(&self) -> EnergyMethod {
        self.method
    }

    /// (energy in Wh, worker CPU seconds) since the start.
    pub fn read(&self) -> (f64, f64) {
        let cpu = (sample_process(self.pid).cpu_seconds - self.start_cpu).max(0.0);
        let wh = match self.method {
            EnergyMethod::Rapl => rapl_microjoules()
                .map(|uj| uj.wrapping_sub(self.start_uj) as f64 / 3.6e9)
                .unwrap_or(0.0),
            EnergyMethod::CpuTime => cpu * watts_per_core() / 3600.0,
        };
        (wh, cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_and_threads_are_positive() {
        assert!(physical_cores() >= 1);
        assert!(threads_per_worker(64) >= 1);
        assert!(threads_per_worker(1) >= threads_per_worker(2));
    }

    #[test]
    fn own_process_has_cpu_time_and_rss() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let s = sample_process(std::process::id());
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes);
        assert!(s.cpu_seconds >= 0.0);
    }
}
