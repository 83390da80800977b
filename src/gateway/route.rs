//! Routing with failover: the plan's candidates are tried in priority order, and an attempt
//! succeeds once its answer can be committed to the client (the whole body, or a stream's
//! first chunk). What an answer then goes through (the response guard, the cache, token
//! settlement) is [`super::answer`]'s, outside the failover loop.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::HeaderValue;
use tracing::Instrument;

use super::pipeline::RequestContext;
use super::AiRequest;
use crate::error::{ApiError, AttemptFailure};
use crate::routing::{plan, AttemptError, Backend, InFlight};
use crate::telemetry::audit::AuditEvent;
use crate::telemetry::log_rate::LogRate;
use crate::telemetry::tracing::{self as otel, spans};

/// Lines per second about failed attempts (every one is counted in the metrics and audited).
static FAILOVER_LOG: LogRate = LogRate::new(5);

/// Largest non-streaming upstream answer accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The answer of the backend that won the failover loop.
pub struct UpstreamAnswer {
    pub backend: Arc<Backend>,
    /// A backend of a lower priority than the first answered.
    pub fallback: bool,
    pub status: http::StatusCode,
    pub body: UpstreamBody,
}

pub enum UpstreamBody {
    /// A non-streamed answer, read whole and bounded.
    Whole {
        bytes: Bytes,
        content_type: Option<HeaderValue>,
    },
    /// A stream, committed once its first chunk arrived; `in_flight` counts it until it ends.
    Stream {
        first: Bytes,
        rest: BoxStream<'static, Result<Bytes, String>>,
        in_flight: InFlight,
    },
    /// The backend's own refusal of the request (not retried), passed on normalised.
    Refused(ApiError),
}

