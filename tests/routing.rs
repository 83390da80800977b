//! Routing, failover and upstream-error rules, through a real gateway against mock backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use airgate_test_support::mock::{ErrorBody, Fault, MockConfig, MockServer};
use common::{
    chat_body, closed_port_url, sse_data, BackendYaml, GatewayYaml, ScriptedBackend, TestGateway,
};
use serde_json::Value;

async fn mock(name: &str) -> MockServer {
    MockServer::start(MockConfig::named(name)).await.unwrap()
}

async fn faulty(name: &str, fault: Fault) -> MockServer {
    MockServer::start(MockConfig::named(name).fault(fault))
        .await
        .unwrap()
}

/// A gateway with `first` at priority 1 and `second` at priority 2: (name, url) each.
async fn two_tier(first: (&str, &str), second: (&str, &str)) -> TestGateway {
    TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new(first.0, first.1).priority(1))
            .backend(BackendYaml::new(second.0, second.1).priority(2))
            .render(),
    )
    .await
}

async fn post_chat(gw: &TestGateway, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn non_streaming_answer_passes_through_with_gateway_headers() {
    let backend = mock("a").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("a", &backend.url()))
            .render(),
    )
    .await;
    let mut body = chat_body("mock-model", false);
    body["seed"] = 7.into();
    body["tools"] =
        serde_json::json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    body["api_base"] = "http://127.0.0.1:1".into();
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "req-123")
        .header("authorization", "Bearer client-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-123");
    assert_eq!(response.headers()["x-airgate-backend"], "a");
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["object"], "chat.completion");
    assert!(json["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let seen = backend.last_request().unwrap();
    assert_eq!(seen.body["seed"], 7);
    assert_eq!(seen.body["tools"][0]["function"]["name"], "f");
    assert!(
        seen.body.get("api_base").is_none(),
        "redirect field reached the backend"
    );
    assert_eq!(seen.header("x-request-id"), Some("req-123"));
    assert_eq!(
        seen.header("authorization"),
        None,
        "client credentials must not reach backends"
    );
}

#[tokio::test]
async fn generates_a_request_id_when_the_client_sends_none() {
    let backend = mock("a").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("a", &backend.url()))
            .render(),
    )
    .await;
    let response = post_chat(&gw, &chat_body("nope", false)).await;
    assert_eq!(response.status(), 404);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(response.headers()["x-airgate-backend"], "none");
}

#[tokio::test]
async fn streaming_answer_is_relayed_to_done_with_usage() {
    let backend = mock("a").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("a", &backend.url()))
            .render(),
    )
    .await;
    let mut body = chat_body("mock-model", true);
    body["stream_options"] = serde_json::json!({"include_usage": true});
    let response = post_chat(&gw, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let data = sse_data(response).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(backend.completed_streams(), 1);
}

#[tokio::test]
async fn models_lists_the_union_of_backends_plus_auto() {
    let a = mock("a").await;
    let b = mock("b").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("a", &a.url()).models(&["m1", "m2"]))
            .backend(BackendYaml::new("b", &b.url()).models(&["m2", "m3"]))
            .render(),
    )
    .await;
    let json: Value = reqwest::get(gw.url("/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["auto", "m1", "m2", "m3"]);
    assert_eq!(json["object"], "list");
}

#[tokio::test]
async fn auto_uses_any_backend_and_sends_its_model_name() {
    let a = mock("a").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("a", &a.url()).models(&["real-model"]))
            .render(),
    )
    .await;
    let response = post_chat(&gw, &chat_body("auto", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(a.last_request().unwrap().body["model"], "real-model");
}

#[tokio::test]
async fn lower_priority_is_preferred_and_fails_over_on_connect_error() {
    let p2 = mock("p2").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("p1", &closed_port_url().await).priority(1))
            .backend(BackendYaml::new("p2", &p2.url()).priority(2))
            .render(),
    )
    .await;
    let response = post_chat(&gw, &chat_body("mock-model", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-airgate-backend"], "p2");
    assert_eq!(p2.requests(), 1);
    let metrics = gw.metrics().await;
    assert!(metrics.contains("airgate_failovers_total{backend=\"p1\",gateway=\"test/test-gw\",reason=\"connect_error\"} 1"), "{metrics}");
}

#[tokio::test]
async fn healthy_first_priority_takes_all_traffic() {
    let p1 = mock("p1").await;
    let p2 = mock("p2").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("p2", &p2.url()).priority(2))
            .backend(BackendYaml::new("p1", &p1.url()).priority(1))
            .render(),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(
            post_chat(&gw, &chat_body("mock-model", false))
                .await
                .status(),
            200
        );
    }
    assert_eq!((p1.requests(), p2.requests()), (5, 0));
}

#[tokio::test]
async fn load_is_shared_within_a_priority() {
    let a = mock("a").await;
    let b = mock("b").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("a", &a.url()))
            .backend(BackendYaml::new("b", &b.url()))
            .render(),
    )
    .await;
    for _ in 0..40 {
        assert_eq!(
            post_chat(&gw, &chat_body("mock-model", false))
                .await
                .status(),
            200
        );
    }
    assert_eq!(a.requests() + b.requests(), 40);
    assert!(
        a.requests() >= 5 && b.requests() >= 5,
        "a={} b={}",
        a.requests(),
        b.requests()
    );
}

