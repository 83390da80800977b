//! Backends that misbehave, each test written as the backend's exact answer: compressed bodies
//! it was not asked for, redirects, `Retry-After`, and answers that trickle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;

use airgate_test_support::mock::{MockConfig, MockServer};
use axum::response::IntoResponse;
use common::{chat_body, BackendYaml, GatewayYaml, ScriptedBackend, TestGateway};
use serde_json::Value;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A backend answering every chat completion with `status`, `headers` and `body`, as given.
async fn answering(
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> ScriptedBackend {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let (headers, body) = (headers.clone(), body.clone());
            async move {
                let mut response =
                    (http::StatusCode::from_u16(status).unwrap(), body).into_response();
                for (name, value) in headers {
                    response
                        .headers_mut()
                        .insert(name, http::HeaderValue::from_str(&value).unwrap());
                }
                response
            }
        }),
    );
    ScriptedBackend::serve(app).await
}

async fn gateway(url: &str) -> TestGateway {
    TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("b", url))
            .render(),
    )
    .await
}

async fn chat(gw: &TestGateway, stream: bool) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("mock-model", stream))
        .send()
        .await
        .unwrap()
}

const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"hello from gzip"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}"#;

#[tokio::test]
async fn backends_are_asked_for_identity_encoding() {
    let backend = MockServer::start(MockConfig::named("m")).await.unwrap();
    let gw = gateway(&backend.url()).await;
    assert_eq!(chat(&gw, false).await.status(), 200);
    assert_eq!(
        backend.last_request().unwrap().header("accept-encoding"),
        Some("identity")
    );
}

#[tokio::test]
async fn a_gzip_answer_nobody_asked_for_reaches_the_client_decoded() {
    // The guard is off: nothing else parses the body on the way.
    let backend = answering(
        200,
        vec![
            ("content-type", "application/json".into()),
            ("content-encoding", "gzip".into()),
        ],
        gzip(ANSWER.as_bytes()),
    )
    .await;
    let gw = gateway(&backend.url).await;
    let response = chat(&gw, false).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-encoding").is_none());
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "hello from gzip");
}

#[tokio::test]
async fn a_gzip_stream_reaches_the_client_decoded() {
    let sse = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let backend = answering(
        200,
        vec![
            ("content-type", "text/event-stream".into()),
            ("content-encoding", "gzip".into()),
        ],
        gzip(sse.as_bytes()),
    )
    .await;
    let gw = gateway(&backend.url).await;
    let response = chat(&gw, true).await;
    assert!(response.headers().get("content-encoding").is_none());
    assert_eq!(response.text().await.unwrap(), sse);
}

#[tokio::test]
async fn an_encoding_airgate_cannot_decode_is_refused_not_forwarded() {
    let backend = answering(
        200,
        vec![
            ("content-type", "application/json".into()),
            ("content-encoding", "br".into()),
        ],
        vec![0x1b, 0x03, 0x00, 0xf8, 0xa5],
    )
    .await;
    let gw = gateway(&backend.url).await;
    let response = chat(&gw, false).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Content-Encoding \"br\""), "{message}");
}

#[tokio::test]
async fn a_redirect_is_a_502_without_its_location() {
    let backend = answering(
        302,
        vec![("location", "http://attacker.example/steal".into())],
        Vec::new(),
    )
    .await;
    let gw = gateway(&backend.url).await;
    let response = chat(&gw, false).await;
    assert_eq!(response.status(), 502);
    assert!(response.headers().get("location").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_redirect");
    assert!(!body.to_string().contains("attacker.example"));
}

#[tokio::test]
async fn a_backends_retry_after_is_passed_on_bounded() {
    for (sent, expected) in [("30", "30"), ("999999", "600"), ("0", "1")] {
        let backend = answering(
            429,
            vec![
                ("content-type", "application/json".into()),
                ("retry-after", sent.into()),
            ],
            br#"{"error":{"message":"busy","type":"rate_limit_error","param":null,"code":null}}"#
                .to_vec(),
        )
        .await;
        let gw = gateway(&backend.url).await;
        let response = chat(&gw, false).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], expected, "sent {sent}");
    }
}

#[tokio::test]
async fn a_backend_trickling_a_whole_answer_is_cut_at_the_response_timeout() {
    // One byte every 200 ms: never idle long enough for the idle timeout, never done.
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            let trickle = futures::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(b" ")),
                    n + 1,
                ))
            });
            (
                [("content-type", "application/json")],
                axum::body::Body::from_stream(trickle),
            )
        }),
    );
    let backend = ScriptedBackend::serve(app).await;
    let yaml = GatewayYaml::new()
        .backend(BackendYaml::new("b", &backend.url))
        .routing("responseTimeout", "1s")
        .routing("streamIdleTimeout", "5s")
        .render();
    let gw = TestGateway::start(&yaml).await;
    let started = std::time::Instant::now();
    let response = chat(&gw, false).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no response within 1s"),
        "{body}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}
