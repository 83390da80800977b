//! Metrics after a known sequence of requests: exact token counts from backend usage, histogram
//! counts, usage requested from streams and removed again for clients that did not ask.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airgate_test_support::mock::{MockConfig, MockServer};
use common::{chat_body, sse_data, BackendYaml, GatewayYaml, TestGateway};
use serde_json::{json, Value};

fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The metrics text once `ready` holds (stream accounting ends after the client's last byte),
/// or after a second.
async fn metrics_once(gw: &TestGateway, ready: impl Fn(&str) -> bool) -> String {
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = gw.metrics().await;
        if ready(&metrics) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    metrics
}

/// `airgate_tokens_total` of the test gateway's `mock-model`, by type.
fn tokens(metrics: &str, estimated: bool, kind: &str) -> f64 {
    sample(
        metrics,
        &format!(
            r#"airgate_tokens_total{{estimated="{estimated}",gateway="test/test-gw",model="mock-model",type="{kind}"}}"#
        ),
    )
}

#[tokio::test]
async fn token_and_latency_metrics_follow_a_known_sequence() {
    let backend = MockServer::start(MockConfig::named("m").tokens(10))
        .await
        .unwrap();
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("m", &backend.url()))
            .render(),
    )
    .await;
    let client = reqwest::Client::new();
    let mut prompt_tokens = 0;
    for _ in 0..2 {
        let answer: Value = client
            .post(gw.url("/v1/chat/completions"))
            .json(&chat_body("mock-model", false))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["usage"]["completion_tokens"], 10);
        prompt_tokens += answer["usage"]["prompt_tokens"].as_u64().unwrap();
    }
    // A stream without include_usage: the gateway asks for usage upstream, counts it, and the
    // client still gets no usage chunk.
    let response = client
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("mock-model", true))
        .send()
        .await
        .unwrap();
    let data = sse_data(response).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(
        !data.iter().any(|d| d.contains("\"usage\":{")),
        "usage chunk reached a client that did not ask: {data:?}"
    );
    assert_eq!(
        backend.last_request().unwrap().body["stream_options"]["include_usage"],
        true
    );
    prompt_tokens += prompt_tokens / 2;

    let metrics = metrics_once(&gw, |m| {
        sample(m, "gen_ai_server_time_to_first_token_seconds_count") >= 1.0
    })
    .await;
    assert_eq!(tokens(&metrics, false, "completion"), 30.0, "{metrics}");
    assert_eq!(
        tokens(&metrics, false, "prompt"),
        prompt_tokens as f64,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "airgate_time_to_first_token_seconds_count"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "airgate_time_per_output_token_seconds_count"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "gen_ai_client_token_usage_count"),
        6.0,
        "input and output per request"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat""#
        ),
        3.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"airgate_requests_total{backend="m",gateway="test/test-gw",model="mock-model",route="chat_completions",status_class="2xx"}"#
        ),
        3.0
    );
}

#[tokio::test]
async fn include_token_count_false_switches_token_metrics_off() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("m", &backend.url()))
        .render()
        + "  metrics:\n    includeTokenCount: false\n    includeModelName: false\n";
    let gw = TestGateway::start(&yaml).await;
    let client = reqwest::Client::new();
    client
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("mock-model", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        backend
            .last_request()
            .unwrap()
            .body
            .get("stream_options")
            .is_none(),
        "usage requested though nobody needs it"
    );
    let metrics = gw.metrics().await;
    assert_eq!(sample(&metrics, "airgate_tokens_total"), 0.0);
    assert!(
        metrics.contains(r#"model="",route="chat_completions""#),
        "{metrics}"
    );
}

/// The lines of `path` once there are at least `n` (or after about a second).
async fn lines_once(path: &std::path::Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    lines
}

