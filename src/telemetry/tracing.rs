//! Process logs plus OpenTelemetry traces exported over OTLP (gRPC or HTTP).
//!
//! [`init`] installs the global `tracing` subscriber:
//! - JSON logs on stderr filtered by `RUST_LOG` (default `info`), as `logging::init` does;
//! - when a collector is configured, a `tracing-opentelemetry` layer feeding an OTLP exporter.
//!   It only sees spans and events whose target starts with `airgate` at level INFO or above,
//!   independently of `RUST_LOG` (so `RUST_LOG=warn` does not switch tracing off, and the
//!   exporter's own hyper/h2/tonic spans never loop back into the export).
//!
//! No collector: no layer, no exporter, no background thread, nothing to pay. A slow or dead
//! collector never touches requests: spans are queued in a bounded buffer (dropped when full)
//! and exported in batches from a background thread with a 3 s export timeout.
//!
//! Sampling is `ParentBased(TraceIdRatioBased(sampleRate))`: a request without `traceparent`
//! is sampled with probability `sampleRate`; one with `traceparent` follows the client's
//! sampled flag; stage and attempt spans follow the request span. Unsampled spans are still
//! `tracing` spans but are non-recording on the OpenTelemetry side and never exported.
//!
//! # Spans the gateway creates (constructors in [`spans`])
//!
//! ```text
//! airgate.request            kind=server  otel.name = "{gen_ai.operation.name} {gen_ai.request.model}"
//! │   gen_ai.operation.name (chat|text_completion|embeddings), gen_ai.system = "openai",
//! │   gen_ai.request.model, gen_ai.response.model, gen_ai.usage.input_tokens,
//! │   gen_ai.usage.output_tokens, gen_ai.response.finish_reasons (string[]),
//! │   http.response.status_code, error.type, airgate.request_id, airgate.backend,
//! │   airgate.cache.hit
//! ├── airgate.auth           error.type
//! ├── airgate.rate_limit     error.type (limits and token reservation, one limiter call)
//! ├── airgate.guard          airgate.guard.phase (prompt|response), airgate.guard.action, error.type
//! ├── airgate.cache          airgate.cache.hit, error.type
//! └── airgate.backend_attempt  kind=client  otel.name = "airgate.backend_attempt {backend}"
//!         airgate.backend, airgate.attempt (1-based), server.address, server.port,
//!         gen_ai.request.model, gen_ai.response.model, gen_ai.usage.*,
//!         http.response.status_code, error.type (timeout|connect_error|<status>|…)
//! ```
//!
//! Use in the pipeline (sketch):
//!
//! ```ignore
//! use crate::telemetry::tracing::{self as otel, spans};
//! let span = spans::request_span(spans::OP_CHAT, &request.model, &request_id);
//! otel::set_parent_from_headers(&span, &parts.headers); // before the span is entered
//! async {
//!     authenticate(..).instrument(spans::auth_span()).await?;
//!     // per attempt:
//!     let attempt = spans::backend_attempt_span(&backend.name, &backend.url, n, &model);
//!     let mut headers = backend.headers.clone();
//!     otel::inject_context(&attempt, &mut headers); // traceparent/tracestate to the backend
//!     // ... on the answer:
//!     spans::record_http_status(&attempt, status, true);
//!     spans::record_usage(&span, usage.prompt_tokens, usage.completion_tokens);
//!     spans::record_finish_reasons(&span, &["stop"]);
//!     spans::record_http_status(&span, 200, false);
//! }
//! .instrument(span.clone())
//! .await
//! ```
//!
//! Keep prompt text, keys and tokens out of span fields, as with logs.

