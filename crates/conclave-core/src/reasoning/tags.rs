//! The marker-pair engine: every format whose thinking is one opening and one closing
//! marker (`<think>…</think>`, `[THINK]…[/THINK]`, Granite's plain-text headings…).
//!
//! Rules, in the order they are applied at each char boundary of the buffered text:
//! * Inside a thinking block only that block's closing markers are live, so a stray
//!   `<think>` or a lookalike (`</ think>`) inside the thoughts stays thought.
//! * On the answer side the format's wrapper markers (`<response>`, `<|START_RESPONSE|>`,
//!   `[END FINAL RESPONSE]`…) are always removed.
//! * Opening markers are live only while the answer so far is whitespace: at the start
//!   of the output and right after a closing marker, which is how llama.cpp's
//!   `try_parse_reasoning` reads several consecutive blocks. Once real answer text has
//!   arrived, a `<think>` is text (code samples about reasoning models are common).
//! * Formats with documented interleaved thinking (MiniMax-M2, GLM-4.5+, Kimi) may open
//!   a new block later too, but only at the start of a line outside a fenced code block;
//!   that keeps a literal `<think>` in a code sample as answer text.
//! * A block the prompt opened may be opened again by the model (`<think>` after a
//!   prefilled `<think>\n`): while that block holds only whitespace, its opening markers
//!   are structure, as llama.cpp's `try_parse_reasoning` consumes them.
//! * Some models start a tool call inside the thinking without closing it (Qwen3.5's
//!   `<tool_call>\n<function=`, Kimi-K2's `<|tool_calls_section_begin|>`): the thinking
//!   ends where the tool call starts and the call is answer text, as vLLM's Kimi-K2 and
//!   Qwen3 reasoning parsers do. A closing marker that turns up later is dropped.
//! * A stream that ends inside a block in the middle of a marker (`[BEGIN FIN`) drops
//!   the partial marker, as llama.cpp's final parse does (`string_find_partial_stop`).

use super::{Piece, ReasoningFormat};

#[derive(Debug, Clone, Copy)]
pub(super) struct Pair {
    pub open: &'static str,
    pub closes: &'static [&'static str],
    /// Reported when this pair is what `auto` detection saw.
    pub format: ReasoningFormat,
}

/// The start of a tool call that ends the thinking when it appears inside a block.
#[derive(Debug, Clone, Copy)]
pub(super) struct ToolStart {
    pub marker: &'static str,
    /// Reported when `auto` detection first sees this.
    pub format: ReasoningFormat,
}

#[derive(Debug)]
pub(super) struct Spec {
    pub pairs: &'static [Pair],
    /// Answer-side wrappers that are structure, not text.
    pub drops: &'static [&'static str],
    /// Tool-call starts that end a block which was never closed.
    pub tool_starts: &'static [ToolStart],
    pub interleaved: bool,
}

/// What a harmony (GPT-OSS) output can start with; seeing one during `auto` detection
/// hands the rest of the output to the harmony engine.
const HARMONY_STARTS: &[&str] = &["<|channel|>", "<|start|>"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Only spaces or tabs so far on this line.
    Start,
    Ticks(u8),
    Other,
}

#[derive(Debug, Clone, Copy)]
enum Hit {
    Open(usize),
    /// The model wrote the opening marker of the block the prompt already opened.
    Reopen(usize),
    /// Which pair closed, when the open did not already say (a prefilled block).
    Close(Option<usize>),
    /// A tool call started inside the thinking; its marker is answer text.
    ToolStart(usize),
    Drop,
    Harmony,
}

enum Probe {
    Full(Hit, usize),
    Partial,
    Miss,
}

pub(super) enum Outcome {
    Done,
    /// `auto` saw a harmony output: this text (from the harmony marker on) is the
    /// harmony engine's to parse.
    SwitchToHarmony(String),
}

