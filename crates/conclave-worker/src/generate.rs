//! Prompt decoding with prefix reuse, sampling, budget forcing, cancellation and the raw
//! llama-bench-style measurement.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use conclave_protocol::{
    BenchRequest, BenchResult, DoneInfo, GenerateRequest, PromptSegment, ReadyInfo, SandboxStatus,
    ThinkBudget, WarmInfo, WarmRequest, WorkerErrorCode, WorkerEvent, WorkerRequest,
};
use conclave_protocol::{SamplingParams, StopReason};

/// llama.cpp's default DRY sequence breakers: a repeat that crosses one is not penalised
/// as one sequence (llama-server's `dry_sequence_breakers`).
const DRY_SEQUENCE_BREAKERS: [&str; 4] = ["\n", ":", "\"", "*"];
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token_type::LlamaTokenAttr;
use rand::Rng;

use crate::prefix::{self, Reuse, Snapshot, SnapshotStore, TokenSeq};
use crate::speculative::{self, DraftModel, Source};
use crate::text::{StopCheck, StopMatcher, Utf8Stream};
use crate::{Incoming, Out};

/// Prompt tokens decoded per llama_decode call. Small enough that a cancel during a long
/// prompt lands within a fraction of a second on two cores, large enough to keep the
/// matrix kernels efficient.
const PROMPT_CHUNK: usize = 256;
/// The contexts' n_batch (and n_ubatch): the most tokens one decode call may carry.
const CONTEXT_BATCH: usize = 512;

/// A prompt that would throw away at least this many cached tokens saves them first: a
/// regenerated answer or an edited message may be followed by a return to the old branch.
/// Shorter stretches decode again in a fraction of a second.
const SNAPSHOT_MIN_TOKENS: usize = 64;

/// A snapshot replaces the live cache only when it keeps this many more tokens: putting a
/// state back copies all of it, which for a few tokens costs more than decoding them.
const SNAPSHOT_MIN_GAIN: usize = 16;

/// Memory for snapshots. A sequence's state is its keys and values (23 KB a token for
/// SmolLM2-135M, measured; about 0.5 MB for 7B models with an f16 cache), so this holds a few
/// long SmolLM2 conversations, or a few hundred tokens of a 7B one; a snapshot larger than
/// the budget is not kept, and a return to it decodes as before.
const SNAPSHOT_BUDGET_BYTES: usize = 256 << 20;
const SNAPSHOT_MAX: usize = 4;

/// A warm-up stops short of the context's end by this much: the message being typed will
/// grow, and an answer needs room. A conversation that long is left to the request, which
/// may drop old turns (and then its prompt differs from the warmed one anyway).
const WARM_HEADROOM: usize = 256;

/// Tokens decoded in one generation step: the sampled token, any forced by the thinking
/// budget, and a draft.
const BATCH: usize = 64;

/// Requests waiting while one is being served, fed by the stdin reader thread.
pub struct Queue {
    rx: mpsc::Receiver<Incoming>,
    pending: VecDeque<Incoming>,
    closed: bool,
    /// A thread count asked for while an answer runs, applied before the next token.
    threads: Option<u32>,
}

impl Queue {
    pub fn new(rx: mpsc::Receiver<Incoming>) -> Self {
        Self {
            rx,
            pending: VecDeque::new(),
            closed: false,
            threads: None,
        }
    }

    pub fn next_blocking(&mut self) -> Option<Incoming> {
        if let Some(next) = self.pending.pop_front() {
            return Some(next);
        }
        if self.closed {
            return None;
        }
        self.rx.recv().ok()
    }

    /// True when the running request `id` should stop: cancelled, or the core went away.
    fn should_stop(&mut self, id: u64) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Incoming::Request(WorkerRequest::Cancel { id: c })) if c == id => return true,
                Ok(Incoming::Request(WorkerRequest::Cancel { id: c })) => {
                    // A queued request cancelled before it started simply never runs.
                    self.pending.retain(|p| match p {
                        Incoming::Request(WorkerRequest::Generate(g)) => g.id != c,
                        Incoming::Request(WorkerRequest::Warm(w)) => w.id != c,
                        _ => true,
                    });
                }
                Ok(Incoming::Request(WorkerRequest::SetThreads { threads })) => {
                    self.threads = Some(threads);
                }
                Ok(other) => self.pending.push_back(other),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    return true;
                }
            }
        }
    }

    /// True when the warm-up `id` should stop: like [`Queue::should_stop`], and also when
    /// any other request waits, since whatever it is, the user is waiting for it.
    fn should_give_way(&mut self, id: u64) -> bool {
        self.should_stop(id) || !self.pending.is_empty()
    }
}

pub struct Generator {
    backend: &'static LlamaBackend,
    model: &'static LlamaModel,
    ctx: LlamaContext<'static>,
    n_ctx: u32,
    threads: u32,
    /// Tokens whose keys and values are in sequence 0 of the cache, in order.
    cached: TokenSeq,
    /// Sequences the cache gave up for a prompt that shared less of them.
    snapshots: SnapshotStore<SeqState>,
    /// The model drafting for this one (`--draft-model`), with its own context.
    draft: Option<DraftModel>,
}

