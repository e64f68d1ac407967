//! Presets: named generation settings kept in the history database, so the app, the CLI
//! and the API see the same ones and an export carries them.

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use ts_rs::TS;

use super::rows::think_mode_str;
use super::store::{not_found, History};
use super::{now_ms, HistoryError, Result};
use crate::events::{SamplingParams, ThinkMode};
use crate::session::ChatSettings;

/// Longest preset name accepted; names show in menus and on the command line.
pub const MAX_PRESET_NAME: usize = 80;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Preset {
    pub name: String,
    pub settings: ChatSettings,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "name, system_prompt, temperature, top_k, top_p, min_p, repeat_penalty, \
     repeat_last_n, frequency_penalty, presence_penalty, seed, max_tokens, stop_strings, \
     think_mode, think_budget, keep_thoughts, n_ctx, threads, template, created_at, updated_at";

/// Trimmed, non-empty, at most `MAX_PRESET_NAME` characters, no control characters.
pub fn check_preset_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(HistoryError::InvalidInput("a preset needs a name".into()));
    }
    if name.chars().count() > MAX_PRESET_NAME {
        return Err(HistoryError::InvalidInput(format!(
            "a preset name has at most {MAX_PRESET_NAME} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(HistoryError::InvalidInput(
            "a preset name cannot contain control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

fn think_from(s: &str) -> ThinkMode {
    match s {
        "on" => ThinkMode::On,
        "off" => ThinkMode::Off,
        _ => ThinkMode::Auto,
    }
}

fn u32_opt(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

fn from_row(row: &SqliteRow) -> std::result::Result<Preset, sqlx::Error> {
    let mut preset = from_fixed_columns(row)?;
    super::rows::read_table_sampling(row, &mut preset.settings.sampling)?;
    Ok(preset)
}

fn from_fixed_columns(row: &SqliteRow) -> std::result::Result<Preset, sqlx::Error> {
    let stop: String = row.try_get("stop_strings")?;
    let i32_of = |v: i64| i32::try_from(v).unwrap_or(0);
    Ok(Preset {
        name: row.try_get("name")?,
        settings: ChatSettings {
            system_prompt: row.try_get("system_prompt")?,
            sampling: SamplingParams {
                temperature: row.try_get::<f64, _>("temperature")? as f32,
                top_k: i32_of(row.try_get("top_k")?),
                top_p: row.try_get::<f64, _>("top_p")? as f32,
                min_p: row.try_get::<f64, _>("min_p")? as f32,
                repeat_penalty: row.try_get::<f64, _>("repeat_penalty")? as f32,
                repeat_last_n: i32_of(row.try_get("repeat_last_n")?),
                frequency_penalty: row.try_get::<f64, _>("frequency_penalty")? as f32,
                presence_penalty: row.try_get::<f64, _>("presence_penalty")? as f32,
                seed: u32_opt(row.try_get("seed")?),
                max_tokens: u32_opt(Some(row.try_get("max_tokens")?)).unwrap_or(0),
                // A damaged list loses the stop strings, not the preset.
                stop: serde_json::from_str(&stop).unwrap_or_default(),
                ..SamplingParams::default()
            },
            think: think_from(&row.try_get::<String, _>("think_mode")?),
            think_budget: u32_opt(row.try_get("think_budget")?),
            keep_thoughts: row.try_get("keep_thoughts")?,
            n_ctx: u32_opt(Some(row.try_get("n_ctx")?)).unwrap_or(0),
            threads: u32_opt(row.try_get("threads")?),
            template: row.try_get("template")?,
            // A conversation's policy, not a preset's: presets do not store it.
            context_overflow: Default::default(),
            // Not part of presets either: speculative decoding and the draft model are
            // speed settings of this machine, not of a way of answering.
            speculative: Default::default(),
            draft_model: None,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Writes one preset (insert or replace) on `conn`, keeping `created_at` of an existing one.
pub(crate) async fn upsert(
    conn: &mut sqlx::SqliteConnection,
    p: &Preset,
) -> std::result::Result<(), sqlx::Error> {
    let s = &p.settings;
    let q = &s.sampling;
    let stop = serde_json::to_string(&q.stop).unwrap_or_else(|_| "[]".into());
    sqlx::query(&format!(
        "INSERT INTO presets ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) \
         ON CONFLICT (name) DO UPDATE SET system_prompt = excluded.system_prompt, \
         temperature = excluded.temperature, top_k = excluded.top_k, top_p = excluded.top_p, \
         min_p = excluded.min_p, repeat_penalty = excluded.repeat_penalty, \
         repeat_last_n = excluded.repeat_last_n, frequency_penalty = excluded.frequency_penalty, \
         presence_penalty = excluded.presence_penalty, seed = excluded.seed, \
         max_tokens = excluded.max_tokens, stop_strings = excluded.stop_strings, \
         think_mode = excluded.think_mode, think_budget = excluded.think_budget, \
         keep_thoughts = excluded.keep_thoughts, n_ctx = excluded.n_ctx, \
         threads = excluded.threads, template = excluded.template, updated_at = excluded.updated_at"
    ))
    .bind(&p.name)
    .bind(&s.system_prompt)
    .bind(f64::from(q.temperature))
    .bind(i64::from(q.top_k))
    .bind(f64::from(q.top_p))
    .bind(f64::from(q.min_p))
    .bind(f64::from(q.repeat_penalty))
    .bind(i64::from(q.repeat_last_n))
    .bind(f64::from(q.frequency_penalty))
    .bind(f64::from(q.presence_penalty))
    .bind(q.seed.map(i64::from))
    .bind(i64::from(q.max_tokens))
    .bind(stop)
    .bind(think_mode_str(s.think))
    .bind(s.think_budget.map(i64::from))
    .bind(s.keep_thoughts)
    .bind(i64::from(s.n_ctx))
    .bind(s.threads.map(i64::from))
    .bind(&s.template)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(&mut *conn)
    .await?;
    // The parameters stored by the table (settings::table_stored_fields), by name.
    let fields: Vec<_> = crate::settings::table_stored_fields().collect();
    if fields.is_empty() {
        return Ok(());
    }
    let set = fields
        .iter()
        .map(|f| format!("{} = ?", f.key))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("UPDATE presets SET {set} WHERE name = ?");
    let mut query = sqlx::query(&sql);
    for f in &fields {
        let v = crate::settings::sampling_value(q, f.key).filter(|v| v.is_finite());
        query = query.bind(v);
    }
    query.bind(&p.name).execute(conn).await?;
    Ok(())
}

impl History {
    /// Every preset, by name.
    pub async fn list_presets(&self) -> Result<Vec<Preset>> {
        let rows = sqlx::query("SELECT * FROM presets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(from_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn get_preset(&self, name: &str) -> Result<Preset> {
        let row = sqlx::query("SELECT * FROM presets WHERE name = ?")
            .bind(name.trim())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(from_row(&r)?),
            None => Err(not_found("preset", name)),
        }
    }

    /// Creates the preset, or replaces the settings of the one with that name.
    pub async fn save_preset(&self, name: &str, settings: &ChatSettings) -> Result<Preset> {
        let name = check_preset_name(name)?;
        let now = now_ms();
        let p = Preset {
            name,
            settings: settings.clone(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.begin_write().await?;
        upsert(&mut tx, &p).await?;
        tx.commit().await?;
        self.get_preset(&p.name).await
    }

    /// Renames `from` to `to`; refused when `to` is taken by another preset.
    pub async fn rename_preset(&self, from: &str, to: &str) -> Result<()> {
        let to = check_preset_name(to)?;
        let mut tx = self.begin_write().await?;
        if to != from.trim() {
            let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM presets WHERE name = ?")
                .bind(&to)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                return Err(HistoryError::InvalidInput(format!(
                    "a preset named '{to}' already exists"
                )));
            }
        }
        let n = sqlx::query("UPDATE presets SET name = ?, updated_at = ? WHERE name = ?")
            .bind(&to)
            .bind(now_ms())
            .bind(from.trim())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(not_found("preset", from));
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_preset(&self, name: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM presets WHERE name = ?")
            .bind(name.trim())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(not_found("preset", name));
        }
        Ok(())
    }
}
