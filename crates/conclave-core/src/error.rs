//! One error type for callers that cross module lines (the CLI, the shell, the API server).
//! Each module keeps its own `thiserror` enum; every variant has a stable machine code so
//! that the UI and API clients never match on message text.

/// A stable, machine-readable code for an error (`"model_not_found"`, `"worker_crashed"`…).
pub trait ErrorCode {
    fn code(&self) -> &'static str;
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    #[error(transparent)]
    Models(#[from] crate::models::ModelsError),
    #[error("{0}")]
    InvalidInput(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl ErrorCode for CoreError {
    fn code(&self) -> &'static str {
        match self {
            CoreError::Engine(e) => e.code(),
            CoreError::Template(e) => e.code(),
            CoreError::Gguf(e) => e.code(),
            CoreError::History(e) => e.code(),
            CoreError::Models(e) => e.code(),
            CoreError::InvalidInput(_) => "invalid_input",
            CoreError::Io(_) => "io",
        }
    }
}
