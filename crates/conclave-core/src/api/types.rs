//! Reading an OpenAI chat completion request into the engine's terms.
//!
//! Parsed by hand from a `serde_json::Value` rather than derived: every refusal names the
//! parameter (`messages[2].content`) the way OpenAI's errors do, and `null` is accepted
//! wherever a parameter is optional, as the official clients send it.

use serde_json::{Map, Value};

use super::{grammar, ApiConfig, ApiError};
use crate::events::{ContextOverflow, Message, Role, SamplingParams, SpeculativeMode, ThinkMode};
use crate::session::ChatSettings;

/// Thinking budgets for `reasoning_effort`: low, medium, high.
pub(crate) const EFFORT_BUDGETS: [(&str, u32); 3] =
    [("low", 512), ("medium", 2048), ("high", 8192)];

#[derive(Debug)]
pub(crate) struct ParsedRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub stream: bool,
    pub include_usage: bool,
    pub params: SamplingParams,
    pub think: ThinkMode,
    pub think_budget: Option<u32>,
    pub grammar: Option<String>,
    /// Extra chat-template variables: `chat_template_kwargs` (less `enable_thinking`,
    /// which sets `think`) and `reasoning_effort`, which gpt-oss's template reads.
    pub template_vars: Vec<(String, Value)>,
    /// `speculative` (a Conclave extension): off, auto, lookup or draft.
    pub speculative: SpeculativeMode,
    /// `context_overflow` (a Conclave extension): what to leave out when the messages do
    /// not fit the context.
    pub overflow: ContextOverflow,
}

/// Variables the renderer sets itself; a request may not replace them.
const RESERVED_TEMPLATE_VARS: &[&str] = &[
    "messages",
    "add_generation_prompt",
    "bos_token",
    "eos_token",
];

#[cfg(test)]
pub(crate) fn parse_request(body: &Value, cfg: &ApiConfig) -> Result<ParsedRequest, ApiError> {
    parse_request_with(body, cfg, None)
}

/// The `preset` field of a request (a Conclave extension): the name of a saved preset.
pub(crate) fn preset_name(body: &Value) -> Result<Option<String>, ApiError> {
    match body.as_object().and_then(|o| field(o, "preset")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(type_error("preset", "a preset name")),
    }
}

