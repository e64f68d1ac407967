//! Chat templates: the model's own Jinja template from its GGUF metadata, rendered with
//! minijinja the way Hugging Face's `transformers` renders it (trim_blocks, lstrip_blocks,
//! Python string methods, `raise_exception`, `tojson`, loop controls), or a named built-in
//! when the model has none (base models such as Gemma 3 270M) or the user overrides it.

mod guard;
mod segments;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use minijinja::machinery::{self, CodeGenerator, Instructions, Vm, WhitespaceConfig};
use minijinja::{AutoEscape, Environment, Error as JinjaError, ErrorKind, Value};
use serde::Serialize;

pub use guard::RenderLimits;

use crate::events::{Message, Role};
use crate::protocol::PromptSegment;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown template '{0}' (known: {known})", known = BUILTIN_NAMES.join(", "))]
    Unknown(String),
    #[error("the chat template '{name}' does not compile: {detail}")]
    Compile { name: String, detail: String },
    #[error("the chat template '{name}' failed to render: {detail}")]
    Render { name: String, detail: String },
    /// The template was stopped by one of the [`RenderLimits`]: a GGUF's template is
    /// code from whoever made the file.
    #[error("the chat template '{name}' was stopped: {detail}")]
    Limit { name: String, detail: String },
}

impl crate::error::ErrorCode for TemplateError {
    fn code(&self) -> &'static str {
        match self {
            TemplateError::Unknown(_) => "unknown_template",
            TemplateError::Compile { .. } => "template_compile",
            TemplateError::Render { .. } => "template_render",
            TemplateError::Limit { .. } => "template_limit",
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

    /// Renders the prompt under the default [`RenderLimits`], on a thread of its own (the
    /// template is untrusted code: its stack use and running time must not be the
    /// caller's problem). Blocks until the render ends or its time is up; async code calls
    /// [`render_async`](Self::render_async) instead.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<String, TemplateError> {
        self.render_with(input, RenderLimits::default())
    }

    /// The prompt as segments: the template's markup (special tokens parsed) and the
    /// message texts (never parsed); see `segments`. Blocking, like [`render`](Self::render).
    pub fn render_segments(
        &self,
        input: &RenderInput<'_>,
    ) -> Result<Vec<PromptSegment>, TemplateError> {
        let marked = segments::Marked::new(input.messages);
        let real = self.render(input)?;
        let with_sentinels = self.render(&RenderInput {
            messages: &marked.messages,
            ..*input
        })?;
        Ok(marked.split(&real, &with_sentinels, &self.name))
    }

    /// [`render_segments`](Self::render_segments) for async callers.
    pub async fn render_segments_async(
        &self,
        input: &RenderInput<'_>,
    ) -> Result<Vec<PromptSegment>, TemplateError> {
        let marked = segments::Marked::new(input.messages);
        let real = self.render_async(input).await?;
        let with_sentinels = self
            .render_async(&RenderInput {
                messages: &marked.messages,
                ..*input
            })
            .await?;
        Ok(marked.split(&real, &with_sentinels, &self.name))
    }

    /// [`render`](Self::render) under limits other than the defaults.
    pub fn render_with(
        &self,
        input: &RenderInput<'_>,
        limits: RenderLimits,
    ) -> Result<String, TemplateError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.spawn_render(input, limits, move |r| {
            let _ = tx.send(r);
        })?;
        match rx.recv_timeout(limits.time + WAIT_GRACE) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(self.too_slow(limits)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(self.thread_died()),
        }
    }

    /// [`render`](Self::render) for async callers: the runtime's threads never run
    /// template code, and the future resolves when the time limit is up even if the
    /// rendering thread has not noticed yet.
    pub async fn render_async(&self, input: &RenderInput<'_>) -> Result<String, TemplateError> {
        let limits = RenderLimits::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn_render(input, limits, move |r| {
            let _ = tx.send(r);
        })?;
        match tokio::time::timeout(limits.time + WAIT_GRACE, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.thread_died()),
            Err(_) => Err(self.too_slow(limits)),
        }
    }

    fn spawn_render(
        &self,
        input: &RenderInput<'_>,
        limits: RenderLimits,
        done: impl FnOnce(Result<String, TemplateError>) + Send + 'static,
    ) -> Result<(), TemplateError> {
        let job = RenderJob {
            template: self.clone(),
            messages: input.messages.to_vec(),
            add_generation_prompt: input.add_generation_prompt,
            bos_token: input.bos_token.to_owned(),
            eos_token: input.eos_token.to_owned(),
            enable_thinking: input.enable_thinking,
            extra: input.extra.to_vec(),
        };
        std::thread::Builder::new()
            .name("chat-template".into())
            .stack_size(RENDER_STACK)
            .spawn(move || done(job.run(limits)))
            .map(drop)
            .map_err(|e| TemplateError::Render {
                name: self.name.clone(),
                detail: format!("could not start the rendering thread: {e}"),
            })
    }

    fn too_slow(&self, limits: RenderLimits) -> TemplateError {
        TemplateError::Limit {
            name: self.name.clone(),
            detail: format!("it ran longer than {} ms", limits.time.as_millis()),
        }
    }

    fn thread_died(&self) -> TemplateError {
        TemplateError::Render {
            name: self.name.clone(),
            detail: "the rendering thread stopped without an answer".into(),
        }
    }
}

