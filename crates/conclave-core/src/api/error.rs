//! OpenAI-shaped errors: `{"error": {"message", "type", "code", "param"}}`.
//!
//! Core errors are mapped to fixed messages here: their own texts carry model paths,
//! worker log lines and llama.cpp output, none of which an API client should see (the
//! details go to the server's log instead).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::engine::EngineError;
use crate::error::CoreError;
use crate::models::ModelsError;
use crate::protocol::WorkerErrorCode;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`…
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code: Some(code.to_owned()),
            param: None,
            message: message.into(),
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message,
        );
        e.code = None;
        e
    }

    pub fn invalid_value(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_value",
            message,
        )
        .with_param(param)
    }

    pub fn unsupported(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_parameter",
            message,
        )
        .with_param(param)
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!(
                "The model `{}` does not exist; GET /v1/models lists the models available.",
                clip(model)
            ),
        )
        .with_param("model")
    }

    pub fn unauthorized(has_header: bool) -> Self {
        let message = if has_header {
            "Incorrect API key provided."
        } else {
            "You didn't provide an API key. Send it as `Authorization: Bearer KEY`."
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            message,
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("The request body is larger than the server's limit of {limit} bytes."),
        )
    }

    pub fn overloaded(model: &str) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "queue_full",
            format!(
                "Too many requests are waiting for the model `{}`; retry shortly.",
                clip(model)
            ),
        )
    }

    pub fn forbidden_origin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "origin_not_allowed",
            "Requests from this web origin are not allowed; set an API key or add the origin to the allowed origins.",
        )
    }

    pub fn forbidden_cross_site() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "cross_site_not_allowed",
            "The browser marked this request as coming from another site without saying which (no Origin header); it is refused.",
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            "Send the request body as JSON, with `Content-Type: application/json`.",
        )
    }

    pub fn body_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "request_timeout",
            format!(
                "The request body did not arrive within {} seconds.",
                limit.as_secs()
            ),
        )
    }

    /// The response for an error that leaves the request body unread: the connection
    /// cannot carry another request, and saying so keeps a pooling client (reqwest, httpx)
    /// from sending its next request into a socket the server is about to close.
    pub fn closing(self) -> Response {
        let mut res = self.into_response();
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        res
    }

    pub fn forbidden_host() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "host_not_allowed",
            "This server only answers requests addressed to localhost.",
        )
    }

    pub fn internal(code: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            code,
            message,
        )
    }

    /// A streamed answer's `ChatEvent::Error`: only the code is trusted, the message may
    /// hold worker output.
    pub fn from_event(code: &str, message: &str) -> Self {
        tracing::warn!(code, message, "generation failed");
        if let Some(code) = WorkerErrorCode::parse(code) {
            return Self::from_worker_code(code);
        }
        match code {
            "worker_not_found" => Self::internal(
                "worker_not_found",
                "The inference worker program is not installed next to the server.",
            ),
            "worker_mismatch" => Self::internal(
                "worker_mismatch",
                "The inference worker program does not match the server's version.",
            ),
            // Templates raise on conversations they do not accept (roles that do not
            // alternate, a system message where none may go): the client's to fix.
            "template_render" => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "messages_rejected_by_template",
                "The model's chat template does not accept these messages (for example, user and assistant turns may have to alternate).",
            )
            .with_param("messages"),
            "template_compile" | "unknown_template" => Self::internal(
                "template_error",
                "The model's chat template could not be applied to these messages.",
            ),
            _ => Self::generation_failed(),
        }
    }

    fn from_worker_code(code: WorkerErrorCode) -> Self {
        match code {
            WorkerErrorCode::ContextOverflow => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
                "The messages do not fit the model's context window, even with the oldest turns dropped.",
            )
            .with_param("messages"),
            WorkerErrorCode::WorkerCrashed => Self::internal(
                code.as_str(),
                "The model's worker process crashed during this request; the next request starts a fresh one.",
            ),
            WorkerErrorCode::LoadFailed => {
                Self::internal(code.as_str(), "The model could not be loaded.")
            }
            WorkerErrorCode::RpcLost => Self::internal(
                code.as_str(),
                "An RPC server holding part of the model stopped answering; the model must be loaded again without it.",
            ),
            WorkerErrorCode::BadRequest
            | WorkerErrorCode::EmptyPrompt
            | WorkerErrorCode::GenerationFailed
            | WorkerErrorCode::BenchFailed
            | WorkerErrorCode::ThreadsFailed
            | WorkerErrorCode::BadOutput
            | WorkerErrorCode::Internal => Self::generation_failed(),
        }
    }

    /// The answer's stream ended with neither `Done` nor `Error`.
    pub fn stream_ended(detail: &str) -> Self {
        tracing::warn!(detail, "generation failed");
        Self::generation_failed()
    }

    fn generation_failed() -> Self {
        Self::internal(
            WorkerErrorCode::GenerationFailed.as_str(),
            "The model failed to generate an answer.",
        )
    }

    pub fn from_core(e: &CoreError, model: &str) -> Self {
        match e {
            CoreError::Engine(e) => Self::from_engine(e),
            CoreError::Models(e) => Self::from_models(e, model),
            CoreError::Gguf(_) => {
                tracing::warn!(error = %e, "model file unusable");
                Self::internal(
                    "invalid_model",
                    "The model file is not a usable GGUF model.",
                )
            }
            CoreError::InvalidInput(_) => Self::bad_request("The request is not valid."),
            other => {
                tracing::error!(error = %other, "API request failed");
                Self::internal("internal_error", "The server failed to handle the request.")
            }
        }
    }

    pub fn from_engine(e: &EngineError) -> Self {
        tracing::warn!(error = %e, "engine error");
        Self::from_event(crate::error::ErrorCode::code(e), "")
    }

    pub fn from_models(e: &ModelsError, model: &str) -> Self {
        match e {
            ModelsError::NotFound(_) => Self::model_not_found(model),
            ModelsError::Ambiguous { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model_ambiguous",
                format!(
                    "`{}` matches several models; use an id from GET /v1/models.",
                    clip(model)
                ),
            )
            .with_param("model"),
            other => {
                tracing::warn!(error = %other, "model library error");
                Self::internal("model_unavailable", "The model is not available.")
            }
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.to_json())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// User-supplied names echoed in messages are kept short.
fn clip(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(80).collect::<String>())
    }
}
