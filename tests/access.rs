//! Authentication, approval, rate limits and token budgets through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airgate::access::{FailurePolicy, RateLimiter, RedisOptions};
use airgate_test_support::mock::{MockConfig, MockServer};
use airgate_test_support::testing::RedisServer;
use common::{chat_body, closed_port_url, BackendYaml, GatewayOptions, GatewayYaml, TestGateway};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!!";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn valid_claims(user: &str) -> Value {
    json!({"sub": user, "iss": "https://auth.test", "aud": "airgate", "exp": now() + 600, "nbf": now() - 10})
}

fn secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("gw-jwt")).unwrap();
    std::fs::write(dir.path().join("gw-jwt/secret"), SECRET).unwrap();
    dir
}

const AUTH: &str = r#"  authentication:
    jwt:
      secretName: gw-jwt
      issuer: https://auth.test
      audience: airgate
      approval:
        claim: airgate/approved-fallback
        value: true
"#;

async fn gateway_with(
    yaml: String,
    secrets: &tempfile::TempDir,
    limiter: Option<RateLimiter>,
) -> TestGateway {
    TestGateway::start_with(
        &yaml,
        GatewayOptions {
            secrets_dir: Some(secrets.path().to_path_buf()),
            limiter,
            ..GatewayOptions::default()
        },
    )
    .await
}

async fn post(gw: &TestGateway, bearer: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn valid_tokens_pass_and_bad_ones_get_401_with_the_reason_only_in_the_audit_log() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let secrets = secrets();
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("m", &backend.url()))
        .render()
        + AUTH;
    let gw = gateway_with(yaml, &secrets, None).await;
    let body = chat_body("mock-model", false);
    assert_eq!(
        post(&gw, Some(&token(valid_claims("alice"))), &body)
            .await
            .status(),
        200
    );

    let mut expired = valid_claims("alice");
    expired["exp"] = json!(now() - 3600);
    let mut wrong_audience = valid_claims("alice");
    wrong_audience["aud"] = json!("someone-else");
    let other_key = encode(
        &Header::default(),
        &valid_claims("alice"),
        &EncodingKey::from_secret(b"another-secret-of-32-bytes-or-more!!"),
    )
    .unwrap();
    let cases = [
        (None, "missing_token"),
        (Some("garbage".to_string()), "malformed"),
        (Some(token(expired)), "expired"),
        (Some(token(wrong_audience)), "wrong_audience"),
        (Some(other_key), "bad_signature"),
    ];
    for (bearer, reason) in &cases {
        let response = post(&gw, bearer.as_deref(), &body).await;
        assert_eq!(response.status(), 401, "{reason}");
        assert!(response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["error"]["type"], "authentication_error");
        assert!(
            !json.to_string().contains(reason),
            "reason leaked to the client: {json}"
        );
    }
    assert_eq!(backend.requests(), 1);
    let events = gw.audit_events_of("auth_failure", cases.len()).await;
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "auth_failure")
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, cases.iter().map(|c| c.1).collect::<Vec<_>>());
    let metrics = gw.metrics().await;
    assert!(metrics.contains(r#"airgate_auth_failures_total{gateway="test/test-gw",reason="expired",route="chat_completions"} 1"#), "{metrics}");
}

#[tokio::test]
async fn only_tokens_with_the_approval_claim_reach_approval_backends() {
    let cloud = MockServer::start(MockConfig::named("cloud")).await.unwrap();
    let secrets = secrets();
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("local", &closed_port_url().await).priority(1))
        .backend(
            BackendYaml::new("cloud", &cloud.url())
                .priority(2)
                .requires_approval(),
        )
        .render()
        + AUTH;
    let gw = gateway_with(yaml, &secrets, None).await;
    let body = chat_body("mock-model", false);
    let plain = post(&gw, Some(&token(valid_claims("bob"))), &body).await;
    assert_eq!(plain.status(), 503);
    assert_eq!(cloud.requests(), 0);
    let mut claims = valid_claims("carol");
    claims["airgate/approved-fallback"] = json!(true);
    let approved = post(&gw, Some(&token(claims)), &body).await;
    assert_eq!(approved.status(), 200);
    assert_eq!(approved.headers()["x-airgate-backend"], "cloud");
    // A header is not a claim: it approves nothing.
    let forged = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(token(valid_claims("bob")))
        .header("airgate-approved-fallback", "true")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 503);
    assert_eq!(cloud.requests(), 1);
}

