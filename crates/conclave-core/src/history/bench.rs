//! History performance benchmark: fills a fresh database with synthetic conversations and
//! times the operations the UI waits on. Used by `benches/history.rs` and
//! `conclave bench history`.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use super::{ExportFormat, ExportScope, History, HistoryError, Result, SearchQuery};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    pub name: String,
    pub samples: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub target_ms: f64,
}

impl BenchRow {
    pub fn within_target(&self) -> bool {
        self.p95_ms <= self.target_ms
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub conversations: u64,
    pub messages: u64,
    pub fill_seconds: f64,
    pub database_bytes: u64,
    pub rows: Vec<BenchRow>,
}

impl BenchReport {
    pub fn all_within_target(&self) -> bool {
        self.rows.iter().all(BenchRow::within_target)
    }

    /// A plain-text table for terminals.
    pub fn table(&self) -> String {
        let mut out = format!(
            "history benchmark: {} conversations, {} messages, filled in {:.1} s, database {:.0} MiB\n",
            self.conversations,
            self.messages,
            self.fill_seconds,
            self.database_bytes as f64 / (1024.0 * 1024.0)
        );
        out.push_str(&format!(
            "{:<44} {:>7} {:>9} {:>9} {:>9} {:>9}  {}\n",
            "operation", "samples", "p50 ms", "p95 ms", "max ms", "target", "ok"
        ));
        for r in &self.rows {
            out.push_str(&format!(
                "{:<44} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.0}  {}\n",
                r.name,
                r.samples,
                r.p50_ms,
                r.p95_ms,
                r.max_ms,
                r.target_ms,
                if r.within_target() { "yes" } else { "NO" }
            ));
        }
        out
    }
}

/// Fills a new database at `db_path` (which must not exist) with `conversations`
/// conversations totalling about `messages` messages, then measures. The first two
/// conversations have 500 and 1,000 messages when the total allows, for the open and
/// export measurements.
pub async fn run(db_path: &Path, conversations: u64, messages: u64) -> Result<BenchReport> {
    if db_path.exists() {
        return Err(HistoryError::InvalidInput(format!(
            "{} already exists; the benchmark needs a new file",
            db_path.display()
        )));
    }
    let conversations = conversations.max(2);
    let messages = messages.max(conversations * 2);
    let words = word_list();
    let started = Instant::now();
    let (big_500, big_1000) = fill(db_path, conversations, messages, &words).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    tracing::info!(fill_seconds, "benchmark database filled");

    let history = History::open(db_path).await?;
    let mut rows = Vec::new();

    let mut samples = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let list = history.list_conversations(50, None).await?;
        samples.push(t.elapsed());
        std::hint::black_box(list);
    }
    rows.push(row("list 50 most recent conversations", &samples, 50.0));

    let n_open = history.get_conversation(&big_500).await?.messages.len();
    let mut samples = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let tree = history.get_conversation(&big_500).await?;
        samples.push(t.elapsed());
        std::hint::black_box(tree);
    }
    rows.push(row(
        &format!("open a {n_open}-message conversation"),
        &samples,
        50.0,
    ));

    let mut rng = StdRng::seed_from_u64(7);
    let mut samples = Vec::new();
    let mut hits = 0usize;
    for i in 0..200 {
        // Mid-frequency words, one or two of them: what people type to find a chat.
        let n_words = 1 + i % 2;
        let text: Vec<&str> = (0..n_words)
            .map(|_| words[rng.random_range(50..words.len())].as_str())
            .collect();
        let mut q = SearchQuery::new(text.join(" "));
        q.include_reasoning = i % 4 == 0;
        q.limit = 20;
        let t = Instant::now();
        let found = history.search(&q).await?;
        samples.push(t.elapsed());
        hits += found.len();
    }
    tracing::debug!(hits, "search hits");
    rows.push(row("full-text search (top 20, 1-2 words)", &samples, 30.0));

    let n_export = history.get_conversation(&big_1000).await?.messages.len();
    for (format, name) in [
        (ExportFormat::Json, "JSON"),
        (ExportFormat::Markdown, "Markdown"),
    ] {
        let mut samples = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let text = history
                .export(&ExportScope::Conversation(big_1000.clone()), format)
                .await?;
            samples.push(t.elapsed());
            std::hint::black_box(text);
        }
        rows.push(row(
            &format!("export {n_export} messages as {name}"),
            &samples,
            200.0,
        ));
    }
    history.close().await;

    let database_bytes = std::fs::metadata(db_path).map(|m| m.len()).unwrap_or(0);
    Ok(BenchReport {
        conversations,
        messages,
        fill_seconds,
        database_bytes,
        rows,
    })
}

