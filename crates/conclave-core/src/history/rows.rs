//! Mapping between rows and the public types. Decoding is strict about enums (a value we
//! never write means the file was tampered with) and lenient about numbers that do not
//! fit (clamped), so one odd row never hides a whole conversation.

use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, FromRow, Row};

use super::{
    CompareRun, Conversation, ConversationSettings, ConversationSummary, MessageStatus, ModelInfo,
    StoredMessage, Vote,
};
use crate::events::{
    ContextOverflow, Metrics, Role, SamplingParams, SpeculativeMode, StopReason, ThinkMode, Usage,
};

fn bad(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: format!("unexpected value '{value}'").into(),
    }
}

pub(crate) fn role_from(s: &str) -> Option<Role> {
    match s {
        "system" => Some(Role::System),
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        _ => None,
    }
}

pub(crate) fn think_mode_str(t: ThinkMode) -> &'static str {
    match t {
        ThinkMode::On => "on",
        ThinkMode::Off => "off",
        ThinkMode::Auto => "auto",
    }
}

fn stop_reason_from(s: &str) -> Option<StopReason> {
    Some(match s {
        "eos" => StopReason::Eos,
        "max_tokens" => StopReason::MaxTokens,
        "stop_string" => StopReason::StopString,
        "cancelled" => StopReason::Cancelled,
        "context_full" => StopReason::ContextFull,
        _ => return None,
    })
}

fn overflow_from(row: &SqliteRow, col: &str) -> Result<Option<ContextOverflow>, sqlx::Error> {
    let v: Option<String> = row.try_get(col)?;
    v.map(|v| v.parse::<ContextOverflow>().map_err(|_| bad(col, &v)))
        .transpose()
}

fn speculative_from(row: &SqliteRow, col: &str) -> Result<Option<SpeculativeMode>, sqlx::Error> {
    let v: Option<String> = row.try_get(col)?;
    v.map(|v| SpeculativeMode::parse(&v).ok_or_else(|| bad(col, &v)))
        .transpose()
}

fn u32_of(v: Option<i64>) -> Option<u32> {
    v.map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

fn u32_or0(row: &SqliteRow, col: &str) -> Result<u32, sqlx::Error> {
    Ok(u32_of(row.try_get::<Option<i64>, _>(col)?).unwrap_or(0))
}

fn f64_or0(row: &SqliteRow, col: &str) -> Result<f64, sqlx::Error> {
    Ok(row.try_get::<Option<f64>, _>(col)?.unwrap_or(0.0))
}

fn f32_or0(row: &SqliteRow, col: &str) -> Result<f32, sqlx::Error> {
    Ok(f64_or0(row, col)? as f32)
}

/// The sampling parameters stored by the table (`settings::table_stored_fields`): a NULL
/// column (an answer or preset older than the parameter) keeps the default, which is off.
pub(crate) fn read_table_sampling(
    row: &SqliteRow,
    p: &mut SamplingParams,
) -> Result<(), sqlx::Error> {
    for f in crate::settings::table_stored_fields() {
        // Unchecked: INTEGER columns (whole-number parameters) read as numbers too.
        if let Some(v) = row.try_get_unchecked::<Option<f64>, _>(f.key)? {
            if let Err(e) = crate::settings::set_sampling(p, f.key, v) {
                tracing::warn!("history column {}: {e}; using the default", f.key);
            }
        }
    }
    Ok(())
}

/// SQLite turns NaN into NULL anyway; infinities would not survive JSON export.
pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl FromRow<'_, SqliteRow> for Conversation {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        let think: String = row.try_get("think_mode")?;
        let think_mode = think
            .parse::<ThinkMode>()
            .map_err(|_| bad("think_mode", &think))?;
        let tags: Option<String> = row.try_get("tags")?;
        let mut tags: Vec<String> = tags
            .map(|t| {
                t.split('\u{1f}')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Ok(Conversation {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            settings: ConversationSettings {
                system_prompt: row.try_get("system_prompt")?,
                think_mode,
                think_budget: u32_of(row.try_get("think_budget")?),
                keep_thoughts: row.try_get("keep_thoughts")?,
                n_ctx: u32_of(row.try_get("n_ctx")?),
                threads: u32_of(row.try_get("threads")?),
                template_override: row.try_get("template_override")?,
                default_model: row.try_get("default_model")?,
                context_overflow: overflow_from(row, "context_overflow")?.unwrap_or_default(),
                speculative: speculative_from(row, "speculative")?.unwrap_or_default(),
                draft_model: row.try_get("draft_model")?,
            },
            pinned: row.try_get("pinned")?,
            folder: row.try_get("folder")?,
            tags,
            current_leaf_id: row.try_get("current_leaf_id")?,
        })
    }
}

/// Selects a conversation with its tags joined by U+001F (never typed in a tag).
pub(crate) const CONVERSATION_SELECT: &str = "SELECT c.*, \
    (SELECT group_concat(tag, char(31)) FROM conversation_tags t WHERE t.conversation_id = c.id) AS tags \
    FROM conversations c";

impl FromRow<'_, SqliteRow> for ConversationSummary {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(ConversationSummary {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            pinned: row.try_get("pinned")?,
            folder: row.try_get("folder")?,
            message_count: row.try_get("message_count")?,
            last_model: row.try_get("last_model")?,
        })
    }
}

