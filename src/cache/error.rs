//! The one error type of the semantic cache.

use std::path::PathBuf;

/// What the fetch hint says, in every model error.
pub const FETCH_HINT: &str =
    "run models/fetch.sh (it downloads and verifies the model files listed in models/manifest.json)";

/// Errors of the semantic cache. None of them should fail a request: the gateway treats
/// any of them as a cache miss and logs it.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A model file is missing, unreadable or corrupt.
    #[error("embedding model at {dir}: {reason}; {FETCH_HINT}")]
    Model { dir: PathBuf, reason: String },
    /// Tokenising or running the model failed.
    #[error("embedding failed: {0}")]
    Embed(String),
    /// The bounded embedding queue is full: the caller should treat this as a miss.
    #[error("embedding queue is full")]
    Overloaded,
    /// The embedding workers have stopped.
    #[error("embedding workers are gone")]
    WorkersGone,
    /// A blocking cache task failed (panicked or was cancelled).
    #[error("cache task failed: {0}")]
    Task(String),
}

impl CacheError {
    pub(crate) fn model(dir: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        CacheError::Model {
            dir: dir.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}
