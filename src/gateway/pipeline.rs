//! One AI request, stage by stage, in the order the architecture gives:
//! read body -> parse -> (auth, rate limit, guard, cache: later stages) -> route with failover ->
//! answer (JSON or relayed SSE) -> metrics.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request};

use tracing::Instrument;

use super::accounting::{
    answer_text, estimate_tokens, operation_name, prompt_text, usage_of, Accounting, Usage,
};
use super::admission::{admit, authenticate, total_tokens, AdmissionContext, Reservation};
use super::cache_stage::{self, CacheContext, CacheFill, Lookup, CACHE_HEADER};
use super::content_filter::{scan_request, scan_response, GuardPolicy, StreamGuard};
use super::guard_events::{GuardReporter, Stage};
use super::relay::{Relay, RelayParts};
use super::usage::{UsagePlan, UsageTap};
use super::{body, AiRequest, Endpoint, Gateway};
use crate::access::RateLimiter;
use crate::error::{ApiError, AttemptFailure};
use crate::routing::{plan, AttemptError, Backend, InFlight};
use crate::server::Shutdown;
use crate::telemetry::access_log::{AccessLog, AccessRecord, DeferredLine};
use crate::telemetry::audit::{AuditEvent, AuditLog};
use crate::telemetry::log_rate::LogRate;
use crate::telemetry::metrics::RequestLabels;
use crate::telemetry::tracing::{self as otel, spans};
use crate::telemetry::Metrics;

/// Response header naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-airgate-backend";

/// What an answer settles: the token reservation and the token/latency metrics.
struct Bookkeeping {
    usage: UsagePlan,
    reservation: Option<Reservation>,
    accounting: Option<Accounting>,
    /// Where to store the answer in the semantic cache, if it qualifies.
    fill: Option<CacheFill>,
    /// Usage of a whole (non-streamed) answer, once known.
    answer_usage: Option<Usage>,
    /// Answered by a backend of a lower priority than the first.
    fallback: bool,
    /// A streamed answer's access-log line, completed by the stream.
    access_line: Option<DeferredLine>,
}

impl Bookkeeping {
    /// Settles from a whole (non-streamed) answer, parsed once by the caller.
    fn settle_whole(&mut self, json: Option<&serde_json::Value>, len: usize) {
        let usage = json.and_then(usage_of);
        self.answer_usage = usage;
        if let Some(reservation) = self.reservation.take() {
            let reserved = reservation.reserved();
            reservation.settle(json.and_then(total_tokens).unwrap_or(reserved));
        }
        if let Some(accounting) = self.accounting.take() {
            let text = json
                .filter(|_| usage.is_none() && accounting.tokenizer.is_some())
                .map(answer_text);
            accounting.finish(usage, estimate_tokens(len), text.as_deref(), None);
        }
    }
}

/// Lines per second about failed attempts (every one is counted in the metrics and audited).
static FAILOVER_LOG: LogRate = LogRate::new(5);

/// `x-airgate-backend` of an answer served from the semantic cache.
const CACHE_BACKEND: &str = "cache";

/// Prompts larger than this are scanned on the blocking pool instead of the async worker.
const INLINE_SCAN_BYTES: usize = 64 * 1024;

/// Largest non-streaming upstream answer accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Copy)]
pub struct RequestContext<'a> {
    pub gateway: &'a Arc<Gateway>,
    pub metrics: &'a Arc<Metrics>,
    pub audit: &'a AuditLog,
    pub access: &'a AccessLog,
    pub limiter: &'a RateLimiter,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    /// Approved for `requiresApproval` backends: set by admission from a verified token claim.
    pub approved: bool,
    /// The authenticated user, once known: guard events carry it.
    pub user: Option<&'a str>,
    /// The request's trace is sampled: stage and attempt spans are built only then.
    pub sampled: bool,
    /// Ends the request (503) or its stream (an error event) when the shutdown grace is over.
    pub shutdown: &'a Shutdown,
    /// The process-wide memory budget for buffered request bodies.
    pub body_budget: &'a body::BodyBudget,
}

