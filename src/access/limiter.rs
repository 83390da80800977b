//! Rate limits and token budgets with GCRA (generic cell rate algorithm).
//!
//! A limit of `limit` units per `period` is a bucket of capacity `limit` that refills
//! continuously, one unit every `period / limit`: a full bucket admits a burst of `limit`, then
//! one unit per interval. The state of a key is its *level* (how full the bucket is), kept as an
//! integer in units of `time × limit`, so the arithmetic is exact (no floating point drift) and a
//! burst admits exactly `limit`.
//!
//! Token budgets use the same bucket with tokens as units: [`RateLimiter::reserve_tokens`] takes
//! the estimate up front, [`RateLimiter::settle_tokens`] refunds or charges the difference with the
//! real usage, [`RateLimiter::remaining_tokens`] tells a stream how much it may still spend.
//!
//! State lives in memory ([`RateLimiter::memory`], one process) or in Redis
//! ([`RateLimiter::redis`], shared by every replica; see [`crate::access::redis_store`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio::time::Instant;

use super::redis_store::{RedisOptions, RedisStore};

/// `x-ratelimit-limit`.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `x-ratelimit-remaining`.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `x-ratelimit-reset`: seconds until the bucket is full again.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// `limit` units (requests or tokens) per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    pub limit: u64,
    pub period: Duration,
}

impl Limit {
    pub fn new(limit: u64, period: Duration) -> Self {
        Limit { limit, period }
    }

    pub fn per_second(limit: u64) -> Self {
        Limit::new(limit, Duration::from_secs(1))
    }

    pub fn per_minute(limit: u64) -> Self {
        Limit::new(limit, Duration::from_secs(60))
    }
}

/// The answer to one admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The configured limit.
    pub limit: u64,
    /// Units still available now (after this admission when allowed).
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset_after: Duration,
    /// When refused: time until this cost would be admitted; `None` when it never can (the cost
    /// is larger than the limit).
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// `allowed` without any state (fail-open, or no limit).
    pub fn unlimited(limit: u64) -> Self {
        Decision {
            allowed: true,
            limit,
            remaining: limit,
            reset_after: Duration::ZERO,
            retry_after: None,
        }
    }

    /// Refused without state (fail-closed): retry in `retry_after`.
    pub fn refused(limit: u64, retry_after: Duration) -> Self {
        Decision {
            allowed: false,
            limit,
            remaining: 0,
            reset_after: retry_after,
            retry_after: Some(retry_after),
        }
    }

    /// The response headers: `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`
    /// (whole seconds, rounded up) and, when refused with a retry time, `retry-after`.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = vec![
            (X_RATELIMIT_LIMIT, HeaderValue::from(self.limit)),
            (X_RATELIMIT_REMAINING, HeaderValue::from(self.remaining)),
            (
                X_RATELIMIT_RESET,
                HeaderValue::from(ceil_secs(self.reset_after)),
            ),
        ];
        if let (false, Some(retry)) = (self.allowed, self.retry_after) {
            headers.push((
                http::header::RETRY_AFTER,
                HeaderValue::from(ceil_secs(retry).max(1)),
            ));
        }
        headers
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What a limit counts per: the key a [`Limit`] is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey<'a> {
    Global,
    User(&'a str),
    Ip(IpAddr),
    /// A request header's value (`header:NAME` strategy); the name should be lowercase.
    Header {
        name: &'a str,
        value: &'a str,
    },
}

impl LimitKey<'_> {
    /// The storage key within `scope` (the gateway or API the limit belongs to).
    pub fn render(&self, scope: &str) -> String {
        match self {
            LimitKey::Global => format!("{scope}|global"),
            LimitKey::User(user) => format!("{scope}|user|{user}"),
            LimitKey::Ip(ip) => format!("{scope}|ip|{}", ip.to_canonical()),
            LimitKey::Header { name, value } => format!("{scope}|header|{name}|{value}"),
        }
    }
}

/// Setting up a limiter failed.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[source] redis::RedisError),
    #[error("cannot create the Redis connection manager: {0}")]
    Redis(#[source] redis::RedisError),
}

/// Which bucket family a key belongs to (kept apart so a user's requests and tokens never mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Requests,
    Tokens,
}

impl Kind {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Kind::Requests => "rl",
            Kind::Tokens => "tb",
        }
    }
}

/// One bucket of an admission ([`RateLimiter::admit_all`]): `cost` units of `limit` for `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub(crate) kind: Kind,
    pub key: String,
    pub limit: Limit,
    pub cost: u64,
}

impl Check {
    /// `cost` requests.
    pub fn requests(key: impl Into<String>, limit: Limit, cost: u64) -> Self {
        Check {
            kind: Kind::Requests,
            key: key.into(),
            limit,
            cost,
        }
    }

    /// `amount` tokens of a token budget (a bucket apart from the request limits).
    pub fn tokens(key: impl Into<String>, budget: Limit, amount: u64) -> Self {
        Check {
            kind: Kind::Tokens,
            key: key.into(),
            limit: budget,
            cost: amount,
        }
    }
}

