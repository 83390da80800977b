//! What AirGate's tests, benchmark and demo use and the gateway itself does not. Kept out of the
//! production library (`airgate`), which never depends on this crate.
//!
//! - [`mock`]: an OpenAI-compatible backend with fault modes, behaving like vLLM's server as
//!   clients see it; `airgate-mock` runs it standalone for the demo and the load test.
//! - [`kube_api`]: a stand-in for the Kubernetes API server over real HTTP, for cluster mode.
//! - [`testing`]: a throwaway `redis-server` on a free loopback port.

pub mod kube_api;
pub mod mock;
pub mod testing;
