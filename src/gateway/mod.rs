//! The AI request pipeline: [`pipeline::handle`] composes the stages in request order, and
//! [`runtime`] holds what a loaded `AIGateway` compiles into.

pub mod body;
pub mod content_filter;
pub mod guard_events;
pub mod models;
pub mod pipeline;
pub mod relay;
pub mod request;
pub mod runtime;

pub use request::{AiRequest, Endpoint};
pub use runtime::{Gateway, GatewaySettings, Snapshot};