/// Parses a request over `preset`'s settings: what the request says wins, what it leaves
/// out comes from the preset (its system prompt is used when the messages have none).
pub(crate) fn parse_request_with(
    body: &Value,
    cfg: &ApiConfig,
    preset: Option<&ChatSettings>,
) -> Result<ParsedRequest, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        ));
    };
    let model = match field(obj, "model") {
        Some(Value::String(s)) => s.trim().to_owned(),
        None => return Err(ApiError::invalid_value("model", "`model` is required.")),
        Some(_) => return Err(type_error("model", "a string")),
    };
    let mut messages = parse_messages(obj)?;
    if let Some(p) = preset {
        if !p.system_prompt.is_empty() && !messages.iter().any(|m| m.role == Role::System) {
            messages.insert(0, Message::new(Role::System, p.system_prompt.clone()));
        }
    }
    let stream = opt_bool(obj, "stream")?.unwrap_or(false);
    let include_usage = match field(obj, "stream_options") {
        None => false,
        Some(Value::Object(o)) => opt_bool(o, "include_usage")
            .map_err(|e| e.with_param("stream_options.include_usage"))?
            .unwrap_or(false),
        Some(_) => return Err(type_error("stream_options", "an object")),
    };
    if include_usage && !stream {
        return Err(ApiError::invalid_value(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true.",
        ));
    }

    let d = preset.map_or_else(SamplingParams::default, |p| p.sampling.clone());
    let temperature = opt_sampling(obj, "temperature")?.unwrap_or(d.temperature);
    let top_p = opt_sampling(obj, "top_p")?.unwrap_or(d.top_p);
    let frequency_penalty = opt_sampling(obj, "frequency_penalty")?.unwrap_or(d.frequency_penalty);
    let presence_penalty = opt_sampling(obj, "presence_penalty")?.unwrap_or(d.presence_penalty);
    // llama.cpp-server extensions that local clients commonly send.
    let top_k = opt_u32(obj, "top_k")?.map_or(d.top_k, |k| k.min(i32::MAX as u32) as i32);
    let min_p = opt_sampling(obj, "min_p")?.unwrap_or(d.min_p);
    let repeat_penalty = opt_sampling(obj, "repeat_penalty")?.unwrap_or(d.repeat_penalty);
    let max_tokens = match opt_u32(obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => opt_u32(obj, "max_tokens")?,
    };
    if max_tokens == Some(0) {
        return Err(ApiError::invalid_value(
            "max_tokens",
            "`max_tokens` must be at least 1.",
        ));
    }
    let seed = match field(obj, "seed") {
        None => d.seed,
        // OpenAI takes any 64-bit integer; the engine's seed is 32-bit, so larger seeds are
        // folded (still deterministic: the same seed always replays the same answer).
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(u), _) => Some((u ^ (u >> 32)) as u32),
            (None, Some(i)) => Some((i ^ (i >> 32)) as u32),
            _ => return Err(type_error("seed", "an integer")),
        },
    };
    let stop = match field(obj, "stop") {
        None => d.stop.clone(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for (i, s) in a.iter().enumerate() {
                match s.as_str() {
                    Some(s) if !s.is_empty() => out.push(s.to_owned()),
                    Some(_) => {}
                    None => return Err(type_error(&format!("stop[{i}]"), "a string")),
                }
            }
            if out.len() > 16 {
                return Err(ApiError::invalid_value(
                    "stop",
                    "At most 16 stop sequences are supported.",
                ));
            }
            out
        }
        Some(_) => return Err(type_error("stop", "a string or an array of strings")),
    };
    if let Some(n) = opt_u32(obj, "n")? {
        if n != 1 {
            return Err(ApiError::unsupported("n", "Only `n` = 1 is supported."));
        }
    }
    if opt_bool(obj, "logprobs")? == Some(true) {
        return Err(ApiError::unsupported(
            "logprobs",
            "`logprobs` is not supported.",
        ));
    }
    match field(obj, "tools") {
        Some(Value::Array(a)) if !a.is_empty() => {
            return Err(ApiError::unsupported(
                "tools",
                "Tool calling is not supported.",
            ))
        }
        _ => {}
    }

    let (mut think, think_budget) = match field(obj, "reasoning_effort") {
        None => preset.map_or((ThinkMode::Auto, None), |p| (p.think, p.think_budget)),
        Some(Value::String(s)) => match s.as_str() {
            "none" | "minimal" => (ThinkMode::Off, None),
            other => match EFFORT_BUDGETS.iter().find(|(name, _)| *name == other) {
                // An explicit effort asks for thinking: a model without a thinking format
                // of its own gets the engine's generic <think> block, forced to answer
                // at the budget.
                Some((_, budget)) => (ThinkMode::On, Some(*budget)),
                None => {
                    return Err(ApiError::invalid_value(
                        "reasoning_effort",
                        "`reasoning_effort` must be one of none, minimal, low, medium, high.",
                    ))
                }
            },
        },
        Some(_) => return Err(type_error("reasoning_effort", "a string")),
    };
    let mut template_vars = Vec::new();
    if let Some(Value::String(effort)) = field(obj, "reasoning_effort") {
        template_vars.push(("reasoning_effort".to_owned(), Value::String(effort.clone())));
    }
    match field(obj, "chat_template_kwargs") {
        None => {}
        Some(Value::Object(kwargs)) => {
            for (name, value) in kwargs {
                let param = format!("chat_template_kwargs.{name}");
                if RESERVED_TEMPLATE_VARS.contains(&name.as_str()) {
                    return Err(ApiError::invalid_value(
                        &param,
                        format!("`{name}` is set by the server and cannot be overridden."),
                    ));
                }
                if name == "enable_thinking" {
                    // Honoured for every template, not only those that read the flag:
                    // the engine maps it to the model's own switch (see
                    // reasoning::PromptPlan); an effort's budget still applies when on.
                    match value {
                        Value::Bool(true) => think = ThinkMode::On,
                        Value::Bool(false) => think = ThinkMode::Off,
                        Value::Null => {}
                        _ => return Err(type_error(&param, "a boolean")),
                    }
                    continue;
                }
                // Later entries win over `reasoning_effort` above.
                template_vars.retain(|(n, _)| n != name);
                template_vars.push((name.clone(), value.clone()));
            }
        }
        Some(_) => return Err(type_error("chat_template_kwargs", "an object")),
    }
    let speculative = match field(obj, "speculative") {
        None | Some(Value::Null) => SpeculativeMode::default(),
        Some(Value::String(s)) => SpeculativeMode::parse(s).ok_or_else(|| {
            ApiError::invalid_value(
                "speculative",
                "`speculative` must be one of off, auto, lookup, draft.",
            )
        })?,
        Some(_) => return Err(type_error("speculative", "a string")),
    };
    let grammar = parse_response_format(obj)?;
    if grammar.is_some() {
        // The grammar constrains every generated token, thinking included, and no
        // reasoning format survives a JSON-only grammar: constrained answers do not think.
        think = ThinkMode::Off;
    }

    let mut params = SamplingParams {
        temperature,
        top_k,
        top_p,
        min_p,
        repeat_penalty,
        frequency_penalty,
        presence_penalty,
        seed,
        max_tokens: max_tokens
            .or(preset.map(|p| p.sampling.max_tokens))
            .unwrap_or(cfg.default_max_tokens),
        stop,
        ..d
    };
    // The other sampling parameters (llama-server's names: repeat_last_n, dry_*, xtc_*…)
    // come straight from the core's table, ranges included.
    for f in crate::settings::SAMPLING_FIELDS
        .iter()
        .filter(|f| !OPENAI_SAMPLING.contains(&f.key))
    {
        let Some(v) = field(obj, f.key) else { continue };
        let x = v.as_f64().ok_or_else(|| type_error(f.key, "a number"))?;
        crate::settings::set_sampling(&mut params, f.key, x)
            .map_err(|msg| ApiError::invalid_value(f.key, format!("{msg}.")))?;
    }

    let overflow = match field(obj, "context_overflow") {
        None | Some(Value::Null) => preset.map(|p| p.context_overflow).unwrap_or_default(),
        Some(Value::String(s)) => s
            .parse::<ContextOverflow>()
            .map_err(|e| ApiError::invalid_value("context_overflow", e))?,
        Some(_) => {
            return Err(type_error(
                "context_overflow",
                "one of \"stop\", \"drop_oldest\", \"truncate_middle\"",
            ))
        }
    };
    Ok(ParsedRequest {
        model,
        messages,
        stream,
        include_usage,
        params,
        think,
        think_budget,
        grammar,
        template_vars,
        speculative,
        overflow,
    })
}