#[tokio::test]
async fn fails_over_on_500_429_and_timeout_but_not_on_400() {
    for (fault, timeout) in [
        (
            Fault::Status {
                status: 500,
                body: ErrorBody::OpenAi,
            },
            "2s",
        ),
        (
            Fault::Status {
                status: 429,
                body: ErrorBody::OpenAi,
            },
            "2s",
        ),
        (Fault::Hang, "300ms"),
    ] {
        let bad = faulty("bad", fault).await;
        let good = mock("good").await;
        let gw = TestGateway::start(
            &GatewayYaml::new()
                .backend(
                    BackendYaml::new("bad", &bad.url())
                        .priority(1)
                        .timeout(timeout),
                )
                .backend(BackendYaml::new("good", &good.url()).priority(2))
                .render(),
        )
        .await;
        let response = post_chat(&gw, &chat_body("mock-model", false)).await;
        assert_eq!(response.status(), 200, "fault {fault:?}");
        assert_eq!(response.headers()["x-airgate-backend"], "good");
        assert_eq!((bad.requests(), good.requests()), (1, 1), "fault {fault:?}");
    }
    let bad = faulty(
        "bad",
        Fault::Status {
            status: 400,
            body: ErrorBody::VllmIntCode,
        },
    )
    .await;
    let good = mock("good").await;
    let gw = two_tier(("bad", &bad.url()), ("good", &good.url())).await;
    let response = post_chat(&gw, &chat_body("mock-model", false)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-airgate-backend"], "bad");
    let json: Value = response.json().await.unwrap();
    assert_eq!(
        json["error"]["code"], "400",
        "integer code normalised to a string"
    );
    assert!(json["error"]["message"].is_string());
    assert_eq!(good.requests(), 0);
}

#[tokio::test]
async fn old_vllm_flat_errors_are_normalised() {
    let bad = faulty(
        "bad",
        Fault::Status {
            status: 404,
            body: ErrorBody::FlatObject,
        },
    )
    .await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("bad", &bad.url()))
            .render(),
    )
    .await;
    let response = post_chat(&gw, &chat_body("mock-model", false)).await;
    assert_eq!(response.status(), 404);
    let json: Value = response.json().await.unwrap();
    let error = json["error"].as_object().unwrap();
    for key in ["message", "type", "param", "code"] {
        assert!(error.contains_key(key), "missing {key}: {json}");
    }
    assert!(json.get("object").is_none());
}

#[tokio::test]
async fn all_candidates_down_is_503_naming_each_attempt_without_retry() {
    let bad = faulty(
        "bad",
        Fault::Status {
            status: 502,
            body: ErrorBody::OpenAi,
        },
    )
    .await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("dead", &closed_port_url().await).priority(1))
            .backend(BackendYaml::new("bad", &bad.url()).priority(2))
            .render(),
    )
    .await;
    let response = post_chat(&gw, &chat_body("mock-model", false)).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let json: Value = response.json().await.unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("mock-model"), "{message}");
    assert!(message.contains("dead: connection failed"), "{message}");
    assert!(message.contains("bad: answered HTTP 502"), "{message}");
    assert_eq!(json["error"]["type"], "server_error");
}

#[tokio::test]
async fn approval_backends_are_never_used_by_unapproved_requests() {
    let cloud = mock("cloud").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("local", &closed_port_url().await).priority(1))
            .backend(
                BackendYaml::new("cloud", &cloud.url())
                    .priority(2)
                    .requires_approval(),
            )
            .render(),
    )
    .await;
    let response = post_chat(&gw, &chat_body("mock-model", false)).await;
    assert_eq!(response.status(), 503);
    let json: Value = response.json().await.unwrap();
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cloud: skipped: requires approval"));
    // A model only an approval backend serves is refused outright.
    let gw2 = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("cloud", &cloud.url()).requires_approval())
            .render(),
    )
    .await;
    assert_eq!(
        post_chat(&gw2, &chat_body("mock-model", false))
            .await
            .status(),
        403
    );
    assert_eq!(cloud.requests(), 0);
}

#[tokio::test]
async fn backend_headers_are_added_upstream() {
    let a = mock("a").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(
                BackendYaml::new("a", &a.url())
                    .header("X-Internal-Routing", "approved-gateway-only"),
            )
            .render(),
    )
    .await;
    assert_eq!(
        post_chat(&gw, &chat_body("mock-model", false))
            .await
            .status(),
        200
    );
    let seen = a.last_request().unwrap();
    assert_eq!(
        seen.header("x-internal-routing"),
        Some("approved-gateway-only")
    );
}

#[tokio::test]
async fn stream_that_dies_after_first_byte_ends_with_an_error_event_and_no_failover() {
    let dying = faulty("dying", Fault::DieMidStream { after_chunks: 2 }).await;
    let spare = mock("spare").await;
    let gw = two_tier(("dying", &dying.url()), ("spare", &spare.url())).await;
    let response = post_chat(&gw, &chat_body("mock-model", true)).await;
    assert_eq!(response.status(), 200);
    let data = sse_data(response).await;
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"));
    assert_eq!(spare.requests(), 0);
}

