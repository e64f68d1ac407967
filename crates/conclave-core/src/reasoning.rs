//! Splitting a reasoning model's output into its thinking and its answer, live.
//!
//! Reasoning models write their thoughts before the answer, wrapped in markers that
//! differ by family. [`Splitter`] takes text deltas as the engine decodes them and gives
//! back reasoning and answer deltas at once; it holds back only the few bytes that could
//! still turn out to be the start of a marker, so thoughts stream as they are written.
//!
//! The forms follow llama.cpp (`common/chat-parser.cpp`, `tests/test-chat.cpp`); where a
//! format is not in llama.cpp the source is named at its spec below. Per-format rules:
//!
//! * Several blocks: a new opening marker right after a closing one (whitespace between
//!   is fine) starts another block, as llama.cpp's `try_parse_reasoning` reads them.
//! * After the answer has begun, opening markers are text, so a `<think>` in a code
//!   sample stays in the answer. MiniMax-M2, GLM and Kimi document interleaved thinking;
//!   for them a new block may also open at the start of a line outside a code fence.
//! * Cut off inside a block: everything so far is reasoning, the answer is empty and
//!   [`Finish::cut_off`] is set.
//! * A closing marker with no opening one (the prompt already opened the block) is only
//!   recognised when the caller says so with `prefilled_open`; see
//!   [`prompt_ends_in_thinking`]. Without it the text is answer, as in llama.cpp.
//!
//! Streaming deltas keep every character of the text between markers (whitespace
//! included); [`split_batch`] trims, as a finished message should be.

mod control;
mod harmony;
mod tags;

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

pub use control::{thinking_control, PromptPlan, Switch, ThinkingControl, ThinkingSupport};
use harmony::HarmonyEngine;
use tags::{Outcome, Pair, Spec, TagEngine, ToolStart};

/// A model family's way of marking its thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReasoningFormat {
    /// Detect from the output: an opening marker at its start, else plain answer.
    #[serde(rename = "auto")]
    Auto,
    /// A model that does not think: all output is answer.
    #[serde(rename = "none")]
    None,
    #[serde(rename = "deepseek-r1")]
    DeepseekR1,
    #[serde(rename = "qwq")]
    Qwq,
    #[serde(rename = "qwen3")]
    Qwen3,
    #[serde(rename = "gpt-oss")]
    GptOss,
    #[serde(rename = "magistral")]
    Magistral,
    #[serde(rename = "phi-4-reasoning")]
    Phi4Reasoning,
    #[serde(rename = "exaone")]
    Exaone,
    #[serde(rename = "seed-oss")]
    SeedOss,
    #[serde(rename = "kimi")]
    Kimi,
    #[serde(rename = "glm")]
    Glm,
    #[serde(rename = "nemotron")]
    Nemotron,
    #[serde(rename = "granite")]
    Granite,
    #[serde(rename = "command-r7b")]
    CommandR7b,
    #[serde(rename = "apriel")]
    Apriel,
    #[serde(rename = "minimax-m2")]
    MinimaxM2,
    #[serde(rename = "gemma")]
    Gemma,
}

impl ReasoningFormat {
    pub const ALL: [ReasoningFormat; 18] = [
        Self::Auto,
        Self::None,
        Self::DeepseekR1,
        Self::Qwq,
        Self::Qwen3,
        Self::GptOss,
        Self::Magistral,
        Self::Phi4Reasoning,
        Self::Exaone,
        Self::SeedOss,
        Self::Kimi,
        Self::Glm,
        Self::Nemotron,
        Self::Granite,
        Self::CommandR7b,
        Self::Apriel,
        Self::MinimaxM2,
        Self::Gemma,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::None => "none",
            Self::DeepseekR1 => "deepseek-r1",
            Self::Qwq => "qwq",
            Self::Qwen3 => "qwen3",
            Self::GptOss => "gpt-oss",
            Self::Magistral => "magistral",
            Self::Phi4Reasoning => "phi-4-reasoning",
            Self::Exaone => "exaone",
            Self::SeedOss => "seed-oss",
            Self::Kimi => "kimi",
            Self::Glm => "glm",
            Self::Nemotron => "nemotron",
            Self::Granite => "granite",
            Self::CommandR7b => "command-r7b",
            Self::Apriel => "apriel",
            Self::MinimaxM2 => "minimax-m2",
            Self::Gemma => "gemma",
        }
    }

    /// The markers the engine writes itself: to prefill a block, and to force the answer
    /// when a thinking budget runs out (lead-in, then `close`). `None` for `auto` and
    /// `none`, which have no markers of their own.
    pub fn markers(self) -> Option<Markers> {
        let (open, close) = match self {
            Self::Auto | Self::None => return None,
            Self::DeepseekR1
            | Self::Qwq
            | Self::Qwen3
            | Self::Phi4Reasoning
            | Self::Glm
            | Self::Nemotron
            | Self::MinimaxM2
            // Granite 3.3 writes `<think>`; the 3.2 plain-text headings are read but not written.
            | Self::Granite => ("<think>\n", "\n</think>\n\n"),
            // Kimi K2 Thinking uses `<think>`; the `◁think▷` of Kimi-VL/k1.5 is only read.
            Self::Kimi => ("<think>", "</think>"),
            Self::GptOss => (
                "<|channel|>analysis<|message|>",
                "<|end|><|start|>assistant<|channel|>final<|message|>",
            ),
            Self::Magistral => ("[THINK]", "[/THINK]"),
            Self::Exaone => ("<thought>\n", "\n</thought>\n\n"),
            Self::SeedOss => ("<seed:think>", "</seed:think>"),
            Self::CommandR7b => ("<|START_THINKING|>", "<|END_THINKING|><|START_RESPONSE|>"),
            Self::Apriel => ("Here are my reasoning steps:\n", "\n[BEGIN FINAL RESPONSE]\n"),
            Self::Gemma => ("<|channel>thought\n", "<channel|>"),
        };
        Some(Markers {
            open,
            close,
            budget_lead_in: BUDGET_LEAD_IN,
        })
    }
}

