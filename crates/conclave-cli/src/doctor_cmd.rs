//! `conclave doctor`: what confines the worker processes on this machine, tried for real.

use std::path::PathBuf;

use conclave_core::engine::Engine;

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Also check that this model file stays readable under the sandbox.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let engine = Engine::new()?;
    let check = engine.sandbox_check(args.model.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&check)?);
        return Ok(());
    }
    let s = &check.status;
    let yes = |b: bool| if b { "yes" } else { "NO" };
    println!(
        "worker sandbox: {}",
        if s.complete() {
            "active, every layer"
        } else if s.enabled {
            "active, with gaps (see below)"
        } else {
            "OFF"
        }
    );
    println!(
        "  Landlock:        {} (kernel ABI {})",
        s.landlock, s.landlock_abi
    );
    println!("  seccomp filter:  {}", yes(s.seccomp));
    println!("  no_new_privs:    {}", yes(s.no_new_privs));
    println!("  parent death:    {}", yes(s.parent_death_signal));
    println!("  network:         {}", s.network);
    for p in &check.probes {
        println!(
            "  {:<15} {:<45} {}",
            p.name,
            p.target,
            if p.denied {
                "denied".to_owned()
            } else {
                p.result.clone()
            }
        );
    }
    for w in &s.warnings {
        println!("  warning: {w}");
    }
    Ok(())
}
