//! GPT-OSS's harmony format: the output is a run of messages,
//! `[<|start|>assistant]<|channel|>NAME[ to=RECIPIENT][ <|constrain|>TYPE]<|message|>BODY<|end|>`,
//! the last one ended by `<|return|>` (or `<|call|>` for a tool call).
//!
//! Routing, following llama.cpp's `common_chat_parse_gpt_oss` (common/chat-parser.cpp):
//! * `analysis` bodies are reasoning; each analysis message is its own block, and the
//!   stream puts a newline between blocks so that several analysis messages read as
//!   paragraphs rather than one run-on line.
//! * `final` bodies are the answer; answer messages (final and preambles) are joined
//!   by a newline in the same way.
//! * `commentary` without a recipient is a tool preamble ("I'll look that up"), which
//!   harmony says is meant for the user, so it goes to the answer like llama.cpp does.
//! * A message with a recipient (` to=functions.x`) is a tool call: structured arguments,
//!   not prose. Conclave offers no tools, so its body is dropped rather than shown.
//! * Headers are structure and never shown. A header that a second header interrupts
//!   before its `<|message|>` (llama.cpp's test: a stray `<|channel|>commentary
//!   to=assistant` before `<|channel|>analysis<|message|>`) is dropped, and the later
//!   one routes the body.
//! * Text outside any message (a model that ignores the format) is answer, so nothing
//!   the user should see is swallowed.
//! * The output ending inside an analysis body part way through a marker drops the
//!   fragment, as the tag engine does.

use super::Piece;

const START: &str = "<|start|>";
const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
const END: &str = "<|end|>";
const RETURN: &str = "<|return|>";
const CALL: &str = "<|call|>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Reasoning,
    Answer,
    Drop,
}

#[derive(Debug)]
enum State {
    Outside,
    /// Collecting a header up to `<|message|>`; it is parsed, never shown.
    Header(String),
    Message(Route),
}

#[derive(Debug, Clone, Copy)]
enum Hit {
    Start,
    Channel,
    Message,
    End,
}

enum Probe {
    Full(Hit, usize),
    Partial,
    Miss,
}

#[derive(Debug)]
pub(super) struct HarmonyEngine {
    state: State,
    block: u32,
    /// Some text of that kind has been emitted, so the next message of the kind is
    /// separated from it by a newline.
    reasoning_seen: bool,
    answer_seen: bool,
    /// The current message is not the first of its kind and has emitted nothing yet.
    separate: bool,
    pending: String,
}

impl HarmonyEngine {
    pub(super) fn new(prefilled_open: bool) -> Self {
        Self {
            state: if prefilled_open {
                State::Message(Route::Reasoning)
            } else {
                State::Outside
            },
            block: u32::from(prefilled_open),
            reasoning_seen: false,
            answer_seen: false,
            separate: false,
            pending: String::new(),
        }
    }

    pub(super) fn in_thinking(&self) -> bool {
        matches!(self.state, State::Message(Route::Reasoning))
    }

    pub(super) fn held_back(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn feed(&mut self, delta: &str, final_: bool, out: &mut Vec<Piece>) {
        let mut buf = std::mem::take(&mut self.pending);
        buf.push_str(delta);
        let mut start = 0;
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            match self.probe(rest) {
                Probe::Full(hit, len) => {
                    self.take(&buf[start..i], out);
                    self.apply(hit, &buf[i..i + len]);
                    i += len;
                    start = i;
                    continue;
                }
                Probe::Partial if !final_ => break,
                Probe::Partial if self.in_thinking() => {
                    // Ended part way through a marker: the fragment is not thought.
                    self.take(&buf[start..i], out);
                    self.pending = String::new();
                    return;
                }
                Probe::Partial | Probe::Miss => {}
            }
            let Some(c) = rest.chars().next() else { break };
            i += c.len_utf8();
        }
        self.take(&buf[start..i], out);
        buf.drain(..i);
        self.pending = buf;
    }

    fn probe(&self, rest: &str) -> Probe {
        let live: &[(&'static str, Hit)] = match self.state {
            // A new header interrupts one that never reached its body.
            State::Header(_) => &[
                (START, Hit::Start),
                (CHANNEL, Hit::Channel),
                (MESSAGE, Hit::Message),
            ],
            State::Outside | State::Message(_) => &[
                (START, Hit::Start),
                (CHANNEL, Hit::Channel),
                (MESSAGE, Hit::Message),
                (END, Hit::End),
                (RETURN, Hit::End),
                (CALL, Hit::End),
            ],
        };
        let mut partial = false;
        for &(marker, hit) in live {
            if rest.starts_with(marker) {
                return Probe::Full(hit, marker.len());
            }
            if rest.len() < marker.len() && marker.starts_with(rest) {
                partial = true;
            }
        }
        if partial {
            Probe::Partial
        } else {
            Probe::Miss
        }
    }

    fn apply(&mut self, hit: Hit, marker: &str) {
        self.separate = false;
        self.state = match (hit, &mut self.state) {
            (Hit::Message, State::Header(header)) => {
                let route = route_of(header);
                match route {
                    Route::Reasoning => {
                        self.block += 1;
                        self.separate = self.reasoning_seen;
                    }
                    Route::Answer => self.separate = self.answer_seen,
                    Route::Drop => {}
                }
                State::Message(route)
            }
            // A body with no header at all: the model skipped the channel; show it.
            (Hit::Message, _) => {
                self.separate = self.answer_seen;
                State::Message(Route::Answer)
            }
            // `<|start|>` then `<|channel|>` is one header; a second `<|channel|>`, or
            // any `<|start|>`, before `<|message|>` starts over and drops the first.
            (Hit::Channel, State::Header(header)) if !header.contains(CHANNEL) => {
                header.push_str(marker);
                return;
            }
            // A new header also ends a message whose `<|end|>` the model forgot.
            (Hit::Start | Hit::Channel, _) => State::Header(marker.to_owned()),
            (Hit::End, _) => State::Outside,
        };
    }

    fn take(&mut self, text: &str, out: &mut Vec<Piece>) {
        if text.is_empty() {
            return;
        }
        let separate = std::mem::take(&mut self.separate);
        match &mut self.state {
            State::Header(header) => header.push_str(text),
            State::Outside => {
                self.answer_seen = true;
                Piece::push_answer(out, text);
            }
            State::Message(Route::Answer) => {
                if separate {
                    Piece::push_answer(out, "\n");
                }
                self.answer_seen = true;
                Piece::push_answer(out, text);
            }
            State::Message(Route::Reasoning) => {
                if separate {
                    Piece::push_reasoning(out, "\n", self.block);
                }
                self.reasoning_seen = true;
                Piece::push_reasoning(out, text, self.block);
            }
            State::Message(Route::Drop) => {}
        }
    }
}

fn route_of(header: &str) -> Route {
    // The recipient may sit in the role part (`<|start|>assistant to=functions.x`) or
    // after the channel name; either way the body is a tool call.
    if header.contains(" to=") {
        return Route::Drop;
    }
    let channel = header
        .split_once(CHANNEL)
        .map(|(_, after)| {
            let end = after
                .find(|c: char| c.is_whitespace() || c == '<')
                .unwrap_or(after.len());
            &after[..end]
        })
        .unwrap_or("");
    match channel {
        "analysis" => Route::Reasoning,
        _ => Route::Answer,
    }
}