/// GCRA over integer time units (`unit` = one microsecond in memory, a millisecond or coarser
/// in Redis). `level` is in `time units × limit`; the capacity is `period × limit`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gcra {
    pub limit: u128,
    /// Period in time units, at least 1.
    pub period: u128,
}

/// Result of one GCRA step (times in units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub allowed: bool,
    pub level: u128,
    pub remaining: u128,
    pub reset_after: u128,
    pub retry_after: Option<u128>,
}

impl Gcra {
    pub fn new(limit: u64, period_units: u128) -> Self {
        Gcra {
            limit: u128::from(limit),
            period: period_units.max(1),
        }
    }

    fn capacity(&self) -> u128 {
        self.limit.saturating_mul(self.period)
    }

    /// The level after `elapsed` units of refill.
    pub fn decay(&self, level: u128, elapsed: u128) -> u128 {
        level.saturating_sub(elapsed.saturating_mul(self.limit))
    }

    /// Admits `cost` at an already decayed `level`.
    pub fn admit(&self, level: u128, cost: u64) -> Step {
        let cost = u128::from(cost);
        let cap = self.capacity();
        let (allowed, level, retry_after) = if cost == 0 {
            (true, level, None)
        } else if cost > self.limit {
            (false, level, None)
        } else {
            let next = level.saturating_add(cost.saturating_mul(self.period));
            if next <= cap {
                (true, next, None)
            } else {
                (false, level, Some(div_ceil(next - cap, self.limit)))
            }
        };
        Step {
            allowed,
            level,
            remaining: cap.saturating_sub(level) / self.period,
            reset_after: div_ceil(level, self.limit.max(1)),
            retry_after,
        }
    }

    /// Charges (`delta > 0`) or refunds (`delta < 0`) at an already decayed `level`. Charges are
    /// capped at one full bucket so an overrun locks a key out for at most one extra period.
    pub fn adjust(&self, level: u128, delta: i128) -> u128 {
        let units = delta
            .unsigned_abs()
            .min(self.limit)
            .saturating_mul(self.period);
        if delta >= 0 {
            level.saturating_add(units)
        } else {
            level.saturating_sub(units)
        }
    }
}

fn div_ceil(a: u128, b: u128) -> u128 {
    if b == 0 {
        0
    } else {
        a.div_ceil(b)
    }
}

/// Shared limiter state. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    backend: Arc<Backend>,
}

enum Backend {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        };
        f.debug_struct("RateLimiter")
            .field("backend", &kind)
            .finish()
    }
}

impl RateLimiter {
    /// State in this process only.
    pub fn memory() -> Self {
        RateLimiter {
            backend: Arc::new(Backend::Memory(MemoryStore::default())),
        }
    }

    /// State shared through Redis at `url` (`redis://[:password@]host:port[/db]`). Does not
    /// connect: the connection is made on first use, so this succeeds while Redis is down. Must
    /// be called inside a Tokio runtime (hence `async`).
    pub async fn redis(url: &str, policy: super::FailurePolicy) -> Result<Self, LimiterError> {
        Self::redis_with(url, RedisOptions::new(policy)).await
    }

    /// [`RateLimiter::redis`] with every option.
    pub async fn redis_with(url: &str, options: RedisOptions) -> Result<Self, LimiterError> {
        Ok(RateLimiter {
            backend: Arc::new(Backend::Redis(RedisStore::new(url, options)?)),
        })
    }

    /// Admits `cost` requests against `limit` for `key` (see [`LimitKey::render`]).
    pub async fn check(&self, key: &str, limit: Limit, cost: u64) -> Decision {
        self.admit_one(Check::requests(key, limit, cost)).await
    }

    /// Reserves `amount` tokens of `budget` for `key`; refused when it would cross the budget.
    pub async fn reserve_tokens(&self, key: &str, budget: Limit, amount: u64) -> Decision {
        self.admit_one(Check::tokens(key, budget, amount)).await
    }

