//! Thinking On, Off and the budget, per reasoning format, on prompts rendered from the
//! published chat templates (tests/data/templates, sources in SOURCES.md) through the
//! core's renderer and its thinking-mode plan, the same two steps the engine takes.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use conclave_core::reasoning::{
    self, detect_from_template, split_batch, PromptPlan, ReasoningFormat, BUDGET_LEAD_IN,
};
use conclave_core::template::{ChatTemplate, RenderInput};
use conclave_core::{Message, Role, ThinkMode};

/// What Off does with a template.
#[derive(Debug, Clone, Copy)]
enum Off {
    /// The prompt ends so, and the output starts outside any block unless `true`.
    Tail(&'static str, bool),
    /// The template cannot: the prompt is the template's default.
    Unavailable,
}

struct Case {
    file: &'static str,
    format: ReasoningFormat,
    /// The prompt's end for Auto (the template's default) and for On, and whether the
    /// output then starts inside a thinking block.
    auto: (&'static str, bool),
    on: (&'static str, bool),
    off: Off,
    /// Text that only the On prompt holds (a thinking instruction, a flag token).
    on_only: Option<&'static str>,
    /// Text that only the Off prompt holds (a slash command, a no-thinking instruction).
    off_only: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        file: "qwen3.jinja",
        format: ReasoningFormat::Qwen3,
        auto: ("<|im_start|>assistant\n", false),
        on: ("<|im_start|>assistant\n", false),
        off: Off::Tail("<|im_start|>assistant\n<think>\n\n</think>\n\n", false),
        on_only: None,
        off_only: None,
    },
    Case {
        file: "qwq-32b.jinja",
        format: ReasoningFormat::Qwq,
        auto: ("<|im_start|>assistant\n<think>\n", true),
        on: ("<|im_start|>assistant\n<think>\n", true),
        off: Off::Unavailable,
        on_only: None,
        off_only: None,
    },
    Case {
        file: "deepseek-r1-distill.jinja",
        format: ReasoningFormat::DeepseekR1,
        auto: ("<｜Assistant｜><think>\n", true),
        on: ("<｜Assistant｜><think>\n", true),
        // The template's own open block is closed, not a second one opened.
        off: Off::Tail(
            "<｜User｜>What is 2+2?<｜Assistant｜><think>\n\n</think>\n\n",
            false,
        ),
        on_only: None,
        off_only: None,
    },
    Case {
        file: "deepseek-v3.1.jinja",
        format: ReasoningFormat::DeepseekR1,
        auto: ("<｜Assistant｜></think>", false),
        on: ("<｜User｜>What is 2+2?<｜Assistant｜><think>", true),
        off: Off::Tail("<｜User｜>What is 2+2?<｜Assistant｜></think>", false),
        on_only: None,
        off_only: None,
    },
    Case {
        file: "gpt-oss.jinja",
        format: ReasoningFormat::GptOss,
        auto: ("<|end|><|start|>assistant", false),
        on: ("<|end|><|start|>assistant", false),
        off: Off::Unavailable,
        on_only: None,
        off_only: None,
    },
    Case {
        file: "glm-4.6.jinja",
        format: ReasoningFormat::Glm,
        auto: ("What is 2+2?<|assistant|>", false),
        on: ("What is 2+2?<|assistant|>", false),
        off: Off::Tail("What is 2+2?/nothink<|assistant|>\n<think></think>", false),
        on_only: None,
        off_only: Some("/nothink"),
    },
    Case {
        file: "granite-3.3.jinja",
        format: ReasoningFormat::Granite,
        auto: ("<|start_of_role|>assistant<|end_of_role|>", false),
        on: ("<|start_of_role|>assistant<|end_of_role|>", false),
        off: Off::Tail("<|start_of_role|>assistant<|end_of_role|>", false),
        on_only: Some("Write your thoughts between <think></think>"),
        off_only: None,
    },
    Case {
        file: "seed-oss.jinja",
        format: ReasoningFormat::SeedOss,
        auto: ("<seed:bos>assistant\n", false),
        on: ("<seed:bos>assistant\n", false),
        off: Off::Tail(
            "<seed:bos>assistant\n<seed:think><seed:cot_budget_reflect>",
            true,
        ),
        on_only: None,
        off_only: Some("your thinking budget is 0"),
    },
    Case {
        file: "nemotron-nano-v2.jinja",
        format: ReasoningFormat::Nemotron,
        auto: ("<SPECIAL_11>Assistant\n<think>\n\n", true),
        on: ("<SPECIAL_11>Assistant\n<think>\n\n", true),
        off: Off::Tail("<SPECIAL_11>Assistant\n<think></think>", false),
        on_only: None,
        off_only: None,
    },
    Case {
        file: "nemotron-super-v1.5.jinja",
        format: ReasoningFormat::Nemotron,
        auto: ("<|start_header_id|>assistant<|end_header_id|>\n\n", false),
        on: ("<|start_header_id|>assistant<|end_header_id|>\n\n", false),
        off: Off::Tail(
            "<|start_header_id|>assistant<|end_header_id|>\n\n<think>\n\n</think>\n\n",
            false,
        ),
        on_only: None,
        off_only: None,
    },
    Case {
        file: "kimi-k2-thinking.jinja",
        format: ReasoningFormat::Kimi,
        auto: ("<|im_assistant|>assistant<|im_middle|>", false),
        on: ("<|im_assistant|>assistant<|im_middle|>", false),
        off: Off::Unavailable,
        on_only: None,
        off_only: None,
    },
    Case {
        file: "minimax-m2.jinja",
        format: ReasoningFormat::MinimaxM2,
        auto: ("]~b]ai\n<think>\n", true),
        on: ("]~b]ai\n<think>\n", true),
        off: Off::Unavailable,
        on_only: None,
        off_only: None,
    },
    Case {
        file: "apriel-1.6.jinja",
        format: ReasoningFormat::Apriel,
        auto: (
            "\n<|begin_assistant|>\nHere are my reasoning steps:\n",
            true,
        ),
        on: (
            "\n<|begin_assistant|>\nHere are my reasoning steps:\n",
            true,
        ),
        off: Off::Unavailable,
        on_only: None,
        off_only: None,
    },
    Case {
        file: "gemma4.jinja",
        format: ReasoningFormat::Gemma,
        auto: ("<|turn>model\n<|channel>thought\n<channel|>", false),
        on: ("What is 2+2?<turn|>\n<|turn>model\n", false),
        off: Off::Tail("<|turn>model\n<|channel>thought\n<channel|>", false),
        on_only: Some("<|think|>"),
        off_only: None,
    },
];

fn source(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/templates")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn conversation() -> Vec<Message> {
    let mut hello = Message::new(Role::Assistant, "Hello!");
    hello.reasoning = Some("The user greets me.".into());
    vec![
        Message::new(Role::User, "Hi"),
        hello,
        Message::new(Role::User, "What is 2+2?"),
    ]
}

/// The prompt for `mode` as the engine builds it, whether the output starts inside a
/// block, and the plan.
fn prompt(case: &Case, mode: ThinkMode) -> (String, bool, PromptPlan) {
    let src = source(case.file);
    let template = ChatTemplate::resolve(Some(&src), "test", None).unwrap();
    assert_eq!(template.name, "model");
    let mut messages = conversation();
    let plan = PromptPlan::new(case.format, &src, mode, &mut messages);
    let vars = plan.template_vars();
    let rendered = template
        .render(&RenderInput {
            messages: &messages,
            add_generation_prompt: true,
            bos_token: "<s>",
            eos_token: "</s>",
            enable_thinking: plan.enable_thinking,
            extra: &vars,
        })
        .unwrap_or_else(|e| panic!("{} ({mode:?}): {e}", case.file));
    let prompt = plan.finish(&rendered);
    let in_thinking = reasoning::prompt_ends_in_thinking(plan.format, &prompt);
    (prompt, in_thinking, plan)
}

#[test]
fn the_format_is_detected_from_each_template() {
    for case in CASES {
        assert_eq!(
            detect_from_template(&source(case.file)),
            case.format,
            "{}",
            case.file
        );
    }
}

#[test]
fn auto_on_and_off_render_the_prompt_each_format_expects() {
    for case in CASES {
        let (auto, auto_in, _) = prompt(case, ThinkMode::Auto);
        let (on, on_in, on_plan) = prompt(case, ThinkMode::On);
        let (off, off_in, off_plan) = prompt(case, ThinkMode::Off);
        let name = case.file;
        assert!(auto.ends_with(case.auto.0), "{name} auto: {auto:?}");
        assert_eq!(auto_in, case.auto.1, "{name} auto in thinking");
        assert!(on.ends_with(case.on.0), "{name} on: {on:?}");
        assert_eq!(on_in, case.on.1, "{name} on in thinking");
        assert_eq!(on_plan.unavailable, None, "{name} on");

        let support = reasoning::thinking_control(case.format, &source(name)).support();
        match case.off {
            Off::Tail(tail, in_thinking) => {
                assert!(off.ends_with(tail), "{name} off: {off:?}");
                assert_eq!(off_in, in_thinking, "{name} off in thinking");
                assert!(support.off_available, "{name}");
                assert_eq!(off_plan.unavailable, None, "{name}");
                assert_ne!(off, on, "{name}: Off renders the same prompt as On");
            }
            Off::Unavailable => {
                assert_eq!(off, auto, "{name}: an unavailable Off must change nothing");
                assert!(!support.off_available, "{name}");
                let reason = support.off_reason.unwrap_or_default();
                assert!(!reason.is_empty(), "{name}: no reason given");
                assert_eq!(off_plan.unavailable, Some(reason.as_str()), "{name}");
            }
        }
        if let Some(text) = case.on_only {
            assert!(on.contains(text), "{name} on lacks {text:?}: {on:?}");
            assert!(!off.contains(text), "{name} off has {text:?}");
        }
        if let Some(text) = case.off_only {
            assert!(off.contains(text), "{name} off lacks {text:?}: {off:?}");
            assert!(!on.contains(text), "{name} on has {text:?}");
        }
    }
}

#[test]
fn a_slash_command_goes_into_the_system_prompt() {
    let case = CASES
        .iter()
        .find(|c| c.file == "nemotron-super-v1.5.jinja")
        .unwrap();
    let src = source(case.file);
    let mut messages = conversation();
    PromptPlan::new(case.format, &src, ThinkMode::Off, &mut messages);
    assert_eq!(messages[0].role, Role::System);
    assert_eq!(messages[0].content, "/no_think");
    // An existing system prompt gets the command appended once.
    let mut messages = vec![Message::new(Role::System, "Be brief.")];
    PromptPlan::new(case.format, &src, ThinkMode::Off, &mut messages);
    PromptPlan::new(case.format, &src, ThinkMode::Off, &mut messages);
    assert_eq!(messages[0].content, "Be brief. /no_think");
}

/// The budget: when the worker stops the thinking it writes the format's lead-in and
/// closing marker into the context. Whatever the rendered On prompt, that must split
/// into the thoughts so far and the answer that follows.
#[test]
fn a_forced_budget_closes_the_thinking_on_every_rendered_prompt() {
    for case in CASES {
        let (_, in_thinking, plan) = prompt(case, ThinkMode::On);
        let markers = plan.format.markers().unwrap();
        let mut output = String::new();
        if !in_thinking {
            // The model opens the block itself.
            output.push_str(markers.open);
        }
        output.push_str("Let me count: 2+2");
        output.push_str(markers.budget_lead_in);
        output.push_str(markers.close);
        output.push_str("The answer is 4.");
        let split = split_batch(plan.format, in_thinking, &[&output]);
        assert!(
            split.reasoning.starts_with("Let me count: 2+2"),
            "{}: {split:?}",
            case.file
        );
        assert!(
            split.reasoning.ends_with(BUDGET_LEAD_IN.trim()),
            "{}: {split:?}",
            case.file
        );
        assert_eq!(split.answer, "The answer is 4.", "{}", case.file);
        assert!(!split.cut_off, "{}", case.file);
    }
}

#[test]
fn a_template_without_markers_opens_a_generic_block_for_on() {
    let template = ChatTemplate::builtin("chatml").unwrap();
    let mut messages = conversation();
    let plan = PromptPlan::new(
        ReasoningFormat::None,
        &template.source,
        ThinkMode::On,
        &mut messages,
    );
    assert_eq!(plan.format, ReasoningFormat::DeepseekR1);
    let rendered = template
        .render(&RenderInput {
            messages: &messages,
            add_generation_prompt: true,
            bos_token: "",
            eos_token: "",
            enable_thinking: plan.enable_thinking,
            extra: &plan.template_vars(),
        })
        .unwrap();
    let prompt = plan.finish(&rendered);
    assert!(
        prompt.ends_with("<|im_start|>assistant\n<think>\n"),
        "{prompt:?}"
    );
    assert!(reasoning::prompt_ends_in_thinking(plan.format, &prompt));
    let support = reasoning::thinking_control(ReasoningFormat::None, &template.source).support();
    assert!(support.off_available);
}
