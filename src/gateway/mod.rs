//! The AI request pipeline: [`pipeline::handle`] composes the stages in request order, and
//! [`runtime`] holds what a loaded `AIGateway` compiles into.

pub mod accounting;
pub mod admission;
pub mod body;
pub mod cache_stage;
pub mod content_filter;
pub mod guard_events;
pub mod models;
pub mod pipeline;
pub mod relay;
pub mod request;
pub mod runtime;
pub mod usage;

pub use request::{AiRequest, Endpoint};
pub use runtime::{Gateway, GatewaySettings, Snapshot};
