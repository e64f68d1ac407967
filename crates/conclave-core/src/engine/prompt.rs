//! Prompt preparation, as pure functions: the thinking mode applied to the template (the
//! mapping itself is [`reasoning::PromptPlan`]), which earlier thoughts go back to the
//! model, the template render with its prefill and BOS rule, the budget rule, and which
//! turns are dropped when the conversation does not fit. No worker is needed to test them.

use crate::events::{Message, Role, ThinkMode};
use crate::protocol::{PromptSegment, ReadyInfo, ThinkBudget};
use crate::reasoning::{self, PromptPlan, ReasoningFormat};
use crate::template::{ChatTemplate, RenderInput, TemplateError};

/// One request's conversation, ready to render as many times as turns must be dropped.
pub(super) struct Prepared {
    pub template: ChatTemplate,
    /// How the thinking mode is reached with this template.
    pub thinking: PromptPlan,
    /// The plan's template variables, then the request's own (which win).
    pub extra_vars: Vec<(String, minijinja::Value)>,
    /// The conversation as the model will see it.
    pub messages: Vec<Message>,
    /// Earlier turns' thinking that is not sent back (its tokens are reported as saved).
    pub dropped_thoughts: String,
}

/// A rendered prompt, ready for the worker.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Rendered {
    /// The whole prompt as text (the segments joined).
    pub prompt: String,
    /// The same, split into template markup and message text for the worker.
    pub segments: Vec<PromptSegment>,
    pub add_bos: bool,
    /// The prompt ends inside an opened thinking block, so the output starts in thought.
    pub starts_in_thinking: bool,
}

/// Where a warm-up of the message being typed stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmUntil<'a> {
    /// After the text typed so far.
    EndOfText,
    /// Before the message's text, which is this placeholder: nothing is typed yet, and the
    /// history and the new turn's header are read.
    StartOfText(&'a str),
    /// The whole prompt the send would have, end-of-turn markup and generation prompt too:
    /// typing has stopped, and sending the text as it is decodes only the last token again
    /// (for its logits).
    EndOfPrompt,
}

/// The reasoning format a template implies: detected from the model's own template, or
/// known for the built-ins.
pub(super) fn format_for(t: &ChatTemplate) -> ReasoningFormat {
    match t.name.as_str() {
        "deepseek-r1" => ReasoningFormat::DeepseekR1,
        _ => reasoning::detect_from_template(&t.source),
    }
}

/// Prepares one request's conversation for `template`.
pub(super) fn prepare(
    template: ChatTemplate,
    mut messages: Vec<Message>,
    think: ThinkMode,
    keep_thoughts: bool,
    template_vars: &[(String, serde_json::Value)],
) -> Prepared {
    let thinking = PromptPlan::new(
        format_for(&template),
        &template.source,
        think,
        &mut messages,
    );
    let mut extra_vars = thinking.template_vars();
    extra_vars.extend(
        template_vars
            .iter()
            .map(|(k, v)| (k.clone(), minijinja::Value::from_serialize(v))),
    );
    let dropped_thoughts =
        earlier_thoughts(&mut messages, keep_thoughts, &template, thinking.format);
    Prepared {
        template,
        thinking,
        extra_vars,
        messages,
        dropped_thoughts,
    }
}

/// Earlier turns' thinking is not sent back unless the conversation keeps it; when it does
/// and the template has no place for it (`reasoning_content`), it goes back inside the
/// format's markers. Returns the thinking left out.
fn earlier_thoughts(
    messages: &mut [Message],
    keep: bool,
    template: &ChatTemplate,
    format: ReasoningFormat,
) -> String {
    let mut dropped = String::new();
    for m in messages.iter_mut().filter(|m| m.role == Role::Assistant) {
        let Some(r) = m.reasoning.take() else {
            continue;
        };
        if !keep {
            dropped.push_str(&r);
            continue;
        }
        if !template.source.contains("reasoning_content") {
            // A template without markers of its own gets the generic block the engine
            // opens for it, so kept thoughts are never dropped.
            let markers = format
                .markers()
                .or_else(|| ReasoningFormat::DeepseekR1.markers());
            if let Some(mk) = markers {
                m.content = format!("{}{}{}{}", mk.open, r, mk.close, m.content);
            }
        }
        m.reasoning = Some(r);
    }
    dropped
}

