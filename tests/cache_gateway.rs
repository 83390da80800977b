//! The semantic cache through the gateway: hits served without a backend call, as JSON or as a
//! replayed stream; never across scopes; only complete first-priority answers stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use airgate_test_support::mock::{MockConfig, MockServer};
use common::{
    closed_port_url, embedder, sse_data, BackendYaml, GatewayOptions, GatewayYaml, TestGateway,
};
use serde_json::{json, Value};

const CACHE: &str = "  semanticCache:\n    enabled: true\n    ttl: 1h\n    similarityThreshold: 0.80\n    maxCacheSize: 10MB\n    evictionPolicy: lru\n";

async fn cached_gateway(yaml: String) -> TestGateway {
    TestGateway::start_with(
        &(yaml + CACHE),
        GatewayOptions {
            embedder: Some(embedder()),
            ..GatewayOptions::default()
        },
    )
    .await
}

fn ask(question: &str) -> Value {
    json!({"model": "mock-model", "messages": [
        {"role": "system", "content": "You are the IT helpdesk."},
        {"role": "user", "content": question}
    ]})
}

async fn send(gw: &TestGateway, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

/// Sends and waits until the answer was stored (stores run in the background).
async fn prime(gw: &TestGateway, body: &Value) -> Value {
    let response = send(gw, body, &[]).await;
    assert_eq!(response.headers()["x-airgate-cache"], "miss");
    let json: Value = response.json().await.unwrap();
    for _ in 0..100 {
        if gw
            .metrics()
            .await
            .contains("airgate_cache_entries{gateway=\"test/test-gw\"} 1")
        {
            break;
        }
        // The entry count is refreshed at lookups: probe with a bypassing request.
        send(
            gw,
            &ask("unrelated probe question about printers"),
            &[("cache-control", "no-cache, no-store")],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    json
}

#[tokio::test]
async fn a_paraphrase_is_served_from_the_cache_as_json_and_as_a_stream() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = cached_gateway(
        GatewayYaml::new()
            .backend(BackendYaml::new("m", &backend.url()))
            .render(),
    )
    .await;
    let first = prime(&gw, &ask("How do I reset my password?")).await;
    let calls = backend.requests();

    let response = send(&gw, &ask("How can I reset my password?"), &[]).await;
    assert_eq!(response.headers()["x-airgate-cache"], "hit");
    assert_eq!(response.headers()["x-airgate-backend"], "cache");
    let similarity: f32 = response.headers()["x-airgate-cache-similarity"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(similarity >= 0.80, "{similarity}");
    let hit: Value = response.json().await.unwrap();
    assert_eq!(
        hit["choices"][0]["message"]["content"],
        first["choices"][0]["message"]["content"]
    );
    assert_ne!(hit["id"], first["id"], "a hit gets a fresh id");

    let mut streamed = ask("How do I reset my password?");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let response = send(&gw, &streamed, &[]).await;
    assert_eq!(response.headers()["x-airgate-cache"], "hit");
    let data = sse_data(response).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        first["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert!(
        chunks.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(backend.requests(), calls, "a hit called the backend");
    let metrics = gw.metrics().await;
    for histogram in [
        "airgate_cache_embed_seconds_count",
        "airgate_cache_search_seconds_count",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(histogram) && !l.ends_with(" 0")),
            "{histogram} not observed: {metrics}"
        );
    }
    let events = gw.audit_events_of("cache_hit", 1).await;
    assert!(events.iter().any(|e| e["event"] == "cache_hit"));
}

#[tokio::test]
async fn never_a_hit_across_scopes_or_near_misses() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = cached_gateway(
        GatewayYaml::new()
            .backend(BackendYaml::new("m", &backend.url()).models(&["mock-model", "other-model"]))
            .render(),
    )
    .await;
    prime(&gw, &ask("Approve the refund for order 48213")).await;
    let mut other_system = ask("Approve the refund for order 48213");
    other_system["messages"][0]["content"] = json!("You are the finance bot.");
    let mut other_model = ask("Approve the refund for order 48213");
    other_model["model"] = json!("other-model");
    let mut other_temperature = ask("Approve the refund for order 48213");
    other_temperature["temperature"] = json!(0.9);
    for (label, body) in [
        (
            "another order number",
            ask("Approve the refund for order 48214"),
        ),
        (
            "a negation",
            ask("Do not approve the refund for order 48213"),
        ),
        ("another system prompt", other_system),
        ("another model", other_model),
        ("another temperature", other_temperature),
    ] {
        let response = send(&gw, &body, &[]).await;
        assert_eq!(response.headers()["x-airgate-cache"], "miss", "{label}");
    }
    let exact = send(&gw, &ask("Approve the refund for order 48213"), &[]).await;
    assert_eq!(exact.headers()["x-airgate-cache"], "hit");
    let bypass = send(
        &gw,
        &ask("Approve the refund for order 48213"),
        &[("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(bypass.headers()["x-airgate-cache"], "bypass");
    assert_eq!(bypass.headers()["x-airgate-backend"], "m");
    // What verification prevented, by reason (the other misses were never candidates: another
    // scope). The near misses were stored too, so the negated prompt met both earlier entries.
    let metrics = gw.metrics().await;
    for (reason, count) in [("number", 2), ("negation", 1), ("entity", 0)] {
        let series = format!(
            "airgate_cache_rejections_total{{gateway=\"test/test-gw\",reason=\"{reason}\"}} "
        );
        let seen = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap());
        assert_eq!(seen, count, "{reason}:\n{metrics}");
    }
}

#[tokio::test]
async fn fallback_answers_and_no_store_requests_are_not_stored() {
    let fallback = MockServer::start(MockConfig::named("fallback"))
        .await
        .unwrap();
    let gw = cached_gateway(
        GatewayYaml::new()
            .backend(BackendYaml::new("primary", &closed_port_url().await).priority(1))
            .backend(BackendYaml::new("fallback", &fallback.url()).priority(2))
            .render(),
    )
    .await;
    let body = ask("Where is the VPN configuration guide?");
    for _ in 0..3 {
        let response = send(&gw, &body, &[]).await;
        assert_eq!(response.headers()["x-airgate-backend"], "fallback");
        assert_eq!(response.headers()["x-airgate-cache"], "miss");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fallback.requests(),
        3,
        "a fallback answer was served from the cache"
    );
}

#[tokio::test]
async fn no_store_skips_the_store_and_streams_are_stored_once_complete() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = cached_gateway(
        GatewayYaml::new()
            .backend(BackendYaml::new("m", &backend.url()))
            .render(),
    )
    .await;
    let body = ask("Which printer is on the third floor?");
    send(&gw, &body, &[("cache-control", "no-store")])
        .await
        .text()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        send(&gw, &body, &[("cache-control", "no-store")])
            .await
            .headers()["x-airgate-cache"],
        "miss"
    );

    let mut streamed = ask("What is the guest wifi password policy?");
    streamed["stream"] = json!(true);
    let response = send(&gw, &streamed, &[]).await;
    assert_eq!(response.headers()["x-airgate-cache"], "miss");
    sse_data(response).await;
    let mut hit = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // no-store: a miss here must not store the answer itself.
        let probe = send(
            &gw,
            &ask("What is the guest wifi password policy?"),
            &[("cache-control", "no-store")],
        )
        .await;
        if probe.headers()["x-airgate-cache"] == "hit" {
            hit = true;
            break;
        }
    }
    assert!(hit, "a completed stream was not stored");
}

