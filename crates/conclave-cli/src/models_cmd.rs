//! `conclave models …`: list, inspect, import, download and remove GGUF models.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use conclave_core::models::{
    CancelToken, DownloadOptions, DownloadProgress, FitRequest, ImportMode, Library, ModelEntry,
};

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List every model found (broken files included, with the reason).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show a model's metadata and whether it fits in memory.
    Info {
        /// Model id, file name or path.
        id_or_path: String,
        #[arg(long)]
        json: bool,
        /// Context size for the memory estimate (default: the model's own).
        #[arg(long)]
        ctx: Option<u64>,
        /// Also load the model (with --rpc / --gpu-layers if given) and show where its
        /// layers went and the memory it took: host RAM apart from VRAM and RPC servers.
        #[arg(long)]
        load: bool,
        #[command(flatten)]
        placement: crate::PlacementArgs,
    },
    /// Copy a GGUF file (or every GGUF file in a folder) into the models folder.
    Import {
        path: PathBuf,
        /// Symlink instead of copying.
        #[arg(long)]
        link: bool,
    },
    /// Download a GGUF file (Hugging Face `…/resolve/main/…` or any HTTP(S) URL).
    Download {
        url: String,
        /// Expected sha256 of the file.
        #[arg(long = "sha256", value_name = "HEX")]
        sha256: Option<String>,
    },
    /// Delete a model's file(s).
    Remove {
        /// Model id, file name or path.
        id: String,
    },
}

pub async fn run(cmd: ModelsCommand) -> anyhow::Result<()> {
    let lib = Library::open_default();
    match cmd {
        ModelsCommand::List { json } => list(&lib, json),
        ModelsCommand::Info {
            id_or_path,
            json,
            ctx,
            load,
            placement,
        } => {
            let loaded = if load || !placement.rpc.is_empty() || placement.gpu_layers.is_some() {
                let entry = lib.catalog().resolve(&id_or_path)?.clone();
                let engine = conclave_core::engine::Engine::new()?;
                let n_ctx = ctx.map_or(0, |c| u32::try_from(c).unwrap_or(u32::MAX));
                let model = engine
                    .load(
                        &entry.path,
                        placement.apply(conclave_core::engine::LoadOptions {
                            n_ctx,
                            ..Default::default()
                        }),
                        |_| {},
                    )
                    .await?;
                let info = model.info().await;
                model.unload().await;
                Some(info)
            } else {
                None
            };
            info(&lib, &id_or_path, json, ctx, loaded)
        }
        ModelsCommand::Import { path, link } => {
            let mode = if link {
                ImportMode::Link
            } else {
                ImportMode::Copy
            };
            let lib2 = lib.clone();
            let report = tokio::task::spawn_blocking(move || lib2.import(&path, mode))
                .await
                .context("import task failed")??;
            for m in &report.imported {
                println!(
                    "imported {} ({})  {}",
                    m.display_name,
                    m.id,
                    m.path.display()
                );
            }
            for (path, _code, why) in &report.skipped {
                eprintln!("skipped {}: {why}", path.display());
            }
            Ok(())
        }
        ModelsCommand::Download { url, sha256 } => download(&lib, url, sha256).await,
        ModelsCommand::Remove { id } => {
            let m = lib.remove(&id)?;
            println!("removed {} ({})", m.display_name, m.path.display());
            Ok(())
        }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.0}M", n as f64 / 1e6)
    }
}

fn list(lib: &Library, json: bool) -> anyhow::Result<()> {
    let catalog = lib.catalog();
    if json {
        println!("{}", serde_json::to_string_pretty(&catalog.models)?);
        return Ok(());
    }
    if catalog.models.is_empty() {
        println!("no models found in:");
        for d in &catalog.folders {
            println!("  {}", d.display());
        }
        return Ok(());
    }
    println!(
        "{:<16}  {:<36}  {:<8}  {:>6}  {:<8}  {:>7}  {:>9}",
        "ID", "NAME", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE"
    );
    for m in &catalog.models {
        let name: String = m.display_name.chars().take(36).collect();
        match (&m.meta, &m.error) {
            (Some(meta), None) => println!(
                "{:<16}  {:<36}  {:<8}  {:>6}  {:<8}  {:>7}  {:>9}",
                m.id,
                name,
                meta.architecture.as_deref().unwrap_or("?"),
                human_params(meta.parameter_count),
                meta.quantization.as_deref().unwrap_or("?"),
                meta.context_length
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                human_bytes(m.size)
            ),
            (_, Some(err)) => println!("{:<16}  {:<36}  BROKEN: {}", m.id, name, err.message),
            (None, None) => println!("{:<16}  {:<36}", m.id, name),
        }
    }
    Ok(())
}