impl FromRow<'_, SqliteRow> for CompareRun {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        let vote: Option<String> = row.try_get("vote")?;
        let vote = match vote {
            None => None,
            Some(v) => Some(Vote::parse(&v).ok_or_else(|| bad("vote", &v))?),
        };
        Ok(CompareRun {
            id: row.try_get("id")?,
            user_message_id: row.try_get("user_message_id")?,
            blind: row.try_get("blind")?,
            vote,
            tag: row.try_get("tag")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

impl FromRow<'_, SqliteRow> for StoredMessage {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        let role: String = row.try_get("role")?;
        let role = role_from(&role).ok_or_else(|| bad("role", &role))?;
        let status: String = row.try_get("status")?;
        let status = MessageStatus::parse(&status).ok_or_else(|| bad("status", &status))?;
        let stop_reason: Option<String> = row.try_get("stop_reason")?;
        let stop_reason = match stop_reason {
            None => None,
            Some(s) => Some(stop_reason_from(&s).ok_or_else(|| bad("stop_reason", &s))?),
        };
        let model_file: Option<String> = row.try_get("model_file")?;
        let model = match model_file {
            None => None,
            Some(file) => Some(ModelInfo {
                file,
                sha256: row.try_get("model_sha256")?,
                architecture: row.try_get("model_arch")?,
                quantization: row.try_get("model_quant")?,
            }),
        };
        let template: Option<String> = row.try_get("template")?;
        let reasoning_format: Option<String> = row.try_get("reasoning_format")?;
        let seed = u32_of(row.try_get("seed")?);
        // A NULL temperature means the message was never generated (user/system messages).
        let sampling = if row.try_get::<Option<f64>, _>("temperature")?.is_some() {
            let stop: Option<String> = row.try_get("stop_strings")?;
            let stop = match stop {
                None => Vec::new(),
                Some(s) => serde_json::from_str(&s).map_err(|_| bad("stop_strings", &s))?,
            };
            Some(SamplingParams {
                temperature: f32_or0(row, "temperature")?,
                top_k: row.try_get::<Option<i32>, _>("top_k")?.unwrap_or(0),
                top_p: f32_or0(row, "top_p")?,
                min_p: f32_or0(row, "min_p")?,
                repeat_penalty: f32_or0(row, "repeat_penalty")?,
                repeat_last_n: row.try_get::<Option<i32>, _>("repeat_last_n")?.unwrap_or(0),
                frequency_penalty: f32_or0(row, "frequency_penalty")?,
                presence_penalty: f32_or0(row, "presence_penalty")?,
                seed: u32_of(row.try_get("seed_requested")?),
                max_tokens: u32_or0(row, "max_tokens")?,
                stop,
                ..SamplingParams::default()
            })
        } else {
            None
        };
        let sampling = match sampling {
            Some(mut p) => {
                read_table_sampling(row, &mut p)?;
                Some(p)
            }
            None => None,
        };
        let usage = if row.try_get::<Option<i64>, _>("prompt_tokens")?.is_some() {
            Some(Usage {
                prompt_tokens: u32_or0(row, "prompt_tokens")?,
                cached_prompt_tokens: u32_or0(row, "cached_prompt_tokens")?,
                completion_tokens: u32_or0(row, "completion_tokens")?,
                reasoning_tokens: u32_or0(row, "reasoning_tokens")?,
                answer_tokens: u32_or0(row, "answer_tokens")?,
            })
        } else {
            None
        };
        // `energy_method` is written with every metrics set and is never NULL then.
        let metrics = match row.try_get::<Option<String>, _>("energy_method")? {
            None => None,
            Some(energy_method) => {
                let thinking: Option<String> = row.try_get("thinking")?;
                let thinking = match thinking {
                    None => ThinkMode::default(),
                    Some(t) => t.parse::<ThinkMode>().map_err(|_| bad("thinking", &t))?,
                };
                Some(Metrics {
                    ttft_ms: f64_or0(row, "ttft_ms")?,
                    prompt_eval_ms: f64_or0(row, "prompt_eval_ms")?,
                    prompt_tps: f64_or0(row, "prompt_tps")?,
                    gen_ms: f64_or0(row, "gen_ms")?,
                    gen_tps: f64_or0(row, "gen_tps")?,
                    wall_ms: f64_or0(row, "wall_ms")?,
                    thinking_ms: f64_or0(row, "thinking_ms")?,
                    answer_ms: f64_or0(row, "answer_ms")?,
                    threads: u32_or0(row, "metric_threads")?,
                    peak_rss_bytes: row
                        .try_get::<Option<i64>, _>("peak_rss_bytes")?
                        .map_or(0, |v| v.max(0) as u64),
                    cpu_seconds: f64_or0(row, "cpu_seconds")?,
                    energy_wh: f64_or0(row, "energy_wh")?,
                    energy_thinking_wh: f64_or0(row, "energy_thinking_wh")?,
                    energy_answer_wh: f64_or0(row, "energy_answer_wh")?,
                    energy_method,
                    dropped_messages: u32_or0(row, "dropped_messages")?,
                    context_overflow: overflow_from(row, "context_overflow")?.unwrap_or_default(),
                    seed: seed.unwrap_or(0),
                    template: template.clone().unwrap_or_default(),
                    reasoning_format: reasoning_format.clone().unwrap_or_default(),
                    thinking,
                    budget_cut_at: u32_of(row.try_get("budget_cut_at")?),
                    reasoning_cut_off: row
                        .try_get::<Option<bool>, _>("reasoning_cut_off")?
                        .unwrap_or(false),
                    thoughts_dropped_tokens: u32_or0(row, "thoughts_dropped_tokens")?,
                    first_reasoning_ms: row.try_get("first_reasoning_ms")?,
                    first_answer_ms: row.try_get("first_answer_ms")?,
                    drafted_tokens: u32_or0(row, "drafted_tokens")?,
                    accepted_tokens: u32_or0(row, "accepted_tokens")?,
                    devices: row
                        .try_get::<Option<String>, _>("devices")?
                        .unwrap_or_default(),
                })
            }
        };
        Ok(StoredMessage {
            id: row.try_get("id")?,
            conversation_id: row.try_get("conversation_id")?,
            parent_id: row.try_get("parent_id")?,
            role,
            content: row.try_get("content")?,
            reasoning: row.try_get("reasoning")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            status,
            error_message: row.try_get("error_message")?,
            model,
            template,
            reasoning_format,
            sampling,
            seed,
            stop_reason,
            usage,
            metrics,
            compare_run_id: row.try_get("compare_run_id")?,
            column_index: u32_of(row.try_get("column_index")?),
        })
    }
}

