//! Property tests for the streaming splitter over texts built from random words and
//! markers, cut at random char boundaries.
//!
//! Definitions used below:
//! * the *raw split* of a run is, per kind, the concatenation of every `Reasoning` /
//!   `Answer` delta that `push` and `finish` emitted, untrimmed;
//! * the *emitted stream* is all deltas of both kinds concatenated in emission order;
//! * the *batch result* is `split_batch`'s: each block trimmed, empty blocks dropped,
//!   blocks joined by "\n"; the answer trimmed.
//!
//! Properties: the raw split and the batch result do not depend on where the text was
//! cut; the batch result is the raw split trimmed; the emitted stream is the input with
//! whole marker occurrences deleted and nothing else (no text lost or duplicated), except
//! that an output ending part way through a marker inside a block loses that fragment
//! and harmony puts a newline where a header starts a second message of a kind; for the
//! `<think>` family the split equals an independent non-streaming reference.
#![allow(clippy::unwrap_used)]

use conclave_core::reasoning::{split_batch, ReasoningFormat, Segment, Splitter, MAX_MARKER_LEN};
use proptest::prelude::*;
use proptest::sample::Index;

const WORDS: &[&str] = &[
    "alpha",
    "beta",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "思考",
    "答案",
    "😀",
    "🤔",
    "é",
    "```",
    "`",
    "<",
    ">",
    "</",
    "nk>",
    "<thi",
    "</th",
    "<thinking>",
    "</ think>",
    "[THI",
    "[/",
    "Here is",
    "Here is my",
    "◁",
    "▷",
    "<|",
    "|>",
    "<|end",
    "<|chan",
    "x",
    " answer ",
    ":",
    "[",
    "]",
];

/// Each format's marker strings: the generator's extra vocabulary, and what the
/// conservation check may delete.
const TAG_FORMATS: &[(&str, &[&str])] = &[
    ("deepseek-r1", &["<think>", "</think>"]),
    ("qwq", &["<think>", "</think>"]),
    ("qwen3", &["<think>", "</think>"]),
    ("phi-4-reasoning", &["<think>", "</think>"]),
    ("nemotron", &["<think>", "</think>"]),
    ("glm", &["<think>", "</think>"]),
    ("minimax-m2", &["<think>", "</think>"]),
    ("kimi", &["◁think▷", "◁/think▷", "<think>", "</think>"]),
    ("magistral", &["[THINK]", "[/THINK]", "<think>", "</think>"]),
    (
        "exaone",
        &["<thought>", "</thought>", "<think>", "</think>"],
    ),
    (
        "seed-oss",
        &["<seed:think>", "</seed:think>", "<seed:cot_budget_reflect>"],
    ),
    (
        "command-r7b",
        &[
            "<|START_THINKING|>",
            "<|END_THINKING|>",
            "<|START_RESPONSE|>",
            "<|END_RESPONSE|>",
        ],
    ),
    (
        "granite",
        &[
            "<think>",
            "</think>",
            "<response>",
            "</response>",
            "Here is my thought process:",
            "Here is my response:",
            "Here's my thought process:",
            "Here's my response:",
        ],
    ),
    (
        "apriel",
        &[
            "Here are my reasoning steps:",
            "[BEGIN FINAL RESPONSE]",
            "[END FINAL RESPONSE]",
        ],
    ),
    ("gemma", &["<|channel>thought", "<channel|>"]),
    ("none", &["<think>", "</think>"]),
];

/// Whole harmony headers, so a header never swallows a random word (headers are
/// structure and are dropped whole, by design).
const HARMONY: &[&str] = &[
    "<|channel|>analysis<|message|>",
    "<|start|>assistant<|channel|>analysis<|message|>",
    "<|start|>assistant<|channel|>final<|message|>",
    "<|channel|>final<|message|>",
    "<|start|>assistant<|channel|>commentary<|message|>",
    "<|end|>",
    "<|return|>",
];

/// Tool-call starts that end a block: generated, but never deleted (they are answer
/// text), so they are not among the markers above.
fn tool_words(format: &str) -> &'static [&'static str] {
    match format {
        "qwen3" => &["<tool_call>\n<function=", "<tool_call>", "<function="],
        "kimi" => &["<|tool_calls_section_begin|>", "<|tool_call_begin|>"],
        _ => &[],
    }
}