impl RequestContext<'_> {
    fn admission(&self, route: &'static str) -> AdmissionContext<'_> {
        AdmissionContext {
            gateway: &self.gateway.id,
            route,
            request_id: self.request_id,
            client_ip: self.client_ip,
            limiter: self.limiter,
            metrics: self.metrics,
            audit: self.audit,
        }
    }

    fn reporter(&self) -> GuardReporter {
        GuardReporter {
            gateway: self.gateway.id.clone(),
            request_id: self.request_id.to_string(),
            user: self.user.map(str::to_string),
            client_ip: self.client_ip.to_string(),
            metrics: Arc::clone(self.metrics),
            audit: self.audit.clone(),
        }
    }
}

pub async fn handle(
    ctx: RequestContext<'_>,
    endpoint: Endpoint,
    request: Request<Body>,
) -> Response {
    let started = Instant::now();
    let (parts, raw_body) = request.into_parts();
    let mut model = String::new();
    let mut rate_headers = Vec::new();
    let mut cache_header = None;
    let mut seen = Seen::default();
    let deferred_line = DeferredLine::default();
    let span = spans::request_span(operation_name(endpoint), "", ctx.request_id);
    otel::set_parent_from_headers(&span, &parts.headers);
    let ctx = RequestContext {
        sampled: spans::is_sampled(&span),
        ..ctx
    };
    let result = async {
        let admission = ctx.admission(endpoint.route());
        let mut caller = spans::stage(ctx.sampled, spans::auth_span)
            .in_scope(|| authenticate(&admission, ctx.gateway, &parts))?;
        seen.user.clone_from(&caller.user);
        let user = caller.user.clone();
        let ctx = RequestContext {
            approved: caller.approved,
            user: user.as_deref(),
            ..ctx
        };
        let settings = &ctx.gateway.settings;
        // The reservation holds the body's share of the memory budget until the request is
        // answered (for a stream: until its head is sent).
        let (bytes, _body_reservation) = body::read(
            &parts.headers,
            raw_body,
            settings.max_body_bytes,
            settings.body_read_timeout,
            ctx.body_budget,
        )
        .await?;
        let mut request = AiRequest::parse(endpoint, &bytes)?;
        model.clone_from(&request.model);
        span.record(spans::GEN_AI_REQUEST_MODEL, request.model.as_str());
        let mut reservation = admit(
            &admission,
            ctx.gateway,
            &mut caller,
            &mut request,
            bytes.len(),
        )
        .instrument(spans::stage(ctx.sampled, spans::rate_limit_span))
        .await?;
        rate_headers.clone_from(&caller.rate_headers);
        seen.stream = request.stream;
        if let Some(guard) = &ctx.gateway.guard {
            seen.prompt_scanned = guard.scan_prompts;
            seen.answer_scanned = guard.scan_responses && endpoint != Endpoint::Embeddings;
        }
        guard_prompt(&ctx, &mut request, bytes.len())
            .instrument(spans::stage(ctx.sampled, || spans::guard_span("prompt")))
            .await?;
        let flags = ctx.gateway.metrics;
        let usage = UsagePlan::prepare(
            &mut request,
            reservation.is_some() || (flags.enabled && flags.token_count),
        );
        let accounting = flags.enabled.then(|| Accounting {
            metrics: Arc::clone(ctx.metrics),
            gateway: ctx.gateway.id.clone(),
            model: ctx.gateway.model_label(&request.model).to_string(),
            endpoint,
            started,
            flags,
            prompt_estimate: estimate_tokens(bytes.len()),
            prompt_text: ctx
                .gateway
                .backends
                .iter()
                .any(|b| b.tokenizer.is_some())
                .then(|| prompt_text(&request.body)),
            tokenizer: None,
        });
        let mut fill = None;
        if let Some(policy) = &ctx.gateway.cache {
            let cache_ctx = CacheContext {
                gateway: &ctx.gateway.id,
                request_id: ctx.request_id,
                user: caller.user.as_deref(),
                metrics: ctx.metrics,
                audit: ctx.audit,
            };
            let outcome = cache_stage::lookup(&cache_ctx, policy, &request, &parts.headers)
                .instrument(spans::stage(ctx.sampled, spans::cache_span))
                .await;
            cache_header = Some(outcome.header());
            fill = match outcome {
                Lookup::Hit(response) => return Ok((response, CACHE_BACKEND.to_string())),
                Lookup::Miss(fill) | Lookup::Bypass(fill) => fill,
            };
        }
        let mut books = Bookkeeping {
            usage,
            reservation: reservation.take(),
            accounting,
            fill,
            answer_usage: None,
            fallback: false,
            access_line: Some(deferred_line.clone()),
        };
        let routed = route(&ctx, &request, &mut books).await;
        seen.usage = books.answer_usage;
        seen.fallback = books.fallback;
        routed
    }
    .instrument(span.clone());
    // A request still waiting for its answer when the shutdown grace ends gets a 503 and its
    // records (a stream already answering is cut by its relay instead).
    let result = tokio::select! {
        biased;
        result = result => result,
        _ = ctx.shutdown.cut_now() => {
            seen.cut_by_shutdown = true;
            Err(ApiError::ShuttingDown)
        }
    };
    let (response, backend) = match result {
        Ok((response, backend)) => (response, backend),
        Err(error) => (error.into_response(), "none".to_string()),
    };
    let mut response = response;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&backend) {
        headers.insert(BACKEND_HEADER, value);
    }
    for (name, value) in rate_headers {
        headers.entry(name).or_insert(value);
    }
    if let Some(outcome) = cache_header {
        headers
            .entry(CACHE_HEADER)
            .or_insert(HeaderValue::from_static(outcome));
    }
    let labels = RequestLabels {
        gateway: &ctx.gateway.id,
        route: endpoint.route(),
        model: ctx.gateway.model_label(&model),
        backend: &backend,
    };
    let flags = ctx.gateway.metrics;
    let status = response.status().as_u16();
    spans::record_http_status(&span, status, false);
    span.record(spans::AIRGATE_BACKEND, backend.as_str());
    if let Some(usage) = seen.usage {
        spans::record_usage(&span, usage.prompt, usage.completion);
    }
    if flags.enabled {
        let seconds = flags.latency.then(|| started.elapsed().as_secs_f64());
        ctx.metrics.observe_request(&labels, status, seconds);
    }
    let record = AccessRecord {
        request_id: ctx.request_id.to_string(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        status,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        gateway: ctx.gateway.id.clone(),
        backend: backend.clone(),
        model: (!model.is_empty()).then(|| ctx.gateway.model_label(&model).to_string()),
        stream: seen.stream,
        prompt_tokens: seen.usage.map(|u| u.prompt),
        completion_tokens: seen.usage.map(|u| u.completion),
        cache: cache_header,
        prompt_scanned: seen.prompt_scanned,
        answer_scanned: seen.answer_scanned && backend != CACHE_BACKEND,
        client_ip: ctx.client_ip.to_string(),
        user: seen.user.clone(),
        cut_by_shutdown: seen.cut_by_shutdown,
        ..AccessRecord::default()
    };
    if seen.cut_by_shutdown {
        ctx.audit.record(interrupted_event(&ctx, &record, &seen));
    }
    let served = (200..300)
        .contains(&status)
        .then(|| served_event(&ctx, &record, &seen));
    let relayed_stream = seen.stream
        && backend != CACHE_BACKEND
        && response.status().is_success()
        && response
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if relayed_stream {
        let audit = served.map(|event| (ctx.audit.clone(), event));
        deferred_line.hand_over(ctx.access, record, parts.headers, started, audit);
    } else {
        if let Some(event) = served {
            ctx.audit.record(event);
        }
        ctx.access.write(record, &parts.headers);
    }
    response
}