#[derive(Debug)]
pub(super) struct TagEngine {
    spec: &'static Spec,
    /// Still detecting: the spec is the union of all pair formats.
    auto: bool,
    detected: Option<ReasoningFormat>,
    /// `Some(closes)` inside a block; `Some(None)` means any pair's closes are live (the
    /// prompt opened the block, so which pair is unknown).
    thinking: Option<Option<&'static [&'static str]>>,
    /// Inside the block the prompt opened, with nothing but whitespace in it yet: the
    /// model may still write the opening marker itself.
    reopen_live: bool,
    /// After a tool call ended a block, that block's closing markers (same shape as
    /// `thinking`), dropped from the answer if the model writes them late.
    orphan_closes: Option<Option<&'static [&'static str]>>,
    block: u32,
    non_ws_seen: bool,
    line: Line,
    in_fence: bool,
    pending: String,
}

impl TagEngine {
    pub(super) fn new(spec: &'static Spec, auto: bool, prefilled_open: bool) -> Self {
        let has_pairs = !spec.pairs.is_empty();
        Self {
            spec,
            auto,
            detected: None,
            thinking: (prefilled_open && has_pairs).then_some(None),
            reopen_live: prefilled_open && has_pairs,
            orphan_closes: None,
            block: u32::from(prefilled_open && has_pairs),
            non_ws_seen: false,
            line: Line::Start,
            in_fence: false,
            pending: String::new(),
        }
    }

    pub(super) fn detected(&self) -> Option<ReasoningFormat> {
        self.detected
    }

    pub(super) fn in_thinking(&self) -> bool {
        self.thinking.is_some()
    }

    pub(super) fn held_back(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn feed(&mut self, delta: &str, final_: bool, out: &mut Vec<Piece>) -> Outcome {
        let mut buf = std::mem::take(&mut self.pending);
        buf.push_str(delta);
        let mut start = 0;
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            match self.probe(rest) {
                Probe::Full(hit, len) => {
                    self.emit(&buf[start..i], out);
                    if let Hit::Harmony = hit {
                        return Outcome::SwitchToHarmony(buf[i..].to_owned());
                    }
                    self.apply(hit);
                    start = i;
                    // A tool call's marker stays in the text, now on the answer side.
                    if !matches!(hit, Hit::ToolStart(_)) {
                        i += len;
                        start = i;
                    }
                    continue;
                }
                Probe::Partial if !final_ => break,
                Probe::Partial if self.thinking.is_some() => {
                    // The output ended inside a block, part way through a marker: the
                    // fragment is not thought, it is a marker the model never finished.
                    self.emit(&buf[start..i], out);
                    self.pending = String::new();
                    return Outcome::Done;
                }
                Probe::Partial | Probe::Miss => {}
            }
            let Some(c) = rest.chars().next() else { break };
            if self.thinking.is_none() {
                self.observe_answer(c);
            } else if !c.is_whitespace() {
                self.reopen_live = false;
            }
            i += c.len_utf8();
        }
        self.emit(&buf[start..i], out);
        buf.drain(..i);
        self.pending = buf;
        Outcome::Done
    }

    fn openers_live(&self) -> bool {
        !self.non_ws_seen || (self.spec.interleaved && self.line == Line::Start && !self.in_fence)
    }