impl std::fmt::Display for ReasoningFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ReasoningFormat {
    type Err = ReasoningError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| ReasoningError::UnknownFormat(s.to_owned()))
    }
}

/// The Qwen/s1 budget-forcing lead-in: said before the closing marker so the answer that
/// follows reads as a conclusion rather than an abrupt stop.
pub const BUDGET_LEAD_IN: &str =
    "\n\nConsidering the limited time, I have to give the solution now.\n";

/// Markers the engine writes into the model's context (see [`ReasoningFormat::markers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Markers {
    pub open: &'static str,
    pub close: &'static str,
    pub budget_lead_in: &'static str,
}

/// A value for a chat-template variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateValue {
    Bool(bool),
    Int(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum ReasoningError {
    #[error("unknown reasoning format '{0}'")]
    UnknownFormat(String),
    #[error("bad batch line: {0}")]
    BadLine(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl crate::ErrorCode for ReasoningError {
    fn code(&self) -> &'static str {
        match self {
            ReasoningError::UnknownFormat(_) => "unknown_reasoning_format",
            ReasoningError::BadLine(_) => "invalid_input",
            ReasoningError::Io(_) => "io",
        }
    }
}

// ---- format specs -------------------------------------------------------------------

const THINK_CLOSE: &[&str] = &["</think>"];

const fn think(format: ReasoningFormat) -> Pair {
    Pair {
        open: "<think>",
        closes: THINK_CLOSE,
        format,
    }
}

// Magistral 2509+: `[THINK]` tokens (llama.cpp common_chat_parse_magistral); the 2506
// release wrote `<think>` from its system prompt.
const MAGISTRAL_THINK: Pair = Pair {
    open: "[THINK]",
    closes: &["[/THINK]"],
    format: ReasoningFormat::Magistral,
};
// Seed-OSS (llama.cpp common_chat_parse_seed_oss); `<seed:cot_budget_reflect>` notes
// inside are ordinary reasoning text.
const SEED_THINK: Pair = Pair {
    open: "<seed:think>",
    closes: &["</seed:think>"],
    format: ReasoningFormat::SeedOss,
};
// EXAONE Deep's template prefills `<thought>\n`; EXAONE 4.0 moved to `<think>`.
const EXAONE_THOUGHT: Pair = Pair {
    open: "<thought>",
    closes: &["</thought>"],
    format: ReasoningFormat::Exaone,
};
// Kimi-VL-Thinking / k1.5 (`◁think▷`, not in llama.cpp; from the model cards and vLLM).
const KIMI_TRIANGLE: Pair = Pair {
    open: "◁think▷",
    closes: &["◁/think▷"],
    format: ReasoningFormat::Kimi,
};
// llama.cpp common_chat_parse_command_r7b.
const R7B_THINK: Pair = Pair {
    open: "<|START_THINKING|>",
    closes: &["<|END_THINKING|>"],
    format: ReasoningFormat::CommandR7b,
};
// Granite 3.2's plain-text headings (vLLM's granite reasoning parser, which also takes
// "Here's", seen from quantised models).
const GRANITE_RESPONSE: &[&str] = &["Here is my response:", "Here's my response:"];
const GRANITE_TEXT: Pair = Pair {
    open: "Here is my thought process:",
    closes: GRANITE_RESPONSE,
    format: ReasoningFormat::Granite,
};
const GRANITE_TEXT_SHORT: Pair = Pair {
    open: "Here's my thought process:",
    closes: GRANITE_RESPONSE,
    format: ReasoningFormat::Granite,
};
// Apriel 1.5/1.6 Thinker: its template ends the prompt with "Here are my reasoning
// steps:\n"; the answer sits in `[BEGIN FINAL RESPONSE]`…`[END FINAL RESPONSE]`.
const APRIEL_STEPS: Pair = Pair {
    open: "Here are my reasoning steps:",
    closes: &["[BEGIN FINAL RESPONSE]"],
    format: ReasoningFormat::Apriel,
};
// Gemma 4's thought channel, `<|channel>thought\n…<channel|>` (its HF chat template).
// Gemma 3/3n have no thinking; llama.cpp's peg parsers name the same markers.
const GEMMA_THOUGHT: Pair = Pair {
    open: "<|channel>thought",
    closes: &["<channel|>"],
    format: ReasoningFormat::Gemma,
};

// Tool calls that start inside the thinking, never closed (see reasoning/tags.rs).
// Qwen3.5 / Qwen3-Coder XML calls: `<tool_call>` then `<function=NAME>` (vLLM's
// qwen3 tool-call recovery test); only the pair is a marker, so a thought that merely
// mentions `<tool_call>` stays thought.
const QWEN_TOOL_STARTS: &[ToolStart] = &[
    ToolStart {
        marker: "<tool_call>\n<function=",
        format: ReasoningFormat::Qwen3,
    },
    ToolStart {
        marker: "<tool_call><function=",
        format: ReasoningFormat::Qwen3,
    },
];
// Kimi-K2 (its chat template's render_toolcalls; vLLM's kimi_k2 reasoning parser ends
// the reasoning at the section marker, and K2 sometimes writes the call marker alone).
const KIMI_TOOL_STARTS: &[ToolStart] = &[
    ToolStart {
        marker: "<|tool_calls_section_begin|>",
        format: ReasoningFormat::Kimi,
    },
    ToolStart {
        marker: "<|tool_call_begin|>",
        format: ReasoningFormat::Kimi,
    },
];
const ALL_TOOL_STARTS: &[ToolStart] = &[
    QWEN_TOOL_STARTS[0],
    QWEN_TOOL_STARTS[1],
    KIMI_TOOL_STARTS[0],
    KIMI_TOOL_STARTS[1],
];

macro_rules! spec {
    ($name:ident, [$($pair:expr),*], [$($drop:expr),*], $interleaved:expr) => {
        spec!($name, [$($pair),*], [$($drop),*], &[], $interleaved);
    };
    ($name:ident, [$($pair:expr),*], [$($drop:expr),*], $tools:expr, $interleaved:expr) => {
        static $name: Spec = Spec {
            pairs: &[$($pair),*],
            drops: &[$($drop),*],
            tool_starts: $tools,
            interleaved: $interleaved,
        };
    };
}

spec!(SPEC_NONE, [], [], false);
spec!(
    SPEC_DEEPSEEK_R1,
    [think(ReasoningFormat::DeepseekR1)],
    [],
    false
);
spec!(SPEC_QWQ, [think(ReasoningFormat::Qwq)], [], false);
spec!(
    SPEC_QWEN3,
    [think(ReasoningFormat::Qwen3)],
    [],
    QWEN_TOOL_STARTS,
    false
);
spec!(
    SPEC_PHI4,
    [think(ReasoningFormat::Phi4Reasoning)],
    [],
    false
);
spec!(SPEC_NEMOTRON, [think(ReasoningFormat::Nemotron)], [], false);
spec!(SPEC_GLM, [think(ReasoningFormat::Glm)], [], true);
spec!(SPEC_MINIMAX, [think(ReasoningFormat::MinimaxM2)], [], true);
spec!(
    SPEC_KIMI,
    [KIMI_TRIANGLE, think(ReasoningFormat::Kimi)],
    [],
    KIMI_TOOL_STARTS,
    true
);
spec!(
    SPEC_MAGISTRAL,
    [MAGISTRAL_THINK, think(ReasoningFormat::Magistral)],
    [],
    false
);
spec!(
    SPEC_EXAONE,
    [EXAONE_THOUGHT, think(ReasoningFormat::Exaone)],
    [],
    false
);
spec!(SPEC_SEED, [SEED_THINK], [], false);
spec!(
    SPEC_R7B,
    [R7B_THINK],
    ["<|START_RESPONSE|>", "<|END_RESPONSE|>"],
    false
);
// Granite 3.3 (llama.cpp common_chat_parse_granite): `<think>…</think><response>…</response>`.
spec!(
    SPEC_GRANITE,
    [
        think(ReasoningFormat::Granite),
        GRANITE_TEXT,
        GRANITE_TEXT_SHORT
    ],
    ["<response>", "</response>"],
    false
);
spec!(SPEC_APRIEL, [APRIEL_STEPS], ["[END FINAL RESPONSE]"], false);
spec!(SPEC_GEMMA, [GEMMA_THOUGHT], [], false);
// Detection: every family's opening marker; `<think>` reports as deepseek-r1, the family
// that introduced it (all `<think>` formats split identically).
spec!(
    SPEC_AUTO,
    [
        think(ReasoningFormat::DeepseekR1),
        MAGISTRAL_THINK,
        SEED_THINK,
        EXAONE_THOUGHT,
        KIMI_TRIANGLE,
        R7B_THINK,
        GRANITE_TEXT,
        GRANITE_TEXT_SHORT,
        APRIEL_STEPS,
        GEMMA_THOUGHT
    ],
    [],
    ALL_TOOL_STARTS,
    false
);

fn spec_for(format: ReasoningFormat) -> &'static Spec {
    match format {
        ReasoningFormat::Auto => &SPEC_AUTO,
        // Harmony has its own engine; this spec is never consulted for it.
        ReasoningFormat::None | ReasoningFormat::GptOss => &SPEC_NONE,
        ReasoningFormat::DeepseekR1 => &SPEC_DEEPSEEK_R1,
        ReasoningFormat::Qwq => &SPEC_QWQ,
        ReasoningFormat::Qwen3 => &SPEC_QWEN3,
        ReasoningFormat::Magistral => &SPEC_MAGISTRAL,
        ReasoningFormat::Phi4Reasoning => &SPEC_PHI4,
        ReasoningFormat::Exaone => &SPEC_EXAONE,
        ReasoningFormat::SeedOss => &SPEC_SEED,
        ReasoningFormat::Kimi => &SPEC_KIMI,
        ReasoningFormat::Glm => &SPEC_GLM,
        ReasoningFormat::Nemotron => &SPEC_NEMOTRON,
        ReasoningFormat::Granite => &SPEC_GRANITE,
        ReasoningFormat::CommandR7b => &SPEC_R7B,
        ReasoningFormat::Apriel => &SPEC_APRIEL,
        ReasoningFormat::MinimaxM2 => &SPEC_MINIMAX,
        ReasoningFormat::Gemma => &SPEC_GEMMA,
    }
}

/// The longest marker any format recognises, in bytes. [`Splitter`] never holds back
/// more than this minus one byte of text.
pub const MAX_MARKER_LEN: usize = {
    let all: &[&str] = &[
        "Here are my reasoning steps:",
        "Here is my thought process:",
        "[BEGIN FINAL RESPONSE]",
        "[END FINAL RESPONSE]",
        "<|START_RESPONSE|>",
        "<|START_THINKING|>",
        "<|tool_calls_section_begin|>",
        "<tool_call>\n<function=",
    ];
    let mut max = 0;
    let mut i = 0;
    while i < all.len() {
        if all[i].len() > max {
            max = all[i].len();
        }
        i += 1;
    }
    max
};

// ---- the splitter -------------------------------------------------------------------

/// A piece of the split output. Streams carry deltas: concatenating all `Reasoning`
/// texts gives the thoughts, all `Answer` texts the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "text", rename_all = "snake_case")]
pub enum Segment {
    Reasoning(String),
    Answer(String),
}

/// A segment with the thinking block it belongs to, so the batch result can join
/// separate blocks with a newline.
#[derive(Debug)]
struct Piece {
    segment: Segment,
    block: u32,
}

impl Piece {
    fn push_reasoning(out: &mut Vec<Piece>, text: &str, block: u32) {
        if let Some(Piece {
            segment: Segment::Reasoning(last),
            block: b,
        }) = out.last_mut()
        {
            if *b == block {
                last.push_str(text);
                return;
            }
        }
        out.push(Piece {
            segment: Segment::Reasoning(text.to_owned()),
            block,
        });
    }

    fn push_answer(out: &mut Vec<Piece>, text: &str) {
        if let Some(Piece {
            segment: Segment::Answer(last),
            ..
        }) = out.last_mut()
        {
            last.push_str(text);
            return;
        }
        out.push(Piece {
            segment: Segment::Answer(text.to_owned()),
            block: 0,
        });
    }
}

#[derive(Debug)]
enum Engine {
    Tags(TagEngine),
    Harmony(HarmonyEngine),
}

/// Splits a streamed output into reasoning and answer deltas. Feed it every text delta
/// in order with [`Splitter::push`] (or [`Splitter::push_tokens`] to count tokens too),
/// then call [`Splitter::finish`] once.
#[derive(Debug)]
pub struct Splitter {
    format: ReasoningFormat,
    engine: Engine,
    tally: TokenTally,
}

/// Generated tokens counted by which side of the split their text fell on.
///
/// A token counts as thinking when the output was inside a block before or after it, or
/// when its text came out as reasoning: the opening and closing markers are thinking
/// tokens (as the worker's budget counts them), and so is the token that carries a
/// forced close. A token whose text is all held back (a possible marker start) waits
/// for the next one that shows where it went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenTally {
    pub reasoning: u32,
    pub answer: u32,
    waiting: u32,
}

