//! Backends and how a request reaches one: candidates by model, priority groups, balancing
//! within a group, passive and active health, and the upstream attempt whose error decides
//! whether to fail over; TLS towards backends (trust, client certificates, verified name).

pub mod backend;
pub mod balancer;
pub mod encoding;
pub mod health;
pub mod tls;
pub mod upstream;

pub use backend::{Backend, HealthSettings, InFlight};
pub use balancer::{plan, Plan};
pub use tls::{BackendTlsError, BackendTrust, UpstreamClients};
pub use upstream::{AttemptError, UpstreamAnswer, UpstreamClient};
