//! OpenAI wire shapes the gateway itself reads or writes: the error body and the SSE codec.
//! Request and response bodies are otherwise kept as JSON maps so unknown fields pass unchanged.

pub mod error_body;
pub mod sse;

pub use error_body::{normalize_upstream_error, ErrorBody, ErrorObject};