impl TokenTally {
    fn add(&mut self, tokens: u32, touched_thinking: bool, segments: &[Segment]) {
        let reasoning = touched_thinking
            || segments
                .iter()
                .any(|s| matches!(s, Segment::Reasoning(t) if !t.is_empty()));
        let answer = segments
            .iter()
            .any(|s| matches!(s, Segment::Answer(t) if !t.is_empty()));
        let n = tokens + std::mem::take(&mut self.waiting);
        if reasoning {
            self.reasoning += n;
        } else if answer {
            self.answer += n;
        } else {
            self.waiting = n;
        }
    }

    fn settle(&mut self, in_thinking: bool) {
        let n = std::mem::take(&mut self.waiting);
        if in_thinking {
            self.reasoning += n;
        } else {
            self.answer += n;
        }
    }
}

/// What is left once generation has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The text that was held back in case it started a marker.
    pub segments: Vec<Segment>,
    /// Generation ended inside a thinking block.
    pub cut_off: bool,
    /// The format given, or for `auto` the one detected: `none` if the output had no
    /// thinking; `auto` if the prompt opened the block and it never closed, so nothing
    /// told the families apart.
    pub format: ReasoningFormat,
    /// The tokens given to [`Splitter::push_tokens`], by side.
    pub tokens: TokenTally,
}

