//! How much of the key/value cache a new prompt can keep, and snapshots of sequences the
//! cache had to give up, so a conversation that comes back to them decodes only what is new.
//!
//! Matching is by the bytes the tokens stand for, not by token id. A follow-up prompt holds
//! the previous answer as text, rendered by the template and tokenized again, and
//! tokenization is not unique: a sampled answer may spell "lighthouse" as two tokens where
//! the tokenizer makes one, or split a Greek letter differently. Comparing ids stops at the
//! first such spelling and the rest of the answer is decoded again; comparing bytes goes on
//! past it. The kept cache ends where both sequences have a token boundary at the same
//! byte, and the prompt's own tokens are decoded from there, so the model sees the answer
//! as it wrote it and the new text as the tokenizer writes it. Both sides are compared as
//! token pieces (never as the prompt string), so a tokenizer that adds a leading space or
//! splits characters across tokens compares the same on both sides.
//!
//! The snapshots follow llama.cpp's server, which keeps the states of prompts it evicts in
//! a size-capped store and reloads the one sharing the longest prefix with a new prompt.

use llama_cpp_2::token::LlamaToken;

/// A token sequence and the bytes its tokens stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSeq {
    tokens: Vec<LlamaToken>,
    /// Where each token's bytes end in `bytes`.
    ends: Vec<usize>,
    /// Tokens that only the identical token may match. A control or user-defined token is
    /// what a tokenizer parsing special tokens reads from its text, but the same text
    /// spelled in ordinary tokens is a different input to the model. Tokens without bytes
    /// are here too: a byte comparison cannot see them.
    exact: Vec<bool>,
    bytes: Vec<u8>,
}

impl TokenSeq {
    pub fn push(&mut self, token: LlamaToken, piece: &[u8], special: bool) {
        self.bytes.extend_from_slice(piece);
        self.tokens.push(token);
        self.ends.push(self.bytes.len());
        self.exact.push(special || piece.is_empty());
    }

    /// Appends `other`'s tokens `from..to`, with their bytes.
    pub fn extend_from(&mut self, other: &Self, from: usize, to: usize) {
        for i in from..to.min(other.len()) {
            let piece = &other.bytes[other.start(i)..other.ends[i]];
            self.bytes.extend_from_slice(piece);
            self.tokens.push(other.tokens[i]);
            self.ends.push(self.bytes.len());
            self.exact.push(other.exact[i]);
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens(&self) -> &[LlamaToken] {
        &self.tokens
    }

    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        self.bytes.truncate(self.start(len));
        self.tokens.truncate(len);
        self.ends.truncate(len);
        self.exact.truncate(len);
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Where token `i` starts in `bytes` (the end of all bytes for `i == len`).
    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// True when `self`'s tokens begin with all of `prefix`'s.
    pub fn starts_with(&self, prefix: &Self) -> bool {
        self.tokens.starts_with(&prefix.tokens)
    }
}

/// What a prompt can reuse of a cached sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reuse {
    /// Cached tokens kept.
    pub keep: usize,
    /// The first prompt token to decode after them.
    pub from: usize,
}

impl Reuse {
    /// Length of the sequence the model sees: kept tokens plus the prompt's rest.
    pub fn used(&self, prompt: &TokenSeq) -> usize {
        self.keep + prompt.len().saturating_sub(self.from)
    }
}

/// The longest prefix of `cached` that stands for the same bytes as a prefix of `prompt`
/// and ends on a token boundary of both, with `from` at most `max_from` (so that at least
/// the prompt's last token is decoded and its logits computed).
pub fn shared_prefix(cached: &TokenSeq, prompt: &TokenSeq, max_from: usize) -> Reuse {
    let limit = max_from.min(prompt.len());
    let same_bytes = cached
        .bytes
        .iter()
        .zip(&prompt.bytes)
        .take_while(|(a, b)| a == b)
        .count();
    let (mut i, mut j) = (0, 0);
    let mut best = Reuse::default();
    while i < cached.len() && j < limit {
        let aligned = cached.start(i) == prompt.start(j);
        if aligned && cached.tokens[i] == prompt.tokens[j] {
            i += 1;
            j += 1;
        } else if cached.exact[i] || prompt.exact[j] {
            break;
        } else {
            // Different spellings of the same text: step the token that ends first (both
            // when they end together), as long as its bytes are the same on both sides.
            let (ea, eb) = (cached.ends[i], prompt.ends[j]);
            if ea.min(eb) > same_bytes {
                break;
            }
            if ea <= eb {
                i += 1;
            }
            if eb <= ea {
                j += 1;
            }
        }
        if cached.start(i) == prompt.start(j) {
            best = Reuse { keep: i, from: j };
        }
    }
    best
}

/// A saved sequence: its tokens and an opaque state to put back into the cache.
pub struct Snapshot<S> {
    pub seq: TokenSeq,
    pub state: S,
    size: usize,
    last_used: u64,
}

/// A few snapshots, least recently used evicted first, within a byte budget.
pub struct SnapshotStore<S> {
    entries: Vec<Snapshot<S>>,
    budget: usize,
    max_entries: usize,
    clock: u64,
}

impl<S> SnapshotStore<S> {
    pub fn new(budget: usize, max_entries: usize) -> Self {
        Self {
            entries: Vec::new(),
            budget,
            max_entries,
            clock: 0,
        }
    }

