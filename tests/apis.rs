//! `API` resources: the seed's payment gateway served as a reverse proxy with JWT, access rules,
//! rate limits and CORS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{closed_port_url, echo_service, GatewayOptions, TestGateway};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "payment-hmac-secret-of-32-bytes-or-more";
const SEED: &str = include_str!("../config/seed/payment-gateway.yaml");

/// The spec that stands in for the seed's `/specs/payment-v3.yaml` (which exists only in a pod).
const FIXTURE_SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/openapi/payment-v3.yaml"
);

/// The seed's API, pointed at `service_url`, also served at `/payments`, its OpenAPI spec read
/// from the test fixture.
fn seed_api(service_url: &str) -> String {
    let with_spec = seed_api_as_shipped(service_url).replace(
        "    path: /specs/payment-v3.yaml\n",
        &format!("    path: {FIXTURE_SPEC}\n"),
    );
    assert!(
        with_spec.contains(FIXTURE_SPEC),
        "fixture edit did not apply"
    );
    with_spec
}

/// The seed's API as shipped (its spec at `/specs/payment-v3.yaml`, absent here), pointed at
/// `service_url` and also served at `/payments`.
fn seed_api_as_shipped(service_url: &str) -> String {
    let with_url = SEED.replace(
        "    name: payment-backend\n",
        &format!("    name: payment-backend\n    url: {service_url}\n"),
    );
    assert_ne!(with_url, SEED, "fixture edit did not apply");
    with_url.replace("  openApiSpec:", "  pathPrefix: /payments\n  openApiSpec:")
}

fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": "teller-7", "iss": "https://auth.internal.company.local", "aud": "payment-api", "exp": now + 600});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn start(yaml: &str) -> (TestGateway, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(secrets.path().join("payment-jwt-secret")).unwrap();
    std::fs::write(secrets.path().join("payment-jwt-secret/secret"), SECRET).unwrap();
    let gw = TestGateway::start_with(
        yaml,
        GatewayOptions {
            secrets_dir: Some(secrets.path().to_path_buf()),
            ..GatewayOptions::default()
        },
    )
    .await;
    (gw, secrets)
}

fn get(gw: &TestGateway, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().get(gw.url(path))
}

/// `request` with what the seed's API asks of a caller: a token, MFA, business hours.
fn admitted(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .bearer_auth(token())
        .header("X-MFA-Verified", "true")
        .header("X-Request-Time", "09:15")
}

#[tokio::test]
async fn the_seed_api_enforces_jwt_and_both_access_policies_then_proxies() {
    let service = echo_service().await;
    let (gw, _secrets) = start(&seed_api(&service.url)).await;

    let response = get(&gw, "/payments/v3/charges?limit=5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let no_mfa = get(&gw, "/payments/v3/charges")
        .bearer_auth(token())
        .header("X-Request-Time", "09:15")
        .send()
        .await
        .unwrap();
    assert_eq!(no_mfa.status(), 403);
    let body: Value = no_mfa.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("require-mfa"),
        "{body}"
    );

    let after_hours = get(&gw, "/payments/v3/charges")
        .bearer_auth(token())
        .header("X-MFA-Verified", "true")
        .header("X-Request-Time", "19:00")
        .send()
        .await
        .unwrap();
    assert_eq!(after_hours.status(), 403);
    let body: Value = after_hours.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("business-hours-only"),
        "{body}"
    );

    let ok = get(&gw, "/payments/v3/charges?limit=5")
        .bearer_auth(token())
        .header("X-MFA-Verified", "true")
        .header("X-Request-Time", "09:15")
        .header("x-request-id", "pay-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("x-ratelimit-remaining"));
    let echo: Value = ok.json().await.unwrap();
    assert_eq!(echo["path"], "/v3/charges", "prefix not stripped");
    assert_eq!(echo["query"], "limit=5");
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(echo["headers"]["x-request-id"], "pay-1");
    // The canonical prefix works too.
    let canonical = get(&gw, "/apis/finance/payment-gateway/v3/charges")
        .bearer_auth(token())
        .header("X-MFA-Verified", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(canonical.status(), 200);
    let events = gw.audit_events_of("request_served", 2).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "auth_failure",
            "access_denied",
            "access_denied",
            "request_served",
            "request_served"
        ]
    );
    // Refusals and answers of an API carry who asked, like an AI request's.
    assert_eq!(events[1]["user"], "teller-7", "{}", events[1]);
    let served = &events[3];
    assert_eq!(served["request_id"], "pay-1", "{served}");
    assert_eq!(served["user"], "teller-7", "{served}");
    assert_eq!(served["source_ip"], "127.0.0.1", "{served}");
    assert_eq!(served["details"]["status"], 200, "{served}");
    assert_eq!(served["reason"], "GET /payments/v3/charges", "{served}");
}

