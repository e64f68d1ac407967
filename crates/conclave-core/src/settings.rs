//! What every front end offers the user for a chat, owned here once: the chat templates,
//! the side-by-side column limits, the default settings and each sampling parameter's range.
//! The API server validates against these ranges, the CLI documents them, and the app reads
//! them as generated TypeScript (`APP_CONSTANTS` in ui/src/lib/bindings/constants.ts), so
//! the UI never keeps a copy that can drift.
//!
//! Adding a numeric sampling parameter: a field (and its default) in
//! `conclave_protocol::SamplingParams`, one [`SamplingField`] row in [`SAMPLING_FIELDS`],
//! and its use in the worker's sampler chain. The app's settings drawer, the API parser and
//! `make bindings` pick it up from there.

use serde::Serialize;
use ts_rs::TS;

use crate::events::{SamplingParams, SpeculativeMode};
use crate::session::ChatSettings;

/// The context length the app starts with, and what 0 means at load ("the smaller of this
/// and the model's training context"): enough for a long chat, small enough for any laptop.
pub const DEFAULT_N_CTX: u32 = 4096;
/// The smallest context the app lets users pick.
pub const MIN_N_CTX: u32 = 256;

/// One numeric sampling parameter as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, TS)]
pub struct SamplingField {
    /// The `SamplingParams` field, and the name the API accepts.
    pub key: &'static str,
    /// The CLI option (`--dry-multiplier`).
    pub flag: &'static str,
    pub label: &'static str,
    /// What it does, in one line (tooltip, `--help`).
    pub help: &'static str,
    pub min: f64,
    pub max: f64,
    pub step: f64,
    /// Whole numbers only.
    pub integer: bool,
}

const fn real(
    (key, flag): (&'static str, &'static str),
    label: &'static str,
    help: &'static str,
    min: f64,
    max: f64,
    step: f64,
) -> SamplingField {
    SamplingField {
        key,
        flag,
        label,
        help,
        min,
        max,
        step,
        integer: false,
    }
}

const fn int(
    (key, flag): (&'static str, &'static str),
    label: &'static str,
    help: &'static str,
    min: f64,
    max: f64,
) -> SamplingField {
    SamplingField {
        key,
        flag,
        label,
        help,
        min,
        max,
        step: 1.0,
        integer: true,
    }
}

/// Every numeric sampling parameter except the seed and max tokens (which have their own
/// rules: empty seed = random, max tokens at least 1). Ranges follow llama-server's and
/// OpenAI's where they have one.
#[rustfmt::skip]
pub const SAMPLING_FIELDS: &[SamplingField] = &[
    real(("temperature", "temperature"), "Temperature", "0 is greedy; higher is more varied", 0.0, 2.0, 0.05),
    int(("top_k", "top-k"), "Top-k", "Keep the k most likely tokens; 0 = all", 0.0, 1_000_000.0),
    real(("top_p", "top-p"), "Top-p", "Keep the most likely tokens up to this probability mass", 0.0, 1.0, 0.01),
    real(("min_p", "min-p"), "Min-p", "Drop tokens below this fraction of the top token's probability", 0.0, 1.0, 0.01),
    real(("repeat_penalty", "repeat-penalty"), "Repeat penalty", "1 = off; above 1 discourages repeating recent tokens", 0.0, 10.0, 0.05),
    int(("repeat_last_n", "repeat-last-n"), "Repeat window", "Recent tokens the penalties look at; 0 = off", 0.0, 1_000_000.0),
    real(("frequency_penalty", "frequency-penalty"), "Frequency penalty", "Discourages tokens by how often they appeared", -2.0, 2.0, 0.05),
    real(("presence_penalty", "presence-penalty"), "Presence penalty", "Discourages tokens that appeared at all", -2.0, 2.0, 0.05),
    real(("dry_multiplier", "dry-multiplier"), "DRY multiplier", "Penalises repeating earlier sequences; 0 = off (try 0.8)", 0.0, 5.0, 0.05),
    real(("dry_base", "dry-base"), "DRY base", "How fast the DRY penalty grows with the repeat's length", 1.0, 4.0, 0.05),
    int(("dry_allowed_length", "dry-allowed-length"), "DRY allowed length", "Repeats up to this many tokens are free", 0.0, 100.0),
    int(("dry_penalty_last_n", "dry-penalty-last-n"), "DRY window", "Tokens DRY looks back over; -1 = the whole context", -1.0, 1_000_000.0),
    real(("xtc_probability", "xtc-probability"), "XTC probability", "Chance per token of excluding the top choices; 0 = off", 0.0, 1.0, 0.05),
    real(("xtc_threshold", "xtc-threshold"), "XTC threshold", "Tokens above this probability count as top choices", 0.0, 1.0, 0.01),
];