impl Splitter {
    /// `prefilled_open`: the rendered prompt already ends with the opening marker (see
    /// [`prompt_ends_in_thinking`]), so the output starts inside the thoughts.
    pub fn new(format: ReasoningFormat, prefilled_open: bool) -> Self {
        let engine = match format {
            ReasoningFormat::GptOss => Engine::Harmony(HarmonyEngine::new(prefilled_open)),
            ReasoningFormat::Auto => {
                Engine::Tags(TagEngine::new(spec_for(format), true, prefilled_open))
            }
            other => Engine::Tags(TagEngine::new(spec_for(other), false, prefilled_open)),
        };
        Self {
            format,
            engine,
            tally: TokenTally::default(),
        }
    }

    pub fn push(&mut self, delta: &str) -> Vec<Segment> {
        let mut out = Vec::new();
        self.feed(delta, false, &mut out);
        out.into_iter().map(|p| p.segment).collect()
    }

    /// [`Splitter::push`] for a delta that covers `tokens` generated tokens (0 for text
    /// that is not the model's, or bytes still waiting for the rest of a character).
    pub fn push_tokens(&mut self, delta: &str, tokens: u32) -> Vec<Segment> {
        let was_thinking = self.in_thinking();
        let segments = self.push(delta);
        let touched = was_thinking || self.in_thinking();
        self.tally.add(tokens, touched, &segments);
        segments
    }

