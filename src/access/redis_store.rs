//! The Redis backend of [`RateLimiter`](super::RateLimiter): every replica shares the same
//! buckets.
//!
//! - Each admission is one atomic Lua script (`EVALSHA`, loaded again automatically after a Redis
//!   restart), using the Redis server clock (`TIME`) so replicas with skewed clocks agree.
//! - Levels are integers in `time unit × limit`; the unit (1 ms, or coarser for very large
//!   limits) keeps every value below 2^53 so Lua's doubles stay exact.
//! - The connection is made lazily and re-made by the `ConnectionManager` after a failure. Every
//!   call is bounded by [`RedisOptions::timeout`] (100 ms by default), and after a failure Redis
//!   is skipped for [`RedisOptions::retry_interval`], except for one probe per interval, so a
//!   down Redis costs requests nothing. Meanwhile [`FailurePolicy`] decides, and each such
//!   decision is counted ([`RateLimiter::redis_errors`](super::RateLimiter::redis_errors)) and
//!   reported to [`RedisOptions::on_error`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, ScriptInvocation};

use super::limiter::{decision, Check, Decision, Gcra, Kind, Limit, LimiterError, Step};

/// What to answer when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Admit the request (availability first).
    #[default]
    FailOpen,
    /// Refuse the request with 429 and `retry-after: 1`.
    FailClosed,
}

/// Why a Redis call did not decide, as given to [`RedisOptions::on_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    /// Redis answered with an error or the connection failed.
    Error,
    /// No answer within [`RedisOptions::timeout`].
    Timeout,
    /// Skipped: Redis failed recently and the retry interval has not passed.
    Skipped,
}

impl RedisFailure {
    /// A metric label: `error`, `timeout` or `skipped`.
    pub fn label(self) -> &'static str {
        match self {
            RedisFailure::Error => "error",
            RedisFailure::Timeout => "timeout",
            RedisFailure::Skipped => "skipped",
        }
    }
}

/// Callback invoked for every decision made without Redis.
pub type FailureHook = Arc<dyn Fn(RedisFailure) + Send + Sync>;

/// Redis backend settings.
#[derive(Clone)]
pub struct RedisOptions {
    pub policy: FailurePolicy,
    /// Longest wait for one Redis call, connection included. Default 100 ms.
    pub timeout: Duration,
    /// After a failure, Redis is skipped (one probe excepted) for this long. Default 250 ms.
    pub retry_interval: Duration,
    /// Prefix of every Redis key. Default `airgate`.
    pub key_prefix: String,
    /// Called for every decision made without Redis (e.g. to increment a Prometheus counter).
    pub on_error: Option<FailureHook>,
}

impl RedisOptions {
    pub fn new(policy: FailurePolicy) -> Self {
        RedisOptions {
            policy,
            timeout: Duration::from_millis(100),
            retry_interval: Duration::from_millis(250),
            key_prefix: "airgate".to_string(),
            on_error: None,
        }
    }
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions::new(FailurePolicy::default())
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .field("retry_interval", &self.retry_interval)
            .field("key_prefix", &self.key_prefix)
            .field("on_error", &self.on_error.is_some())
            .finish()
    }
}

/// Shared by both scripts: `bucket(i)` reads bucket `i` and refills it up to the server's
/// clock; `store(b)` writes it back. KEYS[i] = bucket i; ARGV[4i-3..4i] = limit, period (units),
/// unit (ms), and the script's own argument (cost or delta).
const LUA_PRELUDE: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function bucket(i)
  local base = (i - 1) * 4
  local b = {key = KEYS[i], limit = tonumber(ARGV[base + 1]), period = tonumber(ARGV[base + 2]),
    unit = tonumber(ARGV[base + 3]), arg = tonumber(ARGV[base + 4])}
  b.now = math.floor(ms / b.unit)
  b.cap = b.limit * b.period
  local state = redis.call('HMGET', b.key, 'l', 't')
  local level = tonumber(state[1]) or 0
  local at = tonumber(state[2]) or b.now
  if b.now > at then
    level = math.max(0, level - (b.now - at) * b.limit)
  end
  b.level = level
  return b
end
local function store(b)
  if b.level > 0 then
    redis.call('HSET', b.key, 'l', b.level, 't', b.now)
    redis.call('PEXPIRE', b.key, math.ceil(b.level / b.limit) * b.unit + 1000)
  else
    redis.call('DEL', b.key)
  end
end
"#;

/// Admits every bucket's cost or none. Returns, per bucket, {allowed, remaining, reset_after,
/// retry_after or -1} (units), flattened; buckets are stored only when all were allowed.
const ADMIT_BODY: &str = r#"
local buckets = {}
local out = {}
local all = true
for i = 1, #KEYS do
  local b = bucket(i)
  local allowed = 1
  local retry = -1
  if b.arg > 0 then
    if b.arg > b.limit then
      allowed = 0
    else
      local nxt = b.level + b.arg * b.period
      if nxt <= b.cap then
        b.level = nxt
      else
        allowed = 0
        retry = math.ceil((nxt - b.cap) / b.limit)
      end
    end
  end
  if allowed == 0 then all = false end
  buckets[i] = b
  local n = #out
  out[n + 1] = allowed
  out[n + 2] = math.floor(math.max(0, b.cap - b.level) / b.period)
  out[n + 3] = math.ceil(b.level / b.limit)
  out[n + 4] = retry