/// Sets the numeric sampling parameter `key` to `v`, within its range (whole numbers for
/// whole-number fields). Generic over the table, so the API and the CLI need no code per
/// parameter.
pub fn set_sampling(p: &mut SamplingParams, key: &str, v: f64) -> Result<(), String> {
    let f = sampling_field(key).ok_or_else(|| format!("unknown sampling parameter '{key}'"))?;
    if !v.is_finite() || v < f.min || v > f.max {
        return Err(format!("`{key}` must be between {} and {}", f.min, f.max));
    }
    if f.integer && v.fract() != 0.0 {
        return Err(format!("`{key}` must be a whole number"));
    }
    let mut obj = serde_json::to_value(&*p).map_err(|e| e.to_string())?;
    obj[key] = if f.integer {
        serde_json::json!(v as i64)
    } else {
        serde_json::json!(v)
    };
    *p = serde_json::from_value(obj).map_err(|e| format!("`{key}`: {e}"))?;
    Ok(())
}

/// The sampling parameters whose history columns predate this table (migrations 0001 and
/// 0005 name them one by one). Every other field of [`SAMPLING_FIELDS`] is stored in a
/// column named as its key, written and read by the table (see `history::rows`).
pub const FIXED_COLUMN_FIELDS: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "frequency_penalty",
    "presence_penalty",
];

/// The fields stored in a column named as their key.
pub fn table_stored_fields() -> impl Iterator<Item = &'static SamplingField> {
    SAMPLING_FIELDS
        .iter()
        .filter(|f| !FIXED_COLUMN_FIELDS.contains(&f.key))
}

/// Field `key` of `p` as a number (what a history column holds).
pub fn sampling_value(p: &SamplingParams, key: &str) -> Option<f64> {
    serde_json::to_value(p).ok()?.get(key)?.as_f64()
}

/// The field `key`, for validators.
pub fn sampling_field(key: &str) -> Option<&'static SamplingField> {
    SAMPLING_FIELDS.iter().find(|f| f.key == key)
}

/// The settings a new chat in the app starts with: the core's defaults at the app's
/// context length.
pub fn app_default_settings() -> ChatSettings {
    ChatSettings {
        n_ctx: DEFAULT_N_CTX,
        ..ChatSettings::default()
    }
}

/// Everything above, in one value for the UI.
#[derive(Debug, Clone, Serialize, TS)]
pub struct AppConstants {
    /// The built-in chat templates a user may pick instead of the model's own.
    pub templates: Vec<String>,
    /// The name under which the model's own template is reported.
    pub model_template: String,
    pub min_columns: usize,
    pub max_columns: usize,
    pub default_settings: ChatSettings,
    pub default_sampling: SamplingParams,
    pub min_n_ctx: u32,
    pub sampling_fields: Vec<SamplingField>,
    /// The speculative decoding modes a chat may ask for.
    pub speculative_modes: Vec<SpeculativeMode>,
}

pub fn app_constants() -> AppConstants {
    let default_settings = app_default_settings();
    AppConstants {
        templates: crate::template::BUILTIN_NAMES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        model_template: crate::template::MODEL_TEMPLATE.to_owned(),
        min_columns: crate::compare::MIN_COLUMNS,
        max_columns: crate::compare::MAX_COLUMNS,
        default_sampling: default_settings.sampling.clone(),
        default_settings,
        min_n_ctx: MIN_N_CTX,
        sampling_fields: SAMPLING_FIELDS.to_vec(),
        speculative_modes: SpeculativeMode::ALL.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_names_a_sampling_parameter_and_its_default_is_in_range() {
        let d = serde_json::to_value(SamplingParams::default()).unwrap_or_default();
        for f in SAMPLING_FIELDS {
            let v = d[f.key].as_f64();
            assert!(v.is_some(), "{} is not a SamplingParams number", f.key);
            let v = v.unwrap_or_default();
            assert!(
                f.min <= v && v <= f.max,
                "{} default {v} outside its range",
                f.key
            );
            assert_eq!(f.flag, f.key.replace('_', "-"));
        }
    }

    #[test]
    fn set_sampling_sets_by_name_and_checks_the_range() {
        let mut p = SamplingParams::default();
        assert_eq!(set_sampling(&mut p, "dry_multiplier", 0.8), Ok(()));
        assert_eq!(set_sampling(&mut p, "dry_allowed_length", 3.0), Ok(()));
        assert_eq!(set_sampling(&mut p, "xtc_threshold", 0.2), Ok(()));
        assert_eq!(p.dry_multiplier, 0.8);
        assert_eq!(p.dry_allowed_length, 3);
        assert_eq!(p.xtc_threshold, 0.2);
        assert!(set_sampling(&mut p, "xtc_probability", 1.5).is_err());
        assert!(set_sampling(&mut p, "dry_allowed_length", 2.5).is_err());
        assert!(set_sampling(&mut p, "nope", 1.0).is_err());
        assert_eq!(p.xtc_probability, 0.0);
        assert_eq!(sampling_value(&p, "dry_allowed_length"), Some(3.0));
    }

    #[test]
    fn every_table_stored_field_has_its_history_columns() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let h = crate::history::History::open(dir.path().join("h.sqlite3"))
                .await
                .expect("open history");
            let mut s = ChatSettings::default();
            s.sampling.dry_multiplier = 0.8;
            s.sampling.dry_penalty_last_n = 128;
            s.sampling.xtc_probability = 0.5;
            h.save_preset("P", &s).await.expect("save preset");
            let back = h.get_preset("P").await.expect("get preset");
            assert_eq!(back.settings.sampling, s.sampling);
            h.close().await;
        });
    }
}