impl Prepared {
    /// The format the answer is read with.
    pub fn format(&self) -> ReasoningFormat {
        self.thinking.format
    }

    /// Renders `messages` (the prepared ones, or what is left of them after dropping
    /// turns). The template is the model file's code: it runs on a thread of its own,
    /// under limits (template::RenderLimits), never on the runtime's threads.
    pub async fn render(
        &self,
        messages: &[Message],
        ready: &ReadyInfo,
    ) -> Result<Rendered, TemplateError> {
        let segments = self
            .template
            .render_segments_async(&RenderInput {
                messages,
                add_generation_prompt: true,
                bos_token: &ready.bos_token,
                eos_token: &ready.eos_token,
                enable_thinking: self.thinking.enable_thinking,
                extra: &self.extra_vars,
            })
            .await?;
        Ok(self.finish(segments, ready))
    }

    /// The prompt for a rendered template: the plan's prefill, and whether BOS is added.
    fn finish(&self, mut segments: Vec<PromptSegment>, ready: &ReadyInfo) -> Rendered {
        let rendered: String = segments.iter().map(|s| s.text.as_str()).collect();
        let prompt = self.thinking.finish(&rendered);
        // The prefill is markup the engine adds after the template's.
        if let Some(prefill) = prompt.strip_prefix(&rendered).filter(|p| !p.is_empty()) {
            segments.push(PromptSegment::markup(prefill));
        }
        let starts_in_thinking = reasoning::prompt_ends_in_thinking(self.format(), &prompt);
        // Only when the model wants one and the template did not write it already (as
        // markup: a message that starts with the BOS text is plain text, not a BOS).
        let template_wrote_bos = segments
            .first()
            .is_some_and(|s| s.special && s.text.starts_with(&ready.bos_token));
        let add_bos = ready.add_bos && !(ready.bos_token.is_empty() || template_wrote_bos);
        Rendered {
            prompt,
            segments,
            add_bos,
            starts_in_thinking,
        }
    }

    /// What a warm-up decodes of a rendered prompt whose last message is the one being
    /// typed: everything up to the end of its text, or up to its start, or all of it
    /// (`until`). While the text still grows, the end-of-turn markup, the generation prompt
    /// and any prefill come after it and wait. `None` when no message text was rendered.
    pub fn warm_segments(rendered: &Rendered, until: WarmUntil<'_>) -> Option<Vec<PromptSegment>> {
        let last_text = rendered.segments.iter().rposition(|s| !s.special)?;
        if matches!(until, WarmUntil::EndOfPrompt) {
            return Some(rendered.segments.clone());
        }
        let mut segments = rendered.segments[..=last_text].to_vec();
        if let WarmUntil::StartOfText(placeholder) = until {
            // The placeholder is only there so that the template writes the turn's header;
            // a segment can hold more text than it, so only the placeholder is cut off.
            let last = segments.last_mut()?;
            let kept = last.text.strip_suffix(placeholder)?.len();
            last.text.truncate(kept);
            if kept == 0 {
                segments.pop();
            }
        }
        Some(segments)
    }

    /// The worker's budget rule for this format; without a user budget it still counts the
    /// thinking tokens and never forces.
    pub fn budget(&self, max_tokens: Option<u32>, starts_in_thinking: bool) -> Option<ThinkBudget> {
        self.format().markers().map(|mk| ThinkBudget {
            max_tokens: max_tokens.unwrap_or(u32::MAX),
            starts_in_thinking,
            open: mk.open.trim().to_owned(),
            close: detection_marker(mk.close),
            inject: format!("{}{}", mk.budget_lead_in, mk.close),
        })
    }
}

