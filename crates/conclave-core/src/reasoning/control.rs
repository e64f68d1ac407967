//! Switching a model's thinking on or off through its chat template.
//!
//! The reasoning format says how thoughts are marked; how to switch them depends on the
//! template actually loaded, because one family ships templates that differ (EXAONE Deep
//! always opens `<thought>`, EXAONE 4.0 reads `enable_thinking`; DeepSeek-R1 prefills
//! `<think>\n`, DeepSeek-V3.1 reads `thinking`). So the switch is chosen from both, and a
//! mode the template cannot honour is reported with a reason instead of being ignored.
//!
//! The rules follow the published templates (see the test data's SOURCES file):
//! * `enable_thinking` (Qwen3, GLM-4.5+, Gemma 4, EXAONE 4.0, DeepSeek-V3.1): the flag.
//! * `thinking` (Granite 3.2/3.3): the flag; Granite honours it only without a system
//!   message of the caller's.
//! * `thinking_budget` (Seed-OSS): 0 answers directly.
//! * `/no_think` in the system prompt (Nemotron Nano v2, Llama-3.3-Nemotron-Super v1.5).
//! * A template that opens `<think>` unconditionally (DeepSeek-R1 and its distills): the
//!   block is closed in the prompt, as R1's answers without thinking look.
//! * A template with no thinking markers at all: On opens a generic `<think>` block
//!   (budget forcing on any model, as in the s1 paper); Off is already the case.
//! * Everything else always thinks: Off is unavailable, with the reason.

use serde::Serialize;

use super::{ReasoningFormat, TemplateValue};
use crate::events::{Message, Role, ThinkMode};

/// One way to get a thinking mode from a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// The template's default already gives this mode.
    Nothing,
    /// Render with this variable set.
    TemplateVar {
        name: &'static str,
        value: TemplateValue,
    },
    /// Add this to the system message (a new one when there is none).
    SystemCommand(&'static str),
    /// Close the thinking block in the prompt: the closing marker when the rendered
    /// prompt ends inside a block, else a whole empty block.
    CloseBlock,
    /// Open a generic `<think>` block in the prompt.
    OpenBlock,
    /// The template gives no way to this mode.
    Unavailable(&'static str),
}

/// How On and Off are reached with one template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkingControl {
    pub on: Switch,
    pub off: Switch,
}

/// What the UI needs to know to offer the thinking modes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThinkingSupport {
    pub off_available: bool,
    /// Why Off does nothing with this model, when it does not.
    pub off_reason: Option<String>,
}

impl ThinkingControl {
    pub fn support(&self) -> ThinkingSupport {
        match self.off {
            Switch::Unavailable(reason) => ThinkingSupport {
                off_available: false,
                off_reason: Some(reason.to_owned()),
            },
            _ => ThinkingSupport {
                off_available: true,
                off_reason: None,
            },
        }
    }
}

/// The empty block that stands for "no thinking" in R1-style prompts.
const EMPTY_THINK_BLOCK: &str = "<think>\n\n</think>\n\n";
const THINK_CLOSE: &str = "\n</think>\n\n";
const THINK_OPEN: &str = "<think>\n";

/// Whether the template reads a variable named exactly `thinking` (not
/// `enable_thinking`, not a message's `thinking` field).
fn reads_thinking_var(src: &str) -> bool {
    [
        "if thinking",
        "elif thinking",
        "not thinking",
        "thinking is defined",
        "thinking is not defined",
        "thinking == true",
    ]
    .iter()
    .any(|p| src.contains(p))
}

