//! (being written)

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("{0}")]
    Other(String),
}

impl crate::error::ErrorCode for ModelsError {
    fn code(&self) -> &'static str {
        "internal"
    }
}
