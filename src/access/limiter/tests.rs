#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use super::*;

async fn concurrent_allowed(limiters: &[RateLimiter], key: &str, limit: Limit, n: usize) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let limiter = limiters[i % limiters.len()].clone();
        let key = key.to_string();
        tasks.spawn(async move { limiter.check(&key, limit, 1).await.allowed });
    }
    let mut allowed = 0;
    while let Some(result) = tasks.join_next().await {
        allowed += usize::from(result.unwrap());
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_exact_under_concurrency() {
    let limiter = RateLimiter::memory();
    let allowed = concurrent_allowed(&[limiter], "k", Limit::per_minute(50), 200).await;
    assert_eq!(allowed, 50);
}

#[tokio::test]
async fn memory_keys_are_isolated() {
    let limiter = RateLimiter::memory();
    let limit = Limit::per_minute(2);
    for key in ["a", "b"] {
        assert!(limiter.check(key, limit, 1).await.allowed);
        assert!(limiter.check(key, limit, 1).await.allowed);
        assert!(!limiter.check(key, limit, 1).await.allowed);
    }
    assert!(limiter.check("c", limit, 1).await.allowed);
    // Tokens and requests of the same key are separate buckets.
    assert!(limiter.reserve_tokens("a", limit, 2).await.allowed);
    // A different limit on the same key is a different bucket.
    assert!(limiter.check("a", Limit::per_minute(3), 1).await.allowed);
}

#[tokio::test(start_paused = true)]
async fn memory_remaining_counts_down_and_headers() {
    let limiter = RateLimiter::memory();
    let limit = Limit::per_minute(5);
    for expected in (0..5).rev() {
        let d = limiter.check("k", limit, 1).await;
        assert!(d.allowed);
        assert_eq!(d.limit, 5);
        assert_eq!(d.remaining, expected);
        assert_eq!(d.retry_after, None);
    }
    let d = limiter.check("k", limit, 1).await;
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    // One unit every 12 s; the bucket is full again after 60 s.
    assert_eq!(d.retry_after, Some(Duration::from_secs(12)));
    assert_eq!(d.reset_after, Duration::from_secs(60));
    let headers = d.headers();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(get("x-ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(get("x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(get("x-ratelimit-reset").as_deref(), Some("60"));
    assert_eq!(get("retry-after").as_deref(), Some("12"));
    // An allowed decision has no retry-after.
    let ok = limiter.check("other", limit, 1).await;
    assert!(!ok
        .headers()
        .iter()
        .any(|(n, _)| n == http::header::RETRY_AFTER));
    // Sub-second retry rounds up to 1.
    let d = Decision::refused(1, Duration::from_millis(200));
    assert!(d
        .headers()
        .iter()
        .any(|(n, v)| n == http::header::RETRY_AFTER && v == "1"));
}

#[tokio::test(start_paused = true)]
async fn memory_refills_after_the_period() {
    let limiter = RateLimiter::memory();
    let limit = Limit::per_second(3);
    for _ in 0..3 {
        assert!(limiter.check("k", limit, 1).await.allowed);
    }
    let refused = limiter.check("k", limit, 1).await;
    assert!(!refused.allowed);
    let retry = refused.retry_after.unwrap();
    assert!(retry <= Duration::from_millis(334), "{retry:?}");
    // Just before the retry time: still refused; at it: one more.
    tokio::time::advance(retry - Duration::from_millis(1)).await;
    assert!(!limiter.check("k", limit, 1).await.allowed);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(limiter.check("k", limit, 1).await.allowed);
    assert!(!limiter.check("k", limit, 1).await.allowed);
    // A whole period later the full burst is back.
    tokio::time::advance(Duration::from_secs(1)).await;
    let d = limiter.check("k", limit, 0).await;
    assert_eq!(d.remaining, 3);
    assert_eq!(d.reset_after, Duration::ZERO);
    for _ in 0..3 {
        assert!(limiter.check("k", limit, 1).await.allowed);
    }
    assert!(!limiter.check("k", limit, 1).await.allowed);
}

#[tokio::test]
async fn memory_cost_larger_than_limit_and_zero_limit() {
    let limiter = RateLimiter::memory();
    let d = limiter.check("k", Limit::per_minute(10), 11).await;
    assert!(!d.allowed);
    assert_eq!(d.retry_after, None);
    assert_eq!(d.remaining, 10);
    let d = limiter.check("k", Limit::per_minute(0), 1).await;
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    // A weighted cost takes several units at once.
    let d = limiter.check("w", Limit::per_minute(10), 4).await;
    assert!(d.allowed);
    assert_eq!(d.remaining, 6);
}

async fn token_budget_scenario(limiter: &RateLimiter, other: &RateLimiter, key: &str) {
    let budget = Limit::new(1000, Duration::from_secs(3600));
    assert_eq!(limiter.remaining_tokens(key, budget).await, 1000);
    let first = limiter.reserve_tokens(key, budget, 600).await;
    assert!(first.allowed);
    assert_eq!(first.remaining, 400);
    // The request that would cross the budget is refused up front.
    let second = other.reserve_tokens(key, budget, 500).await;
    assert!(!second.allowed);
    assert!(second.retry_after.is_some());
    assert_eq!(other.remaining_tokens(key, budget).await, 400);
    // Settling with less than reserved refunds the difference.
    limiter.settle_tokens(key, budget, 600, 100).await;
    assert_eq!(other.remaining_tokens(key, budget).await, 900);
    let third = other.reserve_tokens(key, budget, 500).await;
    assert!(third.allowed);
    assert_eq!(third.remaining, 400);
    // Settling with more charges the difference.
    other.settle_tokens(key, budget, 500, 800).await;
    assert_eq!(limiter.remaining_tokens(key, budget).await, 100);
    assert!(!limiter.reserve_tokens(key, budget, 101).await.allowed);
    assert!(limiter.reserve_tokens(key, budget, 100).await.allowed);
    // Overrun past the budget: nothing left, for a while.
    limiter.settle_tokens(key, budget, 100, 400).await;
    assert_eq!(limiter.remaining_tokens(key, budget).await, 0);
    assert!(!limiter.reserve_tokens(key, budget, 1).await.allowed);
    // A reservation bigger than the whole budget can never pass.
    let huge = limiter.reserve_tokens("someone-else", budget, 1001).await;
    assert!(!huge.allowed);
    assert_eq!(huge.retry_after, None);
}

#[tokio::test]
async fn memory_token_budget_reserve_and_settle() {
    let limiter = RateLimiter::memory();
    token_budget_scenario(&limiter, &limiter.clone(), "alice").await;
}

#[tokio::test(start_paused = true)]
async fn memory_token_budget_refills() {
    let limiter = RateLimiter::memory();
    let budget = Limit::new(100, Duration::from_secs(100));
    assert!(limiter.reserve_tokens("u", budget, 100).await.allowed);
    assert_eq!(limiter.remaining_tokens("u", budget).await, 0);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(limiter.remaining_tokens("u", budget).await, 30);
    // A refund never goes above a full budget.
    limiter.settle_tokens("u", budget, 100, 0).await;
    assert_eq!(limiter.remaining_tokens("u", budget).await, 100);
}

#[test]
fn limit_keys() {
    let ip: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(LimitKey::Global.render("gw"), "gw|global");
    assert_eq!(LimitKey::User("alice").render("gw"), "gw|user|alice");
    assert_eq!(LimitKey::Ip(ip).render("api"), "api|ip|10.0.0.1");
    assert_eq!(
        LimitKey::Header {
            name: "x-tenant",
            value: "acme"
        }
        .render("api"),
        "api|header|x-tenant|acme"
    );
}

#[test]
fn gcra_is_exact_for_uneven_periods() {
    // 7 per 1 s: the interval (142857.14 µs) is not an integer, the burst is still exactly 7.
    let g = Gcra::new(7, 1_000_000);
    let mut level = 0;
    let mut allowed = 0;
    for _ in 0..20 {
        let step = g.admit(level, 1);
        level = step.level;
        allowed += usize::from(step.allowed);
    }
    assert_eq!(allowed, 7);
    // After exactly 1/7 s worth of refill, one more.
    let level = g.decay(level, 142_858);
    assert!(g.admit(level, 1).allowed);
}

proptest::proptest! {
    /// Budgets and limits are summed with saturating arithmetic: no limit, period, cost or
    /// charge, however large, panics or wraps a full bucket back to an empty one.
    #[test]
    fn gcra_arithmetic_never_overflows(
        limit in proptest::prelude::any::<u64>(),
        period in 0u128..=u128::from(u64::MAX) * 1_000_000,
        ops in proptest::collection::vec(
            (0u8..3, proptest::prelude::any::<u64>(), proptest::prelude::any::<i128>()),
            0..32,
        ),
    ) {
        let g = Gcra::new(limit, period);
        let mut level = 0u128;
        for (op, n, delta) in ops {
            let before = level;
            match op {
                0 => {
                    let step = g.admit(level, n);
                    proptest::prop_assert!(step.level >= level);
                    if !step.allowed {
                        proptest::prop_assert_eq!(step.level, level);
                    }
                    level = step.level;
                }
                1 => {
                    level = g.adjust(level, delta);
                    if delta >= 0 {
                        proptest::prop_assert!(level >= before);
                    }
                }
                _ => {
                    level = g.decay(level, u128::from(n));
                    proptest::prop_assert!(level <= before);
                }
            }
        }
    }
}

/// Redis-backed tests: each starts its own `redis-server` on a free port.
mod redis_backend {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::access::{FailurePolicy, RedisFailure, RedisOptions};

    use airgate_test_support::testing::RedisServer;

    /// Generous timeout: the point of these tests is exactness, not latency, and the machine
    /// may be busy.
    fn patient(policy: FailurePolicy) -> RedisOptions {
        let mut options = RedisOptions::new(policy);
        options.timeout = Duration::from_secs(2);
        options
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_replicas_share_one_limit_exactly() {
        let Some(server) = RedisServer::start().unwrap() else {
            return;
        };
        let mut replicas = Vec::new();
        for _ in 0..3 {
            let options = patient(FailurePolicy::FailOpen);
            replicas.push(
                RateLimiter::redis_with(&server.url(), options)
                    .await
                    .unwrap(),
            );
        }
        let allowed = concurrent_allowed(&replicas, "shared", Limit::per_minute(50), 200).await;
        assert_eq!(allowed, 50);
        assert!(replicas.iter().all(|r| r.redis_errors() == 0));
        // Every replica sees the exhausted bucket.
        for r in &replicas {
            let d = r.check("shared", Limit::per_minute(50), 1).await;
            assert!(!d.allowed);
            assert_eq!(d.remaining, 0);
            let retry = d.retry_after.unwrap();
            assert!(retry > Duration::ZERO && retry <= Duration::from_millis(1200));
        }
    }

    #[tokio::test]
    async fn redis_remaining_counts_down_and_refills() {
        let Some(server) = RedisServer::start().unwrap() else {
            return;
        };
        let a = RateLimiter::redis_with(&server.url(), patient(FailurePolicy::FailClosed))
            .await
            .unwrap();
        let b = RateLimiter::redis_with(&server.url(), patient(FailurePolicy::FailClosed))
            .await
            .unwrap();
        let limit = Limit::per_minute(5);
        for expected in (0..5).rev() {
            let replica = if expected % 2 == 0 { &a } else { &b };
            let d = replica.check("k", limit, 1).await;
            assert!(d.allowed);
            assert_eq!(d.remaining, expected);
        }
        let d = a.check("k", limit, 1).await;
        assert!(!d.allowed);
        let retry = d.retry_after.unwrap();
        assert!(retry > Duration::from_secs(11) && retry <= Duration::from_secs(12));
        assert!(
            d.reset_after > Duration::from_secs(59) && d.reset_after <= Duration::from_secs(60)
        );
        // Isolation between keys.
        assert!(b.check("other", limit, 1).await.allowed);

        // Real time: 2 per second refills one unit every 500 ms.
        let fast = Limit::per_second(2);
        assert!(a.check("fast", fast, 1).await.allowed);
        assert!(b.check("fast", fast, 1).await.allowed);
        let refused = a.check("fast", fast, 1).await;
        assert!(!refused.allowed);
        let wait = refused.retry_after.unwrap();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        assert!(b.check("fast", fast, 1).await.allowed);
        tokio::time::sleep(Duration::from_millis(1050)).await;
        assert_eq!(a.check("fast", fast, 0).await.remaining, 2);
        assert_eq!(a.redis_errors() + b.redis_errors(), 0);
    }

    #[tokio::test]
    async fn redis_token_budget_reserve_and_settle() {
        let Some(server) = RedisServer::start().unwrap() else {
            return;
        };
        let a = RateLimiter::redis_with(&server.url(), patient(FailurePolicy::FailOpen))
            .await
            .unwrap();
        let b = RateLimiter::redis_with(&server.url(), patient(FailurePolicy::FailOpen))
            .await
            .unwrap();
        token_budget_scenario(&a, &b, "alice").await;
        assert_eq!(a.redis_errors() + b.redis_errors(), 0);
    }

    /// Checks against a stopped Redis: quick, decided by the policy, counted.
    async fn assert_down(limiter: &RateLimiter, policy: FailurePolicy) {
        let before = limiter.redis_errors();
        for _ in 0..20 {
            let started = Instant::now();
            let d = limiter.check("k", Limit::per_minute(1), 1).await;
            let took = started.elapsed();
            // 100 ms timeout; margin for a busy machine.
            assert!(took < Duration::from_millis(400), "took {took:?}");
            match policy {
                FailurePolicy::FailOpen => assert!(d.allowed),
                FailurePolicy::FailClosed => {
                    assert!(!d.allowed);
                    assert_eq!(d.retry_after, Some(Duration::from_secs(1)));
                }
            }
        }
        assert_eq!(limiter.redis_errors(), before + 20);
    }

    #[tokio::test]
    async fn fail_open_and_closed_while_down_then_recover() {
        let Some(mut server) = RedisServer::start().unwrap() else {
            return;
        };
        let hooked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hooked);
        let mut open_options = RedisOptions::new(FailurePolicy::FailOpen);
        open_options.on_error = Some(Arc::new(move |failure: RedisFailure| {
            assert!(!failure.label().is_empty());
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        let open = RateLimiter::redis_with(&server.url(), open_options)
            .await
            .unwrap();
        let closed = RateLimiter::redis(&server.url(), FailurePolicy::FailClosed)
            .await
            .unwrap();
        // Healthy: limit of 1 per minute is enforced through Redis.
        assert!(open.check("k", Limit::per_minute(1), 1).await.allowed);
        assert!(!closed.check("k", Limit::per_minute(1), 1).await.allowed);
        assert_eq!(open.redis_errors() + closed.redis_errors(), 0);

        server.stop();
        assert_down(&open, FailurePolicy::FailOpen).await;
        assert_down(&closed, FailurePolicy::FailClosed).await;
        assert!(hooked.load(Ordering::Relaxed) >= 20);

        // Back on the same port (empty, no persistence): both recover by themselves.
        server.restart().unwrap();
        for limiter in [&open, &closed] {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let errors = limiter.redis_errors();
                let d = limiter.check("after", Limit::per_minute(2), 1).await;
                if limiter.redis_errors() == errors {
                    // Decided by Redis: the shared state is live again.
                    break;
                }
                assert!(Instant::now() < deadline, "no recovery after restart");
                let _ = d;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Exactly 2 admitted in total across both instances after recovery.
        assert!(!open.check("after", Limit::per_minute(2), 1).await.allowed);
        assert!(!closed.check("after", Limit::per_minute(2), 1).await.allowed);
    }

    #[tokio::test]
    async fn unresponsive_redis_times_out() {
        // A socket that accepts connections and never answers (a hung Redis): no redis-server
        // needed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let timeouts = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&timeouts);
        let mut options = RedisOptions::new(FailurePolicy::FailClosed);
        options.on_error = Some(Arc::new(move |failure: RedisFailure| {
            if failure == RedisFailure::Timeout {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }));
        let url = format!("redis://127.0.0.1:{port}/");
        let limiter = RateLimiter::redis_with(&url, options).await.unwrap();
        let started = Instant::now();
        for _ in 0..10 {
            let one = Instant::now();
            let d = limiter.check("k", Limit::per_minute(5), 1).await;
            assert!(!d.allowed);
            assert!(
                one.elapsed() < Duration::from_millis(400),
                "{:?}",
                one.elapsed()
            );
        }
        // The first call waits for the 100 ms timeout, the others skip Redis.
        assert!(started.elapsed() < Duration::from_millis(800));
        assert_eq!(limiter.redis_errors(), 10);
        assert!(timeouts.load(Ordering::Relaxed) >= 1);
        accept.abort();
    }

    #[tokio::test]
    async fn starts_while_redis_is_down() {
        let Some(mut server) = RedisServer::start().unwrap() else {
            return;
        };
        server.stop();
        let limiter = RateLimiter::redis(&server.url(), FailurePolicy::FailOpen)
            .await
            .unwrap();
        assert_down(&limiter, FailurePolicy::FailOpen).await;
        assert_eq!(limiter.remaining_tokens("t", Limit::per_minute(7)).await, 7);
        server.restart().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let errors = limiter.redis_errors();
            let d = limiter.check("k2", Limit::per_minute(1), 1).await;
            if limiter.redis_errors() == errors {
                assert!(d.allowed);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no connection after Redis came up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!limiter.check("k2", Limit::per_minute(1), 1).await.allowed);
        // A bad URL is a setup error, not a runtime one.
        assert!(RateLimiter::redis("not a url", FailurePolicy::FailOpen)
            .await
            .is_err());
    }
}

/// A batch where the last check refuses charges none of them; a batch that passes charges all.
async fn all_or_nothing_scenario(limiter: &RateLimiter) {
    let minute = Limit::per_minute(5);
    let tight = Limit::per_minute(1);
    let batch = |cost| {
        vec![
            Check::requests("batch-a", minute, 1),
            Check::tokens("batch-a", Limit::per_minute(100), 40),
            Check::requests("batch-b", tight, cost),
        ]
    };
    let first = limiter.admit_all(&batch(1)).await.unwrap();
    assert_eq!(
        first.iter().map(|d| d.remaining).collect::<Vec<_>>(),
        [4, 60, 0]
    );
    // `batch-b` is exhausted: the whole batch is refused and reports that check.
    let (index, refused) = limiter.admit_all(&batch(1)).await.unwrap_err();
    assert_eq!(index, 2);
    assert!(!refused.allowed && refused.retry_after.is_some());
    // Nothing was charged by the refused batch.
    assert_eq!(limiter.check("batch-a", minute, 0).await.remaining, 4);
    assert_eq!(
        limiter
            .remaining_tokens("batch-a", Limit::per_minute(100))
            .await,
        60
    );
    // A zero limit refuses at its own index; zero cost on a zero limit passes.
    let zero = Limit::per_minute(0);
    let (index, _) = limiter
        .admit_all(&[
            Check::requests("batch-c", minute, 1),
            Check::requests("batch-z", zero, 1),
        ])
        .await
        .unwrap_err();
    assert_eq!(index, 1);
    let passed = limiter
        .admit_all(&[
            Check::requests("batch-z", zero, 0),
            Check::requests("batch-c", minute, 1),
        ])
        .await
        .unwrap();
    assert_eq!(passed[0].remaining, 0);
    assert_eq!(passed[1].remaining, 4);
}

#[tokio::test]
async fn memory_batches_are_all_or_nothing() {
    all_or_nothing_scenario(&RateLimiter::memory()).await;
}

#[tokio::test]
async fn redis_batches_are_all_or_nothing_in_one_round_trip() {
    let Some(server) = airgate_test_support::testing::RedisServer::start().unwrap() else {
        return;
    };
    let mut options = crate::access::RedisOptions::new(crate::access::FailurePolicy::FailClosed);
    options.timeout = Duration::from_secs(2);
    let limiter = RateLimiter::redis_with(&server.url(), options)
        .await
        .unwrap();
    all_or_nothing_scenario(&limiter).await;
    assert_eq!(limiter.redis_errors(), 0);
    // Calls with a non-zero limit: 2 batches, 1 check, 1 remaining, and the final batch; the
    // batch refused by its zero limit never reached Redis.
    assert_eq!(limiter.redis_calls(), 5);
}
