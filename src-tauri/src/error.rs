//! The one error every command returns. It crosses IPC as `{code, message}` so that the UI
//! branches on a stable code, never on message text.

use conclave_core::ErrorCode;
use serde::Serialize;
use ts_rs::TS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, TS)]
#[error("{message} ({code})")]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }
}

// Every core error type carries its own code; one blanket conversion lets commands use `?`.
impl<E: ErrorCode + std::fmt::Display> From<E> for ApiError {
    fn from(err: E) -> Self {
        Self::new(err.code(), err.to_string())
    }
}

/// A blocking task that panicked or was cancelled: not the user's fault, but still typed.
pub fn join_error(err: tauri::Error) -> ApiError {
    tracing::error!("background task failed: {err}");
    ApiError::new("internal", format!("background task failed: {err}"))
}

pub type ApiResult<T> = Result<T, ApiError>;