/// A context for another thread count, being built on a helper thread.
struct Rethread {
    threads: u32,
    rx: mpsc::Receiver<anyhow::Result<LlamaContext<'static>>>,
}

impl Drop for Rethread {
    /// Dropped unused (an answer that failed mid-way): wait for the helper, so the next
    /// request never creates a context while it still does.
    fn drop(&mut self) {
        let _ = self.rx.recv();
    }
}

fn context(
    backend: &'static LlamaBackend,
    model: &'static LlamaModel,
    n_ctx: u32,
    threads: u32,
) -> anyhow::Result<LlamaContext<'static>> {
    let threads = i32::try_from(threads).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(CONTEXT_BATCH as u32)
        .with_n_ubatch(CONTEXT_BATCH as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    model
        .new_context(backend, params)
        .map_err(|e| anyhow::anyhow!("could not create a context of {n_ctx} tokens: {e}"))
}

impl Generator {
    pub fn new(
        backend: &'static LlamaBackend,
        model: &'static LlamaModel,
        n_ctx: u32,
        threads: u32,
        draft_model: Option<&'static LlamaModel>,
    ) -> anyhow::Result<Self> {
        let n_ctx = if n_ctx == 0 {
            model.n_ctx_train()
        } else {
            n_ctx.min(model.n_ctx_train())
        };
        let ctx = context(backend, model, n_ctx, threads)?;
        // Created after the target's context: contexts are created one at a time.
        let draft = draft_model
            .map(|d| DraftModel::new(backend, d, n_ctx, threads))
            .transpose()?;
        Ok(Self {
            backend,
            model,
            ctx,
            n_ctx,
            threads,
            cached: TokenSeq::default(),
            snapshots: SnapshotStore::new(SNAPSHOT_BUDGET_BYTES, SNAPSHOT_MAX),
            draft,
        })
    }