/// The `request_served` audit event (a streamed answer's tokens are added when it ends).
fn served_event(ctx: &RequestContext<'_>, record: &AccessRecord, seen: &Seen) -> AuditEvent {
    let mut event = AuditEvent::new(
        "request_served",
        ctx.request_id,
        &ctx.gateway.id,
        "served",
        format!("{} {}", record.method, record.path),
    )
    .detail("backend", record.backend.clone())
    .detail("status", record.status)
    .detail("stream", record.stream)
    .detail("prompt_scanned", record.prompt_scanned)
    .detail("answer_scanned", record.answer_scanned)
    .detail("fallback", seen.fallback);
    if let Some(model) = &record.model {
        event = event.detail("model", model.clone());
    }
    if let Some(usage) = seen.usage {
        event = event
            .detail("prompt_tokens", usage.prompt)
            .detail("completion_tokens", usage.completion);
    }
    event.user.clone_from(&seen.user);
    event.source_ip = Some(record.client_ip.clone());
    event
}

/// The audit record of a request the shutdown ended before it was answered.
fn interrupted_event(ctx: &RequestContext<'_>, record: &AccessRecord, seen: &Seen) -> AuditEvent {
    let mut event = AuditEvent::new(
        "request_interrupted",
        ctx.request_id,
        &ctx.gateway.id,
        "failure",
        "gateway shutdown",
    )
    .detail("status", record.status)
    .detail("stream", record.stream)
    .detail("cut_by_shutdown", true);
    if let Some(model) = &record.model {
        event = event.detail("model", model.clone());
    }
    event.user.clone_from(&seen.user);
    event.source_ip = Some(record.client_ip.clone());
    event
}

