//! AirGate: an OpenAI-compatible AI gateway for air-gapped Kubernetes clusters.
//!
//! # Layout
//! - [`access`]: JWT verification, rate limits and token budgets (memory or Redis), client IP,
//!   the mTLS peer identity.
//! - [`apis`]: general REST APIs from `API` resources: access stages, then a reverse proxy; it
//!   takes an `ApiContext`, not the server's state.
//! - [`body`]: reading a request body within its size and time limits and the process-wide
//!   memory budget (AI requests, and `API` requests whose body is validated).
//! - [`cache`]: the semantic cache: MiniLM embedder (candle), HNSW index per scope, verification.
//! - [`cli`]: the `airgate` command (`serve`, `validate`, `diff`, `crds`, `audit`, `bundle`).
//! - [`config`]: the `AIGateway` and `API` resources, loading a folder of YAML, validation.
//! - [`server`]: listeners (public and admin), hostile-HTTP limits, TLS on the public listener,
//!   the route table.
//! - [`openai`]: OpenAI wire shapes: errors, the SSE codec, the text-bearing fields of answers.
//! - [`openapi`]: OpenAPI documents named by `API` resources: reading (and enforcing) them.
//! - [`policy`]: the checks a change passes in CI: `airgate validate`'s rule packs and CEL rules
//!   (text, JSON, SARIF), `airgate diff` (routing contract and OpenAPI specs, with oasdiff's
//!   check ids).
//! - [`redact`]: credentials out of error messages and logs.
//! - [`gateway`]: the AI request pipeline that composes the stages, top to bottom.
//! - [`guard`]: the content guard: compiled pattern sets, built-in detectors, the streaming scanner.
//! - [`routing`]: backends, priority groups, balancing, health, the upstream attempts.
//! - [`telemetry`]: Prometheus metrics and logging setup.
//! - [`shutdown`]: the signals of a graceful shutdown (drain, cut), shared by the listeners and
//!   the request paths.
//!
//! Dependencies point one way: `cli` builds `server`, which calls `gateway` and `apis`; no
//! module below `server` uses it.
//! - [`tls`]: TLS building blocks shared by the listener, the backend clients and syslog: the
//!   crypto provider, protocol versions, PEM reading.
//! - [`error`]: the one error type that becomes an HTTP answer.

pub mod access;
pub mod apis;
pub mod app;
pub mod body;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod gateway;
pub mod guard;
pub mod openai;
pub mod openapi;
pub mod policy;
pub mod redact;
pub mod routing;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