pub mod export;
pub mod spans;

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::subscriber::Interest;
use tracing::{Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Spans and events exported to the collector must have a target starting with this.
pub const TARGET_PREFIX: &str = "airgate";
/// Default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "airgate";
/// Instrumentation scope of the tracer.
const TRACER_NAME: &str = "airgate";

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC, usually port 4317 (Jaeger's collector, the OpenTelemetry Collector).
    Grpc,
    /// OTLP/HTTP with protobuf bodies, usually port 4318.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl OtlpProtocol {
    /// Parses the config's `protocol` (`grpc`, `http/protobuf`, `http/json`; also `http`,
    /// `http-protobuf`, `http_json`, …, case-insensitive). `None` or empty: guessed from the
    /// endpoint (port 4318 or a `/v1/traces` path means HTTP, anything else gRPC).
    pub fn resolve(protocol: Option<&str>, endpoint: &str) -> Result<Self, TracingError> {
        let normalized = protocol
            .map(|p| p.trim().to_ascii_lowercase().replace(['-', '_'], "/"))
            .unwrap_or_default();
        match normalized.as_str() {
            "grpc" => Ok(Self::Grpc),
            "http" | "http/protobuf" | "http/proto" | "protobuf" => Ok(Self::HttpProtobuf),
            "http/json" | "json" => Ok(Self::HttpJson),
            "" => {
                let endpoint = endpoint.trim_end_matches('/');
                let http = endpoint.ends_with("/v1/traces")
                    || endpoint
                        .parse::<http::Uri>()
                        .ok()
                        .and_then(|u| u.port_u16())
                        == Some(4318);
                Ok(if http { Self::HttpProtobuf } else { Self::Grpc })
            }
            other => Err(TracingError::Config(format!(
                "unknown OTLP protocol {other:?} (expected grpc, http/protobuf or http/json)"
            ))),
        }
    }
}

/// Where and how to export traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Collector URL: `http://jaeger-collector:4317` (gRPC) or `http://collector:4318` (HTTP;
    /// `/v1/traces` is appended unless already there).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Fraction of root requests traced, in [0, 1].
    pub sample_rate: f64,
    /// `service.name` resource attribute.
    pub service_name: String,
    /// Extra headers (HTTP) or metadata (gRPC) sent to the collector, e.g. an auth token.
    pub headers: Vec<(String, String)>,
}

impl TracingSettings {
    /// Settings with the default service name and no extra headers.
    pub fn new(endpoint: impl Into<String>, protocol: OtlpProtocol, sample_rate: f64) -> Self {
        Self {
            endpoint: endpoint.into(),
            protocol,
            sample_rate,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            headers: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("tracing configuration: {0}")]
    Config(String),
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    #[error("the OTLP exporter must be set up inside a Tokio runtime")]
    NoTokioRuntime,
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    #[error("tracer provider shutdown: {0}")]
    Shutdown(String),
}

/// Keeps the exporter alive; dropping it (or [`TracingGuard::shutdown`]) flushes the queued
/// spans and stops the exporter, bounded by [`export::SHUTDOWN_TIMEOUT`].
#[derive(Debug, Default)]
#[must_use = "dropping the guard shuts the trace exporter down"]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Whether spans are exported at all.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is queued now (blocking, bounded); for tests and before a planned exit.
    pub fn force_flush(&self) -> Result<(), TracingError> {
        match &self.provider {
            Some(provider) => blocking(|| provider.force_flush())
                .map_err(|e| TracingError::Shutdown(e.to_string())),
            None => Ok(()),
        }
    }

    /// Flushes and shuts the exporter down (blocking, bounded by the shutdown timeout).
    /// From async code prefer [`TracingGuard::shutdown_async`].
    pub fn shutdown(mut self) -> Result<(), TracingError> {
        self.shutdown_inner()
    }

    /// Same as [`TracingGuard::shutdown`] on a blocking thread, so the runtime (which the
    /// exporter itself needs) keeps running, even a current-thread one.
    pub async fn shutdown_async(mut self) -> Result<(), TracingError> {
        let Some(provider) = self.provider.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || shutdown_provider(&provider))
            .await
            .map_err(|e| TracingError::Shutdown(e.to_string()))?
    }

    fn shutdown_inner(&mut self) -> Result<(), TracingError> {
        match self.provider.take() {
            Some(provider) => blocking(|| shutdown_provider(&provider)),
            None => Ok(()),
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}

fn shutdown_provider(provider: &SdkTracerProvider) -> Result<(), TracingError> {
    provider
        .shutdown_with_timeout(export::SHUTDOWN_TIMEOUT)
        .map_err(|e| TracingError::Shutdown(e.to_string()))
}

/// Runs a blocking call without starving a multi-thread runtime's worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Installs the global subscriber: JSON logs on stderr filtered by `RUST_LOG`, plus the
/// OpenTelemetry layer when `settings` is `Some`. With an exporter, call it inside the Tokio
/// runtime and keep the guard until shutdown.
pub fn init(settings: Option<TracingSettings>) -> Result<TracingGuard, TracingError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs are events only: the log layer never sees spans, so without an exporter no span is
    // enabled at all and the per-stage spans of the hot path cost nothing.
    let fmt = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .with_span_list(false)
        .with_filter(filter.and(events_only()));
    let (otel, guard) = match settings {
        Some(settings) => {
            let (layer, guard) = otel_layer(&settings)?;
            (Some(layer), guard)
        }
        None => (None, TracingGuard::default()),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|_| TracingError::AlreadyInstalled)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(guard)
}

