//! `conclave presets …`: the named settings the app saves (kept in the history database);
//! `conclave chat --preset NAME` and the API's `preset` field use them.

use anyhow::Context;
use clap::Subcommand;
use conclave_core::history::{History, Preset};

#[derive(Subcommand, Debug, PartialEq)]
pub enum PresetsCommand {
    /// Every preset with its main settings.
    List {
        #[arg(long)]
        json: bool,
    },
    /// All settings of one preset.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a preset.
    Delete { name: String },
}

pub async fn run(cmd: PresetsCommand) -> anyhow::Result<()> {
    let history = History::open_default()
        .await
        .context("opening the chat history")?;
    let result = run_with(&history, cmd, &mut std::io::stdout()).await;
    history.close().await;
    result
}

fn summary(p: &Preset) -> String {
    let s = &p.settings;
    let q = &s.sampling;
    let mut parts = vec![
        format!("temp {}", q.temperature),
        format!("top-k {}", q.top_k),
        format!("top-p {}", q.top_p),
        format!("min-p {}", q.min_p),
        format!("max {} tokens", q.max_tokens),
        format!(
            "think {}",
            serde_json::to_value(s.think)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        ),
    ];
    if let Some(seed) = q.seed {
        parts.push(format!("seed {seed}"));
    }
    if !s.system_prompt.is_empty() {
        parts.push("system prompt".into());
    }
    parts.join(", ")
}

async fn run_with(
    history: &History,
    cmd: PresetsCommand,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match cmd {
        PresetsCommand::List { json } => {
            let list = history.list_presets().await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else if list.is_empty() {
                writeln!(out, "no presets (save one in the app's settings)")?;
            } else {
                for p in &list {
                    writeln!(out, "{}\t{}", p.name, summary(p))?;
                }
            }
        }
        PresetsCommand::Show { name, json } => {
            let p = history.get_preset(&name).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&p)?)?;
            } else {
                let s = &p.settings;
                writeln!(out, "{}", p.name)?;
                writeln!(out, "  {}", summary(&p))?;
                writeln!(
                    out,
                    "  repeat penalty {} (last {})",
                    s.sampling.repeat_penalty, s.sampling.repeat_last_n
                )?;
                if !s.sampling.stop.is_empty() {
                    writeln!(out, "  stop {:?}", s.sampling.stop)?;
                }
                if s.n_ctx > 0 {
                    writeln!(out, "  context {}", s.n_ctx)?;
                }
                if let Some(t) = &s.template {
                    writeln!(out, "  template {t}")?;
                }
                if !s.system_prompt.is_empty() {
                    writeln!(out, "  system prompt: {}", s.system_prompt)?;
                }
            }
        }
        PresetsCommand::Delete { name } => {
            history.delete_preset(&name).await?;
            writeln!(out, "deleted preset {}", name.trim())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::session::ChatSettings;

    #[tokio::test]
    async fn list_show_delete() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let h = History::open(dir.path().join("h.sqlite3")).await?;
        let mut s = ChatSettings::default();
        s.sampling.temperature = 0.2;
        s.sampling.seed = Some(7);
        h.save_preset("Precise", &s).await?;
        let mut out = Vec::new();
        run_with(&h, PresetsCommand::List { json: false }, &mut out).await?;
        let text = String::from_utf8(out)?;
        assert!(text.starts_with("Precise\ttemp 0.2,"), "{text}");
        assert!(text.contains("seed 7"), "{text}");
        let mut out = Vec::new();
        run_with(
            &h,
            PresetsCommand::Show {
                name: "Precise".into(),
                json: true,
            },
            &mut out,
        )
        .await?;
        let v: serde_json::Value = serde_json::from_slice(&out)?;
        assert_eq!(v["settings"]["sampling"]["seed"], 7);
        let mut out = Vec::new();
        run_with(
            &h,
            PresetsCommand::Delete {
                name: "Precise".into(),
            },
            &mut out,
        )
        .await?;
        assert!(run_with(
            &h,
            PresetsCommand::Show {
                name: "Precise".into(),
                json: false
            },
            &mut Vec::new()
        )
        .await
        .is_err());
        Ok(())
    }
}
