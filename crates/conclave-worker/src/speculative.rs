//! Drafting for speculative decoding: where drafted tokens come from (text already in the
//! context, or a smaller draft model with the target's vocabulary) and how many to draft.
//!
//! Verification lives in `generate.rs`: the target decodes the drafted tokens in one
//! batch and its own sampler is run at each drafted position in order; a drafted token is
//! kept while it equals the sampled one, and the first sampled token that differs is the
//! correction. Every kept token is a token the target sampled, with the same sampler
//! state and seed stream, so the output is the target's whatever the draft was.

use std::num::NonZeroU32;

use anyhow::Context as _;
use conclave_protocol::SpeculativeMode;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

/// The longest draft. Verifying a batch costs more than one token on a CPU (the matrix
/// work grows with it), so very long drafts only pay when nearly all of it is kept.
pub const MAX_DRAFT: usize = 16;
/// A draft starts this long and grows while it is kept in full.
const START_DRAFT: usize = 4;
/// Prompt lookup matches the last `MAX_NGRAM` down to a shortest n-gram of the context.
/// One token is too weak a clue: it drafts in plain chat, where it is mostly rejected.
const MAX_NGRAM: usize = 4;
/// The shortest match when lookup is chosen explicitly.
const MIN_NGRAM: usize = 2;
/// The shortest match in `auto`. In a plain answer two-token matches (", the", "of the")
/// are common and mostly wrong; a rewrite, which is where lookup pays, repeats whole
/// phrases and matches three and four tokens as easily.
const AUTO_MIN_NGRAM: usize = 3;
/// A draft model stops drafting when its top token is less likely than this: a guess it
/// is unsure of is mostly rejected and costs a draft decode and a verification slot.
const DRAFT_MIN_P: f32 = 0.5;

/// Tokens that follow an earlier occurrence of the context's last few tokens (the most
/// recent occurrence of the longest suffix found, of `min_ngram` tokens or more), at most
/// `max_len` of them.
pub fn lookup(history: &[LlamaToken], max_len: usize, min_ngram: usize) -> Vec<LlamaToken> {
    if max_len == 0 {
        return Vec::new();
    }
    for n in (min_ngram.max(1)..=MAX_NGRAM).rev() {
        if history.len() <= n {
            continue;
        }
        let pattern = &history[history.len() - n..];
        // Newest first: the text being rewritten right now is the likeliest continuation.
        // A match must leave at least one token after it inside the history.
        let last_start = history.len() - n - 1;
        for start in (0..=last_start).rev() {
            if &history[start..start + n] == pattern {
                let from = start + n;
                let to = (from + max_len).min(history.len());
                return history[from..to].to_vec();
            }
        }
    }
    Vec::new()
}

/// Decides how many tokens to draft from how the last drafts fared, and in `auto` mode
/// stops drafting for a while when it does not pay: when too few drafted tokens are kept,
/// or when a token costs more time with drafts than without them.
pub struct Adaptive {
    /// Never switch drafting off (`lookup` or `draft` chosen explicitly).
    forced: bool,
    len: usize,
    /// Moving averages: seconds per produced token without and with a draft, and the
    /// fraction of drafted tokens kept.
    plain_s: Option<f64>,
    spec_s: Option<f64>,
    kept: f64,
    spec_steps: u32,
    /// Drafts in a row of which nothing was kept.
    missed_in_row: u32,
    /// Generated tokens to go before drafting is tried again, and the next such pause.
    paused: u32,
    backoff: u32,
}

const EMA: f64 = 0.25;
const MIN_KEPT: f64 = 0.25;
const MISSES_BEFORE_PAUSE: u32 = 2;
const FIRST_PAUSE: u32 = 16;
const MAX_PAUSE: u32 = 512;

fn ema(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| o + EMA * (new - o))
}

impl Adaptive {
    pub fn new(forced: bool) -> Self {
        Self {
            forced,
            len: START_DRAFT,
            plain_s: None,
            spec_s: None,
            kept: 0.5,
            spec_steps: 0,
            missed_in_row: 0,
            paused: 0,
            backoff: FIRST_PAUSE,
        }
    }

    /// The shortest context suffix prompt lookup may draft from.
    pub fn min_ngram(&self) -> usize {
        if self.forced {
            MIN_NGRAM
        } else {
            AUTO_MIN_NGRAM
        }
    }

