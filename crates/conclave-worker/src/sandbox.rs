//! The worker's sandbox, applied before the model is opened: a GGUF file is data from
//! whoever made it, and llama.cpp parses it in C++. If a crafted file ever takes over this
//! process, it finds no network, no files but the model and the libraries already loaded,
//! no way to gain privileges, and it dies with its parent.
//!
//! Layers (Linux; each one that the kernel lacks is reported, never skipped silently):
//! - `PR_SET_PDEATHSIG`: the kernel kills the worker when the app goes, even if the app
//!   dies before it can close our stdin.
//! - `PR_SET_NO_NEW_PRIVS`: no setuid binary can hand back what the rest takes away.
//! - seccomp (`seccompiler`): `socket()` fails for every family but `AF_UNIX`, and
//!   `io_uring_setup` fails (io_uring could open sockets without calling `socket()`). In
//!   [`Network::TcpConnect`] mode (llama.cpp RPC servers the user entered), `AF_INET` and
//!   `AF_INET6` stream sockets are allowed too; UDP, raw and every other kind stay denied,
//!   so no DNS lookup can leave this process even then. A seccomp filter sees the
//!   arguments of `connect()` only as a pointer, so it cannot check the address.
//! - Landlock (`landlock`): read-only access to the model file (and the draft model's), the
//!   sidecar files next to it
//!   (the other parts of a split GGUF), the files already mapped (the program and its
//!   libraries), `/proc/self`, `/sys/devices/system/cpu` (thread counts), and read-write
//!   access to `/dev/null`. A worker with a GPU backend (compiled in, or llama.cpp's shared
//!   libraries) may also read the system library folders and the driver's files and use its
//!   device nodes ([`gpu_access`]; Vulkan tested with Mesa's lavapipe, CUDA not yet run
//!   on a GPU under the sandbox). Nothing else can be opened, written, created or executed.
//!   With Landlock ABI 4 or later TCP `bind` and `connect` are denied too; in TCP mode,
//!   `connect` is allowed to the given ports only (any address: Landlock filters ports).
//!   With ABI 6 or later the worker cannot reach abstract UNIX sockets (the X server, the
//!   session bus) or signal processes outside its sandbox.

use std::path::{Path, PathBuf};

use conclave_protocol::SandboxStatus;

/// What the worker may reach on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// Nothing but UNIX sockets (the default).
    None,
    /// TCP connects to these ports (llama.cpp RPC servers); no other network access.
    TcpConnect(Vec<u16>),
}

pub struct Policy {
    /// The model file; `None` for `--sandbox-check` without a model.
    pub model: Option<PathBuf>,
    /// The draft model (speculative decoding), read like the model.
    pub draft_model: Option<PathBuf>,
    pub network: Network,
}

/// Applies every layer the kernel offers and says what holds. Must run before the process
/// starts any thread: seccomp and Landlock bind the calling thread and its future children.
pub fn apply(policy: &Policy) -> SandboxStatus {
    let mut status = SandboxStatus {
        enabled: true,
        network: match &policy.network {
            Network::None => "none".into(),
            Network::TcpConnect(ports) => format!(
                "tcp-connect:{}",
                ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        },
        ..SandboxStatus::default()
    };
    imp::apply(policy, &mut status);
    for w in &status.warnings {
        tracing::warn!("sandbox: {w}");
    }
    status
}

/// The files a model load reads: the model itself (and the file a link points to), and
/// the parts of a split GGUF (`name-00001-of-00003.gguf` loads its siblings by name).
pub fn model_files(model: &Path) -> Vec<PathBuf> {
    let mut out = vec![model.to_path_buf()];
    let real = std::fs::canonicalize(model).unwrap_or_else(|_| model.to_path_buf());
    for path in [model.to_path_buf(), real.clone()] {
        let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str()))
        else {
            continue;
        };
        let Some(prefix) = split_prefix(stem) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(prefix) && name.ends_with(".gguf") {
                out.push(e.path());
            }
        }
    }
    out.push(real);
    out.sort();
    out.dedup();
    out
}

