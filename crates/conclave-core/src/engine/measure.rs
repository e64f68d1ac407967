//! An answer's metrics: the moments noted while it streams, and the figures made from them
//! and from the worker's own report.

use std::time::{Duration, Instant};

use crate::events::ContextOverflow;
use crate::events::{ChatEvent, Metrics, ThinkMode, Usage};
use crate::metrics::EnergyMeter;
use crate::protocol::DoneInfo;
use crate::reasoning::{ReasoningFormat, Segment};

/// When an answer's output, thinking and answer text first appeared.
pub(super) struct Timeline {
    start: Instant,
    first_output: Option<Duration>,
    reasoning_started: Option<Duration>,
    answer_started: Option<Duration>,
    /// Energy spent by the time an answer that followed a thought began.
    thinking_energy_wh: Option<f64>,
    saw_reasoning: bool,
}

impl Timeline {
    /// `start`: when the request reached the engine (time to first token counts from there).
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            first_output: None,
            reasoning_started: None,
            answer_started: None,
            thinking_energy_wh: None,
            saw_reasoning: false,
        }
    }

    /// The event to stream for a piece of split output (none for an empty piece), noting
    /// the moments the metrics need.
    pub fn event(&mut self, segment: Segment, meter: &EnergyMeter) -> Option<ChatEvent> {
        // One reading per segment, so that the first output and the first of its kind are
        // the same instant.
        let now = self.start.elapsed();
        let event = match segment {
            Segment::Reasoning(text) if !text.is_empty() => {
                self.saw_reasoning = true;
                self.reasoning_started.get_or_insert(now);
                ChatEvent::reasoning(text)
            }
            Segment::Answer(text) if !text.is_empty() => {
                if self.answer_started.is_none() {
                    self.answer_started = Some(now);
                    if self.saw_reasoning {
                        self.thinking_energy_wh = Some(meter.read().0);
                    }
                }
                ChatEvent::token(text)
            }
            _ => return None,
        };
        self.first_output.get_or_insert(now);
        Some(event)
    }
}

/// What an answer's metrics are made of, besides its timeline.
pub(super) struct AnswerFacts<'a> {
    pub done: &'a DoneInfo,
    /// Prompt decoding time, as the worker reported it when generation began.
    pub prompt_ms: f64,
    pub wall: Duration,
    /// Generated tokens that fell on the thinking side, as the splitter counted them: the
    /// worker counts thinking only under a budget, and the auto splitter may have found
    /// thinking on its own.
    pub reasoning_tokens: u32,
    pub energy_wh: f64,
    pub cpu_seconds: f64,
    pub energy_method: &'static str,
    pub peak_rss_bytes: u64,
    pub dropped_messages: u32,
    pub context_overflow: ContextOverflow,
    pub seed: u32,
    pub template: String,
    /// The format the splitter ended with (detected, for `auto`).
    pub reasoning_format: ReasoningFormat,
    pub reasoning_cut_off: bool,
    pub thinking: ThinkMode,
    pub thoughts_dropped_tokens: u32,
}