/// How long past its own deadline a render is waited for: the rendering thread checks the
/// deadline itself, so this only matters when a single step runs long.
const WAIT_GRACE: Duration = Duration::from_millis(500);

/// minijinja's VM recurses on the native stack for macros, recursive loops and nested
/// expressions; unoptimised builds use large frames. Reserved address space, not memory.
const RENDER_STACK: usize = 64 << 20;

/// Everything one render needs, owned, so it can move to the rendering thread.
struct RenderJob {
    template: ChatTemplate,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    bos_token: String,
    eos_token: String,
    enable_thinking: Option<bool>,
    extra: Vec<(String, Value)>,
}

impl RenderJob {
    fn run(self, limits: RenderLimits) -> Result<String, TemplateError> {
        let name = self.template.name.clone();
        let source = self.template.source.as_str();
        if source.len() > limits.max_source {
            return Err(TemplateError::Compile {
                name,
                detail: format!(
                    "the template is {} bytes long; the limit is {}",
                    source.len(),
                    limits.max_source
                ),
            });
        }
        let budget = guard::Budget::new(limits);
        let mut env = Environment::new();
        env.set_fuel(Some(limits.fuel));
        env.set_recursion_limit(limits.max_recursion);
        let b = budget.clone();
        env.set_unknown_method_callback(move |state, value, method, args| {
            b.check_time()?;
            // Python string methods size their result from their arguments: check first.
            if value.as_str().is_some() {
                let mut all = Vec::with_capacity(args.len() + 1);
                all.push(value.clone());
                all.extend_from_slice(args);
                guard::precheck(&b, method, &all)?;
            }
            minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
        });
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        guard::install(&mut env, &budget);

        // Hugging Face renders with these; templates rely on them for their whitespace.
        let ws_config = WhitespaceConfig {
            keep_trailing_newline: false,
            lstrip_blocks: true,
            trim_blocks: true,
        };
        let ast = machinery::parse(source, "chat", Default::default(), ws_config).map_err(|e| {
            TemplateError::Compile {
                name: name.clone(),
                detail: describe(&e),
            }
        })?;
        guard::FoldCheck::run(&ast, limits).map_err(|detail| TemplateError::Limit {
            name: name.clone(),
            detail,
        })?;
        let mut codegen = CodeGenerator::new("chat", source);
        codegen.compile_stmt(&ast);
        let (instructions, blocks) = codegen.finish();
        let instructions = guard::guarded_instructions(&instructions);
        let blocks: BTreeMap<&str, Instructions<'_>> = blocks
            .iter()
            .map(|(k, v)| (*k, guard::guarded_instructions(v)))
            .collect();

        let messages: Vec<TemplateMessage<'_>> =
            self.messages.iter().map(TemplateMessage::from).collect();
        let mut extra: BTreeMap<String, Value> = self.extra.iter().cloned().collect();
        // Only when set: `None` must leave the variable undefined, since templates test
        // `enable_thinking is defined and not enable_thinking` (GLM) and a none value
        // would read as "off".
        if let Some(on) = self.enable_thinking {
            extra.insert("enable_thinking".into(), Value::from(on));
        }
        let extra = Value::from(extra);
        let root = minijinja::context! {
            messages => messages,
            add_generation_prompt => self.add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
            ..extra
        };
        let mut rendered = String::new();
        let result = Vm::new(&env)
            .eval(
                &instructions,
                root,
                &blocks,
                &mut machinery::make_string_output(&mut rendered),
                AutoEscape::None,
            )
            .map(drop);
        match result {
            Ok(()) => Ok(rendered),
            Err(e) => Err(match budget.tripped() {
                Some(detail) => TemplateError::Limit { name, detail },
                None if e.kind() == ErrorKind::OutOfFuel => TemplateError::Limit {
                    name,
                    detail: format!("it ran more than {} steps", limits.fuel),
                },
                None => TemplateError::Render {
                    name,
                    detail: describe(&e),
                },
            }),
        }
    }
}