    pub fn ready_info(&self, load_time: Duration, sandbox: SandboxStatus) -> ReadyInfo {
        let vocab = self.model.vocab();
        let piece = |t: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
        };
        let meta = |k: &str| self.model.meta_val_str(k).ok().filter(|s| !s.is_empty());
        ReadyInfo {
            protocol: conclave_protocol::PROTOCOL_VERSION,
            pid: std::process::id(),
            load_ms: load_time.as_secs_f64() * 1000.0,
            n_ctx: self.n_ctx,
            n_ctx_train: self.model.n_ctx_train(),
            n_vocab: self.model.n_vocab(),
            n_params: self.model.n_params(),
            size_bytes: self.model.size(),
            threads: self.threads,
            architecture: meta("general.architecture").unwrap_or_default(),
            name: meta("general.name"),
            chat_template: self
                .model
                .chat_template(None)
                .ok()
                .and_then(|t| t.to_string().ok()),
            bos_token: piece(vocab.bos()),
            eos_token: piece(vocab.eos()),
            add_bos: vocab.should_add_bos(),
            draft_model: self.draft.as_ref().map(|d| {
                d.model
                    .meta_val_str("general.name")
                    .unwrap_or_else(|_| "draft model".to_owned())
            }),
            sandbox,
            devices: Vec::new(),
            gpu_layers: 0,
            gpu_layers_source: String::new(),
            memory: Vec::new(),
        }
    }

    /// `special`: parse special tokens, for the template's markup only; message text is
    /// always read as plain text.
    fn tokenize(&self, text: &str, special: bool) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), false, special)
    }

    /// The prompt's tokens with the bytes each stands for, for matching against the cache.
    /// Each segment is tokenized on its own, so no token spans markup and message text.
    fn prompt_seq(&self, segments: &[PromptSegment], add_bos: bool) -> TokenSeq {
        let mut seq = TokenSeq::default();
        if add_bos {
            push_token(self.model, &mut seq, self.model.vocab().bos());
        }
        for s in segments {
            for t in self.tokenize(&s.text, s.special) {
                push_token(self.model, &mut seq, t);
            }
        }
        seq
    }

    /// Tokens of a message text (special tokens not parsed, as in a prompt).
    pub fn count_tokens(&self, text: &str) -> u32 {
        u32::try_from(self.tokenize(text, false).len()).unwrap_or(u32::MAX)
    }

    /// llama-cpp-2 fixes threads when a context is created, so a new thread count means a
    /// new context; the cached sequence is carried over as a state snapshot (a copy of its
    /// keys and values, no re-decoding), so prefix reuse survives the change.
    pub fn set_threads(&mut self, threads: u32) -> anyhow::Result<()> {
        let threads = threads.max(1);
        if threads == self.threads {
            return Ok(());
        }
        let fresh = context(self.backend, self.model, self.n_ctx, threads)?;
        if let Err(fresh) = self.adopt(fresh, threads) {
            // The cache did not transfer: the next prompt is decoded in full.
            self.ctx = fresh;
            self.threads = threads;
            self.cached.clear();
        }
        Ok(())
    }

    /// Moves the cached sequence into `fresh` and makes it the context. Gives `fresh` back,
    /// the old context (and its cache) kept, when the snapshot does not transfer.
    fn adopt(
        &mut self,
        mut fresh: LlamaContext<'static>,
        threads: u32,
    ) -> Result<(), LlamaContext<'static>> {
        if !self.cached.is_empty() {
            let moved = self
                .ctx
                .state_seq_get(0, LlamaStateSeqFlags::empty())
                .ok()
                .map(|s| fresh.state_seq_set(&s, 0));
            if !matches!(moved, Some(Ok(()))) {
                return Err(fresh);
            }
        }
        self.ctx = fresh;
        self.threads = threads;
        Ok(())
    }

    /// Builds a context for `threads` on a helper thread: clearing a few thousand tokens of
    /// key/value cache takes tens of milliseconds, which a running answer should not wait
    /// for (it would eat what the extra thread gains when a side-by-side column hands its
    /// core over). Only one is in flight at a time, and the answer waits for it before the
    /// next request, so contexts are still created one at a time.
    fn build_context(&self, threads: u32) -> Rethread {
        let (tx, rx) = mpsc::sync_channel(1);
        let (backend, model, n_ctx) = (self.backend, self.model, self.n_ctx);
        std::thread::spawn(move || {
            let _ = tx.send(context(backend, model, n_ctx, threads));
        });
        Rethread { threads, rx }
    }

    /// Swaps in a context built by [`Self::build_context`]; `wait` blocks until it is built.
    /// Returns the rethread when it is still in flight.
    fn take_rethread(&mut self, pending: Rethread, wait: bool) -> Option<Rethread> {
        let built = if wait {
            pending.rx.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            pending.rx.try_recv()
        };
        match built {
            Ok(Ok(fresh)) => {
                if self.adopt(fresh, pending.threads).is_err() {
                    tracing::warn!("could not move the cache to {} threads", pending.threads);
                }
                None
            }
            Ok(Err(e)) => {
                tracing::warn!("no context for {} threads: {e:#}", pending.threads);
                None
            }
            Err(TryRecvError::Empty) => Some(pending),
            Err(TryRecvError::Disconnected) => None,
        }
    }

    /// Decodes the prompt's tokens from `from` on at positions starting after the cache, in
    /// chunks, with logits for the last one. Returns false when cancelled between chunks.
    /// A warm-up (`give_way`) also stops when another request waits.
    fn decode_tokens(
        &mut self,
        prompt: &TokenSeq,
        from: usize,
        queue: &mut Queue,
        (id, give_way): (u64, bool),
        out: &mut Out,
    ) -> anyhow::Result<bool> {
        let tokens = &prompt.tokens()[from.min(prompt.len())..];
        let mut batch = LlamaBatch::new(PROMPT_CHUNK.max(tokens.len().min(512)), 1);
        for (ci, chunk) in tokens.chunks(PROMPT_CHUNK).enumerate() {
            let stop = if give_way {
                queue.should_give_way(id)
            } else {
                ci > 0 && queue.should_stop(id)
            };
            if stop {
                return Ok(false);
            }
            batch.clear();
            let last_chunk = (ci + 1) * PROMPT_CHUNK >= tokens.len();
            for (i, tok) in chunk.iter().enumerate() {
                let pos = i32::try_from(self.cached.len() + i)?;
                batch.add(*tok, pos, &[0], last_chunk && i + 1 == chunk.len())?;
            }
            self.ctx.decode(&mut batch)?;
            let done = from + ci * PROMPT_CHUNK;
            self.cached.extend_from(prompt, done, done + chunk.len());
            if !last_chunk {
                out.send(&WorkerEvent::PromptProgress {
                    id,
                    done: u32::try_from((ci + 1) * PROMPT_CHUNK).unwrap_or(u32::MAX),
                    total: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                });
            }
        }
        Ok(true)
    }

    /// What `prompt` keeps of the live cache, and of the snapshot that keeps the most when
    /// it keeps clearly more. At least the last prompt token is always decoded, for its
    /// logits.
    fn plan_reuse(&self, prompt: &TokenSeq) -> Plan {
        self.plan_reuse_up_to(prompt, prompt.len().saturating_sub(1))
    }

    /// [`Generator::plan_reuse`] decoding at least from `max_from` on.
    fn plan_reuse_up_to(&self, prompt: &TokenSeq, max_from: usize) -> Plan {
        let live = prefix::shared_prefix(&self.cached, prompt, max_from);
        let snapshot = self
            .snapshots
            .best(prompt, max_from)
            .filter(|(_, r)| r.keep >= live.keep + SNAPSHOT_MIN_GAIN);
        Plan { live, snapshot }
    }

    /// Makes the cache hold exactly what `plan` keeps: saves the live sequence when a long
    /// stretch of it is about to go, puts the snapshot back when the plan uses one, and cuts
    /// the rest. Returns what was actually kept (nothing when the cache would not cut).
    fn apply_reuse(&mut self, plan: Plan) -> anyhow::Result<Reuse> {
        // Out of the store first: saving the live sequence may evict or reorder entries.
        let chosen = plan
            .snapshot
            .and_then(|(index, r)| Some((r, self.snapshots.take(index)?)));
        if self.cached.len().saturating_sub(plan.live.keep) >= SNAPSHOT_MIN_TOKENS {
            self.save_snapshot();
        }
        let mut reuse = plan.live;
        if let Some((r, snapshot)) = chosen {
            if self.restore_snapshot(&snapshot, r.keep) {
                reuse = r;
                // Its tail past what this prompt keeps is a branch of its own.
                if snapshot.seq.len().saturating_sub(r.keep) >= SNAPSHOT_MIN_TOKENS {
                    self.snapshots.put_back(snapshot);
                }
            } else {
                reuse = Reuse::default();
            }
        }
        if self
            .ctx
            .kv_cache_seq_rm(0, Some(u32::try_from(reuse.keep)?), None)
            .is_err()
        {
            self.ctx.clear_kv_cache();
            reuse = Reuse::default();
        }
        self.cached.truncate(reuse.keep);
        Ok(reuse)
    }

    /// Copies the live sequence into the snapshot store, unless the store holds it already
    /// or it is too large for the store.
    fn save_snapshot(&mut self) {
        if self.cached.is_empty() || self.snapshots.covers(&self.cached) {
            return;
        }
        let flags = LlamaStateSeqFlags::empty();
        let size = self.ctx.state_seq_get_size_ext(0, flags);
        if !self.snapshots.fits(size) {
            tracing::debug!(size, "sequence too large to snapshot");
            return;
        }
        let t = Instant::now();
        match self.ctx.state_seq_get(0, flags) {
            Ok(state) => {
                self.snapshots.insert(self.cached.clone(), state, size);
                tracing::debug!(
                    tokens = self.cached.len(),
                    size,
                    ms = t.elapsed().as_secs_f64() * 1000.0,
                    stored = self.snapshots.total_bytes(),
                    "saved a snapshot"
                );
            }
            Err(e) => tracing::warn!("could not snapshot the cache: {e}"),
        }
    }

    /// Puts `snapshot` into sequence 0 in place of the live one, to be cut at `keep`. On
    /// failure the cache is left empty (a half-written sequence is useless) and false is
    /// returned.
    fn restore_snapshot(&mut self, snapshot: &Snapshot<SeqState>, keep: usize) -> bool {
        let t = Instant::now();
        match self.ctx.state_seq_set(&snapshot.state, 0) {
            Ok(()) => {
                self.cached = snapshot.seq.clone();
                tracing::debug!(
                    tokens = self.cached.len(),
                    keep,
                    ms = t.elapsed().as_secs_f64() * 1000.0,
                    "restored a snapshot"
                );
                true
            }
            Err(e) => {
                tracing::warn!("could not restore a snapshot: {e}");
                self.ctx.clear_kv_cache();
                self.cached.clear();
                false
            }
        }
    }

    fn sampler(
        &self,
        p: &SamplingParams,
        seed: u32,
        grammar: Option<&str>,
    ) -> anyhow::Result<LlamaSampler> {
        let mut chain = Vec::new();
        if let Some(g) = grammar {
            chain.push(
                LlamaSampler::grammar(self.model, g, "root")
                    .map_err(|e| anyhow::anyhow!("invalid grammar: {e}"))?,
            );
        }
        if p.repeat_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            chain.push(LlamaSampler::penalties(
                self.model.n_vocab(),
                p.repeat_last_n,
                p.repeat_penalty,
                p.frequency_penalty,
                p.presence_penalty,
            ));
        }
        if p.dry_multiplier > 0.0 {
            chain.push(LlamaSampler::dry(
                self.model,
                p.dry_multiplier,
                p.dry_base,
                p.dry_allowed_length,
                // -1 = the whole context, as llama-server documents it; this llama.cpp
                // clamps negative windows to 0 (off), so the worker resolves it.
                if p.dry_penalty_last_n < 0 {
                    i32::try_from(self.model.n_ctx_train()).unwrap_or(i32::MAX)
                } else {
                    p.dry_penalty_last_n
                },
                DRY_SEQUENCE_BREAKERS,
            ));
        }
        // XTC before the final pick, as llama.cpp orders it: it also changes greedy answers
        // (the top token is what it removes). Its own draws use the request's seed.
        let xtc = (p.xtc_probability > 0.0)
            .then(|| LlamaSampler::xtc(p.xtc_probability, p.xtc_threshold, 1, seed));
        if p.temperature <= 0.0 {
            chain.extend(xtc);
            chain.push(LlamaSampler::greedy());
        } else {
            if p.top_k > 0 {
                chain.push(LlamaSampler::top_k(p.top_k));
            }
            if p.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(p.top_p, 1));
            }
            if p.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(p.min_p, 1));
            }
            chain.extend(xtc);
            chain.push(LlamaSampler::temp(p.temperature));
            chain.push(LlamaSampler::dist(seed));
        }
        Ok(LlamaSampler::chain_simple(chain))
    }

    pub fn generate(&mut self, req: GenerateRequest, queue: &mut Queue, out: &mut Out) {
        let id = req.id;
        if let Err(e) = self.generate_inner(req, queue, out) {
            self.failed(out, id, &e);
        }
    }

    fn failed(&mut self, out: &mut Out, id: u64, e: &anyhow::Error) {
        // The cache may hold half a batch; start clean next time.
        self.ctx.clear_kv_cache();
        self.cached.clear();
        out.error(
            Some(id),
            WorkerErrorCode::GenerationFailed,
            format!("{e:#}"),
        );
    }

    fn generate_inner(
        &mut self,
        req: GenerateRequest,
        queue: &mut Queue,
        out: &mut Out,
    ) -> anyhow::Result<()> {
        let id = req.id;
        let source = speculative::resolve(
            req.speculative,
            self.draft.is_some(),
            req.params.temperature <= 0.0,
        )?;
        self.set_threads(req.threads)?;
        let t0 = Instant::now();
        let prompt = self.prompt_seq(&req.segments, req.add_bos);
        if prompt.is_empty() {
            out.error(
                Some(id),
                WorkerErrorCode::EmptyPrompt,
                "the rendered prompt has no tokens",
            );
            return Ok(());
        }
        // Leave room for an answer: the core drops old turns rather than let a long
        // history squeeze the reply to a few tokens.
        let reserve = (req.params.max_tokens as usize)
            .min(self.n_ctx as usize / 4)
            .max(1);
        let mut plan = self.plan_reuse(&prompt);
        if plan.reuse().used(&prompt) + reserve >= self.n_ctx as usize {
            // The cached spelling of earlier text can be a few tokens longer than the
            // tokenizer's; never let that alone refuse a prompt.
            plan = Plan::default();
        }
        let n_prompt = plan.reuse().used(&prompt);
        if n_prompt + reserve >= self.n_ctx as usize {
            out.send(&WorkerEvent::Error {
                id: Some(id),
                code: WorkerErrorCode::ContextOverflow,
                message: format!(
                    "the prompt has {n_prompt} tokens and the context holds {}",
                    self.n_ctx
                ),
                prompt_tokens: Some(u32::try_from(n_prompt).unwrap_or(u32::MAX)),
            });
            return Ok(());
        }

        let reuse = self.apply_reuse(plan)?;
        let n_prompt = reuse.used(&prompt);
        let common = reuse.keep;
        if !self.decode_tokens(&prompt, reuse.from, queue, (id, false), out)? {
            self.finish(
                out,
                id,
                StopReason::Cancelled,
                n_prompt,
                common,
                t0.elapsed(),
                Duration::ZERO,
                0,
                &Budget::default(),
                (0, 0),
            );
            return Ok(());
        }
        // GPU and RPC backends return from decode before the work is done: wait for it, so
        // the prompt's time is the prompt's and not charged to the first generated token.
        self.ctx.synchronize();
        let mut adaptive = speculative::Adaptive::new(matches!(
            source,
            Source::Lookup { forced: true } | Source::Model { forced: true }
        ));
        if let (Source::Model { .. }, Some(draft)) = (source, self.draft.as_mut()) {
            // The draft model reads the prompt too; done now so it counts as prompt time.
            draft.sync(self.cached.tokens())?;
        }
        let prompt_time = t0.elapsed();
        out.send(&WorkerEvent::Started {
            id,
            prompt_tokens: u32::try_from(n_prompt)?,
            cached_tokens: u32::try_from(common)?,
            prompt_ms: prompt_time.as_secs_f64() * 1000.0,
        });

        let mut sampler = self.sampler(&req.params, req.seed, req.grammar.as_deref())?;
        let vocab = self.model.vocab();
        let mut utf8 = Utf8Stream::default();
        let mut stops = StopMatcher::new(&req.params.stop);
        let mut budget = Budget::new(req.budget);
        let mut batch = LlamaBatch::new(BATCH, 1);
        let mut n_gen: u32 = 0;
        // Batch indexes of the logits to sample from, in order, and the drafted token
        // decoded after each of them (one fewer: the last logits follow the whole draft).
        let mut logits_at: Vec<i32> = vec![-1];
        let mut drafted: Vec<LlamaToken> = Vec::new();
        let (mut total_drafted, mut total_accepted) = (0u32, 0u32);
        let mut rethread: Option<Rethread> = None;
        let t_gen = Instant::now();
        let mut t_step = Instant::now();
        let stop_reason = loop {
            if queue.should_stop(id) {
                break StopReason::Cancelled;
            }
            if let Some(threads) = queue.threads.take().map(|t| t.max(1)) {
                if rethread.as_ref().is_none_or(|r| r.threads != threads) {
                    // A change of mind while one is being built waits for it: two contexts
                    // must not be created at once.
                    if let Some(old) = rethread.take() {
                        self.take_rethread(old, true);
                    }
                    rethread = (threads != self.threads).then(|| self.build_context(threads));
                }
            }
            // Sample at each position in order: a drafted token is kept while it is the
            // token the target samples there (it is already decoded); the first one that
            // differs is replaced by the sampled token, and the rest of the draft goes.
            // The sampler sees exactly the tokens kept, in order, as without a draft.
            let mut next: Vec<LlamaToken> = Vec::new();
            let mut stopped = None;
            let mut kept = 0usize;
            let mut produced = 0usize;
            for (j, &idx) in logits_at.iter().enumerate() {
                // A cancel stops within one token, also inside a verified draft.
                if j > 0 && queue.should_stop(id) {
                    stopped = Some(StopReason::Cancelled);
                    break;
                }
                let token = sampler.sample(&self.ctx, idx);
                if vocab.is_eog(token) {
                    stopped = Some(StopReason::Eos);
                    break;
                }
                n_gen += 1;
                produced += 1;
                let piece = vocab.token_to_piece(token, true, None);
                let text = utf8.push(&piece);
                let mut forced: Vec<LlamaToken> = Vec::new();
                let mut shown = match stops.push(&text) {
                    StopCheck::Emit(t) => t,
                    StopCheck::Stopped(t) => {
                        send_delta(out, id, t, 1);
                        stopped = Some(StopReason::StopString);
                        break;
                    }
                };
                if let Some(inject) = budget.after_token(&text) {
                    // The engine's own markers, as a template would write them.
                    forced = self.tokenize(&inject, true);
                    shown.push_str(&inject);
                }
                send_delta(out, id, shown, 1);
                if n_gen >= req.params.max_tokens {
                    stopped = Some(StopReason::MaxTokens);
                    break;
                }
                if forced.is_empty() && drafted.get(j) == Some(&token) {
                    push_token(self.model, &mut self.cached, token);
                    kept += 1;
                    continue;
                }
                next.push(token);
                next.extend(forced);
                break;
            }
            // The first step only samples the prompt's logits: no decode to learn from.
            if n_gen > u32::try_from(produced)? {
                adaptive.record(
                    drafted.len(),
                    kept,
                    produced,
                    t_step.elapsed().as_secs_f64(),
                );
            }
            t_step = Instant::now();
            total_drafted += u32::try_from(drafted.len())?;
            total_accepted += u32::try_from(kept)?;
            if kept < drafted.len() {
                // Rejected draft positions leave the cache, so that it holds exactly
                // `self.cached` (the prefix cache and snapshots rely on it).
                self.ctx
                    .kv_cache_seq_rm(0, Some(u32::try_from(self.cached.len())?), None)?;
            }
            drafted.clear();
            if let Some(reason) = stopped {
                break reason;
            }
            if self.cached.len() + next.len() >= self.n_ctx as usize {
                break StopReason::ContextFull;
            }
            // Room for a draft: the context, the batch, and the tokens still allowed
            // (the token sampled after the draft is one of them).
            let room = (self.n_ctx as usize)
                .saturating_sub(self.cached.len() + next.len() + 1)
                .min(BATCH.saturating_sub(next.len()))
                .min(req.params.max_tokens.saturating_sub(n_gen + 1) as usize)
                .min(adaptive.draft_len());
            if room > 0 {
                let mut history = self.cached.tokens().to_vec();
                history.extend_from_slice(&next);
                drafted = match (source, self.draft.as_mut()) {
                    (Source::Lookup { .. }, _) => {
                        speculative::lookup(&history, room, adaptive.min_ngram())
                    }
                    (Source::Model { .. }, Some(draft)) => draft.draft(&history, room)?,
                    _ => Vec::new(),
                };
            }
            batch.clear();
            for (i, t) in next.iter().chain(&drafted).enumerate() {
                let pos = i32::try_from(self.cached.len() + i)?;
                batch.add(*t, pos, &[0], i + 1 >= next.len())?;
            }
            // Forced tokens are the model's input as much as sampled ones: the sampler's
            // penalties and grammar see them (a sampled token it has seen already).
            for t in &next[1..] {
                sampler.accept(*t);
            }
            // Between sampling and decoding the context holds nothing that the snapshot
            // does not carry: the next logits come from the new one.
            if let Some(r) = rethread.take() {
                rethread = self.take_rethread(r, false);
            }
            self.ctx.decode(&mut batch)?;
            for t in &next {
                push_token(self.model, &mut self.cached, *t);
            }
            let first = i32::try_from(next.len())? - 1;
            logits_at.clear();
            logits_at.extend((0..=drafted.len()).map(|k| first + i32::try_from(k).unwrap_or(0)));
        };
        let tail = utf8.finish();
        if stop_reason != StopReason::StopString {
            let mut rest = match stops.push(&tail) {
                StopCheck::Emit(t) | StopCheck::Stopped(t) => t,
            };
            rest.push_str(&stops.finish());
            send_delta(out, id, rest, 0);
        }
        let gen_time = t_gen.elapsed();
        self.finish(
            out,
            id,
            stop_reason,
            n_prompt,
            common,
            prompt_time,
            gen_time,
            n_gen,
            &budget,
            (total_drafted, total_accepted),
        );
        // After the answer is out: the next request must not create a context while this
        // one is still being built.
        if let Some(r) = rethread {
            self.take_rethread(r, true);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        out: &mut Out,
        id: u64,
        stop_reason: StopReason,
        n_prompt: usize,
        cached: usize,
        prompt_time: Duration,
        gen_time: Duration,
        n_gen: u32,
        budget: &Budget,
        (drafted_tokens, accepted_tokens): (u32, u32),
    ) {
        out.send(&WorkerEvent::Done(DoneInfo {
            id,
            stop_reason,
            prompt_tokens: u32::try_from(n_prompt).unwrap_or(u32::MAX),
            cached_tokens: u32::try_from(cached).unwrap_or(u32::MAX),
            completion_tokens: n_gen,
            prompt_ms: prompt_time.as_secs_f64() * 1000.0,
            gen_ms: gen_time.as_secs_f64() * 1000.0,
            threads: self.threads,
            thinking_tokens: budget.thinking_tokens,
            budget_cut_at: budget.cut_at,
            drafted_tokens,
            accepted_tokens,
        }));
    }

    /// Decodes a prompt into the cache and says what it left there; nothing is sampled.
    pub fn warm(&mut self, req: WarmRequest, queue: &mut Queue, out: &mut Out) {
        let id = req.id;
        match self.warm_inner(req, queue, out) {
            Ok(info) => out.send(&WorkerEvent::Warmed(info)),
            Err(e) => self.failed(out, id, &e),
        }
    }

    fn warm_inner(
        &mut self,
        req: WarmRequest,
        queue: &mut Queue,
        out: &mut Out,
    ) -> anyhow::Result<WarmInfo> {
        let id = req.id;
        let t0 = Instant::now();
        let mut info = WarmInfo {
            id,
            ..WarmInfo::default()
        };
        // Queued behind an answer or another warm-up that is newer: the user has moved on.
        if queue.should_give_way(id) {
            return Ok(info);
        }
        self.set_threads(req.threads)?;
        let prompt = self.prompt_seq(&req.segments, req.add_bos);
        info.prompt_tokens = u32::try_from(prompt.len())?;
        // All of it may be kept: no logits are needed, the answer decodes at least its
        // own generation prompt.
        let plan = self.plan_reuse_up_to(&prompt, prompt.len());
        if prompt.is_empty() || plan.reuse().used(&prompt) + WARM_HEADROOM >= self.n_ctx as usize {
            return Ok(info);
        }
        let reuse = self.apply_reuse(plan)?;
        info.cached_tokens = u32::try_from(reuse.keep)?;
        let before = self.cached.len();
        info.complete = self.decode_tokens(&prompt, reuse.from, queue, (id, true), out)?;
        self.ctx.synchronize();
        info.decoded_tokens = u32::try_from(self.cached.len() - before)?;
        info.prompt_ms = t0.elapsed().as_secs_f64() * 1000.0;
        Ok(info)
    }

    /// Raw decode speed the way llama-bench measures it: random prompt tokens in one batch,
    /// then single-token decodes without sampling; one warm-up round first.
    pub fn bench(&mut self, req: BenchRequest, out: &mut Out) {
        match self.bench_inner(&req) {
            Ok(result) => out.send(&WorkerEvent::BenchResult(result)),
            Err(e) => out.error(Some(req.id), WorkerErrorCode::BenchFailed, format!("{e:#}")),
        }
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    fn bench_inner(&mut self, req: &BenchRequest) -> anyhow::Result<BenchResult> {
        self.set_threads(req.threads)?;
        let n_vocab = self.model.n_vocab();
        let mut rng = rand::rng();
        let n_prompt = req.prompt_tokens.max(1) as usize;
        let depth = req.depth as usize;
        if depth + n_prompt + req.gen_tokens as usize + 1 >= self.n_ctx as usize {
            anyhow::bail!(
                "depth + prompt + generated tokens exceed the context of {}",
                self.n_ctx
            );
        }
        let mut pp = Vec::new();
        let mut tg = Vec::new();
        let mut ttft = Vec::new();
        // The context's n_batch: llama.cpp aborts on a larger batch, so a longer prompt
        // goes in chunks (as llama-bench does with its n_batch).
        let chunk_len = n_prompt.max(depth).clamp(1, CONTEXT_BATCH);
        let mut batch = LlamaBatch::new(chunk_len, 1);
        let mut random = |n: usize| -> Vec<LlamaToken> {
            (0..n)
                .map(|_| LlamaToken(rng.random_range(0..n_vocab)))
                .collect()
        };
        for rep in 0..=req.reps {
            self.ctx.clear_kv_cache();
            // The context the timed prompt sits on, decoded untimed.
            for (ci, chunk) in random(depth).chunks(chunk_len).enumerate() {
                batch.clear();
                for (i, t) in chunk.iter().enumerate() {
                    batch.add(*t, i32::try_from(ci * chunk_len + i)?, &[0], false)?;
                }
                self.ctx.decode(&mut batch)?;
            }
            self.ctx.synchronize();
            let prompt = random(n_prompt);
            let t0 = Instant::now();
            for (ci, chunk) in prompt.chunks(chunk_len).enumerate() {
                batch.clear();
                for (i, t) in chunk.iter().enumerate() {
                    let pos = ci * chunk_len + i;
                    batch.add(*t, i32::try_from(depth + pos)?, &[0], pos + 1 == n_prompt)?;
                }
                self.ctx.decode(&mut batch)?;
            }
            // As llama-bench does: asynchronous backends (GPU, RPC) finish here.
            self.ctx.synchronize();
            let t_pp = t0.elapsed();
            let t1 = Instant::now();
            let mut first = Duration::ZERO;
            for g in 0..req.gen_tokens as usize {
                batch.clear();
                batch.add(
                    random(1)[0],
                    i32::try_from(depth + n_prompt + g)?,
                    &[0],
                    true,
                )?;
                self.ctx.decode(&mut batch)?;
                self.ctx.synchronize();
                if g == 0 {
                    first = t0.elapsed();
                }
            }
            let t_tg = t1.elapsed();
            if rep == 0 {
                continue; // warm-up
            }
            pp.push(n_prompt as f64 / t_pp.as_secs_f64());
            tg.push(f64::from(req.gen_tokens) / t_tg.as_secs_f64());
            ttft.push(first.as_secs_f64() * 1000.0);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let gen_mean = mean(&tg);
        let var = tg.iter().map(|x| (x - gen_mean).powi(2)).sum::<f64>() / tg.len().max(1) as f64;
        Ok(BenchResult {
            id: req.id,
            threads: self.threads,
            prompt_tokens: req.prompt_tokens,
            gen_tokens: req.gen_tokens,
            reps: req.reps,
            prompt_tps: mean(&pp),
            gen_tps: gen_mean,
            ttft_ms: mean(&ttft),
            gen_tps_stddev: var.sqrt(),
        })
    }
}

/// Appends `token` with the bytes it stands for (special tokens written out, as the
/// templates write them in prompts).
fn push_token(model: &LlamaModel, seq: &mut TokenSeq, token: LlamaToken) {
    let vocab = model.vocab();
    let attr = vocab.attr(token);
    let special =
        attr.contains(LlamaTokenAttr::Control) || attr.contains(LlamaTokenAttr::UserDefined);
    seq.push(token, &vocab.token_to_piece(token, true, None), special);
}

/// How a prompt reuses the cache, before anything is changed.
#[derive(Default)]
struct Plan {
    /// What the live sequence can keep.
    live: Reuse,
    /// The snapshot to put back instead (its index in the store), and what it keeps.
    snapshot: Option<(usize, Reuse)>,
}

impl Plan {
    fn reuse(&self) -> Reuse {
        self.snapshot.map_or(self.live, |(_, r)| r)
    }
}

fn send_delta(out: &mut Out, id: u64, text: String, tokens: u32) {
    if text.is_empty() && tokens == 0 {
        return;
    }
    out.send(&WorkerEvent::Delta { id, text, tokens });
}

/// Counts thinking tokens and decides when the budget forces the answer. It scans only the
/// newly generated text plus a marker's length of overlap, so it stays O(1) per token.
#[derive(Default)]
struct Budget {
    spec: Option<ThinkBudget>,
    text: String,
    /// Byte offset where the current thinking began, when thinking.
    thinking_from: Option<usize>,
    done: bool,
    thinking_tokens: u32,
    cut_at: Option<u32>,
}

impl Budget {
    fn new(spec: Option<ThinkBudget>) -> Self {
        let thinking_from = spec.as_ref().filter(|s| s.starts_in_thinking).map(|_| 0);
        Self {
            spec,
            thinking_from,
            ..Self::default()
        }
    }

    /// Called after each sampled token with its text; returns the text to inject when the
    /// budget is spent.
    fn after_token(&mut self, piece: &str) -> Option<String> {
        let spec = self.spec.as_ref()?;
        if self.done {
            return None;
        }
        let before = self.text.len();
        self.text.push_str(piece);
        let from = match self.thinking_from {
            Some(from) => from,
            None => {
                // Thinking opens at the very start of the output or not at all: a literal
                // marker later in the answer (in a code block, say) is just text.
                let lead = self.text.trim_start();
                if lead.len() >= spec.open.len() && !lead.starts_with(&spec.open)
                    || lead.len() < spec.open.len() && !spec.open.starts_with(lead)
                {
                    self.done = true;
                    return None;
                }
                let start = floor_boundary(&self.text, before.saturating_sub(spec.open.len()));
                match self.text[start..].find(&spec.open) {
                    Some(pos) => {
                        let from = start + pos + spec.open.len();
                        self.thinking_from = Some(from);
                        from
                    }
                    None => return None,
                }
            }
        };
        self.thinking_tokens += 1;
        let scan = floor_boundary(
            &self.text,
            before.saturating_sub(spec.close.len()).max(from),
        );
        if self.text[scan..].contains(&spec.close) {
            self.done = true;
            return None;
        }
        if self.thinking_tokens >= spec.max_tokens {
            self.done = true;
            self.cut_at = Some(self.thinking_tokens);
            return Some(spec.inject.clone());
        }
        None
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
