//! The local leaderboard: ratings of models from the user's own side-by-side votes.
//!
//! - A model is its GGUF's content (`sha256`; the file name when no hash was recorded), so a
//!   renamed or copied file keeps its record.
//! - A vote becomes pairwise games between the run's columns (column order as stored,
//!   which is the displayed order), with N = 2 to 4 columns:
//!   - "A/B/C/D better" (picking the best): that column beats each of the other N−1
//!     columns; the losers' order among themselves is unknown, so they play no game
//!     (N−1 games).
//!   - A ranking (`rank:a>c=b>d`, ties allowed): every pair of columns plays one game,
//!     the better-placed column winning and equally placed columns tying (N·(N−1)/2
//!     games). So with 3 columns, `a>b>c` is a>b, a>c, b>c; `a>b=c` is a>b, a>c, b=c.
//!   - "tie" and "both bad" (all bad): every pair ties (all bad carries no preference; it
//!     is also counted on its own).
//!
//!   A vote that names a column the run does not have (or ranks another number of
//!   columns) yields no games; `compare::vote` refuses such votes. Columns of the same
//!   model (other settings) play no game against each other: a model cannot gain on
//!   itself.
//! - Elo: K = 32, everyone starts at 1000, games applied in the order the runs were stored
//!   (creation time), a run's pairs in column order, each update using the ratings left by
//!   the previous one.
//! - Bradley–Terry: maximum likelihood by Hunter's MM algorithm (2004), a tie counting half
//!   a win to each side. Strengths are normalised to geometric mean 1 and shown on the Elo
//!   scale, `1000 + 400·log10(p)`. The 95 % interval comes from the Fisher information of
//!   the log-strengths (`±1.96·SE`, SE from the pseudo-inverse of the information matrix,
//!   matching the sum-zero normalisation). When the maximum likelihood does not exist
//!   (a model never won, or never lost, or the comparison graph is split), every model
//!   gets one virtual tie against an anchor of strength 1, the smallest prior that makes
//!   it exist; the result says so (`regularized`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::history::{History, HistoryError, Vote};

pub const ELO_K: f64 = 32.0;
pub const ELO_START: f64 = 1000.0;
const MM_MAX_ITER: usize = 100_000;
const MM_TOL: f64 = 1e-12;
const Z95: f64 = 1.959_963_984_540_054;

/// Who a column was, as the leaderboard knows models.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelKey {
    /// `sha256:<hex>` or `file:<name>`.
    pub id: String,
    /// The file name it was last seen under.
    pub name: String,
}

impl ModelKey {
    pub fn new(file: &str, sha256: Option<&str>) -> Self {
        let id = match sha256.filter(|s| !s.is_empty()) {
            Some(s) => format!("sha256:{s}"),
            None => format!("file:{file}"),
        };
        Self {
            id,
            name: file.to_owned(),
        }
    }
}

/// One voted run, its columns in column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteRecord {
    pub run_id: String,
    pub tag: Option<String>,
    pub created_at: i64,
    pub vote: Vote,
    pub columns: Vec<ModelKey>,
}

/// One game: `score_a` is 1 (a won), 0 (b won) or 0.5 (tie).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Game {
    pub a: usize,
    pub b: usize,
    pub score_a: f64,
}

/// The pairwise games a vote means between columns `0..n` (see the module comment).
pub fn games_for_vote(vote: Vote, n_columns: usize) -> Vec<(usize, usize, f64)> {
    let mut out = Vec::new();
    match vote {
        Vote::Ranked(r) => {
            let places = r.places();
            // A ranking of other columns than the run has is not this run's: no games.
            if places.len() != n_columns {
                return out;
            }
            for i in 0..n_columns {
                for j in i + 1..n_columns {
                    let score = match places[i].cmp(&places[j]) {
                        std::cmp::Ordering::Less => 1.0,
                        std::cmp::Ordering::Greater => 0.0,
                        std::cmp::Ordering::Equal => 0.5,
                    };
                    out.push((i, j, score));
                }
            }
        }
        Vote::Tie | Vote::BothBad => {
            for i in 0..n_columns {
                for j in i + 1..n_columns {
                    out.push((i, j, 0.5));
                }
            }
        }
        best => {
            let Some(winner) = best.best_column().filter(|&w| w < n_columns) else {
                return out;
            };
            for other in (0..n_columns).filter(|&o| o != winner) {
                out.push((winner, other, 1.0));
            }
        }
    }
    out
}