#[tokio::test]
async fn access_log_and_request_served_audit_carry_the_outcome_without_secrets() {
    use airgate::telemetry::access_log::{HeaderMode, HeaderRules};
    let backend = MockServer::start(MockConfig::named("m").tokens(10))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let rules = HeaderRules {
        default: HeaderMode::Keep,
        ..HeaderRules::default()
    };
    let yaml = GatewayYaml::new().backend(BackendYaml::new("m", &backend.url())).render()
        + "  contentGuard:\n    blockPatterns:\n      - regex: \"(?i)confidential\"\n        action: block\n";
    let gw = TestGateway::start_with(
        &yaml,
        common::GatewayOptions {
            access_log: Some((log.clone(), rules)),
            ..common::GatewayOptions::default()
        },
    )
    .await;
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-very-secret")
        .header("cookie", "session=abcdef")
        .json(&chat_body("mock-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let lines = lines_once(&log, 1).await;
    assert_eq!(lines.len(), 1);
    assert!(
        !lines[0].contains("sk-very-secret") && !lines[0].contains("abcdef"),
        "{}",
        lines[0]
    );
    assert!(
        !lines[0].contains("Say hello"),
        "prompt text in the access log"
    );
    let line: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["status"], 200);
    assert!(line.get("rewrites").is_none(), "{line}");
    assert_eq!(line["backend"], "m");
    assert_eq!(line["completion_tokens"], 10);
    assert_eq!(line["prompt_scanned"], true);
    assert_eq!(line["headers"]["authorization"], "REDACTED");
    // A streamed answer's line is written when the stream ends, with its tokens.
    let streamed = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("mock-model", true))
        .send()
        .await
        .unwrap();
    assert!(streamed.text().await.unwrap().contains("[DONE]"));
    let lines = lines_once(&log, 2).await;
    let line: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(line["stream"], true);
    assert_eq!(line["completion_tokens"], 10, "{line}");
    // the gateway asked the stream for its usage, and says so
    assert_eq!(
        line["rewrites"],
        json!(["stream_usage_requested"]),
        "{line}"
    );
    let events = gw.audit_events_of("request_served", 2).await;
    let served: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "request_served")
        .collect();
    assert_eq!(served.len(), 2, "{events:?}");
    assert_eq!(served[0]["details"]["answer_scanned"], true);
    assert_eq!(served[0]["details"]["completion_tokens"], 10);
    // The streamed answer's event is written when the stream ends, with its tokens.
    assert_eq!(served[1]["details"]["stream"], true);
    assert_eq!(
        served[1]["details"]["rewrites"],
        json!(["stream_usage_requested"])
    );
    assert_eq!(
        served[1]["details"]["completion_tokens"], 10,
        "{}",
        served[1]
    );
    assert!(!events.iter().any(|e| e.to_string().contains("Say hello")));
    // A path nothing serves is logged too, with its credentials redacted.
    let missing = reqwest::Client::new()
        .get(gw.url("/wp-admin/setup.php"))
        .bearer_auth("sk-very-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    unrouted_line(&log, 3, 404, "/wp-admin/setup.php", "sk-very-secret").await;
    // So is a request refused before any route: two Authorization headers (which one counts
    // depends on who reads them) get a 400 and a line, both credentials redacted.
    let ambiguous = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-first-secret")
        .header("authorization", "Bearer sk-second-secret")
        .json(&chat_body("m", false))
        .send()
        .await
        .unwrap();
    assert_eq!(ambiguous.status(), 400);
    unrouted_line(&log, 4, 400, "/v1/chat/completions", "-secret").await;
}

/// The `nth` access-log line is a request no route answered: its status and path, backend
/// `none`, and not the credential it carried.
async fn unrouted_line(log: &std::path::Path, nth: usize, status: u16, path: &str, secret: &str) {
    let lines = lines_once(log, nth).await;
    let text = &lines[nth - 1];
    assert!(!text.contains(secret), "{text}");
    let line: Value = serde_json::from_str(text).unwrap();
    assert_eq!(line["status"], status, "{line}");
    assert_eq!(line["path"], path, "{line}");
    assert_eq!(line["backend"], "none", "{line}");
}

#[tokio::test]
async fn without_reported_usage_tokens_are_counted_with_the_backends_tokenizer() {
    let silent = common::ScriptedBackend::raw_stream(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello world\"},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
    )
    .await;
    let tokenizer = common::model_dir().join("tokenizer.json");
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("silent", &silent.url).tokenizer(tokenizer.to_str().unwrap()))
        .render();
    let gw = TestGateway::start(&yaml).await;
    let body = serde_json::json!({"model": "mock-model", "stream": true, "messages": [{"role": "user", "content": "Say hello"}]});
    let text = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    let metrics = metrics_once(&gw, |m| m.contains("airgate_tokens_total")).await;
    // MiniLM's tokenizer: "Say hello" is [say, hello], "Hello world" is [hello, world].
    assert_eq!(tokens(&metrics, true, "prompt"), 2.0, "{metrics}");
    assert_eq!(tokens(&metrics, true, "completion"), 2.0, "{metrics}");
}