fn parse_response_format(obj: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let Some(rf) = field(obj, "response_format") else {
        return Ok(None);
    };
    let Some(rf) = rf.as_object() else {
        return Err(type_error("response_format", "an object"));
    };
    match field(rf, "type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(grammar::json_object_grammar())),
        Some("json_schema") => {
            let schema = field(rf, "json_schema")
                .and_then(Value::as_object)
                .and_then(|js| field(js, "schema"))
                .ok_or_else(|| {
                    ApiError::invalid_value(
                        "response_format.json_schema.schema",
                        "`response_format.json_schema.schema` is required.",
                    )
                })?;
            grammar::schema_to_gbnf(schema).map(Some).map_err(|e| {
                ApiError::invalid_value("response_format.json_schema.schema", e.to_string())
            })
        }
        _ => Err(ApiError::invalid_value(
            "response_format.type",
            "`response_format.type` must be text, json_object or json_schema.",
        )),
    }
}

fn parse_messages(obj: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let list = match field(obj, "messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid_value(
                "messages",
                "`messages` must not be empty.",
            ))
        }
        None => {
            return Err(ApiError::invalid_value(
                "messages",
                "`messages` is required.",
            ))
        }
        Some(_) => return Err(type_error("messages", "an array")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let p = format!("messages[{i}]");
        let Some(m) = m.as_object() else {
            return Err(type_error(&p, "an object"));
        };
        let role = match field(m, "role").and_then(Value::as_str) {
            Some("system" | "developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("tool" | "function") => {
                return Err(ApiError::unsupported(
                    &format!("{p}.role"),
                    "Tool messages are not supported.",
                ))
            }
            _ => {
                return Err(ApiError::invalid_value(
                    &format!("{p}.role"),
                    "`role` must be system, developer, user or assistant.",
                ))
            }
        };
        let content = match field(m, "content") {
            Some(Value::String(s)) => s.clone(),
            None if role == Role::Assistant => String::new(),
            None => {
                return Err(ApiError::invalid_value(
                    &format!("{p}.content"),
                    "`content` is required.",
                ))
            }
            Some(Value::Array(parts)) => text_parts(parts, &format!("{p}.content"))?,
            Some(_) => {
                return Err(type_error(
                    &format!("{p}.content"),
                    "a string or an array of content parts",
                ))
            }
        };
        let reasoning = field(m, "reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        out.push(Message {
            role,
            content,
            reasoning,
        });
    }
    Ok(out)
}