#[tokio::test]
async fn stalled_stream_is_ended_after_the_idle_timeout() {
    let stalling = faulty("stall", Fault::StallMidStream { after_chunks: 1 }).await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("stall", &stalling.url()))
            .routing("streamIdleTimeout", "300ms")
            .render(),
    )
    .await;
    let response = post_chat(&gw, &chat_body("mock-model", true)).await;
    let data = tokio::time::timeout(Duration::from_secs(10), sse_data(response))
        .await
        .unwrap();
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stalled");
    assert!(gw.metrics().await.contains(
        "airgate_stream_terminations_total{gateway=\"test/test-gw\",reason=\"stalled\"} 1"
    ));
}

#[tokio::test]
async fn stream_headers_without_a_first_byte_fail_over() {
    let silent = faulty("silent", Fault::HeadersThenHang).await;
    let good = mock("good").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(
                BackendYaml::new("silent", &silent.url())
                    .priority(1)
                    .timeout("300ms"),
            )
            .backend(BackendYaml::new("good", &good.url()).priority(2))
            .render(),
    )
    .await;
    let response = post_chat(&gw, &chat_body("mock-model", true)).await;
    assert_eq!(response.headers()["x-airgate-backend"], "good");
    assert_eq!(
        sse_data(response).await.last().map(String::as_str),
        Some("[DONE]")
    );
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let slow = MockServer::start(
        MockConfig::named("slow")
            .tokens(1000)
            .inter_token_delay(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("slow", &slow.url()))
            .render(),
    )
    .await;
    let mut response = post_chat(&gw, &chat_body("mock-model", true)).await;
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);
    for _ in 0..100 {
        if slow.cancelled_streams() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(slow.cancelled_streams(), 1);
    assert_eq!(slow.completed_streams(), 0);
}

#[tokio::test]
async fn repeated_failures_put_a_backend_in_cooldown() {
    let flaky = faulty(
        "flaky",
        Fault::Status {
            status: 500,
            body: ErrorBody::OpenAi,
        },
    )
    .await;
    let good = mock("good").await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("flaky", &flaky.url()).priority(1))
            .backend(BackendYaml::new("good", &good.url()).priority(2))
            .routing("failureThreshold", "3")
            .routing("cooldown", "1m")
            .render(),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(
            post_chat(&gw, &chat_body("mock-model", false))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        flaky.requests(),
        3,
        "skipped after three consecutive failures"
    );
    assert_eq!(good.requests(), 10);
}

#[tokio::test]
async fn active_probe_falls_back_to_models_when_health_is_404() {
    let llama_like = MockServer::start(MockConfig::named("llama").no_health_route())
        .await
        .unwrap();
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("llama", &llama_like.url()).probed("100ms"))
            .backend(BackendYaml::new("dead", &closed_port_url().await).probed("100ms"))
            .render(),
    )
    .await;
    let mut metrics = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = gw.metrics().await;
        if llama_like.models_requests() >= 2
            && metrics.contains("airgate_backend_up{backend=\"dead\",gateway=\"test/test-gw\"} 0")
        {
            break;
        }
    }
    assert!(llama_like.health_requests() >= 1);
    assert!(
        llama_like.models_requests() >= 2,
        "probe did not move to /v1/models"
    );
    assert!(
        metrics.contains("airgate_backend_up{backend=\"llama\",gateway=\"test/test-gw\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("airgate_backend_up{backend=\"dead\",gateway=\"test/test-gw\"} 0"),
        "{metrics}"
    );
    // The dead backend is skipped without an attempt.
    assert_eq!(
        post_chat(&gw, &chat_body("mock-model", false))
            .await
            .headers()["x-airgate-backend"],
        "llama"
    );
}

#[tokio::test]
async fn every_backend_rate_limited_is_a_429_the_sdk_can_back_off_on() {
    let busy = |name: &'static str| async move {
        MockServer::start(MockConfig::named(name).fault(Fault::Status {
            status: 429,
            body: ErrorBody::OpenAi,
        }))
        .await
        .unwrap()
    };
    let (a, b) = (busy("a").await, busy("b").await);
    let gw = two_tier(("a", &a.url()), ("b", &b.url())).await;
    let response = post_chat(&gw, &chat_body("mock-model", false)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.headers().get("x-should-retry").is_none());
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"]["type"], "rate_limit_error");
    assert_eq!((a.requests(), b.requests()), (1, 1));
}

#[tokio::test]
async fn a_stream_that_ends_without_finish_reason_is_an_error_not_a_clean_end() {
    let cut = ScriptedBackend::raw_stream(
        "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\ndata: [DONE]\n\n",
    )
    .await;
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("cut", &cut.url))
            .render(),
    )
    .await;
    let data = sse_data(post_chat(&gw, &chat_body("mock-model", true)).await).await;
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_truncated", "{data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"));
}
