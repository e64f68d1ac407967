//! (being written)

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{0}")]
    Other(String),
}

impl crate::error::ErrorCode for TemplateError {
    fn code(&self) -> &'static str {
        "internal"
    }
}