#[derive(Clone, Copy)]
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

/// `strftime_now` as Hugging Face templates call it. chrono reports an invalid specifier
/// (`%Q`) as a formatting error, which `to_string()` would turn into a panic.
fn strftime_now(format: String) -> Result<String, JinjaError> {
    // Each specifier can expand to dozens of bytes; real templates pass "%d %b %Y".
    if format.len() > 256 {
        return Err(JinjaError::new(
            ErrorKind::InvalidOperation,
            "strftime_now: the format string is longer than 256 bytes",
        ));
    }
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format string {format:?}"),
        )
    })?;
    Ok(out)
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

    fn render_src(src: &str) -> Result<String, TemplateError> {
        let t = ChatTemplate::resolve(None, "llama", Some(src)).unwrap();
        t.render(&RenderInput {
            messages: &msgs(),
            add_generation_prompt: true,
            bos_token: "<bos>",
            eos_token: "<eos>",
            enable_thinking: None,
            extra: &[],
        })
    }

    /// A hostile template must come back as a limit error, quickly, with the process up.
    fn assert_stopped(src: &str) -> String {
        let t0 = std::time::Instant::now();
        let err = render_src(src).unwrap_err();
        let took = t0.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "took {took:?} to stop: {err}"
        );
        assert!(matches!(err, TemplateError::Limit { .. }), "{err}");
        assert_eq!(crate::error::ErrorCode::code(&err), "template_limit");
        err.to_string()
    }

    /// Qwen3's template (tools omitted): namespaces, reversed loops, Python string methods.
    const QWEN3_LIKE: &str = r#"{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- set content = message.content if message.content is string else '' %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- elif '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
            {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- endif %}{%- endif %}"#;

    #[test]
    fn a_million_token_conversation_fits_the_limits() {
        // 1,000 turns of 4 KB: about 4 MB of prompt, a million tokens.
        let turn = "word ".repeat(800);
        let messages: Vec<Message> = (0..1000)
            .map(|i| {
                let role = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                Message::new(role, format!("{i}: <think>hm</think>{turn}"))
            })
            .collect();
        let t = ChatTemplate::resolve(None, "qwen3", Some(QWEN3_LIKE)).unwrap();
        let out = t
            .render(&RenderInput {
                messages: &messages,
                add_generation_prompt: true,
                bos_token: "",
                eos_token: "",
                enable_thinking: Some(false),
                extra: &[],
            })
            .unwrap();
        assert!(out.len() > 4_000_000, "{}", out.len());
        assert!(out.contains("<|im_start|>user\n998: "));
        assert!(out.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    }

    #[test]
    fn nested_loops_run_out_of_fuel() {
        // Fuel or the clock, whichever comes first (an unoptimised build is slow).
        let msg = assert_stopped(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        );
        assert!(
            msg.contains("steps") || msg.contains("longer than"),
            "{msg}"
        );
    }

    #[test]
    fn nested_loops_that_print_hit_the_output_cap_or_fuel() {
        assert_stopped(
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ 'xxxxxxxxxxxxxxxx' }}{% endfor %}{% endfor %}",
        );
    }

    #[test]
    fn a_string_doubled_in_a_loop_is_stopped() {
        let msg = assert_stopped(
            "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        );
        assert!(msg.contains("larger than"), "{msg}");
        // The same with `+`, with no loop at all, and through a filter.
        assert_stopped(
            "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        );
        let unrolled = format!("{{% set s = 'ab' %}}{}", "{% set s = s ~ s %}".repeat(64));
        assert_stopped(&unrolled);
        assert_stopped(
            "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s|replace('a', 'aa') %}{% endfor %}",
        );
        assert_stopped(
            "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s.replace('a', 'aaaa') %}{% endfor %}",
        );
    }

    #[test]
    fn output_captured_in_a_block_counts() {
        // `{% set %}` blocks write into minijinja's own buffer, never the caller's.
        assert_stopped(
            "{% set big = 'x' * 10000000 %}{% set c %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endset %}",
        );
    }

    #[test]
    fn one_step_amplifiers_are_checked_before_they_run() {
        assert_stopped("{{ ('x' * 1000000)|replace('x', 'x' * 1000) }}");
        assert_stopped("{{ range(100000)|map('string')|join('x' * 100000) }}");
        assert_stopped("{{ '%999999999999s'|format('x') }}");
        assert_stopped("{{ '{:>999999999999}'.format('x') }}");
        assert_stopped("{{ ('x\\n' * 5000000)|indent(1000) }}");
        assert_stopped("{{ ([1] * 100000) * 100000 }}");
        assert_stopped("{% for x in ['a'] * 1000000000 %}{% endfor %}");
    }

    #[test]
    fn constant_folding_cannot_build_large_strings() {
        // minijinja folds these while compiling, before any runtime check.
        let chain = vec!["('x' * 50000000)"; 40].join(" ~ ");
        let msg = assert_stopped(&format!("{{{{ {chain} }}}}"));
        assert!(msg.contains("constant expression"), "{msg}");
        assert_stopped("{{ 'xxxxxxxxxx' * (10 ** 8) }}");
        // Small constants still fold and render.
        assert_eq!(
            render_src("{{ ('ab' * 3) ~ '-' ~ (2 ** 3) }}").unwrap(),
            "ababab-8"
        );
    }

    #[test]
    fn endless_recursion_is_an_error_not_a_crash() {
        let err = render_src("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
        assert!(err.to_string().contains("recursion"), "{err}");
    }

    #[test]
    fn strftime_now_with_a_bad_specifier_is_an_error_not_a_panic() {
        let err = render_src("{{ strftime_now('%Q') }}").unwrap_err();
        assert!(matches!(err, TemplateError::Render { .. }), "{err}");
        assert!(err.to_string().contains("invalid format"), "{err}");
        let year = render_src("{{ strftime_now('%Y') }}").unwrap();
        assert_eq!(year.len(), 4, "{year}");
    }

    #[test]
    fn real_template_features_still_work_under_the_guard() {
        // Jumps inside macros, recursive loops, filters with kwargs, captures, blocks,
        // list and number arithmetic: the rewritten instructions must behave the same.
        let src = "{%- macro m(x) -%}[{{ x }}]{%- endmacro -%}\
            {%- for m2 in messages if m2.role != 'system' -%}{{ m(loop.index0 + 1) }}{%- endfor -%}\
            {%- for item in [[1, [2]], [3]] recursive -%}{%- if item is iterable %}{{ loop(item) }}{% else %}{{ item }}{% endif -%}{%- endfor -%}|\
            {%- set c %}{{ messages|map(attribute='content')|join(', ') }}{% endset %}{{ c|upper }}|\
            {{- ([1, 2] + [3])|join }}|{{ 2 * 3 }}|{{ 'ab' * 2 }}|{{ 7 // 2 }}|{{ 1.5 + 1 }}|\
            {{- messages[1:]|length }}|{{ {'a': 1}|tojson(indent=2)|length }}|{{ 'a b'.split()|tojson }}|\
            {%- block b %}B{% endblock %}|{{ 'x'|replace('x', 'yz') }}|{{ '%s-%d'|format('a', 3) }}";
        assert_eq!(
            render_src(src).unwrap(),
            "[1][2][3]123|BE BRIEF., HI, HELLO!, BYE|123|6|abab|3|2.5|3|12|[\"a\",\"b\"]|B|yz|a-3"
        );
    }

    #[tokio::test]
    async fn render_async_runs_off_the_runtime_and_stops_hostile_templates() {
        let t = ChatTemplate::resolve(
            None,
            "llama",
            Some(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            ),
        )
        .unwrap();
        let input = RenderInput {
            messages: &msgs(),
            add_generation_prompt: true,
            bos_token: "",
            eos_token: "",
            enable_thinking: None,
            extra: &[],
        };
        // A current-thread runtime: if the template ran on it, this timer could not fire.
        let ticker = tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            std::time::Instant::now()
        });
        let t0 = std::time::Instant::now();
        let err = t.render_async(&input).await.unwrap_err();
        assert!(matches!(err, TemplateError::Limit { .. }), "{err}");
        let ticked = ticker.await.unwrap();
        assert!(ticked.duration_since(t0) < std::time::Duration::from_millis(1000));
        let ok = ChatTemplate::builtin("chatml").unwrap();
        assert!(ok
            .render_async(&input)
            .await
            .unwrap()
            .contains("<|im_start|>user"));
    }
}