/// The part of a closing marker that the model itself writes first: whitespace trimmed, and
/// without the next turn's header that the engine adds when it forces the answer.
fn detection_marker(close: &str) -> String {
    let close = close.trim();
    let cut = ["<|start|>", "<|START_RESPONSE|>"]
        .iter()
        .filter_map(|h| close.find(h))
        .filter(|&i| i > 0)
        .min();
    close[..cut.unwrap_or(close.len())].to_owned()
}

/// The context rule: keep every system message and the last user message; drop the oldest
/// other turn together with the assistant replies that follow it. Returns false when
/// nothing more can be dropped.
pub(super) fn drop_oldest_exchange(messages: &mut Vec<Message>, dropped: &mut u32) -> bool {
    let last_user = messages.iter().rposition(|m| m.role == Role::User);
    let Some(first) = messages.iter().position(|m| m.role != Role::System) else {
        return false;
    };
    if Some(first) == last_user || last_user.is_none() && first + 1 >= messages.len() {
        return false;
    }
    messages.remove(first);
    *dropped += 1;
    // The replies to the dropped message go with it.
    while let Some(i) = messages.iter().position(|m| m.role != Role::System) {
        if messages[i].role == Role::Assistant
            && Some(i) != messages.iter().rposition(|m| m.role == Role::User)
        {
            messages.remove(i);
            *dropped += 1;
        } else {
            break;
        }
    }
    true
}

