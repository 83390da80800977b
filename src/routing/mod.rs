//! Backends and how a request reaches one: candidates by model, priority groups, balancing
//! within a group, passive and active health, and the upstream attempt whose error decides
//! whether to fail over.

pub mod backend;
pub mod balancer;
pub mod health;
pub mod upstream;

pub use backend::{Backend, HealthSettings, InFlight};
pub use balancer::{plan, Plan};
pub use upstream::{AttemptError, UpstreamClient};
