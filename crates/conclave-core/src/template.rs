//! Chat templates: the model's own Jinja template from its GGUF metadata, rendered with
//! minijinja the way Hugging Face's `transformers` renders it (trim_blocks, lstrip_blocks,
//! Python string methods, `raise_exception`, `tojson`, loop controls), or a named built-in
//! when the model has none (base models such as Gemma 3 270M) or the user overrides it.

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};
use serde::Serialize;

use crate::events::{Message, Role};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown template '{0}' (known: {known})", known = BUILTIN_NAMES.join(", "))]
    Unknown(String),
    #[error("the chat template '{name}' does not compile: {detail}")]
    Compile { name: String, detail: String },
    #[error("the chat template '{name}' failed to render: {detail}")]
    Render { name: String, detail: String },
}

impl crate::error::ErrorCode for TemplateError {
    fn code(&self) -> &'static str {
        match self {
            TemplateError::Unknown(_) => "unknown_template",
            TemplateError::Compile { .. } => "template_compile",
            TemplateError::Render { .. } => "template_render",
        }
    }
}

const CHATML: &str = "{%- for message in messages %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}";

// Gemma folds the system prompt into the first user turn: it has no system role.
const GEMMA: &str = "{{ bos_token }}{%- if messages and messages[0].role == 'system' -%}{%- set first_user_prefix = messages[0].content + '\\n\\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}{%- set role = 'model' if message.role == 'assistant' else message.role -%}{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') + (message.content | trim) + '<end_of_turn>\\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}";

const LLAMA3: &str = "{{ bos_token }}{%- for message in messages %}{{ '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + (message.content | trim) + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

const MISTRAL: &str = "{{ bos_token }}{%- for message in messages %}{%- if message.role == 'system' %}{{ '[SYSTEM_PROMPT]' + message.content + '[/SYSTEM_PROMPT]' }}{%- elif message.role == 'user' %}{{ '[INST]' + message.content + '[/INST]' }}{%- else %}{{ message.content + eos_token }}{%- endif %}{%- endfor %}";

const PHI3: &str = "{%- for message in messages %}{{ '<|' + message.role + '|>\\n' + message.content + '<|end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|assistant|>\\n' }}{%- endif %}";

const DEEPSEEK_R1: &str = "{{ bos_token }}{%- for message in messages %}{%- if message.role == 'system' %}{{ message.content }}{%- elif message.role == 'user' %}{{ '<｜User｜>' + message.content }}{%- else %}{{ '<｜Assistant｜>' + message.content + '<｜end▁of▁sentence｜>' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{%- endif %}";

/// Plain text for base models used as completers: the turns joined by blank lines.
const RAW: &str = "{%- for message in messages %}{{ message.content }}{%- if not loop.last %}{{ '\\n\\n' }}{%- endif %}{%- endfor %}";

const BUILTINS: &[(&str, &str)] = &[
    ("chatml", CHATML),
    ("gemma", GEMMA),
    ("llama3", LLAMA3),
    ("mistral", MISTRAL),
    ("phi3", PHI3),
    ("deepseek-r1", DEEPSEEK_R1),
    ("raw", RAW),
];

pub const BUILTIN_NAMES: &[&str] = &[
    "chatml",
    "gemma",
    "llama3",
    "mistral",
    "phi3",
    "deepseek-r1",
    "raw",
];

/// The name under which the model's own template is reported.
pub const MODEL_TEMPLATE: &str = "model";

pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The built-in used when a model carries no template, chosen by architecture. ChatML is
/// llama.cpp's own default and what most fine-tunes without metadata were trained on.
pub fn fallback_for(architecture: &str) -> &'static str {
    if architecture.starts_with("gemma") {
        "gemma"
    } else if architecture.starts_with("phi3") {
        "phi3"
    } else {
        "chatml"
    }
}

#[derive(Debug, Clone)]
pub struct ChatTemplate {
    /// "model", a built-in's name, or "custom".
    pub name: String,
    pub source: String,
}

