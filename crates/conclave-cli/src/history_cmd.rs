//! `conclave history …`: list, show, search, export, import, delete and vacuum the chat
//! history the desktop app writes (same database, `CONCLAVE_DATA_DIR` respected).

use std::path::PathBuf;

use std::io::{IsTerminal, Write};

use anyhow::Context;
use conclave_core::compare::DiffOp;
use conclave_core::history::{
    ExportFormat, ExportScope, History, SearchQuery, StoredMessage, HIGHLIGHT_END, HIGHLIGHT_START,
};
use conclave_core::session::{Conclave, ReplayReport};

#[derive(Debug, clap::Subcommand)]
pub enum HistoryCommand {
    /// List conversations, most recent first.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one conversation (the branch on screen; --json prints the whole tree).
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Full-text search over messages.
    Search {
        text: String,
        #[arg(long)]
        json: bool,
        /// Also search the models' thinking.
        #[arg(long)]
        reasoning: bool,
        /// Only answers by this model file.
        #[arg(long)]
        model: Option<String>,
        /// Only messages on or after this date (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Only messages on or before this date (YYYY-MM-DD, UTC).
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Export one conversation or all of them as Markdown or JSON.
    Export {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long, default_value = "md", value_parser = ["md", "markdown", "json"])]
        format: String,
        /// Write to FILE instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import a JSON export (all or nothing).
    Import { file: PathBuf },
    /// Delete a conversation.
    Delete { id: String },
    /// Compact the database file.
    Vacuum,
    /// Answer a saved question again with the same model (checked by sha256), template,
    /// sampler and seed, and show whether the answer is identical or how it differs.
    Replay {
        /// The id of the assistant message to replay (`history show ID --json`).
        message_id: String,
        /// The model file to run (default: the conversation's, else any model in the
        /// model folders whose sha256 is the recorded one).
        #[arg(long)]
        model: Option<String>,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: HistoryCommand) -> anyhow::Result<()> {
    if let HistoryCommand::Replay {
        message_id,
        model,
        json,
    } = cmd
    {
        return replay(&message_id, model.as_deref(), json).await;
    }
    let history = History::open_default()
        .await
        .context("opening the chat history")?;
    let result = run_with(&history, cmd, &mut std::io::stdout()).await;
    history.close().await;
    result
}

async fn run_with(
    history: &History,
    cmd: HistoryCommand,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    match cmd {
        HistoryCommand::List { json, limit } => {
            let list = history.list_conversations(limit, None).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else if list.is_empty() {
                writeln!(out, "no conversations yet")?;
            } else {
                for c in list {
                    writeln!(
                        out,
                        "{}  {}  {:>4} msgs  {}{}{}",
                        c.id,
                        date(c.updated_at),
                        c.message_count,
                        if c.pinned { "* " } else { "" },
                        one_line(&c.title, 60),
                        c.last_model.map(|m| format!("  [{m}]")).unwrap_or_default()
                    )?;
                }
            }
        }
        HistoryCommand::Show { id, json } => {
            let tree = history.get_conversation(&id).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&tree)?)?;
            } else {
                writeln!(out, "# {}", tree.conversation.title)?;
                for m in tree.current_path() {
                    print_message(out, m)?;
                }
                let hidden = tree
                    .messages
                    .len()
                    .saturating_sub(tree.current_path().len());
                if hidden > 0 {
                    writeln!(
                        out,
                        "\n({hidden} message(s) on other branches; --json shows all)"
                    )?;
                }
            }
        }
        HistoryCommand::Search {
            text,
            json,
            reasoning,
            model,
            since,
            until,
            limit,
        } => {
            let query = SearchQuery {
                text,
                include_reasoning: reasoning,
                model,
                from: since.as_deref().map(|d| day_start(d, false)).transpose()?,
                to: until.as_deref().map(|d| day_start(d, true)).transpose()?,
                limit,
            };
            let hits = history.search(&query).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&hits)?)?;
            } else if hits.is_empty() {
                writeln!(out, "no matches")?;
            } else {
                for h in hits {
                    // Terminal rendering of the highlight markers: bold.
                    let snippet = one_line(&h.snippet, 200)
                        .replace(HIGHLIGHT_START, "\x1b[1m")
                        .replace(HIGHLIGHT_END, "\x1b[0m");
                    writeln!(
                        out,
                        "{}  {}  {}  {}",
                        h.conversation_id,
                        date(h.created_at),
                        h.role.as_str(),
                        h.conversation_title
                    )?;
                    writeln!(out, "    {snippet}")?;
                }
            }
        }
        HistoryCommand::Export {
            id,
            all,
            format,
            output,
        } => {
            let format: ExportFormat = format.parse().map_err(anyhow::Error::msg)?;
            let scope = match (id, all) {
                (_, true) => ExportScope::All,
                (Some(id), false) => ExportScope::Conversation(id),
                (None, false) => anyhow::bail!("give a conversation id or --all"),
            };
            let text = history.export(&scope, format).await?;
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("exported to {}", path.display());
                }
                None => writeln!(out, "{text}")?,
            }
        }
        HistoryCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let report = history.import_json(&text).await?;
            writeln!(
                out,
                "imported {} conversation(s), {} message(s)",
                report.conversations, report.messages
            )?;
            if !report.skipped_existing.is_empty() {
                writeln!(
                    out,
                    "skipped {} already present: {}",
                    report.skipped_existing.len(),
                    report.skipped_existing.join(", ")
                )?;
            }
        }
        HistoryCommand::Delete { id } => {
            history.delete_conversation(&id).await?;
            writeln!(out, "deleted {id}")?;
        }
        HistoryCommand::Vacuum => {
            let before = file_size(history);
            history.vacuum().await?;
            writeln!(out, "vacuumed: {} → {} bytes", before, file_size(history))?;
        }
        HistoryCommand::Replay { .. } => anyhow::bail!("replay needs the engine"),
    }
    Ok(())
}