/// What the stages learnt about a request, for its access-log line and audit event.
#[derive(Default)]
struct Seen {
    /// The shutdown grace ended before the request was answered.
    cut_by_shutdown: bool,
    user: Option<String>,
    stream: bool,
    prompt_scanned: bool,
    answer_scanned: bool,
    usage: Option<Usage>,
    fallback: bool,
}

/// Scans the prompt (`scanPrompts`): a refusal is a 403 and the backend is never called;
/// redactions are written into the request. Large prompts are scanned on the blocking pool.
async fn guard_prompt(
    ctx: &RequestContext<'_>,
    request: &mut AiRequest,
    size: usize,
) -> Result<(), ApiError> {
    let Some(policy) = ctx.gateway.guard.as_ref().filter(|g| g.scan_prompts) else {
        return Ok(());
    };
    let endpoint = request.endpoint;
    let scan = if size > INLINE_SCAN_BYTES {
        let set = Arc::clone(&policy.set);
        let mut body = std::mem::take(&mut request.body);
        let _permit = policy
            .pool
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let (body, scan) = tokio::task::spawn_blocking(move || {
            let mut budget = set.budget();
            let scan = scan_request(&set, endpoint, &mut body, &mut budget);
            (body, scan)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("prompt scan task: {e}")))?;
        request.body = body;
        scan
    } else {
        let mut budget = policy.set.budget();
        scan_request(&policy.set, endpoint, &mut request.body, &mut budget)
    };
    let reporter = ctx.reporter();
    reporter.findings(Stage::Prompt, &scan.findings);
    match scan.refusal {
        Some(refusal) => {
            reporter.refusal(Stage::Prompt, &refusal);
            Err(ApiError::ContentPolicy {
                rule: refusal.rule().to_string(),
            })
        }
        None => Ok(()),
    }
}

/// Scans a whole answer (`scanResponses`) before any byte of it is sent, and returns the bytes
/// to send: the scanned answer, re-serialised. A refused choice is cut and marked
/// `finish_reason: content_filter`; an answer that is not JSON cannot be scanned and is refused
/// (fail closed).
fn guard_answer(
    ctx: &RequestContext<'_>,
    policy: &GuardPolicy,
    json: Option<&mut serde_json::Value>,
) -> Result<bytes::Bytes, ApiError> {
    let unscannable = || ApiError::Upstream {
        status: 502,
        body: crate::openai::ErrorBody {
            error: crate::openai::ErrorObject::new(
                "The backend's answer could not be scanned by the content guard",
                "server_error",
                Some("unscannable_answer"),
            ),
        },
    };
    let json = json.ok_or_else(unscannable)?;
    let mut budget = policy.set.budget();
    let scan = scan_response(&policy.set, json, &mut budget);
    let reporter = ctx.reporter();
    reporter.findings(Stage::Response, &scan.findings);
    if let Some(refusal) = &scan.refusal {
        reporter.refusal(Stage::Response, refusal);
    }
    // What was scanned is what is sent, never the original bytes: JSON with a duplicate key
    // parses to its last value, and a client whose parser keeps the first would display text
    // the guard never saw.
    serde_json::to_vec(json)
        .map(bytes::Bytes::from)
        .map_err(|_| unscannable())
}