/// How thinking is switched for `format` rendered with the template `template_source`.
pub fn thinking_control(format: ReasoningFormat, template_source: &str) -> ThinkingControl {
    use ReasoningFormat as F;
    let src = template_source;
    let flag = |name: &'static str| ThinkingControl {
        on: Switch::TemplateVar {
            name,
            value: TemplateValue::Bool(true),
        },
        off: Switch::TemplateVar {
            name,
            value: TemplateValue::Bool(false),
        },
    };
    // Format-specific switches first: these templates mention the generic variables too
    // (Nemotron Super sets `enable_thinking` itself, overriding any caller's value).
    match format {
        F::GptOss => {
            return ThinkingControl {
                on: Switch::Nothing,
                off: Switch::Unavailable(
                    "gpt-oss always reasons; the least it does is reasoning effort \"low\"",
                ),
            }
        }
        F::Nemotron => {
            return ThinkingControl {
                on: Switch::Nothing,
                off: Switch::SystemCommand("/no_think"),
            }
        }
        F::SeedOss if src.contains("thinking_budget") => {
            return ThinkingControl {
                on: Switch::Nothing,
                off: Switch::TemplateVar {
                    name: "thinking_budget",
                    value: TemplateValue::Int(0),
                },
            }
        }
        _ => {}
    }
    if src.contains("enable_thinking") {
        return flag("enable_thinking");
    }
    if reads_thinking_var(src) {
        return flag("thinking");
    }
    let always = |reason: &'static str| ThinkingControl {
        on: Switch::Nothing,
        off: Switch::Unavailable(reason),
    };
    match format {
        F::None | F::Auto => ThinkingControl {
            on: Switch::OpenBlock,
            off: Switch::Nothing,
        },
        F::DeepseekR1 => ThinkingControl {
            on: Switch::Nothing,
            off: Switch::CloseBlock,
        },
        F::Qwq => always("QwQ's template always opens a <think> block"),
        F::MinimaxM2 => always("MiniMax-M2's template always opens a <think> block"),
        F::Phi4Reasoning => always("Phi-4-reasoning is trained to think before every answer"),
        F::Exaone => always("this EXAONE template always opens a <thought> block (EXAONE Deep)"),
        F::Magistral => always("this Magistral template has no switch for its [THINK] block"),
        F::Kimi => always("Kimi K2 Thinking always thinks"),
        F::Apriel => always("Apriel's template always starts its reasoning steps"),
        F::CommandR7b => always("this Command R7B template has no switch for its thinking"),
        F::SeedOss => always("this Seed-OSS template has no thinking_budget"),
        F::Glm | F::Gemma | F::Qwen3 | F::Granite => {
            always("this template has no switch for thinking")
        }
        // Returned above; listed so that a new format must be placed here.
        F::GptOss | F::Nemotron => always("this template has no switch for thinking"),
    }
}

/// Everything the engine does to a request for one thinking mode, before and after
/// rendering the template.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptPlan {
    /// The format to split with: a generic `<think>` opened for a model without markers
    /// is read as DeepSeek-R1's.
    pub format: ReasoningFormat,
    /// The template's `enable_thinking`; `None` leaves the template's default.
    pub enable_thinking: Option<bool>,
    /// Other template variables.
    pub vars: Vec<(&'static str, TemplateValue)>,
    close_block: bool,
    open_block: bool,
    /// The mode asked for could not be honoured; the reason.
    pub unavailable: Option<&'static str>,
}

impl PromptPlan {
    /// Plans `mode` for `format` and the template `template_source`, changing the
    /// messages where the switch lives in them (a system-prompt command).
    pub fn new(
        format: ReasoningFormat,
        template_source: &str,
        mode: ThinkMode,
        messages: &mut Vec<Message>,
    ) -> Self {
        let mut plan = Self {
            format,
            enable_thinking: None,
            vars: Vec::new(),
            close_block: false,
            open_block: false,
            unavailable: None,
        };
        let control = thinking_control(format, template_source);
        let switch = match mode {
            ThinkMode::Auto => return plan,
            ThinkMode::On => control.on,
            ThinkMode::Off => control.off,
        };
        match switch {
            Switch::Nothing => {}
            Switch::TemplateVar {
                name: "enable_thinking",
                value: TemplateValue::Bool(b),
            } => plan.enable_thinking = Some(b),
            Switch::TemplateVar { name, value } => plan.vars.push((name, value)),
            Switch::SystemCommand(cmd) => add_to_system(messages, cmd),
            Switch::CloseBlock => plan.close_block = true,
            Switch::OpenBlock => {
                plan.open_block = true;
                plan.format = ReasoningFormat::DeepseekR1;
            }
            Switch::Unavailable(reason) => {
                tracing::debug!(format = %format, reason, "thinking mode not available");
                plan.unavailable = Some(reason);
            }
        }
        plan
    }

    /// The plan's template variables, as the renderer takes them.
    pub fn template_vars(&self) -> Vec<(String, minijinja::Value)> {
        self.vars
            .iter()
            .map(|(name, value)| {
                let v = match value {
                    TemplateValue::Bool(b) => minijinja::Value::from(*b),
                    TemplateValue::Int(i) => minijinja::Value::from(*i),
                };
                ((*name).to_owned(), v)
            })
            .collect()
    }

    /// The prompt to generate from: the rendered template plus what the plan prefills.
    pub fn finish(&self, rendered: &str) -> String {
        let mut prompt = rendered.to_owned();
        if self.open_block {
            prompt.push_str(THINK_OPEN);
        } else if self.close_block {
            if super::prompt_ends_in_thinking(self.format, rendered) {
                prompt.push_str(THINK_CLOSE);
            } else {
                prompt.push_str(EMPTY_THINK_BLOCK);
            }
        }
        prompt
    }
}

fn add_to_system(messages: &mut Vec<Message>, cmd: &str) {
    match messages.iter_mut().find(|m| m.role == Role::System) {
        Some(system) => {
            if !system.content.contains(cmd) {
                if !system.content.is_empty() {
                    system.content.push(' ');
                }
                system.content.push_str(cmd);
            }
        }
        None => messages.insert(0, Message::new(Role::System, cmd)),
    }
}
