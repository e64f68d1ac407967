//! `conclave compare`: one prompt, 2–4 columns answering at once.
//!
//! `--model` takes a path or a model name, optionally followed by `@key=value,…` to give
//! that column its own settings (`temp`, `seed`, `max_tokens`, `think`, `budget`,
//! `system`, `ctx`, `label`, `speculative`, `draft`), so the same model with other
//! settings is a column too: `--model smollm2 --model smollm2@temp=1.2`, or
//! `--model big --model big@draft=small,speculative=draft` to see what a draft model buys.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context as _;
use conclave_core::compare::{
    self, ColumnFigures, ColumnStatus, CompareColumn, CompareOptions, CompareOutput,
    CompareRequest, CompareSummary, RevealedColumn,
};
use conclave_core::history::Vote;
use conclave_core::session::{ChatSettings, Conclave};
use conclave_core::settings::{set_sampling, SAMPLING_FIELDS};
use conclave_core::{ChatEvent, SamplingParams, ThinkMode};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// A column: a GGUF path or model name, optionally `@temp=1.0,think=off,…` (2 to 4).
    #[arg(long = "model", required_unless_present = "run")]
    pub models: Vec<String>,
    /// Hide the model names and shuffle the columns until you vote.
    #[arg(long)]
    pub blind: bool,
    /// One JSON object per line: column events, one `done` per column, then a summary.
    #[arg(long)]
    pub json: bool,
    /// Temperature for every column; 0 is greedy.
    #[arg(long)]
    pub temp: Option<f32>,
    #[arg(long)]
    pub seed: Option<u32>,
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    #[command(flatten)]
    pub sampling: crate::sampling_flags::SamplingFlags,
    /// Thinking: `--think` (on), `--think=off`, `--think=auto` (default).
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "auto", default_missing_value = "on")]
    pub think: ThinkMode,
    /// Force the answer after this many thinking tokens.
    #[arg(long)]
    pub think_budget: Option<u32>,
    /// System prompt for every column.
    #[arg(long)]
    pub system: Option<String>,
    /// Context length in tokens (default: min(4096, the model's)).
    #[arg(long, default_value_t = 0)]
    pub ctx: u32,
    /// Do not save the run (no vote is possible then).
    #[arg(long)]
    pub no_save: bool,
    /// Tag stored with the run (the leaderboard can filter by it).
    #[arg(long)]
    pub tag: Option<String>,
    /// Continue a saved conversation.
    #[arg(long)]
    pub conversation: Option<String>,
    /// Run the columns one after another (always so with --rpc: llama.cpp's RPC server
    /// serves one model at a time).
    #[arg(long)]
    pub sequential: bool,
    #[command(flatten)]
    pub placement: crate::PlacementArgs,
    /// Memory the run may plan for (bytes or 512M, 2G); default: what is available.
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Vote when the run ends: a, b, c, d (that column is best), tie, both-bad, or a
    /// ranking of every column such as c>a=b.
    #[arg(long)]
    pub vote: Option<String>,
    /// Vote on (and reveal) an earlier saved run instead of running a prompt.
    #[arg(long, requires = "vote")]
    pub run: Option<String>,
    /// The prompt.
    #[arg(required_unless_present = "run")]
    pub prompt: Option<String>,
}

/// A vote as typed: `a`…`d` (that column is the best), `tie`, `both-bad` (all bad), or a
/// ranking of every column best first, `>` between places and `=` between tied columns
/// (`c>a=b`). The leaderboard's rule for what each means is in `leaderboard.rs`.
pub fn parse_vote(s: &str) -> anyhow::Result<Vote> {
    let s = s.trim().to_ascii_lowercase();
    Ok(match s.as_str() {
        "a" | "a_better" | "a-better" => Vote::ABetter,
        "b" | "b_better" | "b-better" => Vote::BBetter,
        "c" | "c_better" | "c-better" => Vote::CBetter,
        "d" | "d_better" | "d-better" => Vote::DBetter,
        "t" | "tie" => Vote::Tie,
        "x" | "both-bad" | "both_bad" | "bad" | "all-bad" => Vote::BothBad,
        other => match Vote::parse(other)
            .or_else(|| Vote::parse(&format!("rank:{}", other.replace(' ', ""))))
        {
            Some(v) => v,
            None => anyhow::bail!(
                "unknown vote '{other}' (a, b, c, d, tie, both-bad, or a ranking such as c>a=b)"
            ),
        },
    })
}

