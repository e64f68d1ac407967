//! `conclave rpc-server` (lend this machine to another one's models) and `conclave
//! devices` (what llama.cpp sees). Both run in the worker program: only it links llama.cpp.

use conclave_core::protocol::{self, DeviceList};

#[derive(clap::Args)]
pub struct RpcServerArgs {
    /// Address to listen on. Anything but loopback needs --allow-lan.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 50052)]
    pub port: u16,
    /// CPU threads for the work other machines send (default: all physical cores).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Listen on a non-loopback address. llama.cpp's RPC has no authentication and no
    /// encryption: use it only on a network where you trust every machine.
    #[arg(long)]
    pub allow_lan: bool,
}

#[derive(clap::Args)]
pub struct DevicesArgs {
    /// RPC servers whose devices to list too (`host:port[,host:port…]`).
    #[arg(long, value_parser = crate::parse_rpc_arg, value_delimiter = ',')]
    pub rpc: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn rpc_server(args: RpcServerArgs) -> anyhow::Result<()> {
    if !protocol::rpc_host_allowed(&args.host, args.allow_lan) {
        anyhow::bail!(
            "refusing to listen on {}: {}. Bind 127.0.0.1 (the default), or pass --allow-lan \
             on a network where you trust every machine",
            args.host,
            protocol::RPC_NO_AUTH
        );
    }
    if !protocol::is_loopback(&args.host) {
        eprintln!(
            "conclave rpc-server: warning: listening on {}:{}, reachable from other machines. {}.",
            args.host,
            args.port,
            protocol::RPC_NO_AUTH
        );
    }
    let worker = conclave_core::engine::find_worker()?;
    let threads = args
        .threads
        .unwrap_or_else(|| conclave_core::metrics::threads_per_worker(1));
    let mut cmd = std::process::Command::new(&worker);
    cmd.arg(protocol::ARG_RPC_SERVER)
        .arg(protocol::ARG_HOST)
        .arg(&args.host)
        .arg(protocol::ARG_PORT)
        .arg(args.port.to_string())
        .arg(protocol::ARG_THREADS)
        .arg(threads.to_string());
    if args.allow_lan {
        cmd.arg(protocol::ARG_ALLOW_LAN);
    }
    // The server becomes this process: stopping `conclave rpc-server` (Ctrl+C, kill)
    // stops the server, with no child left listening behind it.
    use std::os::unix::process::CommandExt as _;
    let e = cmd.exec();
    anyhow::bail!("could not start {}: {e}", worker.display())
}

pub async fn devices(args: DevicesArgs) -> anyhow::Result<()> {
    let engine = conclave_core::engine::Engine::new()?;
    let list = engine.devices(&args.rpc).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", table(&list));
    }
    Ok(())
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

fn table(list: &DeviceList) -> String {
    let mut out = format!("backends: {}\n", list.backends.join(", "));
    out.push_str(&format!(
        "{:<24} {:<6} {:>10} {:>10}  {}\n",
        "DEVICE", "KIND", "TOTAL", "FREE", "DESCRIPTION"
    ));
    for d in &list.devices {
        out.push_str(&format!(
            "{:<24} {:<6} {:>10} {:>10}  {}\n",
            d.label(),
            d.kind,
            gib(d.total_bytes),
            gib(d.free_bytes),
            d.description
        ));
    }
    out
}