/// The OpenTelemetry layer alone (with its `airgate*`/INFO filter) and the guard of its
/// exporter, for composing a subscriber by hand (tests do). Must run inside a Tokio runtime.
pub fn otel_layer<S>(
    settings: &TracingSettings,
) -> Result<(impl Layer<S> + Send + Sync + 'static, TracingGuard), TracingError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let provider = export::provider(settings)?;
    let tracer = provider.tracer(TRACER_NAME);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(otel_filter());
    Ok((
        layer,
        TracingGuard {
            provider: Some(provider),
        },
    ))
}

/// Admits INFO-or-above spans and events of the gateway's own targets.
fn otel_filter() -> StaticFilter {
    StaticFilter(|metadata| {
        metadata.target().starts_with(TARGET_PREFIX) && *metadata.level() <= Level::INFO
    })
}

/// The log layer's filter: events only, never spans.
fn events_only() -> StaticFilter {
    StaticFilter(|metadata| metadata.is_event())
}

/// A per-layer filter on metadata alone, decided once per callsite (static interest): a
/// `filter_fn` is asked again at every span of the hot path, and a span no layer wants should
/// never be built.
struct StaticFilter(fn(&tracing::Metadata<'_>) -> bool);

impl<S> tracing_subscriber::layer::Filter<S> for StaticFilter {
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        (self.0)(metadata)
    }

    fn callsite_enabled(&self, metadata: &'static tracing::Metadata<'static>) -> Interest {
        if (self.0)(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
}

fn propagator() -> &'static TraceContextPropagator {
    static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// Makes the client's W3C `traceparent`/`tracestate` the parent of `span` (the request span).
/// Call before the span is first entered. Does nothing without a valid `traceparent` or when
/// tracing is off.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx = propagator().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Writes `span`'s context as `traceparent` (and `tracestate` when present) into `headers`,
/// replacing what was there. Unsampled spans propagate with the sampled flag off; with tracing
/// off nothing is written.
pub fn inject_context(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        propagator().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// `traceparent`/`tracestate` of `span` as a fresh header map (empty with tracing off).
pub fn trace_headers(span: &tracing::Span) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    inject_context(span, &mut headers);
    headers
}

/// Trace id of `span` in hex (for correlating logs), if it has a valid OpenTelemetry context.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// How long [`TracingGuard`] may block at shutdown.
pub const fn shutdown_timeout() -> Duration {
    export::SHUTDOWN_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_resolution() -> Result<(), TracingError> {
        assert_eq!(OtlpProtocol::resolve(Some("grpc"), "")?, OtlpProtocol::Grpc);
        assert_eq!(
            OtlpProtocol::resolve(Some("HTTP/protobuf"), "")?,
            OtlpProtocol::HttpProtobuf
        );
        assert_eq!(
            OtlpProtocol::resolve(Some("http_json"), "")?,
            OtlpProtocol::HttpJson
        );
        assert_eq!(
            OtlpProtocol::resolve(None, "http://jaeger-collector:4317")?,
            OtlpProtocol::Grpc
        );
        assert_eq!(
            OtlpProtocol::resolve(None, "http://otel:4318")?,
            OtlpProtocol::HttpProtobuf
        );
        assert!(OtlpProtocol::resolve(Some("thrift"), "").is_err());
        Ok(())
    }

    #[test]
    fn traces_url_appends_signal_path_once() {
        assert_eq!(
            export::traces_url("http://c:4318"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            export::traces_url("http://c:4318/"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            export::traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn exporter_needs_a_runtime() {
        let settings = TracingSettings::new("http://127.0.0.1:4317", OtlpProtocol::Grpc, 1.0);
        let result = otel_layer::<tracing_subscriber::Registry>(&settings);
        assert!(matches!(result, Err(TracingError::NoTokioRuntime)));
    }
}