    pub fn finish(mut self) -> Finish {
        let mut out = Vec::new();
        let was_thinking = self.in_thinking();
        self.feed("", true, &mut out);
        let segments: Vec<Segment> = out.into_iter().map(|p| p.segment).collect();
        self.tally.add(0, false, &segments);
        self.tally.settle(was_thinking);
        Finish {
            segments,
            cut_off: self.in_thinking(),
            format: self.detected_format(),
            tokens: self.tally,
        }
    }

    /// Whether the output is inside a thinking block right now.
    pub fn in_thinking(&self) -> bool {
        match &self.engine {
            Engine::Tags(t) => t.in_thinking(),
            Engine::Harmony(h) => h.in_thinking(),
        }
    }

    /// Bytes of text held back because they may begin a marker.
    pub fn held_back(&self) -> usize {
        match &self.engine {
            Engine::Tags(t) => t.held_back(),
            Engine::Harmony(h) => h.held_back(),
        }
    }

    /// The format so far: as given, or what `auto` has detected (`auto` until then).
    pub fn format(&self) -> ReasoningFormat {
        if self.format != ReasoningFormat::Auto {
            return self.format;
        }
        match &self.engine {
            Engine::Harmony(_) => ReasoningFormat::GptOss,
            Engine::Tags(t) => t.detected().unwrap_or(ReasoningFormat::Auto),
        }
    }

    fn detected_format(&self) -> ReasoningFormat {
        match self.format() {
            // Auto found no marker in a plain answer: the model did not think.
            ReasoningFormat::Auto if !self.in_thinking() => ReasoningFormat::None,
            f => f,
        }
    }

    fn feed(&mut self, delta: &str, final_: bool, out: &mut Vec<Piece>) {
        let rest = match &mut self.engine {
            Engine::Harmony(h) => {
                h.feed(delta, final_, out);
                return;
            }
            Engine::Tags(t) => match t.feed(delta, final_, out) {
                Outcome::Done => return,
                Outcome::SwitchToHarmony(rest) => rest,
            },
        };
        let mut harmony = HarmonyEngine::new(false);
        harmony.feed(&rest, final_, out);
        self.engine = Engine::Harmony(harmony);
    }

    fn feed_pieces(&mut self, delta: &str, out: &mut Vec<Piece>) {
        self.feed(delta, false, out);
    }

    fn finish_pieces(mut self, out: &mut Vec<Piece>) -> (bool, ReasoningFormat) {
        self.feed("", true, out);
        (self.in_thinking(), self.detected_format())
    }
}

// ---- batch --------------------------------------------------------------------------

/// A whole output, split: what the CLI prints and history stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSplit {
    /// Each block's text trimmed, empty blocks left out, blocks joined by "\n".
    pub reasoning: String,
    /// The answer text, trimmed.
    pub answer: String,
    pub format: String,
    pub cut_off: bool,
}

/// Feeds `chunks` one at a time into a fresh [`Splitter`] and assembles the result.
pub fn split_batch(format: ReasoningFormat, prefilled_open: bool, chunks: &[&str]) -> BatchSplit {
    let mut splitter = Splitter::new(format, prefilled_open);
    let mut pieces = Vec::new();
    for chunk in chunks {
        splitter.feed_pieces(chunk, &mut pieces);
    }
    let (cut_off, detected) = splitter.finish_pieces(&mut pieces);

    let mut blocks: Vec<(u32, String)> = Vec::new();
    let mut answer = String::new();
    for piece in pieces {
        match piece.segment {
            Segment::Answer(text) => answer.push_str(&text),
            Segment::Reasoning(text) => match blocks.last_mut() {
                Some((b, acc)) if *b == piece.block => acc.push_str(&text),
                _ => blocks.push((piece.block, text)),
            },
        }
    }
    let reasoning = blocks
        .iter()
        .map(|(_, text)| text.trim())
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    BatchSplit {
        reasoning,
        answer: answer.trim().to_owned(),
        format: detected.name().to_owned(),
        cut_off,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    format: String,
    #[serde(default)]
    prefilled_open: bool,
    chunks: Vec<String>,
}

/// Counts from [`run_batch_lines`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchRunStats {
    pub lines: usize,
    pub errors: usize,
}

