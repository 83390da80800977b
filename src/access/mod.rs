//! Access control: who is calling ([`jwt`]), how often they may call ([`limiter`]), how many
//! tokens they may spend (token budgets, also in [`limiter`]), and from which address
//! ([`client_ip`]).
//!
//! # Layout
//! - [`jwt`]: bearer-token verification against keys mounted from a secrets folder, and the
//!   approval rule for `requiresApproval` backends.
//! - [`limiter`]: GCRA rate limits and token budgets, in memory or shared through Redis.
//! - [`redis_store`]: the Redis backend of the limiter (Lua scripts, failure policy).
//! - [`client_ip`]: the client address behind trusted proxies, CIDR parsing.
//!
//! - [`admission`]: the one gate of every route, AI and `API` alike: authenticate, limit,
//!   authorize, each refusal answered, counted and audited the same way.
//! - [`rules`]: access rules in Traefik's rule language (`API` `accessControl`).
//! - [`ipnet`], [`peer`]: CIDR ranges; the verified mTLS client identity.
//!
//! After the answer, the AI path settles the token reservation with the real usage
//! ([`RateLimiter::settle_tokens`]).

pub mod admission;
pub mod client_ip;
pub mod ipnet;
pub mod jwt;
pub mod limiter;
pub mod peer;
pub mod redis_store;
pub mod rules;
pub mod settings;

pub use client_ip::{client_ip, client_ip_from_headers};
pub use ipnet::{IpNet, IpNetParseError};
pub use jwt::{ApprovalRule, AuthError, Identity, JwtSettings, JwtVerifier, KeyError};
pub use limiter::{Check, Decision, Limit, LimitKey, LimiterError, RateLimiter};
pub use redis_store::{FailureHook, FailurePolicy, RedisFailure, RedisOptions};