/// Column list + arguments for writing a complete message row (import, and the first insert
/// of an answer). Keeping one list avoids the insert and the decoder drifting apart.
pub(crate) fn message_insert(
    m: &StoredMessage,
) -> Result<(String, SqliteArguments<'static>), sqlx::Error> {
    let mut cols: Vec<&'static str> = Vec::with_capacity(64);
    let mut args = SqliteArguments::default();
    macro_rules! col {
        ($name:literal, $value:expr) => {{
            cols.push($name);
            args.add($value).map_err(sqlx::Error::Encode)?;
        }};
    }
    col!("id", m.id.clone());
    col!("conversation_id", m.conversation_id.clone());
    col!("parent_id", m.parent_id.clone());
    col!("role", m.role.as_str());
    col!("content", m.content.clone());
    col!("reasoning", m.reasoning.clone().filter(|r| !r.is_empty()));
    col!("created_at", m.created_at);
    col!("updated_at", m.updated_at);
    col!("status", m.status.as_str());
    col!("error_message", m.error_message.clone());
    col!("model_file", m.model.as_ref().map(|x| x.file.clone()));
    col!(
        "model_sha256",
        m.model.as_ref().and_then(|x| x.sha256.clone())
    );
    col!(
        "model_arch",
        m.model.as_ref().and_then(|x| x.architecture.clone())
    );
    col!(
        "model_quant",
        m.model.as_ref().and_then(|x| x.quantization.clone())
    );
    let mx = m.metrics.as_ref();
    col!(
        "template",
        mx.map(|x| x.template.clone())
            .or_else(|| m.template.clone())
    );
    col!(
        "reasoning_format",
        mx.map(|x| x.reasoning_format.clone())
            .or_else(|| m.reasoning_format.clone())
    );
    col!(
        "seed",
        mx.map(|x| i64::from(x.seed)).or(m.seed.map(i64::from))
    );
    let s = m.sampling.as_ref();
    col!(
        "temperature",
        s.and_then(|s| finite(f64::from(s.temperature)))
    );
    col!("top_k", s.map(|s| s.top_k));
    col!("top_p", s.and_then(|s| finite(f64::from(s.top_p))));
    col!("min_p", s.and_then(|s| finite(f64::from(s.min_p))));
    col!(
        "repeat_penalty",
        s.and_then(|s| finite(f64::from(s.repeat_penalty)))
    );
    col!("repeat_last_n", s.map(|s| s.repeat_last_n));
    col!(
        "frequency_penalty",
        s.and_then(|s| finite(f64::from(s.frequency_penalty)))
    );
    col!(
        "presence_penalty",
        s.and_then(|s| finite(f64::from(s.presence_penalty)))
    );
    col!("seed_requested", s.and_then(|s| s.seed.map(i64::from)));
    for f in crate::settings::table_stored_fields() {
        cols.push(f.key);
        let v = s.and_then(|s| crate::settings::sampling_value(s, f.key));
        if f.integer {
            args.add(v.map(|x| x as i64))
        } else {
            args.add(v.and_then(finite))
        }
        .map_err(sqlx::Error::Encode)?;
    }
    col!("max_tokens", s.map(|s| i64::from(s.max_tokens)));
    col!(
        "stop_strings",
        match s {
            Some(s) =>
                Some(serde_json::to_string(&s.stop).map_err(|e| sqlx::Error::Encode(e.into()))?),
            None => None,
        }
    );
    col!("stop_reason", m.stop_reason.map(|r| r.as_str()));
    let u = m.usage.as_ref();
    col!("prompt_tokens", u.map(|u| i64::from(u.prompt_tokens)));
    col!(
        "cached_prompt_tokens",
        u.map(|u| i64::from(u.cached_prompt_tokens))
    );
    col!(
        "completion_tokens",
        u.map(|u| i64::from(u.completion_tokens))
    );
    col!("reasoning_tokens", u.map(|u| i64::from(u.reasoning_tokens)));
    col!("answer_tokens", u.map(|u| i64::from(u.answer_tokens)));
    push_metrics(&mut cols, &mut args, mx)?;
    col!("compare_run_id", m.compare_run_id.clone());
    col!("column_index", m.column_index.map(i64::from));
    let placeholders = vec!["?"; cols.len()].join(", ");
    let sql = format!(
        "INSERT INTO messages ({}) VALUES ({placeholders})",
        cols.join(", ")
    );
    Ok((sql, args))
}