impl ChatTemplate {
    /// Picks the template: an override (a built-in's name, "model", or Jinja source),
    /// else the model's own, else the architecture's fallback.
    pub fn resolve(
        model_template: Option<&str>,
        architecture: &str,
        override_: Option<&str>,
    ) -> Result<Self, TemplateError> {
        let model_template = model_template.filter(|t| !t.trim().is_empty());
        match override_
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "auto")
        {
            Some(MODEL_TEMPLATE) => match model_template {
                Some(src) => Ok(Self {
                    name: MODEL_TEMPLATE.into(),
                    source: src.into(),
                }),
                None => Self::builtin(fallback_for(architecture)),
            },
            Some(src) if src.contains("{{") || src.contains("{%") => Ok(Self {
                name: "custom".into(),
                source: src.into(),
            }),
            Some(name) => Self::builtin(name),
            None => match model_template {
                Some(src) => Ok(Self {
                    name: MODEL_TEMPLATE.into(),
                    source: src.into(),
                }),
                None => Self::builtin(fallback_for(architecture)),
            },
        }
    }

    pub fn builtin(name: &str) -> Result<Self, TemplateError> {
        builtin(name)
            .map(|s| Self {
                name: name.into(),
                source: s.into(),
            })
            .ok_or_else(|| TemplateError::Unknown(name.into()))
    }

    pub fn render(&self, input: &RenderInput<'_>) -> Result<String, TemplateError> {
        let mut env = Environment::new();
        // Hugging Face renders with these; templates rely on them for their whitespace.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        let compile_err = |e: JinjaError| TemplateError::Compile {
            name: self.name.clone(),
            detail: describe(&e),
        };
        env.add_template("chat", &self.source)
            .map_err(compile_err)?;
        let tmpl = env.get_template("chat").map_err(compile_err)?;
        let messages: Vec<TemplateMessage<'_>> =
            input.messages.iter().map(TemplateMessage::from).collect();
        let mut extra: std::collections::BTreeMap<String, Value> =
            input.extra.iter().cloned().collect();
        // Only when set: `None` must leave the variable undefined, since templates test
        // `enable_thinking is defined and not enable_thinking` (GLM) and a none value
        // would read as "off".
        if let Some(on) = input.enable_thinking {
            extra.insert("enable_thinking".into(), Value::from(on));
        }
        let extra = Value::from(extra);
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => input.add_generation_prompt,
            bos_token => input.bos_token,
            eos_token => input.eos_token,
            ..extra
        })
        .map_err(|e| TemplateError::Render {
            name: self.name.clone(),
            detail: describe(&e),
        })
    }
}

pub struct RenderInput<'a> {
    pub messages: &'a [Message],
    pub add_generation_prompt: bool,
    pub bos_token: &'a str,
    pub eos_token: &'a str,
    /// `None` leaves the template's own default (Qwen3 thinks unless told otherwise).
    pub enable_thinking: Option<bool>,
    /// Other switches some templates read (`thinking`, `thinking_budget`…).
    pub extra: &'a [(String, Value)],
}

#[derive(Serialize)]
struct TemplateMessage<'a> {
    role: &'static str,
    content: &'a str,
    // Templates that keep thoughts (MiniMax-M2, newer Qwen) read this field.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

impl<'a> From<&'a Message> for TemplateMessage<'a> {
    fn from(m: &'a Message) -> Self {
        Self {
            role: match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            },
            content: &m.content,
            reasoning_content: m.reasoning.as_deref(),
        }
    }
}

fn raise_exception(message: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    chrono::Local::now().format(&format).to_string()
}

fn describe(e: &JinjaError) -> String {
    let mut s = e.to_string();
    if let Some(detail) = e.detail() {
        if !s.contains(detail) {
            s.push_str(": ");
            s.push_str(detail);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn msgs() -> Vec<Message> {
        vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "Hi"),
            Message::new(Role::Assistant, "Hello!"),
            Message::new(Role::User, "Bye"),
        ]
    }

    fn render(t: &ChatTemplate, enable_thinking: Option<bool>) -> String {
        t.render(&RenderInput {
            messages: &msgs(),
            add_generation_prompt: true,
            bos_token: "<bos>",
            eos_token: "<eos>",
            enable_thinking,
            extra: &[],
        })
        .unwrap()
    }

    #[test]
    fn chatml_builtin() {
        let t = ChatTemplate::builtin("chatml").unwrap();
        assert_eq!(
            render(&t, None),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_folds_system_into_first_user_turn() {
        let t = ChatTemplate::resolve(None, "gemma3", None).unwrap();
        assert_eq!(t.name, "gemma");
        assert_eq!(
            render(&t, None),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn python_methods_raise_exception_and_tojson() {
        let src = "{% for m in messages %}{% if m.role not in ['system','user','assistant'] %}{{ raise_exception('bad role') }}{% endif %}{{ m.content.strip().upper() }}|{{ m.content.split(' ')[0] }}|{{ m.role | tojson }};{% endfor %}{% if enable_thinking is defined and not enable_thinking %}NOTHINK{% endif %}";
        let t = ChatTemplate::resolve(None, "llama", Some(src)).unwrap();
        assert_eq!(t.name, "custom");
        assert_eq!(
            render(&t, Some(false)),
            "BE BRIEF.|Be|\"system\";HI|Hi|\"user\";HELLO!|Hello!|\"assistant\";BYE|Bye|\"user\";NOTHINK"
        );
    }

    #[test]
    fn raise_exception_becomes_a_render_error() {
        let t = ChatTemplate::resolve(
            None,
            "llama",
            Some("{{ raise_exception('Only user and assistant roles are supported!') }}"),
        )
        .unwrap();
        let err = t
            .render(&RenderInput {
                messages: &msgs(),
                add_generation_prompt: true,
                bos_token: "",
                eos_token: "",
                enable_thinking: None,
                extra: &[],
            })
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("Only user and assistant roles are supported!"),
            "{err}"
        );
    }

    #[test]
    fn unknown_override_is_an_error() {
        assert!(matches!(
            ChatTemplate::resolve(None, "llama", Some("nope")),
            Err(TemplateError::Unknown(_))
        ));
    }

    #[test]
    fn loop_controls_work() {
        let t = ChatTemplate::resolve(None, "x", Some("{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}{{ m.content }};{% endfor %}")).unwrap();
        assert_eq!(render(&t, None), "Be brief.;Hi;");
    }
}
