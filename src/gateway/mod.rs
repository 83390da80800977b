//! The AI request pipeline: [`pipeline::handle`] composes the stages in request order
//! ([`route`] with failover, [`answer`], and the [`outcome`] every request is finished with),
//! and [`runtime`] holds what a loaded `AIGateway` compiles into.

pub mod accounting;
pub mod admission;
pub mod answer;
pub mod cache_stage;
pub mod content_filter;
pub mod guard_events;
pub mod models;
pub mod outcome;
pub mod pipeline;
pub mod relay;
pub mod request;
pub mod route;
pub mod runtime;
pub mod usage;

pub use request::{AiRequest, Endpoint};
pub use runtime::{Gateway, GatewaySettings, Snapshot};