/// The `conclave reasoning split --batch` contract: one JSON request per input line,
/// `{"format": "<name or auto>", "prefilled_open": bool, "chunks": ["…"]}`, one JSON line
/// out per request, either a [`BatchSplit`] or `{"error": "…"}`. Blank lines are skipped.
/// Only I/O failures end the run.
pub fn run_batch_lines(
    mut input: impl BufRead,
    mut output: impl Write,
) -> Result<BatchRunStats, ReasoningError> {
    let mut stats = BatchRunStats::default();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        let line = match std::str::from_utf8(&raw) {
            Ok(line) => line,
            Err(e) => {
                stats.lines += 1;
                stats.errors += 1;
                write_error(&mut output, &format!("line is not UTF-8: {e}"))?;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        stats.lines += 1;
        match split_line(line) {
            Ok(split) => {
                serde_json::to_writer(&mut output, &split).map_err(std::io::Error::from)?;
                output.write_all(b"\n")?;
            }
            Err(e) => {
                stats.errors += 1;
                write_error(&mut output, &e.to_string())?;
            }
        }
    }
    output.flush()?;
    Ok(stats)
}

fn split_line(line: &str) -> Result<BatchSplit, ReasoningError> {
    let request: BatchRequest =
        serde_json::from_str(line).map_err(|e| ReasoningError::BadLine(e.to_string()))?;
    let format: ReasoningFormat = request.format.parse()?;
    let chunks: Vec<&str> = request.chunks.iter().map(String::as_str).collect();
    Ok(split_batch(format, request.prefilled_open, &chunks))
}

fn write_error(output: &mut impl Write, message: &str) -> Result<(), ReasoningError> {
    serde_json::to_writer(&mut *output, &serde_json::json!({ "error": message }))
        .map_err(std::io::Error::from)?;
    output.write_all(b"\n")?;
    Ok(())
}

// ---- detection from the template and the prompt ---------------------------------------

/// Guesses the reasoning format from a GGUF chat template's source by the markers it
/// writes. Family-specific markers are checked before the shared `<think>`, and among
/// `<think>` templates the surrounding turn tokens tell the family.
pub fn detect_from_template(template: &str) -> ReasoningFormat {
    let has = |s: &str| template.contains(s);
    if has("<|channel|>") {
        return ReasoningFormat::GptOss;
    }
    if has("<seed:think>") {
        return ReasoningFormat::SeedOss;
    }
    if has("[THINK]") {
        return ReasoningFormat::Magistral;
    }
    if has("<|START_THINKING|>") {
        return ReasoningFormat::CommandR7b;
    }
    if has("◁think▷") {
        return ReasoningFormat::Kimi;
    }
    if has("<|channel>") {
        return ReasoningFormat::Gemma;
    }
    if has("[BEGIN FINAL RESPONSE]") {
        return ReasoningFormat::Apriel;
    }
    if has("Here is my thought process") || (has("<|start_of_role|>") && has("<think>")) {
        return ReasoningFormat::Granite;
    }
    if has("<thought>") {
        return ReasoningFormat::Exaone;
    }
    if !has("<think>") {
        return ReasoningFormat::None;
    }
    if has("<minimax:tool_call>") || has("]~b]") {
        ReasoningFormat::MinimaxM2
    } else if has("[gMASK]") || has("<|assistant|>") {
        ReasoningFormat::Glm
    } else if has("<|im_middle|>") {
        ReasoningFormat::Kimi
    } else if has("[|assistant|]") {
        ReasoningFormat::Exaone
    } else if has("<|im_sep|>") {
        ReasoningFormat::Phi4Reasoning
    } else if has("<SPECIAL_")
        || has("detailed thinking")
        || (has("/no_think") && has("<|start_header_id|>"))
    {
        ReasoningFormat::Nemotron
    } else if has("<|im_start|>") && has("enable_thinking") {
        ReasoningFormat::Qwen3
    } else if has("<|im_start|>") {
        ReasoningFormat::Qwq
    } else {
        ReasoningFormat::DeepseekR1
    }
}

/// True if the rendered prompt ends (trailing whitespace aside) with one of the format's
/// opening markers, so the model's output starts inside the thoughts. A prompt ending in
/// a closed empty block (Qwen3's thinking-off `<think>\n\n</think>\n\n`) is not.
pub fn prompt_ends_in_thinking(format: ReasoningFormat, rendered_prompt: &str) -> bool {
    let tail = rendered_prompt.trim_end();
    match format {
        ReasoningFormat::None => false,
        ReasoningFormat::GptOss => tail.ends_with("<|channel|>analysis<|message|>"),
        // Seed-OSS with `thinking_budget` 0 opens the block and a budget note, which the
        // model finishes ("…budget is 0…</seed:cot_budget_reflect>") before closing.
        ReasoningFormat::SeedOss | ReasoningFormat::Auto
            if tail.ends_with("<seed:think><seed:cot_budget_reflect>") =>
        {
            true
        }
        other => spec_for(other).pairs.iter().any(|p| tail.ends_with(p.open)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn stream(
        format: ReasoningFormat,
        prefilled: bool,
        chunks: &[&str],
    ) -> (String, String, Finish) {
        let mut s = Splitter::new(format, prefilled);
        let (mut r, mut a) = (String::new(), String::new());
        let mut take = |segs: Vec<Segment>| {
            for seg in segs {
                match seg {
                    Segment::Reasoning(t) => r.push_str(&t),
                    Segment::Answer(t) => a.push_str(&t),
                }
            }
        };
        for c in chunks {
            take(s.push(c));
        }
        let fin = s.finish();
        take(fin.segments.clone());
        (r, a, fin)
    }

    #[test]
    fn tokens_are_counted_by_the_side_their_text_fell_on() {
        let count = |format, prefilled, deltas: &[&str]| {
            let mut s = Splitter::new(format, prefilled);
            for d in deltas {
                s.push_tokens(d, 1);
            }
            let t = s.finish().tokens;
            (t.reasoning, t.answer)
        };
        // The auto splitter: "<" is held back until "think>" shows it opened a block.
        assert_eq!(
            count(
                ReasoningFormat::Auto,
                false,
                &["<", "think>", "a", "</th", "ink>", "\n\n", "Hi"]
            ),
            (5, 2)
        );
        // Prefilled: every token until the close is thinking, the close included.
        assert_eq!(
            count(ReasoningFormat::Qwen3, true, &["a", "b", "</think>", "c"]),
            (3, 1)
        );
        // A plain answer, and an answer that only looked like a marker.
        assert_eq!(count(ReasoningFormat::Auto, false, &["Hel", "lo"]), (0, 2));
        assert_eq!(count(ReasoningFormat::Auto, false, &["<", "b>"]), (0, 2));
        // Cut off while a marker fragment was held: still thinking.
        assert_eq!(count(ReasoningFormat::Qwen3, true, &["a", "</th"]), (2, 0));
        // A budget's forced close rides on the last thinking token.
        let forced = format!("x{BUDGET_LEAD_IN}\n</think>\n\n");
        assert_eq!(
            count(
                ReasoningFormat::DeepseekR1,
                true,
                &["a", &forced, "Answer", "."]
            ),
            (2, 2)
        );
        // Harmony: headers count with the message they open.
        assert_eq!(
            count(
                ReasoningFormat::GptOss,
                false,
                &[
                    "<|channel|>",
                    "analysis",
                    "<|message|>",
                    "t",
                    "<|end|>",
                    "<|start|>",
                    "assistant",
                    "<|channel|>",
                    "final",
                    "<|message|>",
                    "A"
                ]
            ),
            (5, 6)
        );
    }

    #[test]
    fn names_round_trip_through_fromstr_and_serde() {
        for f in ReasoningFormat::ALL {
            assert_eq!(f.name().parse::<ReasoningFormat>().unwrap(), f);
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.name()));
            assert_eq!(serde_json::from_str::<ReasoningFormat>(&json).unwrap(), f);
        }
        assert!("think".parse::<ReasoningFormat>().is_err());
    }

    #[test]
    fn thinking_streams_before_the_close_arrives() {
        let mut s = Splitter::new(ReasoningFormat::Qwen3, false);
        assert_eq!(
            s.push("<think>Let me"),
            vec![Segment::Reasoning("Let me".into())]
        );
        assert_eq!(s.push(" see</th"), vec![Segment::Reasoning(" see".into())]);
        assert_eq!(s.held_back(), 4);
        assert_eq!(s.push("ink>\n\nHi"), vec![Segment::Answer("\n\nHi".into())]);
        let fin = s.finish();
        assert!(fin.segments.is_empty());
        assert!(!fin.cut_off);
    }

    #[test]
    fn partial_close_at_the_end_is_dropped() {
        // llama.cpp's final parse: a marker the model never finished is not thought.
        let (r, a, fin) = stream(ReasoningFormat::DeepseekR1, true, &["abc</thi"]);
        assert_eq!((r.as_str(), a.as_str(), fin.cut_off), ("abc", "", true));
        // Answer side: text, since only a thinking block has an end to cut into.
        let (_, a, _) = stream(
            ReasoningFormat::DeepseekR1,
            false,
            &["<think>x</think>a </thi"],
        );
        assert_eq!(a, "a </thi");
    }

    #[test]
    fn reopened_prefilled_block_is_one_block() {
        let (r, a, fin) = stream(ReasoningFormat::Qwen3, true, &["\n<thi", "nk>\nx</think>y"]);
        assert_eq!((r.as_str(), a.as_str(), fin.cut_off), ("\n\nx", "y", false));
        assert_eq!(
            split_batch(ReasoningFormat::Qwen3, true, &["<think>x</think>y"]).reasoning,
            "x"
        );
    }

    #[test]
    fn tool_call_start_moves_to_the_answer() {
        let mut s = Splitter::new(ReasoningFormat::Kimi, false);
        assert_eq!(
            s.push("<think>plan<|tool_calls"),
            vec![Segment::Reasoning("plan".into())]
        );
        assert!(s.in_thinking());
        assert_eq!(
            s.push("_section_begin|>x"),
            vec![Segment::Answer("<|tool_calls_section_begin|>x".into())]
        );
        assert!(!s.in_thinking());
    }

    #[test]
    fn harmony_separates_messages_of_a_kind_by_newlines() {
        let (r, a, _) = stream(
            ReasoningFormat::GptOss,
            false,
            &["<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>commentary<|message|>b<|end|>",
              "<|start|>assistant<|channel|>analysis<|message|><|end|>",
              "<|start|>assistant<|channel|>analysis<|message|>c<|end|><|start|>assistant<|channel|>final<|message|>d"],
        );
        assert_eq!((r.as_str(), a.as_str()), ("a\nc", "b\nd"));
    }

    #[test]
    fn answer_side_think_tag_is_text_unless_interleaved_line_start() {
        let text = "<think>a</think>Use:\n<think>\nb</think>";
        let (_, a, _) = stream(ReasoningFormat::Qwen3, false, &[text]);
        assert_eq!(a, "Use:\n<think>\nb</think>");
        let (r, a, _) = stream(ReasoningFormat::MinimaxM2, false, &[text]);
        assert_eq!((r.as_str(), a.as_str()), ("a\nb", "Use:\n"));
        let fenced = "<think>a</think>Use:\n```\n<think>\n```\n";
        let (_, a, _) = stream(ReasoningFormat::MinimaxM2, false, &[fenced]);
        assert_eq!(a, "Use:\n```\n<think>\n```\n");
    }

    #[test]
    fn auto_detection_narrows_to_the_family() {
        let (r, a, fin) = stream(
            ReasoningFormat::Auto,
            false,
            &["[THINK]x[/THINK]<seed:think>y"],
        );
        assert_eq!((r.as_str(), a.as_str()), ("x", "<seed:think>y"));
        assert_eq!(fin.format, ReasoningFormat::Magistral);
        let (_, _, fin) = stream(ReasoningFormat::Auto, false, &["plain"]);
        assert_eq!(fin.format, ReasoningFormat::None);
        let (r, a, fin) = stream(ReasoningFormat::Auto, true, &["x</seed:think>y"]);
        assert_eq!(
            (r.as_str(), a.as_str(), fin.format),
            ("x", "y", ReasoningFormat::SeedOss)
        );
    }

    #[test]
    fn holdback_never_exceeds_the_longest_marker() {
        let mut s = Splitter::new(ReasoningFormat::Apriel, false);
        for c in "Here are my reasoning steps".chars() {
            s.push(&c.to_string());
            assert!(s.held_back() < MAX_MARKER_LEN);
        }
    }

    #[test]
    fn max_marker_len_bounds_every_marker() {
        let mut longest = "<|message|>".len();
        for f in ReasoningFormat::ALL {
            let spec = spec_for(f);
            for p in spec.pairs {
                for m in std::iter::once(&p.open).chain(p.closes) {
                    longest = longest.max(m.len());
                }
            }
            for d in spec.drops {
                longest = longest.max(d.len());
            }
            for t in spec.tool_starts {
                longest = longest.max(t.marker.len());
            }
        }
        assert_eq!(longest, MAX_MARKER_LEN);
    }

    #[test]
    fn template_detection() {
        assert_eq!(
            detect_from_template("{{'<|im_start|>assistant\\n<think>\\n'}} enable_thinking"),
            ReasoningFormat::Qwen3
        );
        assert_eq!(
            detect_from_template("<｜Assistant｜><think>\\n"),
            ReasoningFormat::DeepseekR1
        );
        assert_eq!(
            detect_from_template("<|start|>assistant<|channel|>final"),
            ReasoningFormat::GptOss
        );
        assert_eq!(
            detect_from_template("[gMASK]<sop><|assistant|><think>"),
            ReasoningFormat::Glm
        );
        assert_eq!(
            detect_from_template("{{ bos_token }}<|im_start|>user"),
            ReasoningFormat::None
        );
        assert_eq!(
            detect_from_template("Here is my thought process:"),
            ReasoningFormat::Granite
        );
        assert_eq!(
            detect_from_template("'<|channel>thought\\n<channel|>'"),
            ReasoningFormat::Gemma
        );
    }

    #[test]
    fn prompt_end_detection() {
        assert!(prompt_ends_in_thinking(
            ReasoningFormat::Qwen3,
            "<|im_start|>assistant\n<think>\n"
        ));
        assert!(!prompt_ends_in_thinking(
            ReasoningFormat::Qwen3,
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert!(prompt_ends_in_thinking(
            ReasoningFormat::Apriel,
            "<|assistant|>\nHere are my reasoning steps:\n"
        ));
        assert!(prompt_ends_in_thinking(
            ReasoningFormat::Auto,
            "x<seed:think>"
        ));
        assert!(prompt_ends_in_thinking(
            ReasoningFormat::GptOss,
            "<|start|>assistant<|channel|>analysis<|message|>"
        ));
        assert!(!prompt_ends_in_thinking(ReasoningFormat::None, "<think>"));
    }

    #[test]
    fn thinking_control_data() {
        let qwen3 = thinking_control(ReasoningFormat::Qwen3, "{% if enable_thinking %}");
        assert_eq!(
            qwen3.off,
            Switch::TemplateVar {
                name: "enable_thinking",
                value: TemplateValue::Bool(false)
            }
        );
        let r1 = thinking_control(ReasoningFormat::DeepseekR1, "<｜Assistant｜><think>\n");
        assert_eq!(r1.off, Switch::CloseBlock);
        let qwq = thinking_control(ReasoningFormat::Qwq, "<|im_start|>assistant\n<think>\n");
        assert!(!qwq.support().off_available);
        assert!(qwq.support().off_reason.is_some());
        assert_eq!(ReasoningFormat::Auto.markers(), None);
        for f in ReasoningFormat::ALL {
            if let Some(m) = f.markers() {
                assert_eq!(m.budget_lead_in, BUDGET_LEAD_IN);
                // What the engine writes, the splitter must read back.
                let (r, a, fin) = stream(f, false, &[m.open, "t", m.close, "ans"]);
                assert_eq!(
                    (r.trim(), a.trim(), fin.cut_off),
                    ("t", "ans", false),
                    "{f}"
                );
            }
        }
    }

    #[test]
    fn batch_runner_reports_bad_lines_and_continues() {
        let input = concat!(
            "{\"format\":\"qwen3\",\"prefilled_open\":false,\"chunks\":[\"<think>a</th\",\"ink> b \"]}\n",
            "not json\n",
            "\n",
            "{\"format\":\"bogus\",\"chunks\":[]}\n",
            "{\"format\":\"auto\",\"prefilled_open\":true,\"chunks\":[\"x\"]}\n",
        );
        let mut out = Vec::new();
        let stats = run_batch_lines(input.as_bytes(), &mut out).unwrap();
        assert_eq!(
            stats,
            BatchRunStats {
                lines: 4,
                errors: 2
            }
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            serde_json::json!({"reasoning": "a", "answer": "b", "format": "qwen3", "cut_off": false})
        );
        assert!(lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("bad batch line"));
        assert!(lines[2]["error"]
            .as_str()
            .unwrap()
            .contains("unknown reasoning format 'bogus'"));
        assert_eq!(
            lines[3],
            serde_json::json!({"reasoning": "x", "answer": "", "format": "auto", "cut_off": true})
        );
    }

    #[test]
    fn batch_runner_survives_invalid_utf8() {
        let mut input = b"\xff\xfe\n".to_vec();
        input.extend_from_slice(b"{\"format\":\"none\",\"chunks\":[\"hi\"]}");
        let mut out = Vec::new();
        let stats = run_batch_lines(&input[..], &mut out).unwrap();
        assert_eq!(
            stats,
            BatchRunStats {
                lines: 2,
                errors: 1
            }
        );
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().contains("not UTF-8"));
        assert_eq!(
            lines.next().unwrap(),
            r#"{"reasoning":"","answer":"hi","format":"none","cut_off":false}"#
        );
    }
}
