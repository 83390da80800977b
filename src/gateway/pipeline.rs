//! One AI request, stage by stage, in the order the architecture gives:
//! read body -> parse -> (auth, rate limit, guard, cache: later stages) -> route with failover ->
//! answer (JSON or relayed SSE) -> metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request};

use super::relay::Relay;
use super::{body, AiRequest, Endpoint, Gateway};
use crate::error::{ApiError, AttemptFailure};
use crate::routing::{plan, AttemptError, Backend, InFlight};
use crate::telemetry::metrics::RequestLabels;
use crate::telemetry::Metrics;

/// Response header naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-airgate-backend";

/// Largest non-streaming upstream answer accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

pub struct RequestContext<'a> {
    pub gateway: &'a Arc<Gateway>,
    pub metrics: &'a Arc<Metrics>,
    pub request_id: &'a str,
    /// Approved for `requiresApproval` backends. No authentication exists yet: always false.
    pub approved: bool,
}

pub async fn handle(
    ctx: RequestContext<'_>,
    endpoint: Endpoint,
    request: Request<Body>,
) -> Response {
    let started = Instant::now();
    let (parts, raw_body) = request.into_parts();
    let mut model = String::new();
    let result = async {
        let settings = &ctx.gateway.settings;
        let bytes = body::read(
            &parts.headers,
            raw_body,
            settings.max_body_bytes,
            settings.body_read_timeout,
        )
        .await?;
        let request = AiRequest::parse(endpoint, &bytes)?;
        model.clone_from(&request.model);
        route(&ctx, &request).await
    }
    .await;
    let (response, backend) = match result {
        Ok((response, backend)) => (response, backend),
        Err(error) => (error.into_response(), "none".to_string()),
    };
    let mut response = response;
    if let Ok(value) = HeaderValue::from_str(&backend) {
        response.headers_mut().insert(BACKEND_HEADER, value);
    }
    let labels = RequestLabels {
        gateway: &ctx.gateway.id,
        route: endpoint.route(),
        model: ctx.gateway.model_label(&model),
        backend: &backend,
    };
    let flags = ctx.gateway.metrics;
    if flags.enabled {
        let seconds = flags.latency.then(|| started.elapsed().as_secs_f64());
        ctx.metrics
            .observe_request(&labels, response.status().as_u16(), seconds);
    }
    response
}

/// Tries the candidates in order; fails over only before anything reached the client.
async fn route(
    ctx: &RequestContext<'_>,
    request: &AiRequest,
) -> Result<(Response, String), ApiError> {
    let gateway = ctx.gateway;
    let plan = plan(&gateway.backends, &request.model, ctx.approved);
    if plan.candidates.is_empty() {
        return Err(if plan.needs_approval.is_empty() {
            ApiError::ModelNotFound(request.model.clone())
        } else {
            ApiError::PermissionDenied(format!(
                "The model `{}` is only served by backends that need approval",
                request.model
            ))
        });
    }
    let mut failures = Vec::new();
    for backend in plan.candidates.iter().take(gateway.settings.max_attempts) {
        let in_flight = backend.start_request();
        match attempt(ctx, backend, request, in_flight).await {
            Ok(response) => {
                backend.record_success();
                ctx.metrics
                    .upstream_attempt(&gateway.id, &backend.name, "success");
                return Ok((response, backend.name.clone()));
            }
            Err(error) => {
                ctx.metrics
                    .upstream_attempt(&gateway.id, &backend.name, error.metric_label());
                if !error.is_retriable() {
                    return Err(upstream_error(error));
                }
                if error.is_health_failure() {
                    backend.record_failure();
                }
                ctx.metrics
                    .failover(&gateway.id, &backend.name, error.metric_label());
                tracing::warn!(
                    request_id = ctx.request_id,
                    backend = %backend.name,
                    reason = %error,
                    "upstream attempt failed; trying the next candidate"
                );
                failures.push(AttemptFailure {
                    backend: backend.name.clone(),
                    reason: error.to_string(),
                });
            }
        }
    }
    for name in plan.needs_approval {
        failures.push(AttemptFailure {
            backend: name,
            reason: "skipped: requires approval".into(),
        });
    }
    Err(ApiError::NoBackendAvailable {
        model: request.model.clone(),
        attempts: failures,
    })
}

fn upstream_error(error: AttemptError) -> ApiError {
    match error {
        AttemptError::Status { status, body } => ApiError::Upstream {
            status,
            body: crate::openai::normalize_upstream_error(status, &body),
        },
        other => ApiError::Internal(format!("non-retriable attempt error: {other}")),
    }
}

/// One attempt at one backend. It succeeds only once the answer can be committed to the client:
/// the whole JSON body, or for streams the first body chunk.
async fn attempt(
    ctx: &RequestContext<'_>,
    backend: &Arc<Backend>,
    request: &AiRequest,
    in_flight: InFlight,
) -> Result<Response, AttemptError> {
    let started = Instant::now();
    let body = request
        .upstream_body(backend.upstream_model(&request.model))
        .map_err(|e| AttemptError::Body(e.to_string()))?;
    let client = &ctx.gateway.client;
    let upstream = client
        .send(backend, request.endpoint.path(), body, ctx.request_id)
        .await?;
    let content_type = upstream.headers().get(CONTENT_TYPE).cloned();
    let status = upstream.status();
    let idle = ctx.gateway.settings.stream_idle_timeout;
    if request.stream {
        let remaining = backend.timeout.saturating_sub(started.elapsed());
        let mut stream = upstream.bytes_stream().boxed();
        let first = match tokio::time::timeout(remaining, stream.next()).await {
            Err(_) => return Err(AttemptError::Timeout(backend.timeout)),
            Ok(None) => return Err(AttemptError::Body("closed before the first byte".into())),
            Ok(Some(Err(e))) => return Err(AttemptError::Body(e.to_string())),
            Ok(Some(Ok(first))) => first,
        };
        let relay = Relay::new(
            first,
            stream,
            idle,
            ctx.gateway.id.clone(),
            Arc::clone(ctx.metrics),
            in_flight,
        );
        let mut response = Response::new(Body::from_stream(relay.into_stream()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(response);
    }
    let bytes = read_whole(upstream, idle).await?;
    drop(in_flight);
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/json")),
    );
    Ok(response)
}

/// Reads a whole non-streaming answer, bounded in size, with the idle timeout between chunks.
async fn read_whole(
    upstream: reqwest::Response,
    idle: std::time::Duration,
) -> Result<bytes::Bytes, AttemptError> {
    let mut stream = upstream.bytes_stream();
    let mut out = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return Err(AttemptError::Timeout(idle)),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) => return Err(AttemptError::Body(e.to_string())),
            Ok(Some(Ok(chunk))) => {
                if out.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(AttemptError::Body(format!(
                        "answer larger than {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
        }
    }
}
