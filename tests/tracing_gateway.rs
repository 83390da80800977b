//! Traces of real requests through the gateway, exported over OTLP/HTTP to an in-test receiver:
//! the client's `traceparent` is the parent, each stage and attempt is a child, the backend gets
//! the attempt's context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod otlp_support;

use std::time::Duration;

use airgate::telemetry::tracing::{self as otel, OtlpProtocol, TracingSettings};
use airgate_test_support::mock::{MockConfig, MockServer};
use common::{chat_body, closed_port_url, BackendYaml, GatewayYaml, TestGateway};
use otlp_support::{attr_int, attr_str, hex};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Registry;

// One thread: the OpenTelemetry layer is this thread's default subscriber, and every task of
// the gateway and its mock backends runs on it.
#[tokio::test(flavor = "current_thread")]
async fn a_request_is_one_trace_under_the_clients_parent_with_a_span_per_stage() {
    let (url, collector) = otlp_support::http_receiver().await;
    let mut settings = TracingSettings::new(&url, OtlpProtocol::HttpProtobuf, 1.0);
    settings.service_name = "airgate-test".into();
    let (layer, guard) = otel::otel_layer::<Registry>(&settings).unwrap();
    let _default = tracing::subscriber::set_default(Registry::default().with(layer));

    let backend = MockServer::start(MockConfig::named("good").tokens(7))
        .await
        .unwrap();
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("dead", &closed_port_url().await).priority(1))
            .backend(BackendYaml::new("good", &backend.url()).priority(2))
            .render(),
    )
    .await;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = traced_post(
        &gw,
        &backend,
        &format!("00-{client_trace}-00f067aa0ba902b7-01"),
    )
    .await;
    assert!(traceparent.contains(client_trace), "{traceparent}");

    // No force_flush here: it would block this runtime's only thread, which the exporter needs;
    // the batch processor exports within 2 s.
    let received = collector.wait_for(5, Duration::from_secs(10)).await;
    let names: Vec<&str> = received.iter().map(|r| r.span.name.as_str()).collect();
    assert!(
        received
            .iter()
            .all(|r| hex(&r.span.trace_id) == client_trace),
        "{names:?}"
    );
    let request = received
        .iter()
        .find(|r| r.span.name == "chat")
        .map(|r| &r.span)
        .unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(hex(&request.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(
        attr_str(request, "gen_ai.request.model").as_deref(),
        Some("mock-model")
    );
    assert_eq!(attr_int(request, "gen_ai.usage.output_tokens"), Some(7));
    assert_eq!(attr_int(request, "http.response.status_code"), Some(200));
    for stage in ["airgate.auth", "airgate.guard"] {
        let span = received
            .iter()
            .find(|r| r.span.name == stage)
            .map(|r| &r.span)
            .unwrap_or_else(|| panic!("no {stage}: {names:?}"));
        assert_eq!(
            span.parent_span_id, request.span_id,
            "{stage} is not a child of the request"
        );
    }
    let attempts: Vec<_> = received
        .iter()
        .filter(|r| r.span.name.starts_with("airgate.backend_attempt"))
        .collect();
    assert_eq!(attempts.len(), 2, "{names:?}");
    assert_eq!(
        attr_str(&attempts[0].span, "error.type").as_deref(),
        Some("connect_error")
    );
    drop(guard);
}

// An unsampled request (the client's flag is off) builds no stage spans, exports nothing, and
// still passes the client's trace to the backend with the sampled flag off.
#[tokio::test(flavor = "current_thread")]
async fn an_unsampled_request_exports_nothing_and_still_propagates_its_trace() {
    let (url, collector) = otlp_support::http_receiver().await;
    let settings = TracingSettings::new(&url, OtlpProtocol::HttpProtobuf, 1.0);
    let (layer, guard) = otel::otel_layer::<Registry>(&settings).unwrap();
    let _default = tracing::subscriber::set_default(Registry::default().with(layer));

    let backend = MockServer::start(MockConfig::named("good")).await.unwrap();
    let gw = TestGateway::start(
        &GatewayYaml::new()
            .backend(BackendYaml::new("good", &backend.url()))
            .render(),
    )
    .await;
    let client_trace = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = traced_post(
        &gw,
        &backend,
        &format!("00-{client_trace}-b7ad6b7169203331-00"),
    )
    .await;
    assert!(traceparent.contains(client_trace), "{traceparent}");
    assert!(traceparent.ends_with("-00"), "{traceparent}");
    let received = collector.wait_for(1, Duration::from_secs(3)).await;
    assert!(received.is_empty(), "unsampled spans were exported");
    drop(guard);
}

/// Posts a chat completion with the client's `traceparent`; the one the backend received.
async fn traced_post(gw: &TestGateway, backend: &MockServer, traceparent: &str) -> String {
    let response = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("traceparent", traceparent)
        .json(&chat_body("mock-model", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = backend.last_request().unwrap();
    sent.header("traceparent")
        .expect("the backend got no traceparent")
        .to_string()
}
