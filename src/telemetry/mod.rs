//! Prometheus metrics and log setup. Logs never carry prompt text, secrets or tokens.

pub mod access_log;
pub mod audit;
pub mod batching;
pub mod log_rate;
pub mod metrics;
pub mod outcome;
pub mod tracing;

pub use metrics::Metrics;
