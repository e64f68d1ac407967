//! (being written)

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    Other(String),
}

impl crate::error::ErrorCode for HistoryError {
    fn code(&self) -> &'static str {
        "internal"
    }
}