    /// How many tokens to draft now (0: draft nothing).
    pub fn draft_len(&self) -> usize {
        if self.paused > 0 {
            0
        } else {
            self.len
        }
    }

    /// One decode step: `drafted` tokens were verified, `kept` of them were right, and
    /// the step produced `produced` tokens in `secs` (drafting, decoding and sampling).
    pub fn record(&mut self, drafted: usize, kept: usize, produced: usize, secs: f64) {
        let produced = produced.max(1);
        let per_token = secs / produced as f64;
        if drafted == 0 {
            self.plain_s = Some(ema(self.plain_s, per_token));
            self.paused = self
                .paused
                .saturating_sub(u32::try_from(produced).unwrap_or(1));
            return;
        }
        self.spec_steps += 1;
        self.missed_in_row = if kept == 0 { self.missed_in_row + 1 } else { 0 };
        self.kept += EMA * (kept as f64 / drafted as f64 - self.kept);
        self.spec_s = Some(ema(self.spec_s, per_token));
        self.len = if kept == drafted {
            (self.len * 2).min(MAX_DRAFT)
        } else {
            (kept + 1).clamp(1, MAX_DRAFT)
        };
        if self.forced {
            return;
        }
        let slower = match (self.plain_s, self.spec_s) {
            (Some(plain), Some(spec)) => self.spec_steps >= 3 && spec > plain,
            _ => false,
        };
        // Two drafts in a row that kept nothing cost two verification batches for nothing:
        // in a plain answer that is the common case, so stop before the average says so.
        if self.kept < MIN_KEPT || slower || self.missed_in_row >= MISSES_BEFORE_PAUSE {
            tracing::debug!(
                kept = self.kept,
                plain_s = self.plain_s,
                spec_s = self.spec_s,
                pause = self.backoff,
                "speculative decoding paused: it does not pay here"
            );
            self.paused = self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_PAUSE);
            // The next try is judged on its own.
            self.spec_s = None;
            self.spec_steps = 0;
            self.missed_in_row = 0;
            self.kept = 0.5;
            self.len = START_DRAFT;
        } else if self.spec_steps >= 3 {
            self.backoff = FIRST_PAUSE;
        }
    }
}