/// `WORDS` plus the format's tool words, built once per format.
fn vocab_for(format: &'static str) -> &'static [&'static str] {
    static VOCABS: std::sync::LazyLock<Vec<(&'static str, Vec<&'static str>)>> =
        std::sync::LazyLock::new(|| {
            TAG_FORMATS
                .iter()
                .map(|(name, _)| (*name, [WORDS, tool_words(name)].concat()))
                .collect()
        });
    VOCABS
        .iter()
        .find(|(name, _)| *name == format)
        .map_or(WORDS, |(_, v)| v.as_slice())
}

const THINK_FAMILY: &[&str] = &["deepseek-r1", "qwq", "qwen3", "phi-4-reasoning", "nemotron"];

#[derive(Debug, Clone, PartialEq)]
struct Run {
    reasoning: String,
    answer: String,
    stream: String,
    cut_off: bool,
}

fn run(format: ReasoningFormat, prefilled: bool, chunks: &[&str]) -> Run {
    let mut s = Splitter::new(format, prefilled);
    let mut out = Run {
        reasoning: String::new(),
        answer: String::new(),
        stream: String::new(),
        cut_off: false,
    };
    let take = |segs: Vec<Segment>, out: &mut Run| {
        for seg in segs {
            match seg {
                Segment::Reasoning(t) => {
                    out.reasoning.push_str(&t);
                    out.stream.push_str(&t);
                }
                Segment::Answer(t) => {
                    out.answer.push_str(&t);
                    out.stream.push_str(&t);
                }
            }
        }
    };
    for c in chunks {
        take(s.push(c), &mut out);
        assert!(
            s.held_back() < MAX_MARKER_LEN,
            "held back {} bytes",
            s.held_back()
        );
    }
    let fin = s.finish();
    out.cut_off = fin.cut_off;
    take(fin.segments, &mut out);
    out
}

fn chunk<'a>(text: &'a str, cuts: &[Index], char_by_char: bool) -> Vec<&'a str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let mut points: Vec<usize> = if char_by_char {
        bounds
    } else {
        let mut p: Vec<usize> = cuts
            .iter()
            .map(|ix| bounds[ix.index(bounds.len())])
            .collect();
        p.push(0);
        p.push(text.len());
        p
    };
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

fn no_ws(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Whether `emitted` is `input` with some whole occurrences of `markers` deleted, a
/// trailing fragment of a marker or of one of `fragments` deleted, and (with
/// `newline_for_marker`) a newline standing where a deleted marker was.
fn is_input_minus_markers(
    input: &str,
    emitted: &str,
    markers: &[&str],
    fragments: &[&str],
    newline_for_marker: bool,
) -> bool {
    let (a, b) = (input.as_bytes(), emitted.as_bytes());
    let (n, m) = (a.len(), b.len());
    // ok[i][j]: input[i..] can become emitted[j..].
    let mut ok = vec![vec![false; m + 1]; n + 1];
    ok[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let keep = j < m && a[i] == b[j] && ok[i + 1][j + 1];
            let delete = markers.iter().any(|mk| {
                a[i..].starts_with(mk.as_bytes())
                    && (ok[i + mk.len()][j]
                        || (newline_for_marker
                            && j < m
                            && b[j] == b'\n'
                            && ok[i + mk.len()][j + 1]))
            });
            let trailing_fragment = j == m
                && markers
                    .iter()
                    .chain(fragments)
                    .any(|mk| mk.as_bytes().starts_with(&a[i..]));
            ok[i][j] = keep || delete || trailing_fragment;
        }
    }
    ok[0][0]
}

/// The longest suffix of `s` that is a proper prefix of `marker`, cut off.
fn strip_partial<'a>(s: &'a str, marker: &str) -> &'a str {
    (0..s.len())
        .filter(|&i| s.is_char_boundary(i))
        .find(|&i| s.len() - i < marker.len() && marker.starts_with(&s[i..]))
        .map_or(s, |i| &s[..i])
}

/// An independent, non-streaming reading of the `<think>` family: blocks at the start
/// (whitespace allowed before each), the rest answer. A prefilled block may begin
/// (after whitespace) with the model's own `<think>`, which is dropped; an output that
/// ends inside a block loses a trailing fragment of `</think>`.
fn reference(text: &str, prefilled: bool) -> (Vec<String>, String, bool) {
    let (mut blocks, mut answer) = (Vec::new(), String::new());
    let mut rest = text;
    let mut thinking = prefilled;
    let mut lead = String::new();
    if prefilled {
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix("<think>") {
            lead.push_str(&rest[..rest.len() - trimmed.len()]);
            rest = after;
        } else if !trimmed.is_empty() && "<think>".starts_with(trimmed) {
            // Cut off in the repeated tag itself.
            blocks.push(rest[..rest.len() - trimmed.len()].to_owned());
            return (blocks, answer, true);
        }
    }
    loop {
        if thinking {
            match rest.find("</think>") {
                Some(p) => {
                    blocks.push(format!("{}{}", std::mem::take(&mut lead), &rest[..p]));
                    rest = &rest[p + "</think>".len()..];
                    thinking = false;
                }
                None => {
                    blocks.push(format!("{lead}{}", strip_partial(rest, "</think>")));
                    return (blocks, answer, true);
                }
            }
        } else {
            let trimmed = rest.trim_start();
            if let Some(after) = trimmed.strip_prefix("<think>") {
                answer.push_str(&rest[..rest.len() - trimmed.len()]);
                rest = after;
                thinking = true;
            } else {
                answer.push_str(rest);
                return (blocks, answer, false);
            }
        }
    }
}

