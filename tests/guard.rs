//! The content guard through the gateway: prompts refused before any backend call, answers and
//! streams scanned so that no part of a forbidden match reaches the client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use airgate_test_support::mock::{MockConfig, MockServer};
use common::{stream_text, BackendYaml, GatewayYaml, ScriptedBackend, TestGateway};
use serde_json::{json, Value};

/// The seed's guard, plus a detector and a redact rule.
const GUARD: &str = r#"  contentGuard:
    enabled: true
    scanPrompts: true
    scanResponses: true
    blockPatterns:
      - name: secrets
        regex: "(?i)(confidential|internal-only|secret)"
        action: block
        auditLevel: high
      - name: cards
        detector: credit_card
        action: block
        auditLevel: critical
      - name: emails
        detector: email
        action: redact
      - name: watch
        regex: "(?i)project falcon"
        action: audit
        auditLevel: low
    allowPatterns:
      - regex: "(?i)secret santa"
        action: allow
"#;

async fn guarded(backend_url: &str) -> TestGateway {
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("b", backend_url))
        .render()
        + GUARD;
    TestGateway::start(&yaml).await
}

async fn post(gw: &TestGateway, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn chat(content: Value, stream: bool) -> Value {
    json!({"model": "mock-model", "stream": stream, "messages": [{"role": "user", "content": content}]})
}

#[tokio::test]
async fn forbidden_prompt_is_403_names_the_rule_and_never_reaches_the_backend() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = guarded(&backend.url()).await;
    let response = post(
        &gw,
        "/v1/chat/completions",
        chat(json!("Summarise this CONFIDENTIAL memo"), false),
    )
    .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "content_policy_violation");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Content policy violation"), "{message}");
    assert!(message.contains("secrets"), "{message}");
    assert!(
        !message.to_lowercase().contains("confidential"),
        "matched text leaked: {message}"
    );
    assert_eq!(backend.requests(), 0);
    let events = gw.audit_events_of("guard_violation", 1).await;
    let violation = events
        .iter()
        .find(|e| e["event"] == "guard_violation")
        .unwrap();
    assert_eq!(violation["details"]["stage"], "prompt");
    assert_eq!(violation["details"]["rule"], "secrets");
    assert_eq!(violation["details"]["audit_level"], "high");
    assert!(
        !violation.to_string().to_lowercase().contains("memo"),
        "prompt text in the audit log"
    );
    let metrics = gw.metrics().await;
    assert!(metrics.contains(r#"airgate_guard_events_total{action="block",gateway="test/test-gw",rule="secrets",stage="prompt"} 1"#), "{metrics}");
}

#[tokio::test]
async fn every_text_of_the_request_is_scanned() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = guarded(&backend.url()).await;
    let parts = chat(
        json!([{"type": "text", "text": "hello"}, {"type": "text", "text": "the secret plan"}]),
        false,
    );
    assert_eq!(post(&gw, "/v1/chat/completions", parts).await.status(), 403);
    let tool_args = json!({"model": "mock-model", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "pay", "arguments": "{\"card\": \"4111 1111 1111 1111\"}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"}
    ]});
    assert_eq!(
        post(&gw, "/v1/chat/completions", tool_args).await.status(),
        403
    );
    let completion = json!({"model": "mock-model", "prompt": ["fine", "internal-only"]});
    assert_eq!(post(&gw, "/v1/completions", completion).await.status(), 403);
    let embedding = json!({"model": "mock-model", "input": "a secret"});
    assert_eq!(post(&gw, "/v1/embeddings", embedding).await.status(), 403);
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn allowed_context_redaction_and_audit_let_the_prompt_through() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = guarded(&backend.url()).await;
    let text = "Plan the Secret Santa for Project Falcon, mail bob@example.com";
    let response = post(&gw, "/v1/chat/completions", chat(json!(text), false)).await;
    assert_eq!(response.status(), 200);
    let seen = backend.last_request().unwrap();
    assert_eq!(
        seen.body["messages"][0]["content"],
        "Plan the Secret Santa for Project Falcon, mail [REDACTED]"
    );
    let events = gw.audit_events_of("guard_finding", 2).await;
    let rules: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "guard_finding")
        .map(|e| e["details"]["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"watch") && rules.contains(&"emails"),
        "{events:?}"
    );
    // the redaction is a named rewrite on the request's record
    let served = gw.audit_events_of("request_served", 1).await;
    let served = served
        .iter()
        .find(|e| e["event"] == "request_served")
        .unwrap();
    assert_eq!(
        served["details"]["rewrites"],
        json!(["prompt_redacted"]),
        "{served}"
    );
}