    /// Whether a snapshot of `size` bytes could be kept at all; checked before copying a
    /// state out of the cache, which is the costly part.
    pub fn fits(&self, size: usize) -> bool {
        self.max_entries > 0 && size <= self.budget
    }

    /// True when a stored snapshot already holds all of `seq`: saving it would add nothing.
    /// Marks that snapshot as used.
    pub fn covers(&mut self, seq: &TokenSeq) -> bool {
        self.clock += 1;
        let now = self.clock;
        match self.entries.iter_mut().find(|e| e.seq.starts_with(seq)) {
            Some(e) => {
                e.last_used = now;
                true
            }
            None => false,
        }
    }

    pub fn insert(&mut self, seq: TokenSeq, state: S, size: usize) {
        if !self.fits(size) {
            return;
        }
        // A stored sequence that the new one extends can be answered from the new one.
        self.entries.retain(|e| !seq.starts_with(&e.seq));
        while self.entries.len() >= self.max_entries
            || (self.total_bytes() + size > self.budget && !self.entries.is_empty())
        {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => {
                    self.entries.swap_remove(i);
                }
                None => break,
            }
        }
        self.clock += 1;
        self.entries.push(Snapshot {
            seq,
            state,
            size,
            last_used: self.clock,
        });
    }

    /// The snapshot that keeps the most tokens for `prompt`, and what it keeps.
    pub fn best(&self, prompt: &TokenSeq, max_from: usize) -> Option<(usize, Reuse)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, shared_prefix(&e.seq, prompt, max_from)))
            .max_by_key(|(_, r)| r.keep)
    }

    /// Takes snapshot `index` out of the store (indexes of the others may change).
    pub fn take(&mut self, index: usize) -> Option<Snapshot<S>> {
        (index < self.entries.len()).then(|| self.entries.swap_remove(index))
    }

    /// Stores a snapshot taken out with [`Self::take`] again, as the most recently used.
    pub fn put_back(&mut self, snapshot: Snapshot<S>) {
        self.insert(snapshot.seq, snapshot.state, snapshot.size);
    }

    pub fn total_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.size).sum()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: ids are indexes into this table, `<|end|>` and `<s>` are special.
    const VOCAB: &[&str] = &[
        "<s>",
        "<|end|>",
        "light",
        "house",
        "lighthouse",
        " is",
        " tall",
        ".",
        "</",
        "en",
        "d>",
        "<",
        "|",
        "end",
        "|>",
        "\n",
        "Hi",
    ];

    fn id(piece: &str) -> LlamaToken {
        let i = VOCAB.iter().position(|p| *p == piece);
        LlamaToken(i32::try_from(i.expect("piece in the toy vocabulary")).unwrap_or(0))
    }

    fn seq(pieces: &[&str]) -> TokenSeq {
        let mut s = TokenSeq::default();
        for p in pieces {
            s.push(id(p), p.as_bytes(), matches!(*p, "<s>" | "<|end|>"));
        }
        s
    }

    /// Byte tokens, for characters split across tokens.
    fn raw(parts: &[&[u8]]) -> TokenSeq {
        let mut s = TokenSeq::default();
        for p in parts {
            // An id made from the bytes: the same piece always gets the same id.
            let fake = p.iter().fold(1000i32, |acc, b| {
                acc.wrapping_mul(257).wrapping_add(i32::from(*b))
            });
            s.push(LlamaToken(fake), p, false);
        }
        s
    }

    #[test]
    fn identical_sequences_keep_all_but_the_last_prompt_token() {
        let a = seq(&["<s>", "Hi", "\n", "lighthouse"]);
        let r = shared_prefix(&a, &a, a.len() - 1);
        assert_eq!(r, Reuse { keep: 3, from: 3 });
        assert_eq!(r.used(&a), 4);
    }

    #[test]
    fn a_respelled_answer_is_kept() {
        // Generated as "light" + "house"; the tokenizer makes one token of it.
        let cached = seq(&["<s>", "Hi", "light", "house", " is", " tall", "."]);
        let prompt = seq(&[
            "<s>",
            "Hi",
            "lighthouse",
            " is",
            " tall",
            ".",
            "<|end|>",
            "\n",
        ]);
        let r = shared_prefix(&cached, &prompt, prompt.len() - 1);
        assert_eq!(r, Reuse { keep: 7, from: 6 });
        assert_eq!(r.used(&prompt), 9);
        // The other way round too.
        let r = shared_prefix(&prompt, &cached, cached.len());
        assert_eq!(r, Reuse { keep: 6, from: 7 });
    }

    #[test]
    fn a_cache_ending_inside_a_prompt_token_backs_off_to_a_shared_boundary() {
        // An answer cut at max tokens after "light"; the prompt spells "lighthouse".
        let cached = seq(&["<s>", "Hi", "light"]);
        let prompt = seq(&["<s>", "Hi", "lighthouse", "<|end|>"]);
        let r = shared_prefix(&cached, &prompt, prompt.len() - 1);
        assert_eq!(r, Reuse { keep: 2, from: 2 });
    }

    #[test]
    fn held_back_stop_string_tokens_are_dropped() {
        // "</" and "en" were decoded while the stop string "</end>" was still partial;
        // the stored answer ends before them.
        let cached = seq(&["<s>", "Hi", " is", "</", "en"]);
        let prompt = seq(&["<s>", "Hi", " is", "<|end|>", "\n"]);
        let r = shared_prefix(&cached, &prompt, prompt.len() - 1);
        assert_eq!(r, Reuse { keep: 3, from: 3 });
    }

    #[test]
    fn special_tokens_match_only_themselves() {
        // Plain text that reads like the end marker is not the end marker.
        let cached = seq(&["<s>", "Hi", "<", "|", "end", "|>", "\n", "Hi"]);
        let prompt = seq(&["<s>", "Hi", "<|end|>", "\n", "Hi", " is"]);
        let r = shared_prefix(&cached, &prompt, prompt.len() - 1);
        assert_eq!(r, Reuse { keep: 2, from: 2 });
        let r = shared_prefix(&prompt, &cached, cached.len() - 1);
        assert_eq!(r, Reuse { keep: 2, from: 2 });
    }

    #[test]
    fn characters_split_differently_still_match() {
        // "κα" as three byte tokens in the cache, two in the prompt.
        let k = "κ".as_bytes();
        let a = "α".as_bytes();
        let cached = raw(&[b"Hi", &k[..1], &[k[1], a[0]], &a[1..]]);
        let prompt = raw(&[b"Hi", k, a, b"!"]);
        let r = shared_prefix(&cached, &prompt, prompt.len() - 1);
        assert_eq!(r, Reuse { keep: 4, from: 3 });
    }

    #[test]
    fn a_different_prompt_keeps_only_the_shared_part() {
        let cached = seq(&["<s>", "Hi", "lighthouse", " is"]);
        let prompt = seq(&["<s>", "Hi", " tall", "."]);
        assert_eq!(
            shared_prefix(&cached, &prompt, 3),
            Reuse { keep: 2, from: 2 }
        );
        assert_eq!(
            shared_prefix(&TokenSeq::default(), &prompt, 3),
            Reuse::default()
        );
    }

    #[test]
    fn truncate_and_extend_keep_bytes_in_step() {
        let mut a = seq(&["<s>", "Hi", "light", "house"]);
        a.truncate(3);
        assert_eq!(a, seq(&["<s>", "Hi", "light"]));
        let b = seq(&["<s>", "Hi", "lighthouse", " is", " tall"]);
        a.truncate(2);
        a.extend_from(&b, 2, 9);
        assert_eq!(a, b);
        a.clear();
        assert!(a.is_empty());
    }

    #[test]
    fn the_store_keeps_the_best_match_within_its_budget() {
        let mut store = SnapshotStore::new(100, 3);
        let a = seq(&["<s>", "Hi", "light", "house", " is", " tall"]);
        let b = seq(&["<s>", "Hi", "lighthouse", " is", "."]);
        store.insert(a.clone(), "A", 40);
        store.insert(b.clone(), "B", 40);
        let prompt = seq(&["<s>", "Hi", "lighthouse", " is", " tall", "<|end|>"]);
        let (i, r) = store.best(&prompt, prompt.len() - 1).expect("a match");
        assert_eq!(r, Reuse { keep: 6, from: 5 });
        let taken = store.take(i).expect("the best snapshot");
        assert_eq!(taken.state, "A");
        assert_eq!(store.len(), 1);
        store.put_back(taken);

        // Over budget: the least recently used (B, since A was just used) goes.
        store.insert(seq(&["<s>", "."]), "C", 40);
        assert_eq!(store.len(), 2);
        assert!(store.total_bytes() <= 100);
        assert!(store.covers(&a) && !store.covers(&b));

        // A longer version of a stored sequence replaces it.
        let mut longer = a.clone();
        longer.push(id("."), b".", false);
        store.insert(longer, "A2", 10);
        assert_eq!(store.len(), 2);
        assert!(store.covers(&a));

        // Too big for the budget: never kept.
        assert!(!store.fits(101));
        store.insert(seq(&["Hi"]), "D", 101);
        assert_eq!(store.len(), 2);
    }
}