/// A gateway on `backend` with JWT authentication and `extra` spec lines.
fn authenticated_yaml(backend: &MockServer, extra: &str) -> String {
    GatewayYaml::new()
        .backend(BackendYaml::new("m", &backend.url()))
        .render()
        + AUTH
        + extra
}

const PER_USER_3: &str = "  rateLimit:\n    perUser:\n      limit: 3\n      period: 1m\n";

#[tokio::test]
async fn per_user_limits_are_isolated_and_answer_429_with_headers() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let secrets = secrets();
    let yaml = authenticated_yaml(&backend, PER_USER_3);
    let gw = gateway_with(yaml, &secrets, None).await;
    let body = chat_body("mock-model", false);
    let alice = token(valid_claims("alice"));
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = post(&gw, Some(&alice), &body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit"], "3");
        remaining.push(
            response.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(remaining, vec!["2", "1", "0"]);
    let refused = post(&gw, Some(&alice), &body).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert!(refused.headers().contains_key("x-ratelimit-reset"));
    let json: Value = refused.json().await.unwrap();
    assert_eq!(json["error"]["type"], "rate_limit_error");
    // Another user has their own allowance.
    assert_eq!(status_as(&gw, "bob", &body).await, 200);
    assert_eq!(backend.requests(), 4);
}

#[tokio::test]
async fn a_global_limit_is_exact_under_concurrency() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("m", &backend.url()))
        .render()
        + "  rateLimit:\n    global:\n      limit: 50\n      period: 1m\n";
    let gw = TestGateway::start(&yaml).await;
    let statuses = concurrent_statuses(&gw, 200).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 50);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 150);
    assert_eq!(backend.requests(), 50);
}

