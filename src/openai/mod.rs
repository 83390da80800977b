//! OpenAI wire shapes the gateway itself reads or writes: the error body, the SSE codec, and
//! the text-bearing fields of an answer ([`fields`]).
//! Request and response bodies are otherwise kept as JSON maps so unknown fields pass unchanged.

pub mod error_body;
pub mod fields;
pub mod sse;

pub use error_body::{normalize_upstream_error, ErrorBody, ErrorObject};