/// Elo ratings after `games` in order, for models `0..n`.
pub fn elo(n: usize, games: &[Game], k: f64, start: f64) -> Vec<f64> {
    let mut r = vec![start; n];
    for g in games {
        let expected_a = 1.0 / (1.0 + 10f64.powf((r[g.b] - r[g.a]) / 400.0));
        let delta = k * (g.score_a - expected_a);
        r[g.a] += delta;
        r[g.b] -= delta;
    }
    r
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BradleyTerry {
    /// Strengths, geometric mean 1.
    pub strength: Vec<f64>,
    /// On the Elo scale: 1000 + 400·log10(strength).
    pub score: Vec<f64>,
    pub ci_low: Vec<f64>,
    pub ci_high: Vec<f64>,
    pub iterations: usize,
    /// A virtual tie per model was added because the plain maximum likelihood does not exist.
    pub regularized: bool,
}

/// Bradley–Terry for models `0..n` (see the module comment for ties, scale and interval).
pub fn bradley_terry(n: usize, games: &[Game]) -> BradleyTerry {
    // wins[i] (ties as halves) and games between each pair.
    let mut wins = vec![0.0; n];
    let mut pair = vec![vec![0.0; n]; n];
    for g in games {
        wins[g.a] += g.score_a;
        wins[g.b] += 1.0 - g.score_a;
        pair[g.a][g.b] += 1.0;
        pair[g.b][g.a] += 1.0;
    }
    let regularized = n > 0 && !mle_exists(n, games);
    // The anchor is model `n`, fixed at strength 1 and left out of the results.
    let m = if regularized { n + 1 } else { n };
    if regularized {
        wins.push(0.0);
        for row in &mut pair {
            row.push(0.0);
        }
        pair.push(vec![0.0; m]);
        for i in 0..n {
            wins[i] += 0.5;
            wins[n] += 0.5;
            pair[i][n] += 1.0;
            pair[n][i] += 1.0;
        }
    }
    let mut p = vec![1.0; m];
    let mut iterations = 0;
    let played = |i: usize| pair[i].iter().sum::<f64>() > 0.0;
    while iterations < MM_MAX_ITER {
        iterations += 1;
        let mut next = p.clone();
        for i in 0..m {
            if !played(i) || (regularized && i == n) {
                continue;
            }
            let denom: f64 = (0..m)
                .filter(|&j| j != i && pair[i][j] > 0.0)
                .map(|j| pair[i][j] / (p[i] + p[j]))
                .sum();
            if denom > 0.0 {
                next[i] = wins[i] / denom;
            }
        }
        if !regularized {
            normalise(&mut next);
        }
        let change = next
            .iter()
            .zip(&p)
            .map(|(a, b)| (a.ln() - b.ln()).abs())
            .fold(0.0, f64::max);
        p = next;
        if change < MM_TOL {
            break;
        }
    }
    // Fisher information of θ = ln p. Plain: over the games, pseudo-inverted so its null
    // direction (a common shift, fixed by the normalisation) is excluded. Regularised: the
    // anchor games included and the anchor (fixed, not estimated) left out, which makes the
    // matrix invertible.
    let mut info = vec![vec![0.0; m]; m];
    for i in 0..m {
        for j in 0..m {
            if i != j && pair[i][j] > 0.0 {
                let w = pair[i][j] * p[i] * p[j] / (p[i] + p[j]).powi(2);
                info[i][j] -= w;
                info[i][i] += w;
            }
        }
    }
    let cov = if regularized {
        info.truncate(n);
        for row in &mut info {
            row.truncate(n);
        }
        invert(info)
    } else {
        pseudo_inverse_laplacian(&info)
    };
    p.truncate(n);
    if regularized {
        normalise(&mut p);
    }
    let to_elo = 400.0 / std::f64::consts::LN_10;
    let score: Vec<f64> = p.iter().map(|s| ELO_START + to_elo * s.ln()).collect();
    let (mut ci_low, mut ci_high) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let se = cov
            .as_ref()
            .map(|c| c[i][i].max(0.0).sqrt())
            .filter(|s| s.is_finite() && played(i))
            .unwrap_or(f64::INFINITY);
        ci_low.push(score[i] - Z95 * se * to_elo);
        ci_high.push(score[i] + Z95 * se * to_elo);
    }
    BradleyTerry {
        strength: p,
        score,
        ci_low,
        ci_high,
        iterations,
        regularized,
    }
}

fn normalise(p: &mut [f64]) {
    let live: Vec<f64> = p.iter().copied().filter(|v| *v > 0.0).collect();
    if live.is_empty() {
        return;
    }
    let log_mean = live.iter().map(|v| v.ln()).sum::<f64>() / live.len() as f64;
    let g = log_mean.exp();
    for v in p.iter_mut() {
        *v /= g;
    }
}