/// The real binary with the cache on, in front of `backend`.
async fn cached_gateway_process(backend: &str) -> common::process::GatewayProcess {
    let yaml = common::process::gateway_yaml(backend, CACHE);
    let (model_dir, wordnet_dir) = (common::model_dir(), airgate::cache::wordnet::default_dir());
    common::process::GatewayProcess::start(
        &yaml,
        &[
            "--model-dir",
            model_dir.to_str().unwrap(),
            "--wordnet-dir",
            wordnet_dir.to_str().unwrap(),
        ],
    )
    .await
}

/// The real binary, just started: the first answer is stored in time for an exact repeat sent
/// right after it, and for a streamed repeat. The embedding model is warmed before `/readyz`
/// says ready, off the request path.
#[tokio::test]
async fn the_first_answer_after_a_start_is_stored_in_time_for_a_repeat() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = cached_gateway_process(&backend.url()).await;
    let client = reqwest::Client::new();
    let body = common::chat_body("mock-model", false);
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        let response = client
            .post(format!("{}/v1/chat/completions", gw.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        verdicts.push(
            response.headers()["x-airgate-cache"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        response.bytes().await.unwrap();
    }
    assert_eq!(
        verdicts,
        ["miss", "hit", "hit"],
        "{}\n{}",
        gw.output(),
        gw.metrics().await
    );
    assert_eq!(backend.requests(), 1);
    let metrics = gw.metrics().await;
    // Ready was said only after the warm-up, which is measured.
    let warm_up: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("airgate_cache_warmup_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .expect("airgate_cache_warmup_seconds");
    assert!(warm_up > 0.0, "{metrics}");
}

/// The size gauges are read when Prometheus scrapes, not only when a request looks the cache
/// up: an answer stored after the last request is counted without another request.
#[tokio::test]
async fn the_entries_gauge_counts_a_store_without_another_request() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = cached_gateway_process(&backend.url()).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&common::chat_body("mock-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-airgate-cache"], "miss");
    response.bytes().await.unwrap();
    let entries = |metrics: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with("airgate_cache_entries{"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = gw.metrics().await;
        if entries(&metrics) == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stored answer is not counted: {:?}\n{metrics}",
            entries(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
