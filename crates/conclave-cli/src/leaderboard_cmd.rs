//! `conclave leaderboard`: ratings of your models from your side-by-side votes.

use std::io::Write;

use conclave_core::history::History;
use conclave_core::leaderboard;

#[derive(clap::Args)]
pub struct LeaderboardArgs {
    /// Only runs with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// The leaderboard as one JSON object.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV, one row per model.
    #[arg(long)]
    pub csv: bool,
}

pub async fn run(args: LeaderboardArgs) -> anyhow::Result<()> {
    let history = History::open_default().await?;
    let board = leaderboard::leaderboard(&history, args.tag.as_deref()).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &board)?;
        out.write_all(b"\n")?;
        return Ok(());
    }
    if args.csv {
        out.write_all(board.to_csv().as_bytes())?;
        return Ok(());
    }
    if board.rows.is_empty() {
        writeln!(
            out,
            "no votes yet{}: run `conclave compare --blind …` and vote",
            args.tag
                .as_deref()
                .map(|t| format!(" tagged '{t}'"))
                .unwrap_or_default()
        )?;
        return Ok(());
    }
    let name_w = board
        .rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    writeln!(
        out,
        "{:>4}  {:<name_w$}  {:>6}  {:>15}  {:>6}  {:>5}  {:>9}",
        "rank", "model", "BT", "95% CI", "Elo", "votes", "W-L-T"
    )?;
    for r in &board.rows {
        writeln!(
            out,
            "{:>4}  {:<name_w$}  {:>6.0}  {:>15}  {:>6.0}  {:>5}  {:>9}",
            r.rank,
            r.name,
            r.bt_score,
            format!("{:.0}–{:.0}", r.bt_ci_low, r.bt_ci_high),
            r.elo,
            r.votes,
            format!("{}-{}-{}", r.wins, r.losses, r.ties)
        )?;
    }
    writeln!(
        out,
        "{} votes, {} games{}",
        board.votes,
        board.games,
        if board.regularized {
            "; few votes: Bradley–Terry scores include a small prior"
        } else {
            ""
        }
    )?;
    Ok(())
}
