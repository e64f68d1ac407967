//! `POST /v1/chat/completions`, streamed as server-sent events or answered whole.
//!
//! Thinking goes to `reasoning_content` (the field DeepSeek's API introduced and most
//! clients read), never into `content`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::models::{self, QueueSlot};
use super::record::Recorder;
use super::types;
use super::{ApiError, ApiState};
use crate::engine::{ChatRequest, ChatStream};
use crate::events::{ChatEvent, Metrics, SpeculativeMode, StopReason, Usage};

/// What every chunk of one answer repeats.
struct Ctx {
    id: String,
    created: u64,
    model: String,
    fingerprint: String,
    include_usage: bool,
}

pub(crate) async fn completions(
    State(state): State<Arc<ApiState>>,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config.max_body_bytes;
    // Bodies without a Content-Length reach here unchecked; this read stops at the limit,
    // and at the deadline: a client trickling its body cannot hold the connection.
    let deadline = state.config.body_timeout;
    let bytes = match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return Err(ApiError::too_large(limit)),
        Err(_) => return Ok(ApiError::body_timeout(deadline).closing()),
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "We could not parse the JSON body of your request ({e})."
        ))
    })?;
    let preset = match types::preset_name(&value)? {
        Some(name) => Some(
            state
                .app
                .history
                .get_preset(&name)
                .await
                .map_err(|e| match e {
                    crate::history::HistoryError::NotFound { .. } => ApiError::invalid_value(
                        "preset",
                        format!("There is no preset named '{name}' (see `conclave presets list`)."),
                    ),
                    other => {
                        use crate::error::ErrorCode as _;
                        ApiError::internal(other.code(), other.to_string())
                    }
                })?,
        ),
        None => None,
    };
    let req =
        types::parse_request_with(&value, &state.config, preset.as_ref().map(|p| &p.settings))?;
    let served = models::resolve(&state, &req.model).await?;
    // Held until the answer ends (in the SSE body when streaming), so the bound counts
    // requests that are waiting as well as the one generating.
    let slot = models::enqueue(&state, &served)?;
    let model = models::load(&state, &served).await?;
    let info = model.info().await;
    // The worker would refuse it too, but only as a failed generation: this is the
    // client's to fix, and the message says how.
    if req.speculative == SpeculativeMode::Draft && info.draft_model.is_none() {
        return Err(ApiError::invalid_value(
            "speculative",
            format!(
                "`{}` has no draft model: start the server with `--draft-model` after its `--model`, or ask for speculative \"auto\" or \"lookup\".",
                served.id
            ),
        ));
    }
    tracing::info!(model = %served.id, stream = req.stream, messages = req.messages.len(), "chat completion");

    let chat = ChatRequest {
        messages: req.messages.clone(),
        params: req.params.clone(),
        template: None,
        think: req.think,
        think_budget: req.think_budget,
        keep_thoughts: false,
        threads: state.config.threads,
        grammar: req.grammar.clone(),
        template_vars: req.template_vars.clone(),
        speculative: req.speculative,
        overflow: req.overflow,
    };
    let mut stream = model
        .chat(chat)
        .await
        .map_err(|e| ApiError::from_engine(&e))?;
    // The worker answers one request at a time: this waits while earlier requests to the
    // same model generate. Headers go out only once generation has really started, so a
    // context overflow is still a proper 400.
    // Anything but `Started` first (a cancelled answer's `Done`) is kept for the body.
    let early = match stream.next_event().await {
        Some(ChatEvent::Started { .. }) => Vec::new(),
        Some(ChatEvent::Error { code, message }) => {
            return Err(ApiError::from_event(&code, &message))
        }
        Some(other) => vec![other],
        None => return Err(ApiError::stream_ended("the answer ended before it started")),
    };
    let recorder = if state.config.save_history {
        Recorder::start(&state.app, &info, &req.messages, &req.params).await
    } else {
        None
    };
    let ctx = Ctx {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: if req.model.is_empty() {
            served.id.clone()
        } else {
            req.model.clone()
        },
        fingerprint: fingerprint(&info.path, &info.template_name),
        include_usage: req.include_usage,
    };
    if req.stream {
        Ok(sse_response(ctx, stream, early, recorder, slot))
    } else {
        whole_answer(ctx, stream, early, recorder).await
    }
}

/// Names the build and model configuration, as OpenAI's `system_fingerprint` does: the
/// same fingerprint and seed replay the same answer.
fn fingerprint(model: &std::path::Path, template: &str) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(
        model
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default(),
    );
    h.update(template.as_bytes());
    format!("fp_{}", &hex::encode(h.finalize())[..10])
}

fn finish_reason(s: StopReason) -> &'static str {
    match s {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        StopReason::Eos | StopReason::StopString | StopReason::Cancelled => "stop",
    }
}

fn usage_json(u: &Usage, m: &Metrics) -> Value {
    let mut v = json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_prompt_tokens },
        "completion_tokens_details": { "reasoning_tokens": u.reasoning_tokens },
    });
    // A Conclave extension, only when speculation ran: what it bought (llama.cpp's server
    // reports the same pair as `timings.draft_n` and `draft_n_accepted`).
    if m.drafted_tokens > 0 {
        v["speculative"] = json!({
            "drafted_tokens": m.drafted_tokens,
            "accepted_tokens": m.accepted_tokens,
        });
    }
    v
}