async fn concurrent_statuses(gw: &TestGateway, n: usize) -> Vec<u16> {
    let client = reqwest::Client::new();
    let body = chat_body("mock-model", false);
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let request = client
                .post(gw.url("/v1/chat/completions"))
                .json(&body)
                .send();
            tokio::spawn(async move { request.await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn token_budget_refuses_up_front_and_settles_with_real_usage() {
    let backend = MockServer::start(MockConfig::named("m").tokens(10))
        .await
        .unwrap();
    let secrets = secrets();
    let yaml = GatewayYaml::new().backend(BackendYaml::new("m", &backend.url())).render()
        + AUTH
        + "  rateLimit:\n    perUser:\n      limit: 1000\n      period: 1h\n      tokens: 400\n      defaultMaxTokens: 50\n";
    let gw = gateway_with(yaml, &secrets, None).await;
    let alice = token(valid_claims("alice"));
    let mut too_big = chat_body("mock-model", false);
    too_big["max_tokens"] = json!(500);
    let refused = post(&gw, Some(&alice), &too_big).await;
    assert_eq!(refused.status(), 429);
    let json: Value = refused.json().await.unwrap();
    assert_eq!(json["error"]["code"], "token_budget_exceeded");
    assert_eq!(
        backend.requests(),
        0,
        "the over-budget request reached a backend"
    );

    // No max_tokens: the default is reserved and sent upstream, so the backend stops there.
    let response = post(&gw, Some(&alice), &chat_body("mock-model", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(backend.last_request().unwrap().body["max_tokens"], 50);

    // Streams: usage is requested upstream, taken, and its chunk removed for this client.
    let response = post(&gw, Some(&alice), &chat_body("mock-model", true)).await;
    let data = common::sse_data(response).await;
    assert!(
        !data.iter().any(|d| d.contains("\"usage\":{")),
        "usage chunk leaked: {data:?}"
    );
    assert_eq!(
        backend.last_request().unwrap().body["stream_options"]["include_usage"],
        true
    );

    // Settled with real usage (about 20 tokens each), the budget still has room for several
    // small requests: with no settlement, two reservations of ~60 would have used 120+.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut small = chat_body("mock-model", false);
    small["max_tokens"] = json!(10);
    let mut ok = 0;
    for _ in 0..8 {
        if post(&gw, Some(&alice), &small).await.status() == 200 {
            ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ok >= 6,
        "only {ok} small requests fit: reservations were not settled"
    );
}

/// Two `Authorization` headers, a valid token first and another caller's second (or the
/// reverse): refused, never read as the first one.
#[tokio::test]
async fn duplicate_authorization_headers_are_refused() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let secrets = secrets();
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("m", &backend.url()))
        .render()
        + AUTH;
    let gw = gateway_with(yaml, &secrets, None).await;
    let alice = format!("Bearer {}", token(valid_claims("alice")));
    for pair in [
        [alice.as_str(), "Bearer forged"],
        ["Bearer forged", alice.as_str()],
        [alice.as_str(), alice.as_str()],
    ] {
        let response = reqwest::Client::new()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", pair[0])
            .header("authorization", pair[1])
            .json(&chat_body("mock-model", false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let json: Value = response.json().await.unwrap();
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than one Authorization header"));
    }
    assert_eq!(backend.requests(), 0);
}

/// A refused prompt and a redacted answer can be tied to the caller from the audit log alone.
#[tokio::test]
async fn guard_events_name_the_user_and_the_client() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let secrets = secrets();
    let guard = "  contentGuard:\n    enabled: true\n    scanPrompts: true\n    scanResponses: true\n    blockPatterns:\n      - name: secrets\n        regex: \"(?i)confidential\"\n        action: block\n";
    let gw = gateway_with(authenticated_yaml(&backend, guard), &secrets, None).await;
    let body = json!({"model": "mock-model", "messages": [{"role": "user", "content": "the confidential memo"}]});
    let response = post(&gw, Some(&token(valid_claims("mallory"))), &body).await;
    assert_eq!(response.status(), 403);
    let events = gw.audit_events_of("guard_violation", 1).await;
    let violation = events
        .iter()
        .find(|e| e["event"] == "guard_violation")
        .unwrap();
    assert_eq!(violation["user"], "mallory");
    assert_eq!(violation["source_ip"], "127.0.0.1");
}

/// The attacker's numbers against a budget of 1,000,000 tokens: one that wrapped the
/// reservation sum (u64::MAX), one that was read as absent (a float), and `n` multiplying an
/// in-range `max_tokens` past the budget.
#[tokio::test]
async fn token_budget_cannot_be_bypassed_with_one_number() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let secrets = secrets();
    let yaml = GatewayYaml::new().backend(BackendYaml::new("m", &backend.url())).render()
        + AUTH
        + "  rateLimit:\n    perUser:\n      limit: 1000\n      period: 1h\n      tokens: 1000000\n";
    let gw = gateway_with(yaml, &secrets, None).await;
    let alice = token(valid_claims("alice"));
    let send = |body: &'static str| {
        reqwest::Client::new()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: [(&str, u16, &str); 5] = [
        (
            r#"{"model":"mock-model","max_tokens":18446744073709551615,"messages":[{"role":"user","content":"hi"}]}"#,
            400,
            "max_tokens",
        ),
        (
            r#"{"model":"mock-model","max_completion_tokens":100000000.5,"messages":[{"role":"user","content":"hi"}]}"#,
            400,
            "max_completion_tokens",
        ),
        (
            r#"{"model":"mock-model","max_completion_tokens":1e15,"messages":[{"role":"user","content":"hi"}]}"#,
            400,
            "max_completion_tokens",
        ),
        (
            r#"{"model":"mock-model","max_tokens":2000000,"messages":[{"role":"user","content":"hi"}]}"#,
            429,
            "",
        ),
        (
            r#"{"model":"mock-model","max_tokens":10000,"n":128,"messages":[{"role":"user","content":"hi"}]}"#,
            429,
            "",
        ),
    ];
    for (body, status, param) in cases {
        let response = send(body).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        let json: Value = response.json().await.unwrap();
        if status == 400 {
            assert_eq!(json["error"]["param"], param, "{body}");
            assert_eq!(json["error"]["type"], "invalid_request_error");
        } else {
            assert_eq!(json["error"]["code"], "token_budget_exceeded", "{body}");
        }
    }
    assert_eq!(backend.requests(), 0, "a bypass reached the backend");
    // In range, the same request is served.
    let fine = send(r#"{"model":"mock-model","max_tokens":1000,"n":2,"messages":[{"role":"user","content":"hi"}]}"#)
        .await
        .unwrap();
    assert_eq!(fine.status(), 200);
}

fn patient(policy: FailurePolicy) -> RedisOptions {
    let mut options = RedisOptions::new(policy);
    options.timeout = Duration::from_secs(2);
    options
}

#[tokio::test]
async fn two_gateways_share_one_limit_through_redis_and_follow_the_fail_policy() {
    let Some(mut redis) = RedisServer::start().unwrap() else {
        return;
    };
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("m", &backend.url()))
        .render()
        + "  rateLimit:\n    global:\n      limit: 30\n      period: 1h\n";
    let limiter = |policy| {
        let url = redis.url();
        async move {
            RateLimiter::redis_with(&url, patient(policy))
                .await
                .unwrap()
        }
    };
    let options = |l: RateLimiter| GatewayOptions {
        limiter: Some(l),
        ..GatewayOptions::default()
    };
    let open_limiter = limiter(FailurePolicy::FailOpen).await;
    let a = TestGateway::start_with(&yaml, options(open_limiter.clone())).await;
    let b = TestGateway::start_with(&yaml, options(limiter(FailurePolicy::FailClosed).await)).await;
    let (sa, sb) = tokio::join!(concurrent_statuses(&a, 40), concurrent_statuses(&b, 40));
    let allowed = sa.iter().chain(&sb).filter(|s| **s == 200).count();
    assert_eq!(
        allowed, 30,
        "two replicas together must allow exactly the limit"
    );

    redis.stop();
    let body = chat_body("mock-model", false);
    let client = reqwest::Client::new();
    let open = client
        .post(a.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        open.status(),
        200,
        "fail-open lets requests through while Redis is down"
    );
    let closed = client
        .post(b.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        closed.status(),
        429,
        "fail-closed refuses while Redis is down"
    );
    assert!(
        open_limiter.redis_errors() > 0,
        "the Redis failure was not counted"
    );

    redis.restart().unwrap();
    // Recovered: the fresh Redis has an empty count, so requests pass again on both.
    let mut recovered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = client
            .post(b.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            recovered = true;
            break;
        }
    }
    assert!(
        recovered,
        "fail-closed gateway did not recover after Redis came back"
    );
}

#[tokio::test]
async fn global_and_per_user_limits_cost_one_redis_round_trip_and_refusals_charge_nothing() {
    let Some(redis) = RedisServer::start().unwrap() else {
        return;
    };
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let secrets = secrets();
    let yaml = authenticated_yaml(
        &backend,
        "  rateLimit:\n    global:\n      limit: 5\n      period: 1h\n    perUser:\n      limit: 2\n      period: 1h\n",
    );
    let limiter = RateLimiter::redis_with(&redis.url(), patient(FailurePolicy::FailClosed))
        .await
        .unwrap();
    let gw = gateway_with(yaml, &secrets, Some(limiter.clone())).await;
    let body = chat_body("mock-model", false);
    let alice = token(valid_claims("alice"));
    let statuses: Vec<u16> = sequential_statuses(&gw, &alice, &body, 4).await;
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(
        limiter.redis_calls(),
        4,
        "one round trip per request, global and per-user together"
    );
    // Alice's refusals did not consume the global limit: 3 of 5 remain for others.
    for user in ["bob", "carol"] {
        assert_eq!(status_as(&gw, user, &body).await, 200);
    }
    let third = post(&gw, Some(&token(valid_claims("dave"))), &body).await;
    assert_eq!(third.status(), 200);
    assert_eq!(third.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(status_as(&gw, "erin", &body).await, 429);
    assert_eq!(limiter.redis_errors(), 0);
    assert_eq!(backend.requests(), 5);
}

/// The status of one request with a valid token for `user`.
async fn status_as(gw: &TestGateway, user: &str, body: &Value) -> u16 {
    post(gw, Some(&token(valid_claims(user))), body)
        .await
        .status()
        .as_u16()
}

async fn sequential_statuses(gw: &TestGateway, bearer: &str, body: &Value, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(post(gw, Some(bearer), body).await.status().as_u16());
    }
    statuses
}
