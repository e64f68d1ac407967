//! (being written)

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Other(String),
}

impl crate::error::ErrorCode for EngineError {
    fn code(&self) -> &'static str {
        "internal"
    }
}