impl CompareArgs {
    fn base_settings(&self) -> anyhow::Result<ChatSettings> {
        let d = SamplingParams::default();
        let mut settings = ChatSettings {
            system_prompt: self.system.clone().unwrap_or_default(),
            sampling: SamplingParams {
                temperature: self.temp.unwrap_or(d.temperature),
                seed: self.seed,
                max_tokens: self.max_tokens,
                ..d
            },
            think: self.think,
            think_budget: self.think_budget,
            n_ctx: self.ctx,
            ..ChatSettings::default()
        };
        self.sampling.apply(&mut settings.sampling)?;
        Ok(settings)
    }

    /// `model[@key=value,…]` → a column.
    fn column(&self, spec: &str) -> anyhow::Result<CompareColumn> {
        let (model, overrides) = match spec.rsplit_once('@') {
            Some((m, o)) if o.contains('=') => (m, Some(o)),
            _ => (spec, None),
        };
        let path = crate::resolve_model(model)?;
        let mut settings = self.base_settings()?;
        let mut label = None;
        for kv in overrides.into_iter().flat_map(|o| o.split(',')) {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("'{kv}' in '{spec}' is not key=value"))?;
            let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("{k}={v} in '{spec}': {e}");
            match k.trim() {
                "temp" | "temperature" => {
                    settings.sampling.temperature = v.parse().map_err(|e| bad(&e))?
                }
                "seed" => settings.sampling.seed = Some(v.parse().map_err(|e| bad(&e))?),
                "max_tokens" | "max-tokens" => {
                    settings.sampling.max_tokens = v.parse().map_err(|e| bad(&e))?
                }
                "think" => settings.think = v.parse().map_err(|e: String| bad(&e))?,
                "budget" | "think_budget" => {
                    settings.think_budget = Some(v.parse().map_err(|e| bad(&e))?)
                }
                "system" => settings.system_prompt = v.to_owned(),
                "ctx" => settings.n_ctx = v.parse().map_err(|e| bad(&e))?,
                "label" => label = Some(v.to_owned()),
                "speculative" | "spec" => {
                    settings.speculative = v.parse().map_err(|e: String| bad(&e))?
                }
                "draft" | "draft_model" | "draft-model" => {
                    settings.draft_model = Some(crate::resolve_model(v).map_err(|e| bad(&e))?)
                }
                other => match SAMPLING_FIELDS
                    .iter()
                    .find(|f| f.key == other || f.flag == other)
                {
                    Some(f) => {
                        let x: f64 = v.parse().map_err(|e| bad(&e))?;
                        set_sampling(&mut settings.sampling, f.key, x).map_err(|e| bad(&e))?;
                    }
                    None => anyhow::bail!(
                        "unknown column setting '{other}' in '{spec}' (temp, seed, max_tokens, think, budget, system, ctx, label, speculative, draft, or a sampling parameter such as dry_multiplier)"
                    ),
                },
            }
        }
        Ok(CompareColumn {
            model: path,
            settings,
            label,
        })
    }
}