    /// Admits every check or none, atomically and (with Redis) in one round trip: `Ok` with
    /// each check's decision when all were allowed and charged; `Err` with the index and the
    /// decision of the first refused check when any was refused, and then nothing is charged.
    /// Checks should name distinct buckets.
    pub async fn admit_all(&self, checks: &[Check]) -> Result<Vec<Decision>, (usize, Decision)> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        match &*self.backend {
            Backend::Memory(store) => store.admit_all(checks),
            Backend::Redis(store) => store.admit_all(checks).await,
        }
    }

    /// Settles a reservation with the real usage: refunds `reserved - actual`, or charges
    /// `actual - reserved` (even past the budget: later reservations wait for the refill).
    pub async fn settle_tokens(&self, key: &str, budget: Limit, reserved: u64, actual: u64) {
        let delta = i128::from(actual) - i128::from(reserved);
        if delta == 0 {
            return;
        }
        match &*self.backend {
            Backend::Memory(store) => store.adjust(Kind::Tokens, key, budget, delta),
            Backend::Redis(store) => store.adjust(Kind::Tokens, key, budget, delta).await,
        }
    }

    /// Tokens of `budget` still available to `key` now.
    pub async fn remaining_tokens(&self, key: &str, budget: Limit) -> u64 {
        self.reserve_tokens(key, budget, 0).await.remaining
    }

    /// Round trips to Redis so far (0 for memory): one per admission, one per token settlement.
    pub fn redis_calls(&self) -> u64 {
        match &*self.backend {
            Backend::Memory(_) => 0,
            Backend::Redis(store) => store.calls(),
        }
    }

    /// Redis calls that failed or were skipped while Redis was down (0 for memory).
    pub fn redis_errors(&self) -> u64 {
        match &*self.backend {
            Backend::Memory(_) => 0,
            Backend::Redis(store) => store.errors(),
        }
    }

    async fn admit_one(&self, check: Check) -> Decision {
        match self.admit_all(std::slice::from_ref(&check)).await {
            Ok(decisions) => decisions
                .into_iter()
                .next()
                .unwrap_or(Decision::unlimited(check.limit.limit)),
            Err((_, decision)) => decision,
        }
    }
}

/// In-process state: one level per key, behind a mutex (exact under concurrency).
#[derive(Default)]
struct MemoryStore {
    state: std::sync::Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    entries: HashMap<String, Entry>,
    ops: u64,
}

struct Entry {
    level: u128,
    at: Instant,
    /// When the level reaches zero (the entry can be dropped).
    empty_at: Instant,
}

/// Drop empty entries every this many operations.
const SWEEP_EVERY: u64 = 4096;

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

fn storage_key(kind: Kind, key: &str, limit: Limit) -> String {
    format!(
        "{}:{}:{}:{key}",
        kind.prefix(),
        limit.limit,
        limit.period.as_millis()
    )
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Admits every check or none: levels are computed for all, and stored only when all are
    /// allowed.
    fn admit_all(&self, checks: &[Check]) -> Result<Vec<Decision>, (usize, Decision)> {
        let now = Instant::now();
        let mut state = self.lock();
        state.sweep(now);
        let mut staged: Vec<(String, Gcra, u128)> = Vec::with_capacity(checks.len());
        let mut decisions = Vec::with_capacity(checks.len());
        for (index, check) in checks.iter().enumerate() {
            let gcra = Gcra::new(check.limit.limit, micros(check.limit.period));
            let skey = storage_key(check.kind, &check.key, check.limit);
            let level = match staged.iter().find(|(k, _, _)| *k == skey) {
                Some((_, _, level)) => *level,
                None => state.level(&skey, &gcra, now),
            };
            let step = gcra.admit(level, check.cost);
            let decision = decision(check.limit.limit, &step, Duration::from_micros);
            if !step.allowed {
                return Err((index, decision));
            }
            staged.retain(|(k, _, _)| *k != skey);
            staged.push((skey, gcra, step.level));
            decisions.push(decision);
        }
        for (skey, gcra, level) in staged {
            state.store(skey, &gcra, level, now);
        }
        Ok(decisions)
    }

    fn adjust(&self, kind: Kind, key: &str, limit: Limit, delta: i128) {
        let now = Instant::now();
        let mut state = self.lock();
        state.sweep(now);
        let gcra = Gcra::new(limit.limit, micros(limit.period));
        let skey = storage_key(kind, key, limit);
        let level = gcra.adjust(state.level(&skey, &gcra, now), delta);
        state.store(skey, &gcra, level, now);
    }
}

impl MemoryState {
    fn sweep(&mut self, now: Instant) {
        self.ops += 1;
        if self.ops.is_multiple_of(SWEEP_EVERY) {
            self.entries.retain(|_, e| e.empty_at > now);
        }
    }

    /// The level of `skey`, refilled up to `now`.
    fn level(&self, skey: &str, gcra: &Gcra, now: Instant) -> u128 {
        self.entries.get(skey).map_or(0, |e| {
            gcra.decay(e.level, micros(now.saturating_duration_since(e.at)))
        })
    }

    fn store(&mut self, skey: String, gcra: &Gcra, level: u128, now: Instant) {
        if level == 0 {
            self.entries.remove(&skey);
            return;
        }
        let empty_in = div_ceil(level, gcra.limit.max(1));
        let empty_at = now + Duration::from_micros(u64::try_from(empty_in).unwrap_or(u64::MAX));
        self.entries.insert(
            skey,
            Entry {
                level,
                at: now,
                empty_at,
            },
        );
    }
}

/// Builds a [`Decision`] from a step whose times are in units converted by `unit`.
pub(crate) fn decision(limit: u64, step: &Step, unit: impl Fn(u64) -> Duration) -> Decision {
    let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    Decision {
        allowed: step.allowed,
        limit,
        remaining: clamp(step.remaining),
        reset_after: unit(clamp(step.reset_after)),
        retry_after: step.retry_after.map(|r| unit(clamp(r))),
    }
}

#[cfg(test)]
mod tests;
