//! (being written)

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{0}")]
    Other(String),
}

impl crate::error::ErrorCode for GgufError {
    fn code(&self) -> &'static str {
        "internal"
    }
}