#[tokio::test]
async fn non_streamed_answer_with_a_forbidden_word_is_cut_before_sending() {
    let backend =
        ScriptedBackend::start(vec![json!({"content": "Here is the confidential number"})]).await;
    let gw = guarded(&backend.url).await;
    let response = post(&gw, "/v1/chat/completions", chat(json!("hi"), false)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    assert!(!body.to_string().to_lowercase().contains("confidential"));
    let events = gw.audit_events_of("guard_violation", 1).await;
    assert!(events
        .iter()
        .any(|e| e["event"] == "guard_violation" && e["details"]["stage"] == "response"));
}

/// Splits `text` into pieces at the given byte offsets (which are char boundaries).
fn split_at(text: &str, cuts: &[usize]) -> Vec<Value> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&text.len())) {
        pieces.push(json!({"content": &text[start..cut]}));
        start = cut;
    }
    pieces
}

async fn assert_stream_is_cut(deltas: Vec<Value>, original: &str, forbidden: &str) {
    let backend = ScriptedBackend::start(deltas).await;
    let gw = guarded(&backend.url).await;
    let response = post(&gw, "/v1/chat/completions", chat(json!("hi"), true)).await;
    assert_eq!(response.status(), 200);
    let (text, finish, done) = stream_text(response).await;
    assert_eq!(
        finish.as_deref(),
        Some("content_filter"),
        "released: {text:?}"
    );
    assert!(done, "stream not ended with [DONE]");
    assert!(
        original.starts_with(&text),
        "released text is not a prefix: {text:?}"
    );
    let start = original.find(forbidden).unwrap();
    assert!(
        text.len() <= start,
        "part of the match was released: {text:?}"
    );
}

#[tokio::test]
async fn forbidden_word_split_at_every_byte_position_is_caught() {
    let original = "The plan is confidential, really";
    for cut in 1..original.len() {
        assert_stream_is_cut(split_at(original, &[cut]), original, "confidential").await;
    }
    // Also one byte per chunk.
    let every: Vec<usize> = (1..original.len()).collect();
    assert_stream_is_cut(split_at(original, &every), original, "confidential").await;
}

#[tokio::test]
async fn card_number_split_over_five_chunks_is_caught() {
    let original = "Charge card 4111 1111 1111 1111 today";
    assert_stream_is_cut(split_at(original, &[14, 18, 23, 27, 31]), original, "4111").await;
}

#[tokio::test]
async fn multibyte_text_split_inside_the_stream_is_released_intact() {
    // No match: everything arrives, in order, with the multi-byte characters intact.
    let original = "Grüße aus Zürich — 東京の天気は晴れ";
    let cuts: Vec<usize> = (1..original.len())
        .filter(|i| original.is_char_boundary(*i))
        .collect();
    let backend = ScriptedBackend::start(split_at(original, &cuts)).await;
    let gw = guarded(&backend.url).await;
    let (text, finish, done) =
        stream_text(post(&gw, "/v1/chat/completions", chat(json!("hi"), true)).await).await;
    assert_eq!(text, original);
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(done);
}

#[tokio::test]
async fn streamed_tool_call_arguments_are_scanned() {
    let deltas = ["{\"note\": \"top se", "cret\"}"]
        .iter()
        .map(|piece| json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        .collect();
    let backend = ScriptedBackend::start(deltas).await;
    let gw = guarded(&backend.url).await;
    let (text, finish, _) =
        stream_text(post(&gw, "/v1/chat/completions", chat(json!("hi"), true)).await).await;
    assert_eq!(finish.as_deref(), Some("content_filter"));
    assert!(!text.contains("secret"), "{text}");
}

#[tokio::test]
async fn clean_streams_pass_unchanged_with_the_guard_on() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = guarded(&backend.url()).await;
    let mut body = chat(json!("hello"), true);
    body["stream_options"] = json!({"include_usage": true});
    let response = post(&gw, "/v1/chat/completions", body).await;
    let data = common::sse_data(response).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(backend.completed_streams(), 1);
}