fn row(name: &str, samples: &[Duration], target_ms: f64) -> BenchRow {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    BenchRow {
        name: name.to_string(),
        samples: ms.len(),
        p50_ms: pick(0.5),
        p95_ms: pick(0.95),
        max_ms: ms.last().copied().unwrap_or(0.0),
        target_ms,
    }
}

/// Pronounceable pseudo-words, so tokenisation and index sizes behave like prose.
fn word_list() -> Vec<String> {
    const ONSETS: &[&str] = &[
        "b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "st", "tr", "pl", "gr",
    ];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ou", "ea"];
    const CODAS: &[&str] = &["", "n", "r", "s", "t", "l", "nd", "ng"];
    let mut rng = StdRng::seed_from_u64(42);
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::new();
    // Short function words first: they take the head of the frequency curve.
    for w in [
        "the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "you", "with", "on", "as",
        "this",
    ] {
        seen.insert(w.to_string());
        words.push(w.to_string());
    }
    while words.len() < 8000 {
        let syllables = rng.random_range(1..=3);
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(ONSETS[rng.random_range(0..ONSETS.len())]);
            w.push_str(VOWELS[rng.random_range(0..VOWELS.len())]);
            w.push_str(CODAS[rng.random_range(0..CODAS.len())]);
        }
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

fn sentence(rng: &mut StdRng, words: &[String], n_words: usize, out: &mut String) {
    out.clear();
    for i in 0..n_words {
        // Skewed towards the head like natural text (roughly Zipf-shaped).
        let u: f64 = rng.random();
        let idx = ((u * u * u) * words.len() as f64) as usize;
        let w = &words[idx.min(words.len() - 1)];
        if i > 0 {
            out.push(if i % 14 == 0 { '\n' } else { ' ' });
        }
        out.push_str(w);
        if i % 11 == 10 {
            out.push('.');
        }
    }
}

/// Writes the synthetic data straight through one connection in large transactions (the
/// full-text triggers stay on, so the index is built the way the app builds it). Returns
/// the ids of the 500- and 1,000-message conversations.
async fn fill(
    db_path: &Path,
    conversations: u64,
    messages: u64,
    words: &[String],
) -> Result<(String, String)> {
    History::open(db_path).await?.close().await;
    let mut conn = SqliteConnectOptions::new()
        .filename(db_path)
        .journal_mode(SqliteJournalMode::Wal)
        // A benchmark file: durability of the fill itself does not matter.
        .synchronous(SqliteSynchronous::Off)
        .pragma("cache_size", "-262144")
        .pragma("temp_store", "memory")
        .connect()
        .await?;

    let mut rng = StdRng::seed_from_u64(1);
    let avg = messages / conversations;
    let mut sizes: Vec<u64> = (0..conversations)
        .map(|_| rng.random_range(avg / 2..=avg + avg / 2).max(2))
        .collect();
    if messages >= 3000 {
        sizes[0] = 500;
        sizes[1] = 1000;
    }
    // Adjust the tail so the total matches the request.
    let mut total: u64 = sizes.iter().sum();
    let mut i = sizes.len() - 1;
    while total != messages && i >= 2 {
        if total > messages {
            let cut = (total - messages).min(sizes[i] - 2);
            sizes[i] -= cut;
            total -= cut;
        } else {
            sizes[i] += messages - total;
            total = messages;
        }
        i -= 1;
    }

    let now = super::now_ms();
    let two_years_ms: i64 = 2 * 365 * 24 * 3600 * 1000;
    let models = [
        ("qwen3-0.6b-q8_0.gguf", "qwen3", "Q8_0"),
        ("llama-3.2-1b-instruct-q4_k_m.gguf", "llama", "Q4_K_M"),
        ("gemma-3-1b-it-q4_0.gguf", "gemma3", "Q4_0"),
    ];
    let mut ids = (String::new(), String::new());
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut tx = conn.begin().await?;
    let mut in_tx = 0u64;
    for (ci, &size) in sizes.iter().enumerate() {
        let conv_id = super::new_id();
        if ci == 0 {
            ids.0 = conv_id.clone();
        } else if ci == 1 {
            ids.1 = conv_id.clone();
        }
        let start = now - rng.random_range(0..two_years_ms);
        let model = models[ci % models.len()];
        let mut t = start;
        let n = rng.random_range(3..8);
        sentence(&mut rng, words, n, &mut content);
        sqlx::query(
            "INSERT INTO conversations (id, title, created_at, updated_at, default_model) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&conv_id)
        .bind(&content)
        .bind(start)
        .bind(start)
        .bind(model.0)
        .execute(&mut *tx)
        .await?;
        let mut parent: Option<String> = None;
        let mut last_user: Option<String> = None;
        for k in 0..size {
            let id = super::new_id();
            t += rng.random_range(1_000..120_000);
            let is_user = k % 2 == 0;
            // One answer in 20 is a regeneration: a sibling of the previous answer.
            let regenerate = !is_user && k >= 3 && rng.random_range(0..20) == 0;
            let parent_for_this = if regenerate {
                last_user.clone()
            } else {
                parent.clone()
            };
            if is_user {
                let n = rng.random_range(8..60);
                sentence(&mut rng, words, n, &mut content);
                sqlx::query(
                    "INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at, updated_at) \
                     VALUES (?, ?, ?, 'user', ?, ?, ?)",
                )
                .bind(&id)
                .bind(&conv_id)
                .bind(&parent_for_this)
                .bind(&content)
                .bind(t)
                .bind(t)
                .execute(&mut *tx)
                .await?;
                last_user = Some(id.clone());
            } else {
                let n = rng.random_range(30..250);
                sentence(&mut rng, words, n, &mut content);
                let with_reasoning = rng.random_range(0..3) == 0;
                if with_reasoning {
                    let n = rng.random_range(40..300);
                    sentence(&mut rng, words, n, &mut reasoning);
                }
                let completion = rng.random_range(30..600);
                let gen_tps: f64 = rng.random_range(8.0..60.0);
                sqlx::query(
                    "INSERT INTO messages (id, conversation_id, parent_id, role, content, reasoning, created_at, \
                     updated_at, status, model_file, model_sha256, model_arch, model_quant, template, \
                     reasoning_format, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, \
                     frequency_penalty, presence_penalty, max_tokens, stop_strings, seed, stop_reason, \
                     prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens, answer_tokens, \
                     ttft_ms, gen_ms, gen_tps, wall_ms, metric_threads, energy_method, thinking) \
                     VALUES (?, ?, ?, 'assistant', ?, ?, ?, ?, 'complete', ?, NULL, ?, ?, 'chatml', ?, \
                     0.8, 40, 0.95, 0.05, 1.0, 64, 0.0, 0.0, 1024, '[]', ?, 'eos', \
                     ?, 0, ?, ?, ?, ?, ?, ?, ?, 4, 'cpu-time', 'auto')",
                )
                .bind(&id)
                .bind(&conv_id)
                .bind(&parent_for_this)
                .bind(&content)
                .bind(with_reasoning.then_some(reasoning.as_str()))
                .bind(t)
                .bind(t)
                .bind(model.0)
                .bind(model.1)
                .bind(model.2)
                .bind(if with_reasoning { "deepseek" } else { "none" })
                .bind(rng.random_range(0..i64::from(u32::MAX)))
                .bind(rng.random_range(20..4000))
                .bind(completion)
                .bind(if with_reasoning { completion / 2 } else { 0 })
                .bind(if with_reasoning { completion - completion / 2 } else { completion })
                .bind(rng.random_range(50.0..900.0))
                .bind(f64::from(completion) / gen_tps * 1000.0)
                .bind(gen_tps)
                .bind(f64::from(completion) / gen_tps * 1000.0 + 300.0)
                .execute(&mut *tx)
                .await?;
            }
            parent = Some(id);
            in_tx += 1;
            if in_tx >= 20_000 {
                tx.commit().await?;
                tx = conn.begin().await?;
                in_tx = 0;
            }
        }
        sqlx::query("UPDATE conversations SET updated_at = ?, current_leaf_id = ? WHERE id = ?")
            .bind(t)
            .bind(&parent)
            .bind(&conv_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // Merge the index segments the fill produced, as a long-lived database would have.
    sqlx::query("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
        .execute(&mut conn)
        .await?;
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(ids)
}