fn info(
    lib: &Library,
    query: &str,
    json: bool,
    ctx: Option<u64>,
    loaded: Option<conclave_core::engine::ModelInfo>,
) -> anyhow::Result<()> {
    let catalog = lib.catalog();
    let m: ModelEntry = catalog.resolve(query)?.clone();
    let req = FitRequest {
        n_ctx: ctx.unwrap_or(0),
        ..FitRequest::default()
    };
    let fit = match &m.error {
        None => Some(m.estimate_fit(&req)?),
        Some(_) => None,
    };
    if json {
        let v = serde_json::json!({ "model": m, "fit": fit, "loaded": loaded });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}", m.display_name);
    println!("  id            {}", m.id);
    println!("  path          {}", m.path.display());
    if m.parts.len() > 1 {
        println!("  parts         {}", m.parts.len());
    }
    println!("  size          {}", human_bytes(m.size));
    println!(
        "  sha256        {}",
        m.sha256.as_deref().unwrap_or("(not computed yet)")
    );
    if !m.tags.is_empty() {
        println!("  tags          {}", m.tags.join(", "));
    }
    if let Some(err) = &m.error {
        println!("  ERROR         {} ({})", err.message, err.code);
    }
    if let Some(meta) = &m.meta {
        let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
        println!(
            "  architecture  {}",
            meta.architecture.as_deref().unwrap_or("?")
        );
        println!(
            "  parameters    {} ({})",
            human_params(meta.parameter_count),
            meta.parameter_count
        );
        println!(
            "  quantisation  {}",
            meta.quantization.as_deref().unwrap_or("?")
        );
        println!("  context       {}", opt(meta.context_length));
        println!("  layers        {}", opt(meta.layer_count));
        println!(
            "  heads         {} (kv {})",
            opt(meta.head_count),
            opt(meta.head_count_kv)
        );
        println!(
            "  chat template {}",
            if meta.has_chat_template { "yes" } else { "no" }
        );
        if let Some(r) = &meta.reasoning_format {
            println!("  reasoning     {r:?}");
        }
        if let Some(l) = &meta.license {
            println!("  license       {l}");
        }
    }
    if let Some(f) = fit {
        println!("  memory @ctx {}:", f.n_ctx);
        println!("    weights     {}", human_bytes(f.weights_bytes));
        println!("    kv cache    {}", human_bytes(f.kv_cache_bytes));
        println!("    compute     {}", human_bytes(f.compute_bytes));
        println!("    overhead    {}", human_bytes(f.overhead_bytes));
        println!(
            "    total       {}  of {} available → {:?}",
            human_bytes(f.total_bytes),
            f.available_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "?".into()),
            f.fit
        );
        for n in &f.notes {
            println!("    note: {n}");
        }
    }
    if let Some(l) = loaded {
        println!(
            "  loaded @ctx {} ({} layers on GPU/RPC devices: {}):",
            l.n_ctx, l.gpu_layers, l.gpu_layers_source
        );
        for d in &l.devices {
            println!("    {:<28}{} layers", d.device.label(), d.layers);
        }
        for mem in &l.memory {
            println!(
                "    {:<28}{} (weights {}, kv {}, compute {}){}",
                if mem.host {
                    "RAM".to_owned()
                } else {
                    format!("{} memory", mem.device)
                },
                human_bytes(mem.total()),
                human_bytes(mem.model_bytes),
                human_bytes(mem.kv_bytes),
                human_bytes(mem.compute_bytes),
                if mem.host { "" } else { "  [VRAM / remote]" }
            );
        }
    }
    Ok(())
}

async fn download(lib: &Library, url: String, sha256: Option<String>) -> anyhow::Result<()> {
    let cancel = CancelToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let mut opts = DownloadOptions::new(url);
    opts.sha256 = sha256;
    let mut last = Instant::now() - Duration::from_secs(1);
    let progress = move |p: &DownloadProgress| {
        if !p.done && last.elapsed() < Duration::from_millis(250) {
            return;
        }
        last = Instant::now();
        let pct = p
            .total
            .filter(|t| *t > 0)
            .map(|t| format!("{:5.1}%", p.bytes_done as f64 * 100.0 / t as f64))
            .unwrap_or_default();
        let eta = p
            .eta_secs
            .map(|s| format!(" ETA {}s", s.round() as u64))
            .unwrap_or_default();
        let total = p.total.map(human_bytes).unwrap_or_else(|| "?".into());
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{pct} {} / {total}  {}/s{eta}    ",
            human_bytes(p.bytes_done),
            human_bytes(p.bytes_per_sec as u64)
        );
        if p.done {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    };
    match lib.download(opts, progress, &cancel).await {
        Ok(d) => {
            // Only a sum someone vouched for verifies a download; say whose it was.
            match d.sha256_source {
                conclave_core::models::Sha256Source::Unverified => eprintln!(
                    "sha256 {} (not verified: nobody published one; pass --sha256 to check)",
                    d.sha256
                ),
                source => eprintln!("verified sha256 {} against {source}", d.sha256),
            }
            println!("{}", d.path.display());
            Ok(())
        }
        Err(e) => {
            eprintln!();
            Err(e.into())
        }
    }
}