fn text_parts(parts: &[Value], param: &str) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{param}[{j}]");
        let kind = part.get("type").and_then(Value::as_str);
        match (kind, part.get("text").and_then(Value::as_str)) {
            (Some("text"), Some(t)) => {
                // Parts are concatenated as they come; OpenAI joins them without a
                // separator too.
                text.push_str(t);
            }
            (Some("text"), None) => return Err(type_error(&format!("{pp}.text"), "a string")),
            (Some(other), _) => {
                return Err(ApiError::unsupported(
                    &format!("{pp}.type"),
                    format!(
                        "Content parts of type `{}` are not supported; only text is.",
                        short(other)
                    ),
                ))
            }
            (None, _) => {
                return Err(ApiError::invalid_value(
                    &format!("{pp}.type"),
                    "`type` is required.",
                ))
            }
        }
    }
    Ok(text)
}

/// A field, treating `null` as absent.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn type_error(param: &str, what: &str) -> ApiError {
    ApiError::invalid_value(param, format!("`{param}` must be {what}."))
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(type_error(key, "a boolean")),
    }
}

fn opt_u32(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, ApiError> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
            None => Err(type_error(key, "a non-negative integer")),
        },
    }
}

fn opt_f32(
    obj: &Map<String, Value>,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Option<f32>, ApiError> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if (min..=max).contains(&x) => Ok(Some(x as f32)),
            Some(_) => Err(ApiError::invalid_value(
                key,
                format!("`{key}` must be between {min} and {max}."),
            )),
            None => Err(type_error(key, "a number")),
        },
    }
}

/// The sampling parameters parsed above with OpenAI's own rules (top_k's clamping).
const OPENAI_SAMPLING: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "frequency_penalty",
    "presence_penalty",
];