end
if all then
  for i = 1, #buckets do store(buckets[i]) end
end
return out
"#;

/// Adds ARGV[4] (signed, at most `limit` in size) units to bucket 1's level, not below zero.
const ADJUST_BODY: &str = r#"
local b = bucket(1)
b.level = math.max(0, b.level + b.arg * b.period)
store(b)
return 1
"#;

/// Values in the scripts stay below this (Lua numbers are doubles).
const MAX_SCALED: u128 = 1 << 52;

/// Limits above this are clamped (they are unlimited in practice).
const MAX_LIMIT: u64 = 1 << 40;

/// Time unit (ms) and period (in units) for `limit`, keeping `period × limit` below 2^52.
fn scale(limit: Limit) -> (u64, u64) {
    let period_ms = limit.period.as_millis().max(1);
    let count = u128::from(limit.limit.clamp(1, MAX_LIMIT));
    let mut unit: u128 = 1;
    while period_ms.div_ceil(unit) * count > MAX_SCALED && unit < period_ms {
        unit *= 10;
    }
    let period = period_ms.div_ceil(unit);
    (
        u64::try_from(unit).unwrap_or(u64::MAX),
        u64::try_from(period).unwrap_or(u64::MAX),
    )
}

pub(crate) struct RedisStore {
    manager: ConnectionManager,
    admit: Script,
    adjust: Script,
    options: RedisOptions,
    errors: AtomicU64,
    /// Script calls sent to Redis (round trips, retries on a replaced connection excepted).
    calls: AtomicU64,
    /// Milliseconds since `epoch` until which Redis is skipped; 0 when healthy.
    skip_until: AtomicU64,
    epoch: std::time::Instant,
}