pub async fn run(args: CompareArgs) -> anyhow::Result<()> {
    let conclave = Conclave::open_default().await?;
    if let Some(run_id) = &args.run {
        let vote = parse_vote(args.vote.as_deref().unwrap_or_default())?;
        let revealed = compare::vote(&conclave.history, run_id, vote).await?;
        print_reveal(args.json, Some(run_id), Some(vote), &revealed)?;
        return Ok(());
    }
    let vote_arg = args.vote.as_deref().map(parse_vote).transpose()?;
    if vote_arg.is_some() && args.no_save {
        anyhow::bail!("--vote needs a saved run; drop --no-save");
    }
    let columns = args
        .models
        .iter()
        .map(|m| args.column(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let memory_limit_bytes = match &args.memory_limit {
        Some(s) => Some(
            compare::schedule::parse_bytes(s)
                .with_context(|| format!("--memory-limit '{s}': expected bytes or 512M, 2G"))?,
        ),
        None => None,
    };
    let req = CompareRequest {
        prompt: args.prompt.clone().unwrap_or_default(),
        columns,
        options: CompareOptions {
            blind: args.blind,
            tag: args.tag.clone(),
            no_save: args.no_save,
            conversation_id: args.conversation.clone(),
            memory_limit_bytes,
            sequential: args.sequential,
            rpc: args.placement.rpc.clone(),
            gpu_layers: args.placement.gpu_layers.unwrap_or_default(),
            ..CompareOptions::default()
        },
    };
    let mut stream = compare::start(&conclave, req).await?;
    let mut view = TextView::new();
    let mut summary = None;
    while let Some(out) = stream.next_event().await {
        if args.json {
            let mut o = std::io::stdout().lock();
            serde_json::to_writer(&mut o, &out)?;
            o.write_all(b"\n")?;
            o.flush()?;
        } else {
            view.show(&out)?;
        }
        if let CompareOutput::Summary(s) = out {
            summary = Some(s);
        }
    }
    let summary = summary.context("the run ended without a summary")?;
    if !args.json {
        print_table(&summary)?;
    }

    let run_id = stream.run_id().map(str::to_owned);
    let vote = match vote_arg {
        Some(v) => Some(v),
        None if args.blind && !args.json && std::io::stdin().is_terminal() => {
            ask_vote(summary.columns.len())?
        }
        None => None,
    };
    match (&run_id, vote) {
        (Some(run_id), Some(v)) => {
            let revealed = compare::vote(&conclave.history, run_id, v).await?;
            print_reveal(args.json, Some(run_id), Some(v), &revealed)?;
        }
        (None, v) if args.blind && (v.is_some() || !args.json) => {
            // Nothing stored: show who was who from memory.
            print_reveal(args.json, None, v, stream.identities())?;
        }
        (Some(run_id), None) if args.blind && !args.json => {
            eprintln!(
                "vote later with: conclave compare --run {run_id} --vote a|b|c|d|tie|both-bad|c>a=b"
            );
        }
        _ => {}
    }
    if summary
        .columns
        .iter()
        .all(|c| c.status == ColumnStatus::Error)
    {
        let first = summary.columns.iter().find_map(|c| c.error.clone());
        anyhow::bail!(
            "every column failed: {}",
            first.unwrap_or_else(|| "no reason given".into())
        );
    }
    Ok(())
}

fn ask_vote(columns: usize) -> anyhow::Result<Option<Vote>> {
    loop {
        if columns > 2 {
            let letters: Vec<String> = (0..columns.min(4))
                .map(|c| {
                    format!(
                        "[{0}] {1}",
                        (b'a' + c as u8) as char,
                        compare::blind_label(c)
                    )
                })
                .collect();
            eprint!(
                "Which is best? {}  or rank them (c>a=b)  [t] tie  [x] all bad  [enter] skip: ",
                letters.join("  ")
            );
        } else {
            eprint!("Which is better? [a] A  [b] B  [t] tie  [x] both bad  [enter] skip: ");
        }
        std::io::stderr().flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(None);
        }
        match parse_vote(&line) {
            Ok(v) if v.fits_columns(columns) => return Ok(Some(v)),
            Ok(v) => eprintln!("'{}' does not fit {columns} columns", v.code()),
            Err(e) => eprintln!("{e}"),
        }
    }
}

fn print_reveal(
    json: bool,
    run_id: Option<&str>,
    vote: Option<Vote>,
    columns: &[RevealedColumn],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "type": "reveal",
            "run_id": run_id,
            "vote": vote,
            "columns": columns,
        });
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
        return Ok(());
    }
    if let Some(v) = vote {
        writeln!(out, "vote: {}", v.code())?;
    }
    for c in columns {
        writeln!(out, "{} was {}", compare::blind_label(c.column), c.model)?;
    }
    Ok(())
}

/// Prints each column whole when it finishes, so the first done is shown first.
struct TextView {
    tty: bool,
    labels: HashMap<usize, String>,
    answer: HashMap<usize, String>,
    thinking: HashMap<usize, String>,
}

impl TextView {
    fn new() -> Self {
        Self {
            tty: std::io::stdout().is_terminal(),
            labels: HashMap::new(),
            answer: HashMap::new(),
            thinking: HashMap::new(),
        }
    }