/// The middle rule: keep every system message, the first exchange (a user message and the
/// replies that follow it) and the last user message; drop the oldest exchange after the
/// first one. With nothing left between them, it falls back to dropping the first exchange
/// too. Returns false when nothing more can be dropped.
pub(super) fn drop_middle_exchange(messages: &mut Vec<Message>, dropped: &mut u32) -> bool {
    let users: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::User)
        .map(|(i, _)| i)
        .collect();
    // The first exchange, something between, and the last question.
    if users.len() < 3 {
        return drop_oldest_exchange(messages, dropped);
    }
    let (start, end) = (users[1], users[2]);
    let before = messages.len();
    let mut i = 0;
    messages.retain(|m| {
        let keep = !(start..end).contains(&i) || m.role == Role::System;
        i += 1;
        keep
    });
    *dropped += (before - messages.len()) as u32;
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn m(role: Role, c: &str) -> Message {
        Message::new(role, c)
    }

    fn answered(content: &str, thought: &str) -> Message {
        Message {
            reasoning: Some(thought.into()),
            ..m(Role::Assistant, content)
        }
    }

    fn ready(bos: &str, add_bos: bool) -> ReadyInfo {
        ReadyInfo {
            protocol: crate::protocol::PROTOCOL_VERSION,
            pid: 1,
            load_ms: 0.0,
            n_ctx: 2048,
            n_ctx_train: 2048,
            n_vocab: 100,
            n_params: 1,
            size_bytes: 1,
            threads: 1,
            architecture: "llama".into(),
            name: None,
            chat_template: None,
            bos_token: bos.into(),
            eos_token: "</s>".into(),
            add_bos,
            draft_model: None,
            sandbox: Default::default(),
            devices: Vec::new(),
            gpu_layers: 0,
            gpu_layers_source: String::new(),
            memory: Vec::new(),
        }
    }

    fn custom(source: &str) -> ChatTemplate {
        ChatTemplate::resolve(None, "llama", Some(source)).unwrap()
    }

    /// A template whose format is detected as Qwen3 (it reads `enable_thinking`).
    const QWEN3_LIKE: &str = "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{%- endif %}{%- endif %}";

    fn hi() -> Vec<Message> {
        vec![m(Role::User, "hi")]
    }

    #[tokio::test]
    async fn thinking_on_for_a_model_without_a_format_opens_a_think_block() {
        let chatml = ChatTemplate::builtin("chatml").unwrap();
        let p = prepare(chatml, hi(), ThinkMode::On, false, &[]);
        assert_eq!(p.format(), ReasoningFormat::DeepseekR1);
        let r = p.render(&p.messages, &ready("", false)).await.unwrap();
        assert!(r.prompt.ends_with("<think>\n"), "{:?}", r.prompt);
        assert!(r.starts_in_thinking);
        let budget = p.budget(Some(8), r.starts_in_thinking).unwrap();
        assert_eq!(
            (
                budget.max_tokens,
                budget.open.as_str(),
                budget.close.as_str()
            ),
            (8, "<think>", "</think>")
        );
    }

    #[tokio::test]
    async fn a_warm_up_stops_at_the_end_of_the_message_being_typed() {
        let t = custom(QWEN3_LIKE);
        let typed = "Tell me more about the light";
        let messages = vec![
            m(Role::User, "What is a lighthouse?"),
            answered("A tower with a light.", "They ask about towers."),
            m(Role::User, typed),
        ];
        // Thinking off: the template's switch and the engine's prefill both come after the
        // message, so neither is warmed.
        let p = prepare(t, messages, ThinkMode::Off, false, &[]);
        let r = p.render(&p.messages, &ready("", false)).await.unwrap();
        let warm = Prepared::warm_segments(&r, WarmUntil::EndOfText).unwrap();
        let text: String = warm.iter().map(|s| s.text.as_str()).collect();
        assert!(text.ends_with(typed), "{text:?}");
        assert!(r.prompt.starts_with(&text) && r.prompt.len() > text.len());
        assert!(!warm.last().unwrap().special);
        // The message sent later renders to the same prefix, whatever is typed after it.
        let mut later = p.messages.clone();
        later.last_mut().unwrap().content = format!("{typed}house's lamp?");
        let sent = p.render(&later, &ready("", false)).await.unwrap();
        assert!(sent.prompt.starts_with(&text), "{:?}", sent.prompt);
    }

    #[tokio::test]
    async fn once_typing_stops_a_warm_up_reads_the_whole_prompt_the_send_has() {
        let t = custom(QWEN3_LIKE);
        let typed = "Tell me more about the lamp";
        let messages = vec![
            m(Role::User, "What is a lighthouse?"),
            answered("A tower with a light.", "They ask about towers."),
            m(Role::User, typed),
        ];
        // Thinking off: the engine's empty-thought prefill is part of what is sent.
        let p = prepare(t, messages, ThinkMode::Off, false, &[]);
        let r = p.render(&p.messages, &ready("", false)).await.unwrap();
        let warm = Prepared::warm_segments(&r, WarmUntil::EndOfPrompt).unwrap();
        assert_eq!(warm, r.segments);
        let text: String = warm.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(text, r.prompt);
        assert!(text.contains(&format!("{typed}<|im_end|>")), "{text:?}");
        assert!(text.trim_end().ends_with("</think>"), "{text:?}");
    }

    #[tokio::test]
    async fn with_nothing_typed_a_warm_up_stops_before_the_message() {
        let t = custom(QWEN3_LIKE);
        let placeholder = "Hello";
        let messages = vec![
            m(Role::User, "What is a lighthouse?"),
            answered("A tower with a light.", "They ask about towers."),
            m(Role::User, placeholder),
        ];
        let p = prepare(t, messages, ThinkMode::Off, false, &[]);
        let r = p.render(&p.messages, &ready("", false)).await.unwrap();
        let warm = Prepared::warm_segments(&r, WarmUntil::StartOfText(placeholder)).unwrap();
        let text: String = warm.iter().map(|s| s.text.as_str()).collect();
        // The previous answer and the new turn's header, not the placeholder.
        assert!(text.ends_with("<|im_start|>user\n"), "{text:?}");
        assert!(warm.iter().all(|s| !s.text.is_empty()));
        let mut later = p.messages.clone();
        later.last_mut().unwrap().content = "Who keeps them?".into();
        let sent = p.render(&later, &ready("", false)).await.unwrap();
        assert!(sent.prompt.starts_with(&text), "{:?}", sent.prompt);
        // The placeholder is not what the template rendered last: nothing is cut.
        let mut other = r.clone();
        other.segments.last_mut().unwrap().special = false;
        assert!(Prepared::warm_segments(&other, WarmUntil::StartOfText("never")).is_none());
    }

    #[tokio::test]
    async fn thinking_auto_leaves_a_plain_template_alone() {
        let chatml = ChatTemplate::builtin("chatml").unwrap();
        let p = prepare(chatml, hi(), ThinkMode::Auto, false, &[]);
        assert_eq!(p.format(), ReasoningFormat::None);
        assert!(p.thinking.enable_thinking.is_none() && p.extra_vars.is_empty());
        let r = p.render(&p.messages, &ready("", false)).await.unwrap();
        assert!(
            !r.starts_in_thinking && r.prompt.ends_with("assistant\n"),
            "{:?}",
            r.prompt
        );
        assert!(p.budget(None, false).is_none());
    }

    #[tokio::test]
    async fn thinking_off_uses_the_templates_own_switch() {
        let t = custom(QWEN3_LIKE);
        assert_eq!(format_for(&t), ReasoningFormat::Qwen3);
        let p = prepare(t.clone(), hi(), ThinkMode::Off, false, &[]);
        assert_eq!(p.thinking.enable_thinking, Some(false));
        let r = p.render(&p.messages, &ready("", false)).await.unwrap();
        assert!(r.prompt.ends_with("<think>\n\n</think>"), "{:?}", r.prompt);
        assert!(!r.starts_in_thinking);
        let on = prepare(t, hi(), ThinkMode::On, false, &[]);
        assert_eq!(on.thinking.enable_thinking, Some(true));

        // R1's template opens the block itself: Off closes it in the prompt.
        let r1 = ChatTemplate::builtin("deepseek-r1").unwrap();
        let p = prepare(r1, hi(), ThinkMode::Off, false, &[]);
        let r = p.render(&p.messages, &ready("<s>", true)).await.unwrap();
        assert!(r.prompt.trim_end().ends_with("</think>"), "{:?}", r.prompt);
        assert!(!r.starts_in_thinking, "{:?}", r.prompt);
    }

    #[tokio::test]
    async fn request_template_vars_reach_the_template_and_win() {
        let t = custom("{%- for m in messages %}{{ m.content }}{%- endfor %}|{{ enable_thinking }}|{{ flavour }}");
        let vars = [("flavour".to_owned(), serde_json::json!("mint"))];
        let p = prepare(t, hi(), ThinkMode::Auto, false, &vars);
        let r = p.render(&p.messages, &ready("", false)).await.unwrap();
        assert!(r.prompt.ends_with("|mint"), "{:?}", r.prompt);
    }

    #[test]
    fn earlier_thoughts_are_dropped_unless_kept() {
        let chatml = ChatTemplate::builtin("chatml").unwrap();
        let convo = vec![
            m(Role::User, "q1"),
            answered("a1", "mulling"),
            m(Role::User, "q2"),
        ];
        let dropped = prepare(chatml.clone(), convo.clone(), ThinkMode::On, false, &[]);
        assert_eq!(dropped.dropped_thoughts, "mulling");
        assert_eq!(dropped.messages[1].content, "a1");
        assert!(dropped.messages[1].reasoning.is_none());

        // Kept, with a template that has no field for it: back inside the markers (the
        // generic block, when the format has none of its own).
        for think in [ThinkMode::On, ThinkMode::Auto] {
            let kept = prepare(chatml.clone(), convo.clone(), think, true, &[]);
            assert!(kept.dropped_thoughts.is_empty());
            assert_eq!(kept.messages[1].content, "<think>\nmulling\n</think>\n\na1");
        }

        // Kept, with a template that renders `reasoning_content` itself: left as a field.
        let own =
            custom("{%- for m in messages %}{{ m.reasoning_content }}{{ m.content }}{%- endfor %}");
        let kept = prepare(own, convo, ThinkMode::Auto, true, &[]);
        assert_eq!(kept.messages[1].content, "a1");
        assert_eq!(kept.messages[1].reasoning.as_deref(), Some("mulling"));
    }

    #[tokio::test]
    async fn bos_is_added_only_when_the_template_did_not_write_it() {
        let chatml = ChatTemplate::builtin("chatml").unwrap();
        let p = prepare(chatml, hi(), ThinkMode::Auto, false, &[]);
        assert!(
            p.render(&p.messages, &ready("<s>", true))
                .await
                .unwrap()
                .add_bos
        );
        assert!(
            !p.render(&p.messages, &ready("<s>", false))
                .await
                .unwrap()
                .add_bos
        );
        assert!(
            !p.render(&p.messages, &ready("", true))
                .await
                .unwrap()
                .add_bos
        );
        let r1 = ChatTemplate::builtin("deepseek-r1").unwrap();
        let p = prepare(r1, hi(), ThinkMode::Auto, false, &[]);
        let r = p.render(&p.messages, &ready("<s>", true)).await.unwrap();
        assert!(r.prompt.starts_with("<s>") && !r.add_bos);
    }

    #[test]
    fn detection_marker_stops_before_the_next_turns_header() {
        assert_eq!(detection_marker("\n</think>\n\n"), "</think>");
        assert_eq!(
            detection_marker("<|end|><|start|>assistant<|channel|>final<|message|>"),
            "<|end|>"
        );
        assert_eq!(
            detection_marker("<|END_THINKING|><|START_RESPONSE|>"),
            "<|END_THINKING|>"
        );
    }

    #[test]
    fn context_rule_keeps_system_and_last_user() {
        let mut msgs = vec![
            m(Role::System, "sys"),
            m(Role::User, "u1"),
            m(Role::Assistant, "a1"),
            m(Role::User, "u2"),
            m(Role::Assistant, "a2"),
            m(Role::User, "u3"),
        ];
        let mut dropped = 0;
        assert!(drop_oldest_exchange(&mut msgs, &mut dropped));
        assert_eq!(
            msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["sys", "u2", "a2", "u3"]
        );
        assert_eq!(dropped, 2);
        assert!(drop_oldest_exchange(&mut msgs, &mut dropped));
        assert_eq!(
            msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["sys", "u3"]
        );
        assert!(!drop_oldest_exchange(&mut msgs, &mut dropped));
        assert_eq!(dropped, 4);
    }

    #[test]
    fn middle_rule_keeps_the_first_exchange_and_the_last_question() {
        let mut msgs = vec![
            m(Role::System, "sys"),
            m(Role::User, "u1"),
            m(Role::Assistant, "a1"),
            m(Role::User, "u2"),
            m(Role::Assistant, "a2"),
            m(Role::User, "u3"),
            m(Role::Assistant, "a3"),
            m(Role::User, "u4"),
        ];
        let texts = |v: &[Message]| v.iter().map(|m| m.content.clone()).collect::<Vec<_>>();
        let mut dropped = 0;
        assert!(drop_middle_exchange(&mut msgs, &mut dropped));
        assert_eq!(texts(&msgs), ["sys", "u1", "a1", "u3", "a3", "u4"]);
        assert!(drop_middle_exchange(&mut msgs, &mut dropped));
        assert_eq!(texts(&msgs), ["sys", "u1", "a1", "u4"]);
        assert_eq!(dropped, 4);
        // Nothing left between: the first exchange goes too, then nothing more.
        assert!(drop_middle_exchange(&mut msgs, &mut dropped));
        assert_eq!(texts(&msgs), ["sys", "u4"]);
        assert!(!drop_middle_exchange(&mut msgs, &mut dropped));
        assert_eq!(dropped, 6);
    }
}