/// Tries the candidates in order; fails over only before anything reached the client.
pub async fn route(
    ctx: &RequestContext<'_>,
    request: &AiRequest,
) -> Result<UpstreamAnswer, ApiError> {
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
    let mut rate_limited = Vec::new();
    for (n, backend) in plan
        .candidates
        .iter()
        .take(gateway.settings.max_attempts)
        .enumerate()
    {
        let in_flight = backend.start_request();
        let attempt_span = spans::stage(ctx.sampled, || {
            spans::backend_attempt_span(
                &backend.name,
                &backend.base_url,
                u32::try_from(n + 1).unwrap_or(u32::MAX),
                backend.upstream_model(&request.model),
            )
        });
        // Unsampled: the request span's (the current one) context goes to the backend, with
        // the sampled flag off.
        let trace = if ctx.sampled {
            otel::trace_headers(&attempt_span)
        } else {
            otel::trace_headers(&tracing::Span::current())
        };
        let outcome = attempt(ctx, backend, request, in_flight, trace)
            .instrument(attempt_span.clone())
            .await;
        match &outcome {
            Ok((status, _)) => spans::record_http_status(&attempt_span, status.as_u16(), true),
            Err(error) => spans::record_error(&attempt_span, error.metric_label()),
        }
        match outcome {
            Ok((status, body)) => {
                backend.record_success();
                let fallback = backend.priority > gateway.primary_priority;
                if fallback {
                    ctx.audit.record(
                        AuditEvent::new(
                            "fallback_used",
                            ctx.request_id,
                            &gateway.id,
                            "served",
                            "answered by a fallback backend",
                        )
                        .detail("backend", backend.name.clone())
                        .detail("priority", backend.priority),
                    );
                }
                ctx.metrics
                    .upstream_attempt(&gateway.id, &backend.name, "success");
                return Ok(UpstreamAnswer {
                    backend: Arc::clone(backend),
                    fallback,
                    status,
                    body,
                });
            }
            Err(error) => {
                ctx.metrics
                    .upstream_attempt(&gateway.id, &backend.name, error.metric_label());
                if !error.is_retriable() {
                    if error.is_health_failure() {
                        backend.record_failure();
                    }
                    // The backend's own verdict on the request: returned as it is, named.
                    return Ok(UpstreamAnswer {
                        backend: Arc::clone(backend),
                        fallback: false,
                        status: http::StatusCode::BAD_GATEWAY,
                        body: UpstreamBody::Refused(upstream_error(&backend.name, error)),
                    });
                }
                if error.is_health_failure() {
                    backend.record_failure();
                }
                ctx.metrics
                    .failover(&gateway.id, &backend.name, error.metric_label());
                ctx.audit.record(
                    AuditEvent::new(
                        "failover",
                        ctx.request_id,
                        &gateway.id,
                        "retried",
                        error.metric_label(),
                    )
                    .detail("backend", backend.name.clone()),
                );
                if let Some(suppressed) = FAILOVER_LOG.admit() {
                    tracing::warn!(
                        request_id = ctx.request_id,
                        backend = %backend.name,
                        reason = %error,
                        suppressed_since_last = suppressed,
                        "upstream attempt failed; trying the next candidate"
                    );
                }
                rate_limited.push(match &error {
                    AttemptError::Status {
                        status: 429,
                        retry_after,
                        ..
                    } => Some(*retry_after),
                    _ => None,
                });
                failures.push(AttemptFailure {
                    backend: backend.name.clone(),
                    reason: error.to_string(),
                });
            }
        }
    }
    if rate_limited.iter().all(Option::is_some) && plan.needs_approval.is_empty() {
        // Every backend is busy, none is broken: a 429 lets the SDK back off and retry, after
        // the shortest wait any backend asked for.
        return Err(ApiError::UpstreamRateLimited {
            model: request.model.clone(),
            attempts: failures,
            retry_after: rate_limited.into_iter().flatten().flatten().min(),
        });
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

fn upstream_error(backend: &str, error: AttemptError) -> ApiError {
    match error {
        AttemptError::Status { status, body, .. } => ApiError::Upstream {
            status,
            body: crate::openai::normalize_upstream_error(status, &body),
        },
        AttemptError::Redirect(status) => ApiError::BadGateway {
            message: format!(
                "The backend `{backend}` answered a redirect (HTTP {status}), which AirGate does not follow"
            ),
            code: "upstream_redirect",
        },
        other => ApiError::Internal(format!("non-retriable attempt error: {other}")),
    }
}

/// One attempt at one backend. It succeeds only once the answer can be committed to the client:
/// the whole body, or for streams the first body chunk.
async fn attempt(
    ctx: &RequestContext<'_>,
    backend: &Arc<Backend>,
    request: &AiRequest,
    in_flight: InFlight,
    trace: http::HeaderMap,
) -> Result<(http::StatusCode, UpstreamBody), AttemptError> {
    let started = Instant::now();
    let body = request
        .upstream_body(backend.upstream_model(&request.model))
        .map_err(|e| AttemptError::Body(e.to_string()))?;
    let upstream = backend
        .client
        .send(
            backend,
            request.endpoint.path(),
            body,
            ctx.request_id,
            trace,
        )
        .await?;
    let status = upstream.status;
    let idle = ctx.gateway.settings.stream_idle_timeout;
    if request.stream {
        let remaining = backend.timeout.saturating_sub(started.elapsed());
        let mut rest = upstream.body;
        let first = match tokio::time::timeout(remaining, rest.next()).await {
            Err(_) => return Err(AttemptError::Timeout(backend.timeout)),
            Ok(None) => return Err(AttemptError::Body("closed before the first byte".into())),
            Ok(Some(Err(e))) => return Err(AttemptError::Body(e.to_string())),
            Ok(Some(Ok(first))) => first,
        };
        return Ok((
            status,
            UpstreamBody::Stream {
                first,
                rest,
                in_flight,
            },
        ));
    }
    let deadline = ctx
        .gateway
        .settings
        .response_timeout
        .saturating_sub(started.elapsed());
    let bytes = tokio::time::timeout(deadline, read_whole(upstream.body, idle))
        .await
        .map_err(|_| AttemptError::Timeout(ctx.gateway.settings.response_timeout))??;
    drop(in_flight);
    Ok((
        status,
        UpstreamBody::Whole {
            bytes,
            content_type: upstream.content_type,
        },
    ))
}

/// Reads a whole non-streaming answer, bounded in size, with the idle timeout between chunks.
async fn read_whole(
    mut stream: futures::stream::BoxStream<'static, Result<bytes::Bytes, String>>,
    idle: std::time::Duration,
) -> Result<bytes::Bytes, AttemptError> {
    let mut out = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return Err(AttemptError::Timeout(idle)),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) => return Err(AttemptError::Body(e)),
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