/// The mode a request gets in this worker: `auto` drafts from the draft model when there
/// is one. `draft` without a draft model is refused before generation starts.
///
/// `auto` drafts for greedy answers only. Verifying a draft evaluates several positions in
/// one batch, whose logits differ from one-at-a-time decoding in the last bits; with
/// sampling that can change which token a seed picks. `auto` pauses on measured time, so
/// a sampled answer would then depend on the machine's load, and a seeded answer could not
/// be replayed. Chosen explicitly, `lookup` and `draft` never pause on time: their answers
/// are reproducible too, though not always the same as without speculation.
pub fn resolve(
    mode: SpeculativeMode,
    has_draft_model: bool,
    greedy: bool,
) -> anyhow::Result<Source> {
    Ok(match mode {
        SpeculativeMode::Off => Source::None,
        SpeculativeMode::Auto if !greedy => Source::None,
        SpeculativeMode::Lookup => Source::Lookup { forced: true },
        SpeculativeMode::Auto if has_draft_model => Source::Model { forced: false },
        SpeculativeMode::Auto => Source::Lookup { forced: false },
        SpeculativeMode::Draft if has_draft_model => Source::Model { forced: true },
        SpeculativeMode::Draft => anyhow::bail!(
            "speculative mode \"draft\" needs a draft model: load the model with --draft-model"
        ),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    None,
    Lookup { forced: bool },
    Model { forced: bool },
}

/// A small model drafting for the target, with its own context and cache.
pub struct DraftModel {
    pub model: &'static LlamaModel,
    ctx: LlamaContext<'static>,
    n_ctx: usize,
    /// Tokens whose keys and values are in the draft context, in order.
    cached: Vec<LlamaToken>,
    batch: LlamaBatch<'static>,
}

const DRAFT_BATCH: usize = 512;

impl DraftModel {
    pub fn new(
        backend: &'static LlamaBackend,
        model: &'static LlamaModel,
        n_ctx: u32,
        threads: u32,
    ) -> anyhow::Result<Self> {
        let n_ctx = n_ctx.min(model.n_ctx_train()).max(1);
        let threads = i32::try_from(threads.max(1)).unwrap_or(1);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(DRAFT_BATCH as u32)
            .with_n_ubatch(DRAFT_BATCH as u32)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = model
            .new_context(backend, params)
            .map_err(|e| anyhow::anyhow!("could not create the draft model's context: {e}"))?;
        Ok(Self {
            model,
            ctx,
            n_ctx: n_ctx as usize,
            cached: Vec::new(),
            batch: LlamaBatch::new(DRAFT_BATCH, 1),
        })
    }

    /// Makes the draft cache hold `history` (keeping the prefix it shares), with the
    /// logits of its last token ready. False when the history does not fit its context.
    pub fn sync(&mut self, history: &[LlamaToken]) -> anyhow::Result<bool> {
        if history.is_empty() || history.len() + MAX_DRAFT + 1 >= self.n_ctx {
            return Ok(false);
        }
        let mut keep = self
            .cached
            .iter()
            .zip(history)
            .take_while(|(a, b)| a == b)
            .count();
        // The last history token is always decoded again, for its logits.
        keep = keep.min(history.len() - 1);
        if self
            .ctx
            .kv_cache_seq_rm(0, Some(u32::try_from(keep)?), None)
            .is_err()
        {
            self.ctx.clear_kv_cache();
            keep = 0;
        }
        self.cached.truncate(keep);
        for chunk in history[keep..].chunks(DRAFT_BATCH) {
            self.batch.clear();
            for (i, t) in chunk.iter().enumerate() {
                let pos = i32::try_from(self.cached.len() + i)?;
                self.batch.add(*t, pos, &[0], i + 1 == chunk.len())?;
            }
            self.ctx.decode(&mut self.batch).context("draft decode")?;
            self.cached.extend_from_slice(chunk);
        }
        Ok(true)
    }

    /// Up to `max_len` tokens the draft model expects after `history`, greedily, stopping
    /// early where it is unsure.
    pub fn draft(
        &mut self,
        history: &[LlamaToken],
        max_len: usize,
    ) -> anyhow::Result<Vec<LlamaToken>> {
        let mut out = Vec::new();
        if max_len == 0 || !self.sync(history)? {
            return Ok(out);
        }
        let mut idx = self.batch.n_tokens() - 1;
        loop {
            let (token, p) = top_token(self.ctx.get_logits_ith(idx));
            if p < DRAFT_MIN_P && !out.is_empty() {
                break;
            }
            if self.model.vocab().is_eog(token) {
                break;
            }
            out.push(token);
            if out.len() >= max_len {
                break;
            }
            self.batch.clear();
            self.batch
                .add(token, i32::try_from(self.cached.len())?, &[0], true)?;
            self.ctx.decode(&mut self.batch).context("draft decode")?;
            self.cached.push(token);
            idx = 0;
        }
        Ok(out)
    }
}

/// The most likely token and its probability.
fn top_token(logits: &[f32]) -> (LlamaToken, f32) {
    let mut best = 0usize;
    let mut max = f32::NEG_INFINITY;
    for (i, l) in logits.iter().enumerate() {
        if *l > max {
            max = *l;
            best = i;
        }
    }
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    let p = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    (LlamaToken(i32::try_from(best).unwrap_or(0)), p)
}

/// Refuses a draft model whose tokens do not mean what the target's mean: drafted ids are
/// fed to the target as they are. Compared from the GGUF tokenizer metadata both models
/// loaded: the tokenizer kind, the vocabulary size and every token's text.
pub fn check_vocab(target: &LlamaModel, draft: &LlamaModel) -> anyhow::Result<()> {
    let kind = |m: &LlamaModel| m.meta_val_str("tokenizer.ggml.model").unwrap_or_default();
    let name = |m: &LlamaModel| {
        m.meta_val_str("general.name")
            .or_else(|_| m.meta_val_str("general.architecture"))
            .unwrap_or_else(|_| "?".to_owned())
    };
    let (tn, dn) = (target.n_vocab(), draft.n_vocab());
    if tn != dn || kind(target) != kind(draft) {
        anyhow::bail!(
            "the draft model {} has another vocabulary than {} ({} tokens, tokenizer {:?}, against {} tokens, tokenizer {:?}): a draft model must share the target's tokenizer",
            name(draft),
            name(target),
            dn,
            kind(draft),
            tn,
            kind(target)
        );
    }
    let (tv, dv) = (target.vocab(), draft.vocab());
    for i in 0..tn {
        let t = LlamaToken(i);
        if tv.text(t) != dv.text(t) {
            anyhow::bail!(
                "the draft model {} has another vocabulary than {}: token {i} is {:?} in one and {:?} in the other; a draft model must share the target's tokenizer",
                name(draft),
                name(target),
                dv.text(t).map(|s| s.to_string_lossy().into_owned()),
                tv.text(t).map(|s| s.to_string_lossy().into_owned()),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|i| LlamaToken(*i)).collect()
    }

    #[test]
    fn lookup_copies_what_followed_the_latest_match() {
        // "1 2 3 4 5 ... 1 2 3" → "4 5 ..."
        let h = toks(&[1, 2, 3, 4, 5, 6, 9, 1, 2, 3]);
        assert_eq!(lookup(&h, 2, 2), toks(&[4, 5]));
        assert_eq!(lookup(&h, 10, 2), toks(&[4, 5, 6, 9, 1, 2, 3]));
        // The most recent occurrence wins.
        let h = toks(&[7, 8, 1, 7, 8, 2, 7, 8]);
        assert_eq!(lookup(&h, 1, 2), toks(&[2]));
        // No repeated bigram: nothing.
        assert!(lookup(&toks(&[1, 2, 3, 4]), 4, 2).is_empty());
        assert!(lookup(&toks(&[1, 2, 1, 2]), 0, 2).is_empty());
        // A bigram is not enough where three tokens are asked for.
        let h = toks(&[7, 8, 2, 5, 7, 8]);
        assert_eq!(lookup(&h, 4, 2), toks(&[2, 5, 7, 8]));
        assert!(lookup(&h, 4, 3).is_empty());
        let h = toks(&[6, 7, 8, 2, 6, 7, 8]);
        assert_eq!(lookup(&h, 1, 3), toks(&[2]));
    }

    #[test]
    fn auto_pauses_when_drafts_are_rejected_and_tries_again_later() {
        let mut a = Adaptive::new(false);
        assert_eq!(a.draft_len(), START_DRAFT);
        a.record(4, 0, 1, 0.01);
        assert!(a.draft_len() > 0, "one miss is not enough to stop");
        a.record(1, 0, 1, 0.01);
        assert_eq!(a.draft_len(), 0, "two misses in a row switch drafting off");
        for _ in 0..FIRST_PAUSE {
            a.record(0, 0, 1, 0.01);
        }
        assert!(a.draft_len() > 0, "tried again after the pause");
    }

    #[test]
    fn auto_pauses_when_drafting_is_slower_even_if_kept() {
        let mut a = Adaptive::new(false);
        for _ in 0..4 {
            a.record(0, 0, 1, 0.010);
        }
        for _ in 0..3 {
            a.record(4, 2, 3, 0.060); // 20 ms a token against 10
        }
        assert_eq!(a.draft_len(), 0);
        // A draft that keeps something now and then, but too little, stops too.
        let mut a = Adaptive::new(false);
        let mut steps = 0;
        while a.draft_len() > 0 && steps < 20 {
            a.record(4, steps % 2, 1 + steps % 2, 0.01);
            steps += 1;
        }
        assert_eq!(a.draft_len(), 0, "1 kept in 8 drafted stops drafting");
        assert!(steps <= 6, "stopped after {steps} drafts");
    }

    #[test]
    fn drafts_grow_while_kept_and_forced_modes_never_pause() {
        let mut a = Adaptive::new(true);
        a.record(4, 4, 5, 0.01);
        assert_eq!(a.draft_len(), 8);
        a.record(8, 8, 9, 0.01);
        a.record(16, 16, 17, 0.01);
        assert_eq!(a.draft_len(), MAX_DRAFT);
        for _ in 0..10 {
            a.record(4, 0, 1, 1.0);
        }
        assert_eq!(a.draft_len(), 1);
        assert_eq!(a.min_ngram(), MIN_NGRAM);
        assert_eq!(Adaptive::new(false).min_ngram(), AUTO_MIN_NGRAM);
    }
}
