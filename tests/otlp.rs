//! End-to-end: spans through the OpenTelemetry layer and the OTLP exporter into in-test receivers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod otlp_support;

use std::time::{Duration, Instant};

use airgate::telemetry::tracing::{
    self as otel, spans, OtlpProtocol, TracingGuard, TracingSettings,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use otlp_support::{attr, attr_int, attr_str, find, hex};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Registry;

const WAIT: Duration = Duration::from_secs(10);
const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;
const STATUS_ERROR: i32 = 2;

fn settings(endpoint: &str, protocol: OtlpProtocol, rate: f64) -> TracingSettings {
    let mut s = TracingSettings::new(endpoint, protocol, rate);
    s.service_name = "airgate-test".into();
    s.headers = vec![("x-collector-token".into(), "t0ken".into())];
    s
}

/// The OpenTelemetry layer as this thread's default subscriber.
fn install(settings: &TracingSettings) -> (DefaultGuard, TracingGuard) {
    let (layer, guard) = otel::otel_layer::<Registry>(settings).unwrap();
    let default = tracing::subscriber::set_default(Registry::default().with(layer));
    (default, guard)
}

/// A request as the pipeline would trace it: stages, a failed attempt, a good one.
fn simulate_request(headers: &http::HeaderMap) -> http::HeaderMap {
    let request = spans::request_span(spans::OP_CHAT, "gpt-4o", "req-1");
    otel::set_parent_from_headers(&request, headers);
    let _entered = request.enter();
    spans::auth_span().in_scope(|| {});
    spans::guard_span("prompt").in_scope(|| {});
    let cache = spans::cache_span();
    cache.record(spans::AIRGATE_CACHE_HIT, false);
    drop(cache);

    let first = spans::backend_attempt_span("vllm-a", "http://vllm-a:8000/v1", 1, "gpt-4o");
    spans::record_http_status(&first, 503, true);
    drop(first);

    let second = spans::backend_attempt_span("vllm-b", "http://vllm-b:8001/v1", 2, "gpt-4o");
    let mut outgoing = http::HeaderMap::new();
    otel::inject_context(&second, &mut outgoing);
    spans::record_http_status(&second, 200, true);
    spans::record_usage(&second, 12, 34);
    drop(second);

    request.record(spans::AIRGATE_BACKEND, "vllm-b");
    spans::record_usage(&request, 12, 34);
    spans::record_finish_reasons(&request, &["stop"]);
    spans::record_http_status(&request, 200, false);
    outgoing
}

fn parse_traceparent(headers: &http::HeaderMap) -> (String, String, String) {
    let value = headers
        .get("traceparent")
        .expect("traceparent")
        .to_str()
        .unwrap();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    (parts[1].into(), parts[2].into(), parts[3].into())
}

async fn exports_request_tree(protocol: OtlpProtocol, grpc: bool) {
    let (url, collector) = if grpc {
        otlp_support::grpc_receiver().await
    } else {
        otlp_support::http_receiver().await
    };
    let settings = settings(&url, protocol, 1.0);
    let (default, guard) = install(&settings);
    let outgoing = simulate_request(&http::HeaderMap::new());
    drop(default);
    guard.force_flush().unwrap();
    let received = collector.wait_for(6, WAIT).await;
    assert_eq!(received.len(), 6, "{received:#?}");
    assert!(received
        .iter()
        .all(|r| r.service_name.as_deref() == Some("airgate-test")));
    let spans: Vec<_> = received.iter().map(|r| r.span.clone()).collect();

    let request = find(&received, "chat gpt-4o");
    assert_eq!(request.kind, KIND_SERVER);
    assert!(request.parent_span_id.is_empty(), "request is a root");
    assert_eq!(
        attr_str(request, "gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(
        attr_str(request, "gen_ai.system").as_deref(),
        Some("openai")
    );
    assert_eq!(
        attr_str(request, "gen_ai.request.model").as_deref(),
        Some("gpt-4o")
    );
    assert_eq!(attr_int(request, "gen_ai.usage.input_tokens"), Some(12));
    assert_eq!(attr_int(request, "gen_ai.usage.output_tokens"), Some(34));
    assert_eq!(attr_int(request, "http.response.status_code"), Some(200));
    assert_eq!(
        attr_str(request, "airgate.request_id").as_deref(),
        Some("req-1")
    );
    assert_eq!(
        attr_str(request, "airgate.backend").as_deref(),
        Some("vllm-b")
    );
    match attr(request, "gen_ai.response.finish_reasons") {
        Some(Value::ArrayValue(array)) => {
            assert_eq!(array.values.len(), 1);
            assert_eq!(
                array.values[0].value,
                Some(Value::StringValue("stop".into()))
            );
        }
        other => panic!("finish_reasons: {other:?}"),
    }
    assert!(attr(request, "error.type").is_none());

    for name in [spans::AUTH, spans::GUARD, spans::CACHE] {
        let child = find(&received, name);
        assert_eq!(child.trace_id, request.trace_id, "{name}");
        assert_eq!(child.parent_span_id, request.span_id, "{name}");
    }
    assert_eq!(
        attr_str(find(&received, spans::GUARD), "airgate.guard.phase").as_deref(),
        Some("prompt")
    );
    match attr(find(&received, spans::CACHE), "airgate.cache.hit") {
        Some(Value::BoolValue(false)) => {}
        other => panic!("cache.hit: {other:?}"),
    }

    let failed = find(&received, "airgate.backend_attempt vllm-a");
    let good = find(&received, "airgate.backend_attempt vllm-b");
    for (attempt, n, host, port) in [(failed, 1, "vllm-a", 8000), (good, 2, "vllm-b", 8001)] {
        assert_eq!(attempt.kind, KIND_CLIENT);
        assert_eq!(attempt.trace_id, request.trace_id);
        assert_eq!(attempt.parent_span_id, request.span_id);
        assert_eq!(attr_int(attempt, "airgate.attempt"), Some(n));
        assert_eq!(attr_str(attempt, "server.address").as_deref(), Some(host));
        assert_eq!(attr_int(attempt, "server.port"), Some(port));
        assert_eq!(
            attr_str(attempt, "gen_ai.request.model").as_deref(),
            Some("gpt-4o")
        );
    }
    assert_eq!(attr_int(failed, "http.response.status_code"), Some(503));
    assert_eq!(attr_str(failed, "error.type").as_deref(), Some("503"));
    assert_eq!(failed.status.as_ref().map(|s| s.code), Some(STATUS_ERROR));
    assert_eq!(attr_int(good, "gen_ai.usage.output_tokens"), Some(34));
    assert!(attr(good, "error.type").is_none());

    // What went to the backend names the attempt span.
    let (trace, span_id, flags) = parse_traceparent(&outgoing);
    assert_eq!(trace, hex(&request.trace_id));
    assert_eq!(span_id, hex(&good.span_id));
    assert_eq!(flags, "01");
    assert_eq!(spans.len(), 6);
    assert_eq!(collector.token.lock().unwrap().as_deref(), Some("t0ken"));
    guard.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_exports_names_attributes_and_links() {
    exports_request_tree(OtlpProtocol::HttpProtobuf, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_exports_names_attributes_and_links() {
    let (url, collector) = otlp_support::http_receiver().await;
    let (default, guard) = install(&settings(&url, OtlpProtocol::HttpJson, 1.0));
    spans::request_span(spans::OP_EMBEDDINGS, "bge", "r").in_scope(|| {
        spans::auth_span().in_scope(|| {});
    });
    drop(default);
    guard.force_flush().unwrap();
    let received = collector.wait_for(2, WAIT).await;
    assert_eq!(received.len(), 2);
    let request = find(&received, "embeddings bge");
    assert_eq!(find(&received, spans::AUTH).parent_span_id, request.span_id);
    assert!(*collector.json_requests.lock().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_exports_to_tonic_receiver() {
    exports_request_tree(OtlpProtocol::Grpc, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_traceparent_becomes_parent_and_is_passed_on() {
    let (url, collector) = otlp_support::http_receiver().await;
    // Rate 0: only the client's sampled flag can get this trace exported (parent-based).
    let (default, guard) = install(&settings(&url, OtlpProtocol::HttpProtobuf, 0.0));
    let mut incoming = with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    incoming.insert("tracestate", "vendor=abc".parse().unwrap());
    let outgoing = simulate_request(&incoming);
    drop(default);
    guard.force_flush().unwrap();
    let received = collector.wait_for(6, WAIT).await;
    assert_eq!(received.len(), 6);
    let request = find(&received, "chat gpt-4o");
    assert_eq!(hex(&request.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(hex(&request.parent_span_id), "b7ad6b7169203331");
    assert!(received
        .iter()
        .all(|r| hex(&r.span.trace_id) == "0af7651916cd43dd8448eb211c80319c"));
    let good = find(&received, "airgate.backend_attempt vllm-b");
    let (trace, span_id, flags) = parse_traceparent(&outgoing);
    assert_eq!(trace, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(span_id, hex(&good.span_id));
    assert_eq!(flags, "01");
    assert_eq!(outgoing.get("tracestate").unwrap(), "vendor=abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_client_trace_is_propagated_not_exported() {
    let (url, collector) = otlp_support::http_receiver().await;
    let (default, guard) = install(&settings(&url, OtlpProtocol::HttpProtobuf, 1.0));
    let incoming = with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    let outgoing = simulate_request(&incoming);
    drop(default);
    guard.force_flush().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(collector.count(), 0);
    let (trace, span_id, flags) = parse_traceparent(&outgoing);
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(span_id, "00f067aa0ba902b7");
    assert_eq!(flags, "00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_traceparent_starts_a_new_trace() {
    let (url, collector) = otlp_support::http_receiver().await;
    let (default, guard) = install(&settings(&url, OtlpProtocol::HttpProtobuf, 1.0));
    let incoming = with_traceparent("00-zzzz-yyyy-01");
    simulate_request(&incoming);
    drop(default);
    guard.force_flush().unwrap();
    let received = collector.wait_for(6, WAIT).await;
    assert!(find(&received, "chat gpt-4o").parent_span_id.is_empty());
}

/// Incoming headers carrying a client's `traceparent`.
fn with_traceparent(traceparent: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", traceparent.parse().unwrap());
    headers
}

async fn sampled_share(rate: f64, roots: usize) -> (usize, usize) {
    let (url, collector) = otlp_support::http_receiver().await;
    let (default, guard) = install(&settings(&url, OtlpProtocol::HttpProtobuf, rate));
    for i in 0..roots {
        let request = spans::request_span(spans::OP_CHAT, "m", "r");
        request.in_scope(|| {
            if i % 2 == 0 {
                spans::auth_span().in_scope(|| {});
            }
        });
    }
    drop(default);
    guard.force_flush().unwrap();
    // Wait until nothing more arrives.
    let mut last = usize::MAX;
    while collector.count() != last {
        last = collector.count();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    guard.shutdown().unwrap();
    let spans = collector.spans();
    let roots = spans
        .iter()
        .filter(|r| r.span.parent_span_id.is_empty())
        .count();
    (roots, spans.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rate_ten_percent_is_honoured() {
    let total = 2000;
    let (roots, all) = sampled_share(0.1, total).await;
    let share = roots as f64 / total as f64;
    assert!((0.05..=0.15).contains(&share), "sampled share {share}");
    // Children follow their root: about half the sampled roots carry one auth child.
    assert!(all > roots && all < roots * 2, "{roots} roots, {all} spans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_rate_zero_exports_nothing() {
    let (roots, all) = sampled_share(0.0, 1000).await;
    assert_eq!((roots, all), (0, 0));
}

/// A dead collector must not slow span creation, `otel_layer` or shutdown.
async fn down_collector_does_not_block(url: String, protocol: OtlpProtocol) {
    let start = Instant::now();
    let (default, guard) = install(&settings(&url, protocol, 1.0));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "init took {:?}",
        start.elapsed()
    );

    let start = Instant::now();
    for _ in 0..10_000 {
        let request = spans::request_span(spans::OP_CHAT, "m", "r");
        request.in_scope(|| spans::auth_span().in_scope(|| {}));
    }
    let created = start.elapsed();
    drop(default);
    // 20k spans, far beyond the 4096 queue: the excess is dropped, nothing waits.
    assert!(
        created < Duration::from_secs(20),
        "span creation took {created:?}"
    );

    let start = Instant::now();
    let _ = guard.shutdown_async().await;
    let shutdown = start.elapsed();
    assert!(
        shutdown < otel::shutdown_timeout() + Duration::from_secs(5),
        "shutdown took {shutdown:?}"
    );
    eprintln!("{protocol:?}: 10k requests traced in {created:?}, shutdown in {shutdown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_collector_down_does_not_block() {
    down_collector_does_not_block(otlp_support::closed_port_url(), OtlpProtocol::HttpProtobuf)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_collector_down_does_not_block() {
    down_collector_does_not_block(otlp_support::closed_port_url(), OtlpProtocol::Grpc).await;
}

/// A collector that accepts connections and never answers (the worst case).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_collector_does_not_block() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    down_collector_does_not_block(url, OtlpProtocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_layer_means_no_context() {
    // Tracing off (no OpenTelemetry layer): nothing is injected, set_parent is harmless.
    let span = spans::request_span(spans::OP_CHAT, "m", "r");
    let incoming = with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    otel::set_parent_from_headers(&span, &incoming);
    assert!(otel::trace_headers(&span).is_empty());
    assert_eq!(otel::trace_id(&span), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_sampled_tells_which_requests_will_be_exported() {
    let (url, _collector) = otlp_support::http_receiver().await;
    for (rate, expected) in [(0.0, 0), (1.0, 200)] {
        let (default, guard) = install(&settings(&url, OtlpProtocol::HttpProtobuf, rate));
        let sampled = (0..200)
            .filter(|_| spans::is_sampled(&spans::request_span(spans::OP_CHAT, "m", "r")))
            .count();
        assert_eq!(sampled, expected, "rate {rate}");
        drop(default);
        guard.shutdown().unwrap();
    }
}