async fn replay(message_id: &str, model: Option<&str>, json: bool) -> anyhow::Result<()> {
    let model = model.map(crate::resolve_model).transpose()?;
    let app = Conclave::open_default().await?;
    let result = app.replay(message_id, model.as_deref(), |_| {}).await;
    for m in app.loaded().await {
        app.unload(&m.path).await;
    }
    app.history.close().await;
    let report = result?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_replay(&mut out, &report, std::io::stdout().is_terminal())?;
    }
    Ok(())
}

fn print_replay(
    out: &mut dyn std::io::Write,
    r: &ReplayReport,
    color: bool,
) -> std::io::Result<()> {
    writeln!(
        out,
        "replayed {} with {} (sha256 {}…), template {}, seed {}",
        r.message_id,
        r.model_path.display(),
        r.sha256.get(..12).unwrap_or(&r.sha256),
        r.template.as_deref().unwrap_or("default"),
        r.seed
    )?;
    if r.identical {
        return writeln!(out, "identical ✓");
    }
    writeln!(out, "differs:")?;
    for (label, diff) in [("thinking", &r.reasoning_diff), ("answer", &r.diff)] {
        if diff.is_empty() {
            continue;
        }
        writeln!(out, "--- {label} ---")?;
        for op in diff {
            // Git's word-diff notation, coloured on a terminal.
            let (open, close) = match (op, color) {
                (DiffOp::Equal { .. }, _) => ("", ""),
                (DiffOp::Delete { .. }, true) => ("\x1b[31m[-", "-]\x1b[0m"),
                (DiffOp::Delete { .. }, false) => ("[-", "-]"),
                (DiffOp::Insert { .. }, true) => ("\x1b[32m{+", "+}\x1b[0m"),
                (DiffOp::Insert { .. }, false) => ("{+", "+}"),
            };
            write!(out, "{open}{}{close}", op.text())?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn print_message(out: &mut dyn std::io::Write, m: &StoredMessage) -> std::io::Result<()> {
    let who = match (&m.model, m.role.as_str()) {
        (Some(model), role) => format!("{role} ({})", model.file),
        (None, role) => role.to_string(),
    };
    writeln!(out, "\n## {who}  {}", date(m.created_at))?;
    if let Some(r) = m.reasoning.as_deref().filter(|r| !r.is_empty()) {
        writeln!(out, "[thinking]\n{r}\n[/thinking]")?;
    }
    writeln!(out, "{}", m.content)?;
    if !matches!(m.status, conclave_core::history::MessageStatus::Complete) {
        writeln!(
            out,
            "({}{})",
            m.status.as_str(),
            m.error_message
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

fn file_size(history: &History) -> u64 {
    std::fs::metadata(history.path())
        .map(|m| m.len())
        .unwrap_or(0)
}

fn date(ms: i64) -> String {
    chrono_like(ms)
}

/// `YYYY-MM-DD HH:MM` in UTC without pulling chrono into the CLI.
fn chrono_like(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

// Howard Hinnant's days↔civil conversions (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix ms at the start of `YYYY-MM-DD` (UTC), or at its last millisecond with `end`.
fn day_start(date: &str, end: bool) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("'{date}' is not a date (YYYY-MM-DD)");
    let mut parts = date.trim().splitn(3, '-');
    let y: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let m: u32 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .filter(|m| (1..=12).contains(m))
        .ok_or_else(bad)?;
    let d: u32 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .filter(|d| (1..=31).contains(d))
        .ok_or_else(bad)?;
    let start = days_from_civil(y, m, d) * 86_400_000;
    Ok(if end { start + 86_400_000 - 1 } else { start })
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max_chars {
        let cut: String = flat.chars().take(max_chars).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        history: HistoryCommand,
    }

    fn parse(args: &[&str]) -> HistoryCommand {
        Cli::try_parse_from(std::iter::once("history").chain(args.iter().copied()))
            .unwrap()
            .history
    }

    #[test]
    fn spellings_parse() {
        assert!(matches!(
            parse(&["list", "--json"]),
            HistoryCommand::List { json: true, .. }
        ));
        assert!(matches!(
            parse(&["show", "abc", "--json"]),
            HistoryCommand::Show { json: true, .. }
        ));
        assert!(matches!(
            parse(&["search", "some text", "--json"]),
            HistoryCommand::Search { json: true, .. }
        ));
        assert!(matches!(
            parse(&["export", "abc", "--format", "json", "-o", "f.json"]),
            HistoryCommand::Export { all: false, .. }
        ));
        assert!(matches!(
            parse(&["export", "--all", "--format", "md"]),
            HistoryCommand::Export { all: true, .. }
        ));
        assert!(Cli::try_parse_from(["history", "export", "--format", "md"]).is_err());
        assert!(matches!(
            parse(&["import", "f.json"]),
            HistoryCommand::Import { .. }
        ));
        assert!(matches!(
            parse(&["delete", "abc"]),
            HistoryCommand::Delete { .. }
        ));
        assert!(matches!(parse(&["vacuum"]), HistoryCommand::Vacuum));
    }

    #[test]
    fn dates() {
        assert_eq!(day_start("1970-01-02", false).unwrap(), 86_400_000);
        assert_eq!(
            day_start("2024-03-01", true).unwrap() + 1,
            day_start("2024-03-02", false).unwrap()
        );
        assert_eq!(
            chrono_like(day_start("2024-02-29", false).unwrap() + 3_600_000),
            "2024-02-29 01:00"
        );
        assert!(day_start("yesterday", false).is_err());
    }

    #[tokio::test]
    async fn commands_run_against_a_real_database() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path().join("h.sqlite3")).await.unwrap();
        let c = h
            .create_conversation("CLI chat", Default::default())
            .await
            .unwrap();
        h.add_user_message(&c.id, None, "find the pangolin")
            .await
            .unwrap();
        let mut out = Vec::new();
        run_with(&h, parse(&["list"]), &mut out).await.unwrap();
        run_with(&h, parse(&["show", &c.id]), &mut out)
            .await
            .unwrap();
        run_with(&h, parse(&["search", "pangolin"]), &mut out)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("CLI chat") && text.contains("\x1b[1mpangolin\x1b[0m"),
            "{text}"
        );
        let file = dir.path().join("all.json");
        let mut out = Vec::new();
        run_with(
            &h,
            parse(&[
                "export",
                "--all",
                "--format",
                "json",
                "-o",
                file.to_str().unwrap(),
            ]),
            &mut out,
        )
        .await
        .unwrap();
        run_with(&h, parse(&["delete", &c.id]), &mut out)
            .await
            .unwrap();
        run_with(&h, parse(&["import", file.to_str().unwrap()]), &mut out)
            .await
            .unwrap();
        run_with(&h, parse(&["vacuum"]), &mut out).await.unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("imported 1 conversation(s), 1 message(s)"));
        assert!(run_with(&h, parse(&["show", "missing"]), &mut Vec::new())
            .await
            .is_err());
    }
}