/// The metric columns (without seed/template/reasoning_format, which are message columns).
pub(crate) fn push_metrics(
    cols: &mut Vec<&'static str>,
    args: &mut SqliteArguments<'static>,
    mx: Option<&Metrics>,
) -> Result<(), sqlx::Error> {
    macro_rules! col {
        ($name:literal, $value:expr) => {{
            cols.push($name);
            args.add($value).map_err(sqlx::Error::Encode)?;
        }};
    }
    col!("ttft_ms", mx.and_then(|x| finite(x.ttft_ms)));
    col!("prompt_eval_ms", mx.and_then(|x| finite(x.prompt_eval_ms)));
    col!("prompt_tps", mx.and_then(|x| finite(x.prompt_tps)));
    col!("gen_ms", mx.and_then(|x| finite(x.gen_ms)));
    col!("gen_tps", mx.and_then(|x| finite(x.gen_tps)));
    col!("wall_ms", mx.and_then(|x| finite(x.wall_ms)));
    col!("thinking_ms", mx.and_then(|x| finite(x.thinking_ms)));
    col!("answer_ms", mx.and_then(|x| finite(x.answer_ms)));
    col!("metric_threads", mx.map(|x| i64::from(x.threads)));
    col!(
        "peak_rss_bytes",
        mx.map(|x| i64::try_from(x.peak_rss_bytes).unwrap_or(i64::MAX))
    );
    col!("cpu_seconds", mx.and_then(|x| finite(x.cpu_seconds)));
    col!("energy_wh", mx.and_then(|x| finite(x.energy_wh)));
    col!(
        "energy_thinking_wh",
        mx.and_then(|x| finite(x.energy_thinking_wh))
    );
    col!(
        "energy_answer_wh",
        mx.and_then(|x| finite(x.energy_answer_wh))
    );
    col!("energy_method", mx.map(|x| x.energy_method.clone()));
    col!(
        "dropped_messages",
        mx.map(|x| i64::from(x.dropped_messages))
    );
    col!("context_overflow", mx.map(|x| x.context_overflow.as_str()));
    col!("thinking", mx.map(|x| think_mode_str(x.thinking)));
    col!(
        "budget_cut_at",
        mx.and_then(|x| x.budget_cut_at.map(i64::from))
    );
    col!("reasoning_cut_off", mx.map(|x| x.reasoning_cut_off));
    col!(
        "thoughts_dropped_tokens",
        mx.map(|x| i64::from(x.thoughts_dropped_tokens))
    );
    col!(
        "first_reasoning_ms",
        mx.and_then(|x| x.first_reasoning_ms.and_then(finite))
    );
    col!(
        "first_answer_ms",
        mx.and_then(|x| x.first_answer_ms.and_then(finite))
    );
    col!("drafted_tokens", mx.map(|x| i64::from(x.drafted_tokens)));
    col!("accepted_tokens", mx.map(|x| i64::from(x.accepted_tokens)));
    col!(
        "devices",
        mx.and_then(|x| (!x.devices.is_empty()).then(|| x.devices.clone()))
    );
    Ok(())
}
