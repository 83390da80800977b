//! Graceful shutdown of the real `airgate` binary: SIGTERM drains open streams, cuts what
//! outlives the grace period with an error event (and a 503 for requests still waiting), and
//! every request's access-log line and audit record is on disk when the process has exited,
//! with the audit hash chain intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use airgate_test_support::mock::{MockConfig, MockServer};
use common::process::{gateway_yaml, GatewayProcess as Gateway};
use serde_json::Value;

const STREAMS: usize = 20;

async fn start(backend: &str, grace: &str) -> Gateway {
    let yaml = gateway_yaml(backend, "  routing:\n    streamIdleTimeout: 60s\n");
    Gateway::start(&yaml, &["--shutdown-grace", grace]).await
}

/// Opens `STREAMS` streamed chat completions; each task returns the `data:` payloads received.
fn open_streams(url: &str) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    let client = reqwest::Client::new();
    (0..STREAMS)
        .map(|_| {
            let request = client
                .post(format!("{url}/v1/chat/completions"))
                .json(&serde_json::json!({"model": "mock-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
                .send();
            tokio::spawn(async move {
                let body = request.await.unwrap().text().await.unwrap_or_default();
                body.split("\n\n")
                    .filter_map(|e| e.strip_prefix("data: "))
                    .map(str::to_string)
                    .collect()
            })
        })
        .collect()
}

fn assert_chain_intact(path: &Path) {
    let report = airgate::telemetry::audit::verify_file(path).unwrap();
    assert!(report.records > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_streams_and_every_record_is_written() {
    // 20 streams of about 3 s; SIGTERM after 0.7 s; a 20 s grace is plenty.
    let backend = MockServer::start(
        MockConfig::named("a")
            .tokens(30)
            .inter_token_delay(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let mut gateway = start(&backend.url(), "20s").await;
    let streams = open_streams(&gateway.url);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        backend.in_flight(),
        STREAMS,
        "not every stream was open at SIGTERM"
    );
    gateway.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = reqwest::get(format!("{}/readyz", gateway.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "/readyz must fail while draining");
    for stream in streams {
        let data = stream.await.unwrap();
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    }
    let (code, _) = tokio::task::block_in_place(|| gateway.wait_exit(Duration::from_secs(15)));
    assert_eq!(code, 0);

    let audit = gateway.lines("audit.jsonl");
    let served: Vec<&Value> = audit
        .iter()
        .filter(|e| e["event"] == "request_served" && e["details"]["stream"] == true)
        .collect();
    assert_eq!(served.len(), STREAMS, "audit records lost at shutdown");
    assert!(served
        .iter()
        .all(|e| e["details"]["cut_by_shutdown"].is_null()));
    assert_eq!(audit.last().unwrap()["event"], "gateway_stopped");
    assert_chain_intact(&gateway.audit_path());
    let access = gateway.lines("access.jsonl");
    assert_eq!(access.len(), STREAMS, "access-log lines lost at shutdown");
    assert!(access
        .iter()
        .all(|l| l["status"] == 200 && l["cut_by_shutdown"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_requests_open_past_the_grace_are_cut_and_recorded() {
    // Streams of 60 s and a request waiting 60 s for its answer; the grace is 1 s.
    let backend = MockServer::start(
        MockConfig::named("a")
            .tokens(600)
            .inter_token_delay(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let slow = MockServer::start(MockConfig::named("s").latency(Duration::from_secs(60)))
        .await
        .unwrap();
    let mut gateway = start(&backend.url(), "1s").await;
    let streams = open_streams(&gateway.url);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The waiting request goes through a second gateway process pointed at the slow backend.
    let mut waiting_gateway = start(&slow.url(), "1s").await;
    let waiting = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", waiting_gateway.url))
        .json(&serde_json::json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send();
    let waiting = tokio::spawn(waiting);
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.terminate();
    waiting_gateway.terminate();

    for stream in streams {
        let data = stream.await.unwrap();
        let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
        assert_eq!(last["error"]["code"], "gateway_shutdown", "{data:?}");
        assert!(!data.iter().any(|d| d == "[DONE]"));
    }
    let response = waiting.await.unwrap().unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "gateway_shutdown");

    for g in [&mut gateway, &mut waiting_gateway] {
        let (code, took) = tokio::task::block_in_place(|| g.wait_exit(Duration::from_secs(15)));
        assert_eq!(code, 0);
        assert!(took < Duration::from_secs(10), "exit took {took:?}");
    }
    let audit = gateway.lines("audit.jsonl");
    let cut: Vec<&Value> = audit
        .iter()
        .filter(|e| e["event"] == "request_served" && e["details"]["cut_by_shutdown"] == true)
        .collect();
    assert_eq!(cut.len(), STREAMS, "cut streams without their audit record");
    assert_eq!(audit.last().unwrap()["details"]["cut_by_shutdown"], true);
    assert_chain_intact(&gateway.audit_path());
    let access = gateway.lines("access.jsonl");
    assert_eq!(access.len(), STREAMS);
    assert!(access.iter().all(|l| l["cut_by_shutdown"] == true));

    let audit = waiting_gateway.lines("audit.jsonl");
    assert!(audit
        .iter()
        .any(|e| e["event"] == "request_interrupted" && e["details"]["status"] == 503));
    let access = waiting_gateway.lines("access.jsonl");
    assert_eq!(access.len(), 1);
    assert_eq!(access[0]["status"], 503);
    assert_eq!(access[0]["cut_by_shutdown"], true);
}
