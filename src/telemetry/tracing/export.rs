//! The OTLP span exporter and the tracer provider behind the OpenTelemetry layer.
//!
//! The SDK's thread-based [`BatchSpanProcessor`] drives the exporter from its own OS thread with
//! a blocking executor. Async clients (tonic, reqwest) need the Tokio runtime, so:
//! - gRPC: tonic's lazy channel is built inside the runtime (its worker lives there);
//! - HTTP: `RuntimeHttpClient` runs each request as a task on the runtime captured at init and
//!   the processor thread merely awaits the task's join handle.
//!
//! Requests never wait for the collector: finished spans go into a bounded queue (dropped when
//! full), exports time out, and retries are few and short.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{
    Protocol, RetryPolicy, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use super::{OtlpProtocol, TracingError, TracingSettings};

/// Finished spans buffered while the collector is slow or down; beyond this they are dropped.
pub const MAX_QUEUE_SIZE: usize = 4096;
/// Spans per export request.
pub const MAX_EXPORT_BATCH_SIZE: usize = 512;
/// How often the queue is flushed.
pub const SCHEDULED_DELAY: Duration = Duration::from_secs(2);
/// One export request (connect + send + response), retries included.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound for the final flush at shutdown.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Collector answers are tiny; anything bigger is not read.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Builds the tracer provider: OTLP exporter, bounded batch processor, parent-based ratio
/// sampler, `service.name` resource. Must run inside a Tokio runtime.
pub(super) fn provider(settings: &TracingSettings) -> Result<SdkTracerProvider, TracingError> {
    let runtime =
        tokio::runtime::Handle::try_current().map_err(|_| TracingError::NoTokioRuntime)?;
    let exporter = exporter(settings, runtime)?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(MAX_QUEUE_SIZE)
        .with_max_export_batch_size(MAX_EXPORT_BATCH_SIZE)
        .with_scheduled_delay(SCHEDULED_DELAY)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_sampler(sampler(settings.sample_rate))
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

/// `ParentBased(TraceIdRatioBased(rate))`: a root is sampled with probability `rate` (clamped to
/// [0, 1], NaN counts as 0); a child follows its parent, local or remote (`traceparent` flags).
pub fn sampler(rate: f64) -> Sampler {
    let rate = if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    };
    let root = if rate >= 1.0 {
        Sampler::AlwaysOn
    } else if rate <= 0.0 {
        Sampler::AlwaysOff
    } else {
        Sampler::TraceIdRatioBased(rate)
    };
    Sampler::ParentBased(Box::new(root))
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy::recommended()
        .with_max_retries(2)
        .with_initial_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(400))
        .with_max_jitter(Duration::from_millis(50))
}

fn exporter(
    settings: &TracingSettings,
    runtime: tokio::runtime::Handle,
) -> Result<SpanExporter, TracingError> {
    let endpoint = settings.endpoint.trim();
    if endpoint.is_empty() {
        return Err(TracingError::Config("empty collector endpoint".into()));
    }
    let mut headers = http::HeaderMap::new();
    for (name, value) in &settings.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| TracingError::Config(format!("invalid collector header name: {e}")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|e| TracingError::Config(format!("invalid collector header value: {e}")))?;
        headers.append(name, value);
    }
    let built = match settings.protocol {
        OtlpProtocol::Grpc => {
            if endpoint.starts_with("https://") {
                return Err(TracingError::Config(
                    "gRPC export is plaintext only; use an http:// endpoint or the \
                     http/protobuf protocol for an https collector"
                        .into(),
                ));
            }
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_protocol(Protocol::Grpc)
                .with_timeout(EXPORT_TIMEOUT)
                .with_retry_policy(retry_policy())
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                )
                .build()
        }
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            let client = reqwest::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .connect_timeout(EXPORT_TIMEOUT)
                .no_proxy()
                .build()
                .map_err(|e| TracingError::Exporter(format!("collector HTTP client: {e}")))?;
            let protocol = if settings.protocol == OtlpProtocol::HttpJson {
                Protocol::HttpJson
            } else {
                Protocol::HttpBinary
            };
            let header_map = headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            SpanExporter::builder()
                .with_http()
                .with_endpoint(traces_url(endpoint))
                .with_protocol(protocol)
                .with_timeout(EXPORT_TIMEOUT)
                .with_retry_policy(retry_policy())
                .with_headers(header_map)
                .with_http_client(RuntimeHttpClient { client, runtime })
                .build()
        }
    };
    built.map_err(|e| TracingError::Exporter(e.to_string()))
}

/// OTLP/HTTP endpoints are used as given when they already name the signal path; a base URL
/// (`http://host:4318`) gets `/v1/traces` appended, as `OTEL_EXPORTER_OTLP_ENDPOINT` would.
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

/// The gateway's reqwest (0.12, rustls) driven on the Tokio runtime captured at init, so the
/// SDK's exporter thread can await it without a runtime of its own.
#[derive(Debug)]
struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut response = client.execute(request).await?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut body = BytesMut::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BODY {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            let mut out = Response::builder().status(status).body(body.freeze())?;
            *out.headers_mut() = headers;
            Ok::<_, HttpError>(out)
        });
        // A runtime that is shutting down cancels the task: an error, never a hang.
        task.await.map_err(|e| Box::new(e) as HttpError)?
    }
}