#[tokio::test]
async fn ip_rate_limit_and_cors_preflight() {
    let service = echo_service().await;
    let yaml = seed_api(&service.url)
        .replace("limit: 5000", "limit: 2")
        .replace("  authentication:\n    jwt:\n      secretName: payment-jwt-secret\n      issuer: https://auth.internal.company.local\n      audience: payment-api\n", "");
    let (gw, _secrets) = start(&yaml).await;
    let call = || {
        get(&gw, "/payments/x")
            .header("X-MFA-Verified", "true")
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);
    assert_eq!(call().await.unwrap().status(), 200);
    let limited = call().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));

    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, gw.url("/payments/x"))
        .header("Origin", "https://app.internal.company.local")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.internal.company.local"
    );
    assert_eq!(
        preflight.headers()["access-control-allow-methods"],
        "GET, POST"
    );
    let evil = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, gw.url("/payments/x"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
}

#[tokio::test]
async fn an_unreachable_service_is_a_502_and_unknown_paths_stay_404() {
    let dead = closed_port_url().await;
    let yaml = seed_api(&dead).replace("  authentication:\n    jwt:\n      secretName: payment-jwt-secret\n      issuer: https://auth.internal.company.local\n      audience: payment-api\n", "");
    let (gw, _secrets) = start(&yaml).await;
    let response = get(&gw, "/payments/x")
        .header("X-MFA-Verified", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    assert_eq!(get(&gw, "/paymentsx").send().await.unwrap().status(), 404);
    assert_eq!(get(&gw, "/elsewhere").send().await.unwrap().status(), 404);
}

/// An `API` request writes an access-log line like an AI request: status, route, client, and
/// the headers with credentials redacted.
#[tokio::test]
async fn an_api_request_writes_an_access_log_line() {
    use airgate::telemetry::access_log::{HeaderMode, HeaderRules};
    let service = echo_service().await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(secrets.path().join("payment-jwt-secret")).unwrap();
    std::fs::write(secrets.path().join("payment-jwt-secret/secret"), SECRET).unwrap();
    let log = secrets.path().join("access.jsonl");
    let rules = HeaderRules {
        default: HeaderMode::Keep,
        ..HeaderRules::default()
    };
    let gw = TestGateway::start_with(
        &seed_api(&service.url),
        GatewayOptions {
            secrets_dir: Some(secrets.path().to_path_buf()),
            access_log: Some((log.clone(), rules)),
            ..GatewayOptions::default()
        },
    )
    .await;
    let response = get(&gw, "/payments/v3/charges")
        .bearer_auth("not-a-valid-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!text.contains("not-a-valid-token"), "{text}");
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["path"], "/payments/v3/charges");
    assert!(
        line["gateway"].as_str().unwrap().contains("payment"),
        "{line}"
    );
    assert_eq!(line["headers"]["authorization"], "REDACTED");
}

/// The seed's spec exists only in a pod (`/specs/payment-v3.yaml`) and its registry URL does not
/// resolve here: the seed still loads, and its API, which enforces the spec by default, refuses
/// admitted requests with 503 (fail closed) rather than let them through unchecked.
#[tokio::test]
async fn the_seed_api_without_its_spec_answers_503() {
    let service = echo_service().await;
    let (gw, _secrets) = start(&seed_api_as_shipped(&service.url)).await;
    let response = admitted(get(&gw, "/payments/v3/charges"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "openapi_spec_unavailable", "{body}");
    // admission still comes first: no token, 401
    let response = get(&gw, "/payments/v3/charges").send().await.unwrap();
    assert_eq!(response.status(), 401);
}

/// With the fixture spec, the seed's API refuses what its spec does not declare, and checks
/// bodies, after its own access rules.
#[tokio::test]
async fn the_seed_api_enforces_its_spec_after_admission() {
    let service = echo_service().await;
    let (gw, _secrets) = start(&seed_api(&service.url)).await;
    let client = reqwest::Client::new();
    let response = admitted(client.get(gw.url("/payments/v3/refunds")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = admitted(client.delete(gw.url("/payments/v3/charges")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST, HEAD");
    let response = admitted(client.post(gw.url("/payments/v3/charges")))
        .json(&json!({"amount": 10, "currency": "eur"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "/currency", "{body}");
    let response = admitted(client.post(gw.url("/payments/v3/charges")))
        .json(&json!({"amount": 10, "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // unauthenticated: refused by admission before the spec is consulted
    let response = client
        .get(gw.url("/payments/v3/refunds"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