impl RedisStore {
    /// Must run inside a Tokio runtime. Does not connect.
    pub(crate) fn new(url: &str, options: RedisOptions) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url).map_err(LimiterError::RedisUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(0);
        let manager =
            ConnectionManager::new_lazy_with_config(client, config).map_err(LimiterError::Redis)?;
        Ok(RedisStore {
            manager,
            admit: Script::new(&format!("{LUA_PRELUDE}{ADMIT_BODY}")),
            adjust: Script::new(&format!("{LUA_PRELUDE}{ADJUST_BODY}")),
            options,
            errors: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            skip_until: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        })
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn key(&self, kind: Kind, key: &str, limit: Limit) -> String {
        format!(
            "{}:{}:{}:{}:{key}",
            self.options.key_prefix,
            kind.prefix(),
            limit.limit,
            limit.period.as_millis()
        )
    }

    pub(crate) async fn admit_all(
        &self,
        checks: &[Check],
    ) -> Result<Vec<Decision>, (usize, Decision)> {
        // A zero limit refuses everything but a zero cost, forever: decided here, not in Redis.
        let zero = |check: &Check| {
            let step = Gcra::new(0, 1).admit(0, check.cost);
            decision(0, &step, Duration::from_millis)
        };
        if let Some(index) = checks.iter().position(|c| c.limit.limit == 0 && c.cost > 0) {
            return Err((index, zero(&checks[index])));
        }
        let (positions, shared): (Vec<usize>, Vec<&Check>) = checks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.limit.limit > 0)
            .unzip();
        let mut decisions = if shared.is_empty() {
            Vec::new()
        } else {
            self.admit_shared(&shared)
                .await
                .map_err(|(i, d)| (positions[i], d))?
        }
        .into_iter();
        // Put the zero-limit (zero-cost) answers back in their places.
        Ok(checks
            .iter()
            .map(|c| match c.limit.limit {
                0 => zero(c),
                _ => decisions
                    .next()
                    .unwrap_or(Decision::unlimited(c.limit.limit)),
            })
            .collect())
    }

    /// One script call for every check (all limits non-zero).
    async fn admit_shared(&self, checks: &[&Check]) -> Result<Vec<Decision>, (usize, Decision)> {
        let mut invocation = self.admit.prepare_invoke();
        let mut units = Vec::with_capacity(checks.len());
        for check in checks {
            let (unit, period) = scale(check.limit);
            units.push(unit);
            invocation
                .key(self.key(check.kind, &check.key, check.limit))
                .arg(check.limit.limit.min(MAX_LIMIT))
                .arg(period)
                .arg(unit)
                .arg(check.cost);
        }
        let Some(values) = self.call::<Vec<i64>>(&invocation).await else {
            return self.fallback(checks);
        };
        let steps: Option<Vec<Step>> = values.chunks(4).map(parse_step).collect();
        let steps = match steps {
            Some(steps) if steps.len() == checks.len() => steps,
            _ => {
                tracing::warn!(
                    ?values,
                    "unexpected answer from the Redis rate-limit script"
                );
                self.fail(RedisFailure::Error);
                return self.fallback(checks);
            }
        };
        let decisions: Vec<Decision> = steps
            .iter()
            .zip(checks.iter().zip(&units))
            .map(|(step, (check, unit))| {
                decision(check.limit.limit, step, |n| {
                    Duration::from_millis(n.saturating_mul(*unit))
                })
            })
            .collect();
        match steps.iter().position(|step| !step.allowed) {
            Some(index) => Err((index, decisions[index])),
            None => Ok(decisions),
        }
    }

    pub(crate) async fn adjust(&self, kind: Kind, key: &str, limit: Limit, delta: i128) {
        if limit.limit == 0 {
            return;
        }
        let (unit, period) = scale(limit);
        let bound = i128::from(limit.limit.min(MAX_LIMIT));
        let delta = i64::try_from(delta.clamp(-bound, bound)).unwrap_or(0);
        let mut invocation = self.adjust.prepare_invoke();
        invocation
            .key(self.key(kind, key, limit))
            .arg(limit.limit.min(MAX_LIMIT))
            .arg(period)
            .arg(unit)
            .arg(delta);
        if self.call::<i64>(&invocation).await.is_none() {
            tracing::debug!(key, delta, "token settlement lost: Redis unavailable");
        }
    }

    /// The failure policy's answer for a whole admission.
    fn fallback(&self, checks: &[&Check]) -> Result<Vec<Decision>, (usize, Decision)> {
        match self.options.policy {
            FailurePolicy::FailOpen => Ok(checks
                .iter()
                .map(|c| Decision::unlimited(c.limit.limit))
                .collect()),
            FailurePolicy::FailClosed => Err((
                0,
                Decision::refused(checks[0].limit.limit, Duration::from_secs(1)),
            )),
        }
    }

    /// Runs one script call, bounded by the timeout; `None` when Redis did not answer (already
    /// counted).
    async fn call<T: redis::FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Option<T> {
        if !self.may_try() {
            self.fail(RedisFailure::Skipped);
            return None;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.manager.clone();
        let attempt = async {
            match invocation.invoke_async::<T>(&mut conn).await {
                // A dead connection was just replaced by the manager: one more try on the new one.
                Err(e) if e.is_io_error() => invocation.invoke_async::<T>(&mut conn).await,
                other => other,
            }
        };
        match tokio::time::timeout(self.options.timeout, attempt).await {
            Ok(Ok(value)) => {
                if self.skip_until.swap(0, Ordering::AcqRel) != 0 {
                    tracing::info!("Redis reachable again: rate limits shared again");
                }
                Some(value)
            }
            Ok(Err(error)) => {
                self.trip(&error.to_string());
                self.fail(RedisFailure::Error);
                None
            }
            Err(_) => {
                self.trip("timeout");
                self.fail(RedisFailure::Timeout);
                None
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn retry_ms(&self) -> u64 {
        u64::try_from(self.options.retry_interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Healthy, or the interval passed and this caller won the single probe.
    fn may_try(&self) -> bool {
        let until = self.skip_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        now >= until
            && self
                .skip_until
                .compare_exchange(
                    until,
                    now.saturating_add(self.retry_ms()),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn trip(&self, reason: &str) {
        let until = self.now_ms().saturating_add(self.retry_ms());
        if self.skip_until.swap(until, Ordering::AcqRel) == 0 {
            tracing::warn!(
                reason,
                policy = ?self.options.policy,
                "Redis unavailable: rate limits decided by the failure policy"
            );
        }
    }

    fn fail(&self, failure: RedisFailure) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.options.on_error {
            hook(failure);
        }
    }
}

fn parse_step(values: &[i64]) -> Option<Step> {
    let [allowed, remaining, reset, retry] = values else {
        return None;
    };
    let unsigned = |v: i64| u128::try_from(v).ok();
    Some(Step {
        allowed: *allowed == 1,
        level: 0,
        remaining: unsigned(*remaining)?,
        reset_after: unsigned(*reset)?,
        retry_after: if *retry < 0 {
            None
        } else {
            Some(unsigned(*retry)?)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_keeps_values_exact() {
        assert_eq!(scale(Limit::per_minute(50)), (1, 60_000));
        let month = Duration::from_secs(30 * 24 * 3600);
        let (unit, period) = scale(Limit::new(10_000_000, month));
        assert!(u128::from(period) * 10_000_000 <= MAX_SCALED);
        assert_eq!(unit, 10);
        let (_, period) = scale(Limit::new(u64::MAX, month));
        assert!(u128::from(period) * u128::from(MAX_LIMIT) <= MAX_SCALED);
        assert_eq!(scale(Limit::new(5, Duration::ZERO)), (1, 1));
    }
}