fn text_from(
    vocab: &'static [&'static str],
    extra: &'static [&'static str],
) -> impl Strategy<Value = String> {
    // Markers thrice, so that most texts hold several.
    let all: Vec<&'static str> = vocab
        .iter()
        .chain(extra)
        .chain(extra)
        .chain(extra)
        .copied()
        .collect();
    prop::collection::vec(prop::sample::select(all), 0..40).prop_map(|words| words.concat())
}

fn tag_case() -> impl Strategy<Value = (&'static str, &'static [&'static str], String)> {
    (0..TAG_FORMATS.len()).prop_flat_map(|k| {
        let (name, markers) = TAG_FORMATS[k];
        (
            Just(name),
            Just(markers),
            text_from(vocab_for(name), markers),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn tag_formats_chunking_is_invisible_and_nothing_is_lost(
        (name, markers, text) in tag_case(),
        prefilled in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..10),
        char_by_char in any::<bool>(),
        auto in any::<bool>(),
    ) {
        let format: ReasoningFormat = if auto && name != "none" { ReasoningFormat::Auto } else { name.parse().unwrap() };
        let chunks = chunk(&text, &cuts, char_by_char);
        let whole = run(format, prefilled, &[&text]);
        let cut = run(format, prefilled, &chunks);
        prop_assert_eq!(&cut, &whole);

        let batch = split_batch(format, prefilled, &chunks);
        prop_assert_eq!(&batch, &split_batch(format, prefilled, &[&text]));
        prop_assert_eq!(batch.answer.as_str(), whole.answer.trim());
        prop_assert_eq!(no_ws(&batch.reasoning), no_ws(&whole.reasoning));
        prop_assert_eq!(batch.cut_off, whole.cut_off);

        // Auto may delete any family's markers; the union is a superset, still exact
        // about what else must survive.
        let deletable: Vec<&str> = if format == ReasoningFormat::Auto {
            TAG_FORMATS.iter().flat_map(|(_, m)| m.iter().copied()).collect()
        } else {
            markers.to_vec()
        };
        // Tool-call starts are kept whole, but a block cut off inside one loses it.
        let fragments: Vec<&str> = if format == ReasoningFormat::Auto {
            ["qwen3", "kimi"].iter().flat_map(|f| tool_words(f).iter().copied()).collect()
        } else {
            tool_words(name).to_vec()
        };
        prop_assert!(
            is_input_minus_markers(&text, &whole.stream, &deletable, &fragments, false),
            "emitted {:?} is not the input {:?} minus markers", whole.stream, text
        );
        if format == ReasoningFormat::None {
            prop_assert_eq!(&whole.answer, &text);
        }
    }

    #[test]
    fn think_family_matches_the_reference(
        k in 0..THINK_FAMILY.len(),
        text in text_from(WORDS, &["<think>", "</think>"]),
        prefilled in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..10),
        char_by_char in any::<bool>(),
    ) {
        let format: ReasoningFormat = THINK_FAMILY[k].parse().unwrap();
        let chunks = chunk(&text, &cuts, char_by_char);
        let (blocks, answer, cut_off) = reference(&text, prefilled);
        let got = run(format, prefilled, &chunks);
        prop_assert_eq!(&got.reasoning, &blocks.concat());
        prop_assert_eq!(&got.answer, &answer);
        prop_assert_eq!(got.cut_off, cut_off);

        let batch = split_batch(format, prefilled, &chunks);
        let joined = blocks.iter().map(|b| b.trim()).filter(|b| !b.is_empty()).collect::<Vec<_>>().join("\n");
        prop_assert_eq!(batch.reasoning, joined);
        prop_assert_eq!(batch.answer.as_str(), answer.trim());
        prop_assert_eq!(batch.cut_off, cut_off);
    }

    #[test]
    fn harmony_chunking_is_invisible_and_nothing_is_lost(
        text in text_from(WORDS, HARMONY),
        prefilled in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..10),
        char_by_char in any::<bool>(),
    ) {
        let chunks = chunk(&text, &cuts, char_by_char);
        let whole = run(ReasoningFormat::GptOss, prefilled, &[&text]);
        prop_assert_eq!(&run(ReasoningFormat::GptOss, prefilled, &chunks), &whole);
        let batch = split_batch(ReasoningFormat::GptOss, prefilled, &chunks);
        prop_assert_eq!(batch.answer.as_str(), whole.answer.trim());
        prop_assert_eq!(no_ws(&batch.reasoning), no_ws(&whole.reasoning));
        prop_assert!(
            is_input_minus_markers(&text, &whole.stream, HARMONY, &[], true),
            "emitted {:?} is not the input {:?} minus markers", whole.stream, text
        );
    }
}
