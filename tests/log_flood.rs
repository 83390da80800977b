//! An attacker decides how many refusals there are, not how many log lines they cost: 300
//! refused prompts against the real binary write a handful of WARN lines, while the metrics and
//! the audit log count every one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use airgate_test_support::mock::{MockConfig, MockServer};
use common::process::{gateway_yaml, GatewayProcess};

const GUARD: &str = "  contentGuard:\n    enabled: true\n    scanPrompts: true\n    blockPatterns:\n      - name: secrets\n        regex: \"(?i)confidential\"\n        action: block\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_prompts_cannot_flood_the_log() {
    let backend = MockServer::start(MockConfig::named("a")).await.unwrap();
    let gateway = GatewayProcess::start(&gateway_yaml(&backend.url(), GUARD), &[]).await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({"model": "mock-model", "messages": [{"role": "user", "content": "the confidential memo"}]});
    let started = std::time::Instant::now();
    for _ in 0..300 {
        let response = client
            .post(format!("{}/v1/chat/completions", gateway.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
    }
    let seconds = started.elapsed().as_secs() + 1;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = gateway
        .output()
        .lines()
        .filter(|l| l.contains("content guard refused"))
        .count();
    assert!(lines >= 1, "no refusal was logged at all");
    assert!(
        lines as u64 <= 5 * (seconds + 1),
        "{lines} refusal lines in {seconds}s: the log is not rate limited"
    );
    let metrics = gateway.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("airgate_guard_events_total")
                && l.contains("action=\"block\"")
                && l.ends_with(" 300")),
        "the metric must count every refusal"
    );
    let violations = gateway
        .lines("audit.jsonl")
        .iter()
        .filter(|e| e["event"] == "guard_violation")
        .count();
    assert_eq!(violations, 300, "the audit log must record every refusal");
    assert_eq!(backend.requests(), 0);
}