/// `name` of `name-00001-of-00003`, the way llama.cpp names the parts of a split model.
fn split_prefix(stem: &str) -> Option<&str> {
    let (head, of) = stem.rsplit_once("-of-")?;
    let (prefix, part) = head.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(part) && digits(of)).then_some(prefix)
}

/// What a GPU backend needs past the CPU's rules. A GPU driver is found only when llama.cpp
/// first lists devices, after the sandbox is on: the Vulkan loader reads the drivers'
/// manifests and loads the driver libraries they name (Mesa's lavapipe loads LLVM), CUDA's
/// runtime loads `libcuda.so` by name and reads the driver's `/proc` and `/sys` entries, and
/// both then open device nodes and drive them with ioctls. Read-only system folders: no user
/// data is in them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GpuAccess {
    pub backends: Vec<&'static str>,
    pub read: Vec<PathBuf>,
    /// Device nodes, read-write with ioctls.
    pub devices: Vec<PathBuf>,
}

/// The GPU backends this worker can use: compiled in (`--features vulkan|cuda`), or linked
/// as llama.cpp's shared libraries, where the backend is whichever `libggml-*.so` sits on the
/// library path (bench/gpu.sh runs the CPU build of the worker on CUDA libraries that way).
/// `mapped`: the files mapped into the process; `dev`: the names in `/dev`.
pub fn gpu_access(mapped: &[PathBuf], dev: &[String]) -> GpuAccess {
    let linked = |lib: &str| {
        mapped.iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(lib))
        })
    };
    let vulkan = cfg!(feature = "vulkan") || linked("libggml-vulkan") || linked("libvulkan");
    let cuda = cfg!(feature = "cuda") || linked("libggml-cuda") || linked("libcudart");
    let mut access = GpuAccess::default();
    const LIBRARIES: [&str; 5] = [
        "/usr/lib",
        "/usr/local/lib",
        "/lib",
        "/lib64",
        "/etc/ld.so.cache",
    ];
    if vulkan {
        access.backends.push("vulkan");
        access.read.extend(
            [
                "/usr/share/vulkan",
                "/usr/local/share/vulkan",
                "/etc/vulkan",
            ]
            .map(PathBuf::from),
        );
        access.devices.push(PathBuf::from("/dev/dri"));
    }
    if cuda {
        access.backends.push("cuda");
        // CUDA reads the driver's version and the GPUs' PCI and NUMA entries.
        access.read.extend(
            [
                "/proc/driver/nvidia",
                "/sys/bus/pci",
                "/sys/devices",
                "/usr/local/cuda",
            ]
            .map(PathBuf::from),
        );
        // /dev/nvidiactl, /dev/nvidia0…, /dev/nvidia-uvm(-tools), /dev/nvidia-caps.
        access.devices.extend(
            dev.iter()
                .filter(|n| n.starts_with("nvidia"))
                .map(|n| Path::new("/dev").join(n)),
        );
    }
    if vulkan || cuda {
        access.read.extend(LIBRARIES.map(PathBuf::from));
    }
    access.read.sort();
    access.read.dedup();
    access.devices.sort();
    access
}