async fn whole_answer(
    ctx: Ctx,
    mut stream: ChatStream,
    early: Vec<ChatEvent>,
    mut recorder: Option<Recorder>,
) -> Result<Response, ApiError> {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut early = early.into_iter();
    let (stop, usage, metrics) = loop {
        let ev = match early.next() {
            Some(ev) => ev,
            None => match stream.next_event().await {
                Some(ev) => ev,
                None => return Err(ApiError::stream_ended("the answer stream ended early")),
            },
        };
        if let Some(r) = recorder.as_mut() {
            r.event(&ev).await;
        }
        match ev {
            ChatEvent::Token { text, .. } => content.push_str(&text),
            ChatEvent::Reasoning { text, .. } => reasoning.push_str(&text),
            ChatEvent::Done {
                stop_reason,
                usage,
                metrics,
            } => break (stop_reason, usage, metrics),
            ChatEvent::Error { code, message } => {
                return Err(ApiError::from_event(&code, &message))
            }
            ChatEvent::Started { .. } => {}
        }
    };
    let mut message = json!({ "role": "assistant", "content": content, "refusal": null });
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let body = json!({
        "id": ctx.id,
        "object": "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "system_fingerprint": ctx.fingerprint,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(stop),
        }],
        "usage": usage_json(&usage, &metrics),
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

impl Ctx {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        event(&c)
    }

    fn usage_chunk(&self, usage: &Usage, metrics: &Metrics) -> Bytes {
        event(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [],
            "usage": usage_json(usage, metrics),
        }))
    }
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// The body's state. It owns the answer's stream, so when hyper drops the body (the client
/// disconnected) the stream drops and the generation is cancelled at the next token.
struct Sse {
    ctx: Ctx,
    stream: ChatStream,
    early: std::vec::IntoIter<ChatEvent>,
    recorder: Option<Recorder>,
    _slot: QueueSlot,
    phase: Phase,
}

#[derive(PartialEq)]
enum Phase {
    Role,
    Deltas,
    End,
}

fn sse_response(
    ctx: Ctx,
    stream: ChatStream,
    early: Vec<ChatEvent>,
    recorder: Option<Recorder>,
    slot: QueueSlot,
) -> Response {
    let state = Sse {
        ctx,
        stream,
        early: early.into_iter(),
        recorder,
        _slot: slot,
        phase: Phase::Role,
    };
    let body = futures::stream::unfold(state, |mut s| async move {
        let bytes = s.next_bytes().await?;
        Some((Ok::<_, std::convert::Infallible>(bytes), s))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        // Reverse proxies must not hold tokens back.
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| {
            ApiError::internal("internal_error", "The response could not be built.").into_response()
        })
}

impl Sse {
    async fn next_bytes(&mut self) -> Option<Bytes> {
        match self.phase {
            Phase::End => return None,
            Phase::Role => {
                self.phase = Phase::Deltas;
                return Some(self.ctx.chunk(
                    json!({ "role": "assistant", "content": "", "refusal": null }),
                    None,
                ));
            }
            Phase::Deltas => {}
        }
        loop {
            let ev = match self.early.next() {
                Some(ev) => Some(ev),
                None => self.stream.next_event().await,
            };
            let Some(ev) = ev else {
                self.phase = Phase::End;
                return Some(
                    self.error_bytes(&ApiError::stream_ended("the answer stream ended early")),
                );
            };
            if let Some(r) = self.recorder.as_mut() {
                r.event(&ev).await;
            }
            match ev {
                ChatEvent::Token { text, .. } => {
                    return Some(self.ctx.chunk(json!({ "content": text }), None))
                }
                ChatEvent::Reasoning { text, .. } => {
                    return Some(self.ctx.chunk(json!({ "reasoning_content": text }), None))
                }
                ChatEvent::Started { .. } => continue,
                ChatEvent::Done {
                    stop_reason,
                    usage,
                    metrics,
                } => {
                    self.phase = Phase::End;
                    let mut out = self
                        .ctx
                        .chunk(json!({}), Some(finish_reason(stop_reason)))
                        .to_vec();
                    if self.ctx.include_usage {
                        out.extend_from_slice(&self.ctx.usage_chunk(&usage, &metrics));
                    }
                    out.extend_from_slice(DONE);
                    return Some(Bytes::from(out));
                }
                ChatEvent::Error { code, message } => {
                    self.phase = Phase::End;
                    return Some(self.error_bytes(&ApiError::from_event(&code, &message)));
                }
            }
        }
    }

    /// Headers are gone by now: the error travels as an event (the shape OpenAI's clients
    /// raise from), then the stream ends as usual.
    fn error_bytes(&self, e: &ApiError) -> Bytes {
        let mut out = event(&e.to_json()).to_vec();
        out.extend_from_slice(DONE);
        Bytes::from(out)
    }
}
