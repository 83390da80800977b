//! OpenAI wire shapes the gateway itself reads or writes: the error body, the SSE codec, the
//! text-bearing fields of an answer ([`fields`]), and typed views of a request ([`request`])
//! and of a whole answer or stream chunk ([`answer`]).
//! Request and response bodies stay JSON maps, read through the views, so unknown fields pass
//! unchanged and in their order.

pub mod answer;
pub mod error_body;
pub mod fields;
pub mod request;
pub mod sse;

pub use error_body::{normalize_upstream_error, ErrorBody, ErrorObject};