/// Tries the candidates in order; fails over only before anything reached the client.
async fn route(
    ctx: &RequestContext<'_>,
    request: &AiRequest,
    books: &mut Bookkeeping,
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
        let outcome = attempt(ctx, backend, request, in_flight, books, trace)
            .instrument(attempt_span.clone())
            .await;
        match &outcome {
            Ok(response) => {
                spans::record_http_status(&attempt_span, response.status().as_u16(), true)
            }
            Err(error) => spans::record_error(&attempt_span, error.metric_label()),
        }
        match outcome {
            Ok(response) => {
                backend.record_success();
                if backend.priority > gateway.primary_priority {
                    books.fallback = true;
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
                return Ok((response, backend.name.clone()));
            }
            Err(error) => {
                ctx.metrics
                    .upstream_attempt(&gateway.id, &backend.name, error.metric_label());
                if !error.is_retriable() {
                    if error.is_health_failure() {
                        backend.record_failure();
                    }
                    // The backend's own verdict on the request: returned as it is, named.
                    return Ok((
                        upstream_error(&backend.name, error).into_response(),
                        backend.name.clone(),
                    ));
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
        AttemptError::Redirect(status) => ApiError::Upstream {
            status: 502,
            body: crate::openai::ErrorBody {
                error: crate::openai::ErrorObject::new(
                    format!("The backend `{backend}` answered a redirect (HTTP {status}), which AirGate does not follow"),
                    "server_error",
                    Some("upstream_redirect"),
                ),
            },
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
    books: &mut Bookkeeping,
    trace: http::HeaderMap,
) -> Result<Response, AttemptError> {
    let started = Instant::now();
    if let Some(accounting) = books.accounting.as_mut() {
        accounting.tokenizer.clone_from(&backend.tokenizer);
    }
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
    let content_type = upstream.content_type;
    let status = upstream.status;
    let idle = ctx.gateway.settings.stream_idle_timeout;
    if request.stream {
        let remaining = backend.timeout.saturating_sub(started.elapsed());
        let mut stream = upstream.body;
        let first = match tokio::time::timeout(remaining, stream.next()).await {
            Err(_) => return Err(AttemptError::Timeout(backend.timeout)),
            Ok(None) => return Err(AttemptError::Body("closed before the first byte".into())),
            Ok(Some(Err(e))) => return Err(AttemptError::Body(e.to_string())),
            Ok(Some(Ok(first))) => first,
        };
        let guard = ctx
            .gateway
            .guard
            .as_ref()
            .filter(|g| g.scan_responses)
            .map(|g| {
                (
                    StreamGuard::new(Arc::clone(&g.set), request.endpoint),
                    ctx.reporter(),
                )
            });
        let relay = Relay::new(RelayParts {
            first,
            upstream: stream,
            idle_timeout: idle,
            shutdown: ctx.shutdown.clone(),
            gateway: ctx.gateway.id.clone(),
            metrics: Arc::clone(ctx.metrics),
            in_flight,
            guard,
            usage: UsageTap::new(
                books.usage,
                books.reservation.take(),
                books.accounting.take(),
            )
            .with_access_line(books.access_line.take()),
            fill: books
                .fill
                .take()
                .filter(|_| backend.priority == ctx.gateway.primary_priority),
        });
        let mut response = Response::new(Body::from_stream(relay.into_stream()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(response);
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
    // Parsed once for usage, the guard and the cache.
    let mut json = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
    books.settle_whole(json.as_ref(), bytes.len());
    let policy = ctx.gateway.guard.as_ref().filter(|g| g.scan_responses);
    let bytes = match policy {
        Some(policy) if status.is_success() && request.endpoint != Endpoint::Embeddings => {
            match guard_answer(ctx, policy, json.as_mut()) {
                Ok(bytes) => bytes,
                Err(refused) => return Ok(refused.into_response()),
            }
        }
        _ => bytes,
    };
    let fill = books
        .fill
        .take()
        .filter(|_| backend.priority == ctx.gateway.primary_priority);
    if let (Some(fill), Some(json)) = (fill.filter(|_| status.is_success()), &json) {
        fill.store_whole(json, &bytes);
    }
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