/// A sampling parameter within the range the core gives it (`settings::SAMPLING_FIELDS`).
fn opt_sampling(obj: &Map<String, Value>, key: &str) -> Result<Option<f32>, ApiError> {
    let (min, max) =
        crate::settings::sampling_field(key).map_or((f64::MIN, f64::MAX), |f| (f.min, f.max));
    opt_f32(obj, key, min, max)
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ParsedRequest, ApiError> {
        parse_request(&v, &ApiConfig::default())
    }

    #[test]
    fn reads_the_speculative_extension() {
        let base = || json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(parse(base()).unwrap().speculative, SpeculativeMode::Auto);
        for mode in SpeculativeMode::ALL {
            let mut body = base();
            body["speculative"] = json!(mode.as_str());
            assert_eq!(parse(body).unwrap().speculative, mode);
        }
        let mut body = base();
        body["speculative"] = json!("fast");
        let err = parse(body).unwrap_err();
        assert!(format!("{err:?}").contains("speculative"), "{err:?}");
        let mut body = base();
        body["speculative"] = json!(true);
        assert!(parse(body).is_err());
    }

    #[test]
    fn a_preset_fills_what_the_request_leaves_out() {
        let mut p = ChatSettings {
            system_prompt: "Be brief.".into(),
            think: ThinkMode::Off,
            ..ChatSettings::default()
        };
        p.sampling.temperature = 0.1;
        p.sampling.seed = Some(3);
        p.sampling.max_tokens = 40;
        p.sampling.stop = vec!["END".into()];
        let body = json!({"model": "m", "preset": " Brief ", "temperature": 0.9,
                          "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(preset_name(&body).unwrap().as_deref(), Some("Brief"));
        let r = parse_request_with(&body, &ApiConfig::default(), Some(&p)).unwrap();
        assert_eq!(r.params.temperature, 0.9, "the request wins");
        assert_eq!(r.params.seed, Some(3));
        assert_eq!(r.params.max_tokens, 40);
        assert_eq!(r.params.stop, ["END"]);
        assert_eq!(r.think, ThinkMode::Off);
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[0].content, "Be brief.");
        // A system message in the request is kept instead of the preset's.
        let own = json!({"model": "m", "messages": [{"role": "system", "content": "mine"}, {"role": "user", "content": "x"}]});
        let r = parse_request_with(&own, &ApiConfig::default(), Some(&p)).unwrap();
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[0].content, "mine");
        assert!(preset_name(&json!({"preset": 3})).is_err());
        assert_eq!(preset_name(&json!({"preset": null})).unwrap(), None);
    }

    #[test]
    fn reads_a_full_request() {
        let r = parse(json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": null, "reasoning_content": "hmm"},
                {"role": "user", "content": "again"}
            ],
            "temperature": 0, "top_p": 0.5, "max_completion_tokens": 7, "max_tokens": 99,
            "seed": -1, "stop": ["a", "b"], "frequency_penalty": 0.5, "presence_penalty": -0.5,
            "reasoning_effort": "low", "user": "ignored", "tools": []
        }))
        .unwrap();
        assert!(r.stream && r.include_usage);
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[1].content, "Hi there");
        assert_eq!(r.messages[2].reasoning.as_deref(), Some("hmm"));
        assert_eq!(r.params.max_tokens, 7);
        assert_eq!(r.params.temperature, 0.0);
        assert_eq!(r.params.stop, ["a", "b"]);
        assert!(r.params.seed.is_some());
        assert_eq!((r.think, r.think_budget), (ThinkMode::On, Some(512)));
        assert!(r.grammar.is_none());
    }

    #[test]
    fn refusals_name_the_parameter() {
        let cases = [
            (
                json!({"messages": [{"role": "user", "content": "x"}]}),
                "model",
            ),
            (json!({"model": "m", "messages": []}), "messages"),
            (
                json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                "temperature",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}),
                "n",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}),
                "reasoning_effort",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}),
                "response_format.type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
        ];
        for (body, param) in cases {
            let e = parse(body).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
        }
    }

    #[test]
    fn context_overflow_is_a_named_policy() {
        let msgs = json!([{"role": "user", "content": "x"}]);
        let r = parse(json!({"model": "m", "messages": msgs})).unwrap();
        assert_eq!(r.overflow, ContextOverflow::DropOldest);
        for (v, want) in [
            ("stop", ContextOverflow::Stop),
            ("truncate_middle", ContextOverflow::TruncateMiddle),
            ("drop_oldest", ContextOverflow::DropOldest),
        ] {
            let r = parse(json!({"model": "m", "messages": msgs, "context_overflow": v})).unwrap();
            assert_eq!(r.overflow, want);
        }
        for bad in [json!("keep_all"), json!(3)] {
            let e = parse(json!({"model": "m", "messages": msgs, "context_overflow": bad}))
                .unwrap_err();
            assert!(format!("{e:?}").contains("context_overflow"), "{e:?}");
        }
    }

    #[test]
    fn chat_template_kwargs_become_template_variables() {
        let r = parse(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "low",
            "chat_template_kwargs": {"enable_thinking": false, "thinking_budget": 0, "custom": {"a": [1]}}}))
        .unwrap();
        assert_eq!((r.think, r.think_budget), (ThinkMode::Off, Some(512)));
        assert_eq!(
            r.template_vars,
            [
                ("reasoning_effort".to_owned(), json!("low")),
                ("custom".to_owned(), json!({"a": [1]})),
                ("thinking_budget".to_owned(), json!(0)),
            ]
        );
        let r = parse(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "high", "chat_template_kwargs": {"reasoning_effort": "low", "enable_thinking": true}}))
        .unwrap();
        assert_eq!((r.think, r.think_budget), (ThinkMode::On, Some(8192)));
        assert_eq!(
            r.template_vars,
            [("reasoning_effort".to_owned(), json!("low"))]
        );
        let r = parse(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "chat_template_kwargs": {"enable_thinking": true}}),
        )
        .unwrap();
        assert_eq!((r.think, r.think_budget), (ThinkMode::On, None));
        for (kwargs, param) in [
            (
                json!({"enable_thinking": "no"}),
                "chat_template_kwargs.enable_thinking",
            ),
            (json!({"messages": []}), "chat_template_kwargs.messages"),
            (json!([1]), "chat_template_kwargs"),
        ] {
            let e = parse(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "chat_template_kwargs": kwargs}),
            )
            .unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{e:?}");
        }
    }

    #[test]
    fn json_modes_turn_thinking_off() {
        let r = parse(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}, "reasoning_effort": "high"}),
        )
        .unwrap();
        assert_eq!(r.think, ThinkMode::Off);
        assert!(r.grammar.unwrap().contains("root ::="));
    }
}