    fn show(&mut self, out: &CompareOutput) -> anyhow::Result<()> {
        match out {
            CompareOutput::Plan(p) => {
                for c in &p.columns {
                    self.labels.insert(c.column, c.label.clone());
                }
                let how = if p.sequential {
                    "one after another".to_owned()
                } else {
                    format!(
                        "{} at a time, {} thread{} each",
                        p.concurrency,
                        p.threads_per_worker,
                        if p.threads_per_worker == 1 { "" } else { "s" }
                    )
                };
                eprintln!(
                    "{} columns on {} worker{}: {how}{}",
                    p.columns.len(),
                    p.workers,
                    if p.workers == 1 { "" } else { "s" },
                    p.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
            }
            CompareOutput::Loaded(_) | CompareOutput::Summary(_) => {}
            CompareOutput::Column(ev) => match &ev.event {
                ChatEvent::Reasoning { text, .. } => {
                    self.thinking.entry(ev.column).or_default().push_str(text)
                }
                ChatEvent::Token { text, .. } => {
                    self.answer.entry(ev.column).or_default().push_str(text)
                }
                ChatEvent::Done { stop_reason, .. } => {
                    self.print_column(ev.column, &format!("({})", stop_reason.as_str()))?
                }
                ChatEvent::Error { code, message } => {
                    self.print_column(ev.column, &format!("(failed: {message} [{code}])"))?
                }
                ChatEvent::Started { .. } => {}
            },
        }
        Ok(())
    }

    fn print_column(&mut self, column: usize, status: &str) -> anyhow::Result<()> {
        let label = self
            .labels
            .get(&column)
            .cloned()
            .unwrap_or_else(|| format!("column {column}"));
        let mut out = std::io::stdout().lock();
        writeln!(out, "── {} {status} ──", label)?;
        if let Some(t) = self
            .thinking
            .remove(&column)
            .filter(|t| !t.trim().is_empty())
        {
            if self.tty {
                writeln!(out, "\x1b[2m{}\x1b[0m\n", t.trim())?;
            } else {
                writeln!(out, "[thinking] {}\n", t.trim())?;
            }
        }
        writeln!(
            out,
            "{}\n",
            self.answer.remove(&column).unwrap_or_default().trim()
        )?;
        out.flush()?;
        Ok(())
    }
}

fn print_table(s: &CompareSummary) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let label_w = s
        .columns
        .iter()
        .map(|c| c.label.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    writeln!(
        out,
        "{:<label_w$}  {:>8}  {:>7}  {:>6}  {:>6}  {:>7}  {:>9}  status",
        "column", "TTFT ms", "t/s", "think", "answer", "seconds", "energy Wh"
    )?;
    for c in &s.columns {
        let mut marks = Vec::new();
        if s.fastest == Some(c.column) {
            marks.push("fastest");
        }
        if s.cheapest == Some(c.column) {
            marks.push("cheapest");
        }
        writeln!(
            out,
            "{:<label_w$}  {:>8.0}  {:>7.1}  {:>6}  {:>6}  {:>7.2}  {:>9.5}  {}{}",
            c.label,
            c.ttft_ms,
            c.tokens_per_second,
            c.thinking_tokens,
            c.answer_tokens,
            c.seconds,
            c.energy_wh,
            status_word(c),
            if marks.is_empty() {
                String::new()
            } else {
                format!(" ({})", marks.join(", "))
            }
        )?;
    }
    for c in s.columns.iter().filter(|c| c.drafted_tokens > 0) {
        writeln!(
            out,
            "{}: speculative: {} of {} drafted accepted",
            c.label, c.accepted_tokens, c.drafted_tokens
        )?;
    }
    writeln!(
        out,
        "{} generated tokens/s across columns{}",
        format_args!("{:.1}", s.aggregate_tokens_per_second),
        if s.sequential {
            ", one after another"
        } else {
            ""
        }
    )?;
    Ok(())
}

fn status_word(c: &ColumnFigures) -> &'static str {
    match c.status {
        ColumnStatus::Done => "done",
        ColumnStatus::Cancelled => "cancelled",
        ColumnStatus::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_for_up_to_four_columns_parse() {
        let ok = |s: &str| parse_vote(s).map(Vote::code).ok();
        assert_eq!(ok("a").as_deref(), Some("a_better"));
        assert_eq!(ok(" C \n").as_deref(), Some("c_better"));
        assert_eq!(ok("d").as_deref(), Some("d_better"));
        assert_eq!(ok("all-bad").as_deref(), Some("both_bad"));
        assert_eq!(ok("c>a=b").as_deref(), Some("rank:c>a=b"));
        assert_eq!(ok("b > a > c").as_deref(), Some("rank:b>a>c"));
        assert_eq!(ok("rank:a>b").as_deref(), Some("rank:a>b"));
        for bad in ["e", "a>a", "a>c", "", "best"] {
            assert!(parse_vote(bad).is_err(), "{bad:?} accepted");
        }
    }
}
