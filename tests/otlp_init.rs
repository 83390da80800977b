//! The global `init` path (own test binary: a process has one global subscriber).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod otlp_support;

use std::time::Duration;

use airgate::telemetry::tracing::{self as otel, spans, OtlpProtocol, TracingSettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_installs_logs_and_exporter_and_flushes_on_shutdown() {
    let (url, collector) = otlp_support::http_receiver().await;
    let guard = otel::init(Some(TracingSettings::new(
        url,
        OtlpProtocol::HttpProtobuf,
        1.0,
    )))
    .unwrap();
    assert!(guard.is_exporting());
    {
        let request = spans::request_span(spans::OP_CHAT, "gpt-4o", "req-9");
        let _e = request.enter();
        tracing::info!(target: "airgate::pipeline", "inside the request");
        tracing::info!("an event from another target is not exported");
        assert!(otel::trace_id(&request).is_some());
        // Spans from other crates' targets are not exported.
        tracing::info_span!(target: "hyper::client", "not exported").in_scope(|| {});
    }
    // Shutdown flushes what is queued (the scheduled export is seconds away).
    guard.shutdown_async().await.unwrap();
    let received = collector.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0].span.name, "chat gpt-4o");
    assert_eq!(received[0].service_name.as_deref(), Some("airgate"));
    assert_eq!(
        received[0].span.events.len(),
        1,
        "the info! event rides on the span"
    );

    // A second init fails cleanly.
    assert!(matches!(
        otel::init(None),
        Err(otel::TracingError::AlreadyInstalled)
    ));
}