/// Hunter's condition: in every split of the models into two groups, someone in each
/// group beat (or tied) someone in the other, i.e. the "i scored against j" graph is
/// strongly connected.
fn mle_exists(n: usize, games: &[Game]) -> bool {
    let mut beat = vec![vec![false; n]; n];
    for g in games {
        if g.score_a > 0.0 {
            beat[g.a][g.b] = true;
        }
        if g.score_a < 1.0 {
            beat[g.b][g.a] = true;
        }
    }
    let reach = |forward: bool| {
        let mut seen = vec![false; n];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(i) = stack.pop() {
            for j in 0..n {
                let edge = if forward { beat[i][j] } else { beat[j][i] };
                if edge && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        seen.into_iter().all(|s| s)
    };
    reach(true) && reach(false)
}

/// Moore–Penrose inverse of a connected graph Laplacian: (L + J/n)⁻¹ − J/n.
fn pseudo_inverse_laplacian(l: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = l.len();
    if n == 0 {
        return Some(Vec::new());
    }
    let j = 1.0 / n as f64;
    let a: Vec<Vec<f64>> = l
        .iter()
        .map(|row| row.iter().map(|v| v + j).collect())
        .collect();
    let mut inv = invert(a)?;
    for row in &mut inv {
        for v in row.iter_mut() {
            *v -= j;
        }
    }
    Some(inv)
}

/// Gauss–Jordan with partial pivoting; None when singular.
fn invert(mut a: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|k| if i == k { 1.0 } else { 0.0 }).collect())
        .collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for k in 0..n {
            a[col][k] /= d;
            inv[col][k] /= d;
        }
        for r in 0..n {
            if r != col {
                let f = a[r][col];
                if f != 0.0 {
                    for k in 0..n {
                        a[r][k] -= f * a[col][k];
                        inv[r][k] -= f * inv[col][k];
                    }
                }
            }
        }
    }
    Some(inv)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct LeaderboardRow {
    pub rank: usize,
    pub model_id: String,
    pub name: String,
    /// Voted runs the model took part in.
    pub votes: u32,
    pub wins: u32,
    pub losses: u32,
    pub ties: u32,
    /// Runs voted "both bad" that it was in.
    pub both_bad: u32,
    pub elo: f64,
    pub bt_score: f64,
    pub bt_ci_low: f64,
    pub bt_ci_high: f64,
    pub bt_strength: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Leaderboard {
    pub tag: Option<String>,
    /// Voted runs counted.
    pub votes: usize,
    pub games: usize,
    pub regularized: bool,
    /// Best Bradley–Terry score first.
    pub rows: Vec<LeaderboardRow>,
}

/// Ratings from voted runs (in the order given).
pub fn compute(records: &[VoteRecord], tag: Option<&str>) -> Leaderboard {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut rows_stats: Vec<[u32; 5]> = Vec::new(); // votes, wins, losses, ties, both_bad
    let mut games = Vec::new();
    let mut counted = 0;
    for rec in records {
        if tag.is_some() && rec.tag.as_deref() != tag {
            continue;
        }
        counted += 1;
        let ids: Vec<usize> = rec
            .columns
            .iter()
            .map(|k| {
                let next = index.len();
                let i = *index.entry(k.id.clone()).or_insert(next);
                if i == names.len() {
                    names.push(k.name.clone());
                    rows_stats.push([0; 5]);
                } else {
                    // Shown under the name it was last seen with.
                    names[i] = k.name.clone();
                }
                i
            })
            .collect();
        let mut in_run: Vec<usize> = ids.clone();
        in_run.sort_unstable();
        in_run.dedup();
        for &m in &in_run {
            rows_stats[m][0] += 1;
            if rec.vote == Vote::BothBad {
                rows_stats[m][4] += 1;
            }
        }
        for (ca, cb, score) in games_for_vote(rec.vote, ids.len()) {
            let (a, b) = (ids[ca], ids[cb]);
            if a == b {
                continue;
            }
            match score {
                s if s > 0.5 => {
                    rows_stats[a][1] += 1;
                    rows_stats[b][2] += 1;
                }
                s if s < 0.5 => {
                    rows_stats[b][1] += 1;
                    rows_stats[a][2] += 1;
                }
                _ => {
                    rows_stats[a][3] += 1;
                    rows_stats[b][3] += 1;
                }
            }
            games.push(Game {
                a,
                b,
                score_a: score,
            });
        }
    }
    let n = names.len();
    let elo_r = elo(n, &games, ELO_K, ELO_START);
    let bt = bradley_terry(n, &games);
    let mut ids_by_index = vec![String::new(); n];
    for (id, i) in &index {
        ids_by_index[*i] = id.clone();
    }
    let mut rows: Vec<LeaderboardRow> = (0..n)
        .map(|i| LeaderboardRow {
            rank: 0,
            model_id: ids_by_index[i].clone(),
            name: names[i].clone(),
            votes: rows_stats[i][0],
            wins: rows_stats[i][1],
            losses: rows_stats[i][2],
            ties: rows_stats[i][3],
            both_bad: rows_stats[i][4],
            elo: elo_r[i],
            bt_score: bt.score[i],
            bt_ci_low: bt.ci_low[i],
            bt_ci_high: bt.ci_high[i],
            bt_strength: bt.strength[i],
        })
        .collect();
    rows.sort_by(|a, b| {
        b.bt_score
            .total_cmp(&a.bt_score)
            .then(b.elo.total_cmp(&a.elo))
            .then(a.name.cmp(&b.name))
    });
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    Leaderboard {
        tag: tag.map(str::to_owned),
        votes: counted,
        games: games.len(),
        regularized: bt.regularized,
        rows,
    }
}

/// Every voted run in the history, oldest first, with its columns' models.
pub async fn load_votes(history: &History) -> Result<Vec<VoteRecord>, HistoryError> {
    type Row = (
        String,
        String,
        Option<String>,
        i64,
        Option<i64>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.id, r.vote, r.tag, r.created_at, m.column_index, m.model_file, m.model_sha256 \
         FROM compare_runs r JOIN messages m ON m.compare_run_id = r.id AND m.role = 'assistant' \
         WHERE r.vote IS NOT NULL \
         ORDER BY r.created_at, r.id, m.column_index, m.created_at, m.seq",
    )
    .fetch_all(&history.pool)
    .await?;
    let mut out: Vec<VoteRecord> = Vec::new();
    let mut seen_columns: Vec<i64> = Vec::new();
    for (run_id, vote, tag, created_at, column, file, sha) in rows {
        let Some(vote) = Vote::parse(&vote) else {
            tracing::warn!(run_id, vote, "unknown vote skipped");
            continue;
        };
        if out.last().is_none_or(|r| r.run_id != run_id) {
            out.push(VoteRecord {
                run_id: run_id.clone(),
                tag,
                created_at,
                vote,
                columns: Vec::new(),
            });
            seen_columns.clear();
        }
        let column = column.unwrap_or(-1);
        // A column answered twice keeps its first answer: that is what was voted on.
        if seen_columns.contains(&column) {
            continue;
        }
        seen_columns.push(column);
        if let Some(rec) = out.last_mut() {
            rec.columns
                .push(ModelKey::new(file.as_deref().unwrap_or(""), sha.as_deref()));
        }
    }
    Ok(out)
}

/// The leaderboard of the whole history, or of the runs tagged `tag`.
pub async fn leaderboard(
    history: &History,
    tag: Option<&str>,
) -> Result<Leaderboard, HistoryError> {
    Ok(compute(&load_votes(history).await?, tag))
}

impl Leaderboard {
    /// One row per model, with a header line.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "rank,model,model_id,votes,wins,losses,ties,both_bad,elo,bt_score,bt_ci_low,bt_ci_high\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "{},{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1}\n",
                r.rank,
                csv_field(&r.name),
                csv_field(&r.model_id),
                r.votes,
                r.wins,
                r.losses,
                r.ties,
                r.both_bad,
                r.elo,
                r.bt_score,
                r.bt_ci_low,
                r.bt_ci_high
            ));
        }
        s
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_semantics_for_three_columns() {
        assert_eq!(games_for_vote(Vote::ABetter, 3), [(0, 1, 1.0), (0, 2, 1.0)]);
        assert_eq!(games_for_vote(Vote::BBetter, 3), [(1, 0, 1.0), (1, 2, 1.0)]);
        assert_eq!(games_for_vote(Vote::Tie, 3).len(), 3);
        assert_eq!(games_for_vote(Vote::BBetter, 1), []);
        assert_eq!(games_for_vote(Vote::CBetter, 3), [(2, 0, 1.0), (2, 1, 1.0)]);
        assert_eq!(games_for_vote(Vote::DBetter, 3), []);
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("x\"y"), "\"x\"\"y\"");
        assert_eq!(csv_field("plain.gguf"), "plain.gguf");
    }

    #[test]
    fn one_sided_record_is_regularised_and_finite() {
        let games = [Game {
            a: 0,
            b: 1,
            score_a: 1.0,
        }; 3];
        let bt = bradley_terry(2, &games);
        assert!(bt.regularized);
        assert!(bt.score[0] > bt.score[1]);
        assert!(
            bt.score.iter().chain(&bt.ci_low).all(|v| v.is_finite()),
            "{bt:?}"
        );
    }
}