    /// `Partial` means `rest` is a proper prefix of a live marker; the caller decides
    /// what that means at the end of the output.
    fn probe(&self, rest: &str) -> Probe {
        let mut best: Option<(Hit, usize)> = None;
        let mut partial = false;
        let mut consider = |marker: &'static str, hit: Hit| {
            if rest.starts_with(marker) {
                if best.is_none_or(|(_, len)| marker.len() > len) {
                    best = Some((hit, marker.len()));
                }
            } else if rest.len() < marker.len() && marker.starts_with(rest) {
                partial = true;
            }
        };
        if self.thinking.is_some() {
            for (k, tool) in self.spec.tool_starts.iter().enumerate() {
                consider(tool.marker, Hit::ToolStart(k));
            }
        }
        match self.thinking {
            Some(Some(closes)) => {
                for close in closes {
                    consider(close, Hit::Close(None));
                }
            }
            Some(None) => {
                for (k, pair) in self.spec.pairs.iter().enumerate() {
                    for close in pair.closes {
                        consider(close, Hit::Close(Some(k)));
                    }
                    if self.reopen_live {
                        consider(pair.open, Hit::Reopen(k));
                    }
                }
            }
            None => {
                for drop in self.spec.drops {
                    consider(drop, Hit::Drop);
                }
                match self.orphan_closes {
                    Some(Some(closes)) => {
                        for close in closes {
                            consider(close, Hit::Drop);
                        }
                    }
                    Some(None) => {
                        for pair in self.spec.pairs {
                            for close in pair.closes {
                                consider(close, Hit::Drop);
                            }
                        }
                    }
                    None => {}
                }
                if self.openers_live() {
                    for (k, pair) in self.spec.pairs.iter().enumerate() {
                        consider(pair.open, Hit::Open(k));
                    }
                }
                if self.auto && !self.non_ws_seen {
                    for start in HARMONY_STARTS {
                        consider(start, Hit::Harmony);
                    }
                }
            }
        }
        match best {
            Some((hit, len)) => Probe::Full(hit, len),
            None if partial => Probe::Partial,
            None => Probe::Miss,
        }
    }

    fn apply(&mut self, hit: Hit) {
        match hit {
            Hit::Open(k) => {
                let Some(&pair) = self.spec.pairs.get(k) else {
                    return;
                };
                self.detect(pair.format);
                self.thinking = Some(Some(self.closes_for(pair.open)));
                self.orphan_closes = None;
                self.block += 1;
            }
            Hit::Reopen(k) => {
                let Some(&pair) = self.spec.pairs.get(k) else {
                    return;
                };
                // Same block: the prompt's marker and the model's open one block.
                self.detect(pair.format);
                self.thinking = Some(Some(self.closes_for(pair.open)));
                self.reopen_live = false;
            }
            Hit::Close(k) => {
                if let Some(pair) = k.and_then(|k| self.spec.pairs.get(k)) {
                    self.detect(pair.format);
                }
                self.leave_block();
            }
            Hit::ToolStart(k) => {
                if let Some(tool) = self.spec.tool_starts.get(k) {
                    self.detect(tool.format);
                }
                self.orphan_closes = self.thinking;
                self.leave_block();
            }
            Hit::Drop | Hit::Harmony => {}
        }
    }

    fn leave_block(&mut self) {
        self.thinking = None;
        self.reopen_live = false;
        self.non_ws_seen = false;
        self.line = Line::Start;
    }

    /// Fixes the format on the first marker `auto` sees, and narrows the live markers to
    /// that format's so that another family's markers in the answer stay text.
    fn detect(&mut self, format: ReasoningFormat) {
        if self.auto {
            self.auto = false;
            self.detected = Some(format);
            self.spec = super::spec_for(format);
        }
    }

    /// The closes of the (possibly just narrowed) spec's pair that opens with `open`.
    fn closes_for(&self, open: &str) -> &'static [&'static str] {
        self.spec
            .pairs
            .iter()
            .find(|p| p.open == open)
            .map_or(&[][..], |p| p.closes)
    }

    fn observe_answer(&mut self, c: char) {
        if !c.is_whitespace() {
            self.non_ws_seen = true;
        }
        self.line = match (c, self.line) {
            ('\n', _) => Line::Start,
            (' ' | '\t', Line::Start) => Line::Start,
            ('`', Line::Start) => Line::Ticks(1),
            ('`', Line::Ticks(n)) if n + 1 >= 3 => {
                self.in_fence = !self.in_fence;
                Line::Other
            }
            ('`', Line::Ticks(n)) => Line::Ticks(n + 1),
            _ => Line::Other,
        };
    }

    fn emit(&self, text: &str, out: &mut Vec<Piece>) {
        if text.is_empty() {
            return;
        }
        if self.thinking.is_some() {
            Piece::push_reasoning(out, text, self.block);
        } else {
            Piece::push_answer(out, text);
        }
    }
}