pub(super) fn assemble(timeline: &Timeline, facts: AnswerFacts<'_>) -> (Usage, Metrics) {
    let done = facts.done;
    let wall_ms = facts.wall.as_secs_f64() * 1000.0;
    // The worker's total stays the reference (a cancelled answer's last token may never
    // have come out as text).
    let reasoning_tokens = facts.reasoning_tokens.min(done.completion_tokens);
    let thinking_ms = if timeline.saw_reasoning || reasoning_tokens > 0 {
        timeline
            .answer_started
            .map_or(wall_ms, |d| d.as_secs_f64() * 1000.0)
    } else {
        0.0
    };
    let energy_thinking_wh = if thinking_ms > 0.0 {
        timeline.thinking_energy_wh.unwrap_or(facts.energy_wh)
    } else {
        0.0
    };
    let usage = Usage {
        prompt_tokens: done.prompt_tokens,
        cached_prompt_tokens: done.cached_tokens,
        completion_tokens: done.completion_tokens,
        reasoning_tokens,
        answer_tokens: done.completion_tokens - reasoning_tokens,
    };
    let evaluated = done.prompt_tokens.saturating_sub(done.cached_tokens);
    let metrics = Metrics {
        ttft_ms: timeline
            .first_output
            .map_or(wall_ms, |d| d.as_secs_f64() * 1000.0),
        prompt_eval_ms: facts.prompt_ms,
        prompt_tps: rate(evaluated, facts.prompt_ms),
        gen_ms: done.gen_ms,
        gen_tps: rate(done.completion_tokens, done.gen_ms),
        wall_ms,
        thinking_ms,
        answer_ms: (wall_ms - thinking_ms).max(0.0),
        threads: done.threads,
        peak_rss_bytes: facts.peak_rss_bytes,
        cpu_seconds: facts.cpu_seconds,
        energy_wh: facts.energy_wh,
        energy_thinking_wh,
        energy_answer_wh: (facts.energy_wh - energy_thinking_wh).max(0.0),
        energy_method: facts.energy_method.to_owned(),
        dropped_messages: facts.dropped_messages,
        context_overflow: facts.context_overflow,
        seed: facts.seed,
        template: facts.template,
        reasoning_format: facts.reasoning_format.name().to_owned(),
        thinking: facts.thinking,
        budget_cut_at: done.budget_cut_at,
        reasoning_cut_off: facts.reasoning_cut_off,
        thoughts_dropped_tokens: facts.thoughts_dropped_tokens,
        first_reasoning_ms: timeline.reasoning_started.map(millis),
        first_answer_ms: timeline.answer_started.map(millis),
        drafted_tokens: done.drafted_tokens,
        accepted_tokens: done.accepted_tokens,
        devices: String::new(),
    };
    (usage, metrics)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(tokens: u32, ms: f64) -> f64 {
    if ms > 0.0 {
        f64::from(tokens) * 1000.0 / ms
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StopReason;

    fn done(completion: u32, thinking: u32) -> DoneInfo {
        DoneInfo {
            id: 1,
            stop_reason: StopReason::Eos,
            prompt_tokens: 100,
            cached_tokens: 60,
            completion_tokens: completion,
            prompt_ms: 20.0,
            gen_ms: 500.0,
            threads: 2,
            thinking_tokens: thinking,
            budget_cut_at: None,
            drafted_tokens: 0,
            accepted_tokens: 0,
        }
    }

    fn facts(done: &DoneInfo) -> AnswerFacts<'_> {
        AnswerFacts {
            done,
            prompt_ms: 20.0,
            wall: Duration::from_millis(1000),
            reasoning_tokens: done.thinking_tokens,
            energy_wh: 0.5,
            cpu_seconds: 1.0,
            energy_method: "cpu-time",
            peak_rss_bytes: 1,
            dropped_messages: 0,
            context_overflow: ContextOverflow::DropOldest,
            seed: 7,
            template: "chatml".into(),
            reasoning_format: ReasoningFormat::None,
            reasoning_cut_off: false,
            thinking: ThinkMode::Auto,
            thoughts_dropped_tokens: 0,
        }
    }

    fn timeline(first_ms: u64, answer_ms: Option<u64>, saw_reasoning: bool) -> Timeline {
        Timeline {
            start: Instant::now(),
            first_output: Some(Duration::from_millis(first_ms)),
            reasoning_started: saw_reasoning.then(|| Duration::from_millis(first_ms)),
            answer_started: answer_ms.map(Duration::from_millis),
            thinking_energy_wh: saw_reasoning.then_some(0.2),
            saw_reasoning,
        }
    }

    #[test]
    fn rates_count_only_the_tokens_decoded() {
        let d = done(50, 0);
        let (usage, m) = assemble(&timeline(100, Some(100), false), facts(&d));
        assert_eq!((usage.answer_tokens, usage.reasoning_tokens), (50, 0));
        // 40 of the 100 prompt tokens were decoded (60 came from the cache) in 20 ms.
        assert!((m.prompt_tps - 2000.0).abs() < 1e-9, "{}", m.prompt_tps);
        assert!((m.gen_tps - 100.0).abs() < 1e-9, "{}", m.gen_tps);
        assert!((m.ttft_ms - 100.0).abs() < 1e-9);
        assert_eq!((m.thinking_ms, m.answer_ms), (0.0, 1000.0));
        assert_eq!((m.energy_thinking_wh, m.energy_answer_wh), (0.0, 0.5));
        assert_eq!(
            (m.first_reasoning_ms, m.first_answer_ms),
            (None, Some(100.0))
        );
    }

    #[test]
    fn thinking_lasts_until_the_answer_starts() {
        let d = done(50, 30);
        let (usage, m) = assemble(&timeline(100, Some(400), true), facts(&d));
        assert_eq!((usage.reasoning_tokens, usage.answer_tokens), (30, 20));
        assert!((m.thinking_ms - 400.0).abs() < 1e-9);
        assert!((m.answer_ms - 600.0).abs() < 1e-9);
        assert!((m.energy_thinking_wh - 0.2).abs() < 1e-9);
        assert!((m.energy_answer_wh - 0.3).abs() < 1e-9);
        assert_eq!(
            (m.first_reasoning_ms, m.first_answer_ms),
            (Some(100.0), Some(400.0))
        );
    }

    #[test]
    fn an_answer_cut_off_while_thinking_is_all_thinking() {
        // More thinking tokens counted than the worker generated: capped.
        let d = done(50, 80);
        let (usage, m) = assemble(&timeline(100, None, false), facts(&d));
        assert_eq!((usage.reasoning_tokens, usage.answer_tokens), (50, 0));
        assert_eq!((m.thinking_ms, m.answer_ms), (1000.0, 0.0));
        assert_eq!(m.energy_thinking_wh, 0.5);
    }
}
