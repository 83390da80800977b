//! Client errors and hostile HTTP: every answer in OpenAI's error shape with the right status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use airgate::server::ServerLimits;
use airgate_test_support::mock::{MockConfig, MockServer};
use common::{chat_body, BackendYaml, GatewayYaml, TestGateway};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(extra_routing: &[(&str, &str)]) -> (TestGateway, MockServer) {
    let backend = MockServer::start(MockConfig::named("a")).await.unwrap();
    let mut yaml = GatewayYaml::new().backend(BackendYaml::new("a", &backend.url()));
    for (k, v) in extra_routing {
        yaml = yaml.routing(k, v);
    }
    (TestGateway::start(&yaml.render()).await, backend)
}

fn assert_openai_error(json: &Value) {
    let error = json["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not an error body: {json}"));
    for key in ["message", "type", "param", "code"] {
        assert!(error.contains_key(key), "missing {key} in {json}");
    }
}

async fn post_raw(gw: &TestGateway, path: &str, body: &'static str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn bad_requests_get_400_404_405_in_openai_shape() {
    let (gw, backend) = gateway(&[]).await;
    let (status, json) = post_raw(&gw, "/v1/chat/completions", "{not json").await;
    assert_eq!(status, 400);
    assert_openai_error(&json);
    assert_eq!(json["error"]["type"], "invalid_request_error");
    let (status, json) = post_raw(&gw, "/v1/chat/completions", r#"{"model":"mock-model"}"#).await;
    assert_eq!(
        (status, json["error"]["param"].as_str()),
        (400, Some("messages"))
    );
    let (status, json) = post_raw(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(json["error"]["code"], "model_not_found");
    let (status, json) = post_raw(&gw, "/v1/nothing-here", "{}").await;
    assert_eq!(status, 404);
    assert_openai_error(&json);
    let response = reqwest::get(gw.url("/v1/chat/completions")).await.unwrap();
    assert_eq!(response.status(), 405);
    assert_openai_error(&response.json().await.unwrap());
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let (gw, backend) = gateway(&[("maxBodySize", "1KiB")]).await;
    let mut body = chat_body("mock-model", false);
    body["messages"][0]["content"] = "x".repeat(2000).into();
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_openai_error(&response.json().await.unwrap());
    // Same without a Content-Length (chunked upload).
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(
        serde_json::to_vec(&body).unwrap(),
    ))]);
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(backend.requests(), 0);
}

/// Sends raw bytes and returns what the server answered before closing or the timeout.
async fn raw_exchange(gw: &TestGateway, request: &[u8], wait: Duration) -> String {
    let mut socket = TcpStream::connect(gw.addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, socket.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_and_closed() {
    let (gw, backend) = gateway(&[]).await;
    let request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let answer = raw_exchange(&gw, request, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n";
    let answer = raw_exchange(&gw, request, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn conflicting_content_lengths_are_refused() {
    let (gw, _backend) = gateway(&[]).await;
    let request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}";
    let answer = raw_exchange(&gw, request, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn slow_body_gets_408_and_others_are_still_served() {
    let (gw, _backend) = gateway(&[("bodyReadTimeout", "300ms")]).await;
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mo",
    )
    .await
    .unwrap();
    // Meanwhile another client is served normally.
    let fast = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat_body("mock-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(fast.status(), 200);
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let backend = MockServer::start(MockConfig::named("a")).await.unwrap();
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let gw = TestGateway::start_with_limits(
        &GatewayYaml::new()
            .backend(BackendYaml::new("a", &backend.url()))
            .render(),
        limits,
    )
    .await;
    let mut socket = TcpStream::connect(gw.addr).await.unwrap();
    socket
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "connection still open after the header timeout"
    );
    let answer = String::from_utf8_lossy(&out);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test]
async fn admin_routes_answer() {
    let (gw, _backend) = gateway(&[]).await;
    let admin = |p: &str| format!("http://{}{}", gw.admin_addr, p);
    assert_eq!(reqwest::get(admin("/healthz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(admin("/readyz")).await.unwrap().status(), 200);
    let metrics = gw.metrics().await;
    assert!(metrics.contains("airgate_build_info"));
}