/// The names in `/dev` (empty when it cannot be read).
pub fn dev_entries() -> Vec<String> {
    std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use landlock::{
        path_beneath_rules, Access, AccessFs, AccessNet, LandlockStatus, NetPort,
        RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
    };
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    use super::{model_files, Network, Policy, SandboxStatus};

    /// The newest Landlock ABI this code was written and tested against; the crate
    /// downgrades to what the kernel has (best effort) and says so in its status.
    const TARGET_ABI: ABI = ABI::V6;

    pub fn apply(policy: &Policy, status: &mut SandboxStatus) {
        parent_death_signal(status);
        match landlock(policy) {
            Ok(restriction) => {
                status.no_new_privs = restriction.no_new_privs;
                status.landlock_abi = match restriction.landlock {
                    LandlockStatus::Available {
                        effective_abi,
                        kernel_abi,
                    } => kernel_abi.unwrap_or(effective_abi as i32),
                    _ => 0,
                };
                match restriction.ruleset {
                    RulesetStatus::FullyEnforced => status.landlock = "full".into(),
                    RulesetStatus::PartiallyEnforced => {
                        status.landlock = "partial".into();
                        status.warnings.push(format!(
                            "Landlock is partly enforced: this kernel has ABI {}, the worker asks for {}: {}",
                            status.landlock_abi,
                            TARGET_ABI as i32,
                            missing_features(status.landlock_abi)
                        ));
                    }
                    RulesetStatus::NotEnforced => {
                        status.landlock = "none".into();
                        status.warnings.push(format!(
                            "Landlock is not available on this kernel ({:?}: not built in, or not in the boot lsm= list): file access is not restricted",
                            restriction.landlock
                        ));
                    }
                }
            }
            Err(e) => {
                status.landlock = "none".into();
                status
                    .warnings
                    .push(format!("Landlock ruleset not applied: {e}"));
            }
        }
        // seccompiler sets PR_SET_NO_NEW_PRIVS before it installs the filter.
        match seccomp(&policy.network) {
            Ok(()) => {
                status.seccomp = true;
                status.no_new_privs = true;
            }
            Err(e) => status
                .warnings
                .push(format!("seccomp network filter not applied: {e}")),
        }
        if !status.no_new_privs {
            status
                .warnings
                .push("PR_SET_NO_NEW_PRIVS could not be set".into());
        }
    }

    fn missing_features(abi: i32) -> &'static str {
        match abi {
            ..=0 => "nothing is restricted by Landlock",
            1 => "no control of renames across folders, truncation, TCP or abstract sockets",
            2 => "no control of truncation, TCP or abstract sockets",
            3 => "TCP bind/connect is left to seccomp, abstract UNIX sockets and signals are not scoped",
            4 | 5 => "abstract UNIX sockets and signals are not scoped",
            _ => "see the kernel's Landlock documentation",
        }
    }

    // The one libc call without a safe wrapper in std or the sandbox crates.
    #[allow(unsafe_code)]
    fn parent_death_signal(status: &mut SandboxStatus) {
        let parent = std::os::unix::process::parent_id();
        // The signal comes when the thread that spawned us exits: the core spawns workers
        // from long-lived runtime threads, never from a blocking-pool thread.
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes integer arguments and touches no memory.
        let ok = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } == 0;
        status.parent_death_signal = ok;
        if !ok {
            status.warnings.push(format!(
                "PR_SET_PDEATHSIG failed: {}",
                std::io::Error::last_os_error()
            ));
        } else if std::os::unix::process::parent_id() != parent {
            // The parent died between our start and the prctl: nobody will read us.
            std::process::exit(3);
        }
    }

    fn seccomp(network: &Network) -> Result<(), String> {
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
        let cond = |arg: u8, op: SeccompCmpOp, value: u64| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
                .map_err(|e| e.to_string())
        };
        let rule =
            |conds: Vec<SeccompCondition>| SeccompRule::new(conds).map_err(|e| e.to_string());
        let unix = libc::AF_UNIX as u64;
        let (inet, inet6) = (libc::AF_INET as u64, libc::AF_INET6 as u64);
        // Each rule matches a call to deny; conditions within a rule must all hold.
        let socket_rules = match network {
            Network::None => vec![rule(vec![cond(0, SeccompCmpOp::Ne, unix)?])?],
            Network::TcpConnect(_) => {
                let mut rules = vec![rule(vec![
                    cond(0, SeccompCmpOp::Ne, unix)?,
                    cond(0, SeccompCmpOp::Ne, inet)?,
                    cond(0, SeccompCmpOp::Ne, inet6)?,
                ])?];
                // The type's low bits name the kind; flags (CLOEXEC, NONBLOCK) sit above.
                for family in [inet, inet6] {
                    for kind in [
                        libc::SOCK_DGRAM,
                        libc::SOCK_RAW,
                        libc::SOCK_RDM,
                        libc::SOCK_SEQPACKET,
                        libc::SOCK_DCCP,
                        // SOCK_PACKET (deprecated in libc, still a kernel type).
                        10,
                    ] {
                        rules.push(rule(vec![
                            cond(0, SeccompCmpOp::Eq, family)?,
                            cond(1, SeccompCmpOp::MaskedEq(0xf), kind as u64)?,
                        ])?);
                    }
                }
                rules
            }
        };
        let mut rules = BTreeMap::new();
        rules.insert(libc::SYS_socket, socket_rules);
        rules.insert(libc::SYS_io_uring_setup, vec![]);
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EACCES as u32),
            arch,
        )
        .map_err(|e| e.to_string())?;
        let program: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?;
        seccompiler::apply_filter(&program).map_err(|e| e.to_string())
    }

    fn landlock(policy: &Policy) -> Result<RestrictionStatus, landlock::RulesetError> {
        let abi = TARGET_ABI;
        let read = AccessFs::from_read(abi);
        let mapped = mapped_files();
        let mut readable: Vec<PathBuf> = mapped.clone();
        for model in policy.model.iter().chain(&policy.draft_model) {
            readable.extend(model_files(model));
        }
        readable
            .extend(["/proc/self", "/sys/devices/system/cpu", "/sys/fs/cgroup"].map(PathBuf::from));
        let gpu = super::gpu_access(&mapped, &super::dev_entries());
        if !gpu.backends.is_empty() {
            tracing::info!(
                "sandbox: GPU backends {:?}: devices {:?} usable, driver files readable",
                gpu.backends,
                gpu.devices
            );
        }
        readable.extend(gpu.read);
        let mut ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(abi))?
            .handle_access(AccessNet::from_all(abi))?
            .scope(Scope::from_all(abi))?
            .create()?
            .add_rules(path_beneath_rules(&readable, read))?
            .add_rules(path_beneath_rules(
                ["/dev/null"],
                read | AccessFs::WriteFile,
            ))?
            .add_rules(path_beneath_rules(
                &gpu.devices,
                read | AccessFs::WriteFile | AccessFs::IoctlDev,
            ))?;
        if let Network::TcpConnect(ports) = &policy.network {
            for &port in ports {
                ruleset = ruleset.add_rule(NetPort::new(port, AccessNet::ConnectTcp))?;
            }
        }
        ruleset.restrict_self()
    }

    /// Files mapped into this process now: the program and its shared libraries, which the
    /// loader and unwinder may read again (backtraces read the program's debug info).
    fn mapped_files() -> Vec<PathBuf> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut files: Vec<PathBuf> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|p| p.starts_with('/'))
            .map(PathBuf::from)
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{Policy, SandboxStatus};

    pub fn apply(_policy: &Policy, status: &mut SandboxStatus) {
        status.landlock = "none".into();
        status
            .warnings
            .push("the worker sandbox is implemented for Linux only".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_models_are_recognised_by_name() {
        assert_eq!(split_prefix("big-00001-of-00003"), Some("big"));
        assert_eq!(split_prefix("a-b-00002-of-00010"), Some("a-b"));
        assert_eq!(split_prefix("SmolLM2-135M-Instruct.Q4_1"), None);
        assert_eq!(split_prefix("x-1-of-3"), None);
    }

    #[test]
    fn a_cuda_backend_on_the_library_path_may_use_the_nvidia_devices() {
        let dev: Vec<String> = ["null", "nvidia0", "nvidiactl", "nvidia-uvm", "sda", "dri"]
            .map(String::from)
            .into();
        let cpu = [PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6")];
        let none = gpu_access(&cpu, &dev);
        if !cfg!(any(feature = "cuda", feature = "vulkan")) {
            assert_eq!(none, GpuAccess::default(), "a CPU worker gets no GPU rule");
        }
        let mut shared = cpu.to_vec();
        shared.push(PathBuf::from("/opt/llama/build/bin/libggml-cuda.so"));
        let cuda = gpu_access(&shared, &dev);
        assert!(cuda.backends.contains(&"cuda"));
        for d in ["/dev/nvidia-uvm", "/dev/nvidia0", "/dev/nvidiactl"] {
            assert!(cuda.devices.contains(&PathBuf::from(d)), "{d}: {cuda:?}");
        }
        assert!(!cuda.devices.iter().any(|d| d.ends_with("sda")));
        assert!(cuda.read.contains(&PathBuf::from("/proc/driver/nvidia")));
        assert!(cuda.read.contains(&PathBuf::from("/etc/ld.so.cache")));
        assert!(!cuda.read.iter().any(|p| p.starts_with("/home")));
    }
}
