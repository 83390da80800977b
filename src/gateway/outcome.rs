//! What one AI request came to, finished once for every request, answered or refused: the
//! response headers it owes (`x-airgate-backend`, rate-limit, cache), the request metrics, the
//! span's status, the access-log line and the audit record.
//!
//! The stages fill a [`RequestOutcome`] as they learn things (the user, the model, whether the
//! prompt was scanned, the tokens); [`RequestOutcome::finish`] is the one place that writes the
//! records. A streamed answer's access-log line is completed by its stream, when it ends
//! ([`DeferredLine`]).

use std::time::Instant;

use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue};

use super::accounting::Usage;
use super::cache_stage::CACHE_HEADER;
use super::pipeline::RequestContext;
use super::Endpoint;
use crate::error::ApiError;
use crate::telemetry::access_log::{AccessRecord, DeferredLine};
use crate::telemetry::audit::AuditEvent;
use crate::telemetry::metrics::RequestLabels;
use crate::telemetry::tracing::spans;

/// Response header naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-airgate-backend";

/// `x-airgate-backend` of an answer served from the semantic cache.
pub const CACHE_BACKEND: &str = "cache";

/// A response and the backend that gave it (`cache` for a cache hit).
pub struct Answered {
    pub response: Response,
    pub backend: String,
}

/// What the stages learnt about a request, for its headers, metrics and records.
pub struct RequestOutcome {
    endpoint: Endpoint,
    started: Instant,
    pub model: String,
    pub user: Option<String>,
    pub stream: bool,
    pub prompt_scanned: bool,
    pub answer_scanned: bool,
    /// `x-ratelimit-*` headers from admission.
    pub rate_headers: Vec<(HeaderName, HeaderValue)>,
    /// `x-airgate-cache`, when the cache was consulted.
    pub cache: Option<&'static str>,
    /// Tokens of a whole answer (a stream's are added to its line when it ends).
    pub usage: Option<Usage>,
    /// Answered by a backend of a lower priority than the first.
    pub fallback: bool,
    /// The names of the changes the gateway made to the request ([`super::request::Rewrite`]).
    pub rewrites: Vec<&'static str>,
    /// The shutdown grace ended before the request was answered.
    cut_by_shutdown: bool,
    /// The access-log line a streamed answer completes.
    pub access_line: DeferredLine,
}

impl RequestOutcome {
    pub fn new(endpoint: Endpoint, started: Instant) -> Self {
        RequestOutcome {
            endpoint,
            started,
            model: String::new(),
            user: None,
            stream: false,
            prompt_scanned: false,
            answer_scanned: false,
            rate_headers: Vec::new(),
            cache: None,
            usage: None,
            fallback: false,
            rewrites: Vec::new(),
            cut_by_shutdown: false,
            access_line: DeferredLine::default(),
        }
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The request was still waiting for its answer when the shutdown grace ended.
    pub fn cut_by_shutdown(&mut self) -> Result<Answered, ApiError> {
        self.cut_by_shutdown = true;
        Err(ApiError::ShuttingDown)
    }

    /// Writes everything the request owes and returns its response.
    pub fn finish(
        self,
        ctx: &RequestContext<'_>,
        span: &tracing::Span,
        parts: http::request::Parts,
        result: Result<Answered, ApiError>,
    ) -> Response {
        let Answered {
            mut response,
            backend,
        } = result.unwrap_or_else(|error| Answered {
            response: error.into_response(),
            backend: "none".to_string(),
        });
        self.add_headers(&mut response, &backend);
        let status = response.status().as_u16();
        self.observe(ctx, span, status, &backend);
        let record = self.access_record(ctx, &parts, status, &backend);
        if self.cut_by_shutdown {
            ctx.audit.record(interrupted_event(ctx, &record, &self));
        }
        let served = (200..300)
            .contains(&status)
            .then(|| served_event(ctx, &record, &self));
        if self.relays_stream(&response, &backend) {
            let audit = served.map(|event| (ctx.audit.clone(), event));
            self.access_line
                .hand_over(ctx.access, record, parts.headers, self.started, audit);
        } else {
            if let Some(event) = served {
                ctx.audit.record(event);
            }
            ctx.access.write(record, &parts.headers);
        }
        response
    }

    fn add_headers(&self, response: &mut Response, backend: &str) {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(backend) {
            headers.insert(BACKEND_HEADER, value);
        }
        for (name, value) in &self.rate_headers {
            headers.entry(name).or_insert(value.clone());
        }
        if let Some(outcome) = self.cache {
            headers
                .entry(CACHE_HEADER)
                .or_insert(HeaderValue::from_static(outcome));
        }
    }

    /// The request metrics and the span's status.
    fn observe(&self, ctx: &RequestContext<'_>, span: &tracing::Span, status: u16, backend: &str) {
        spans::record_http_status(span, status, false);
        span.record(spans::AIRGATE_BACKEND, backend);
        if let Some(usage) = self.usage {
            spans::record_usage(span, usage.prompt, usage.completion);
        }
        let flags = ctx.gateway.metrics;
        if flags.enabled {
            let labels = RequestLabels {
                gateway: &ctx.gateway.id,
                route: self.endpoint.route(),
                model: ctx.gateway.model_label(&self.model),
                backend,
            };
            let seconds = flags.latency.then(|| self.started.elapsed().as_secs_f64());
            ctx.metrics.observe_request(&labels, status, seconds);
        }
    }

    fn access_record(
        &self,
        ctx: &RequestContext<'_>,
        parts: &http::request::Parts,
        status: u16,
        backend: &str,
    ) -> AccessRecord {
        AccessRecord {
            request_id: ctx.request_id.to_string(),
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            status,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            gateway: ctx.gateway.id.clone(),
            backend: backend.to_string(),
            model: (!self.model.is_empty())
                .then(|| ctx.gateway.model_label(&self.model).to_string()),
            stream: self.stream,
            prompt_tokens: self.usage.map(|u| u.prompt),
            completion_tokens: self.usage.map(|u| u.completion),
            cache: self.cache,
            prompt_scanned: self.prompt_scanned,
            answer_scanned: self.answer_scanned && backend != CACHE_BACKEND,
            client_ip: ctx.client_ip.to_string(),
            user: self.user.clone(),
            cut_by_shutdown: self.cut_by_shutdown,
            rewrites: self.rewrites.clone(),
            ..AccessRecord::default()
        }
    }

    /// A stream relayed from a backend: its line and audit record wait for its end.
    fn relays_stream(&self, response: &Response, backend: &str) -> bool {
        self.stream
            && backend != CACHE_BACKEND
            && response.status().is_success()
            && response
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    }
}

/// The `request_served` audit event (a streamed answer's tokens are added when it ends).
fn served_event(
    ctx: &RequestContext<'_>,
    record: &AccessRecord,
    outcome: &RequestOutcome,
) -> AuditEvent {
    let event = AuditEvent::new(
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
    .detail("fallback", outcome.fallback);
    let mut event = with_who(event, record, outcome);
    if !outcome.rewrites.is_empty() {
        event = event.detail("rewrites", outcome.rewrites.clone());
    }
    if let Some(usage) = outcome.usage {
        event = event
            .detail("prompt_tokens", usage.prompt)
            .detail("completion_tokens", usage.completion);
    }
    event
}

/// The audit record of a request the shutdown ended before it was answered.
fn interrupted_event(
    ctx: &RequestContext<'_>,
    record: &AccessRecord,
    outcome: &RequestOutcome,
) -> AuditEvent {
    let event = AuditEvent::new(
        "request_interrupted",
        ctx.request_id,
        &ctx.gateway.id,
        "failure",
        "gateway shutdown",
    )
    .detail("status", record.status)
    .detail("stream", record.stream)
    .detail("cut_by_shutdown", true);
    with_who(event, record, outcome)
}

/// The model, the user and the client address, on either record.
fn with_who(mut event: AuditEvent, record: &AccessRecord, outcome: &RequestOutcome) -> AuditEvent {
    if let Some(model) = &record.model {
        event = event.detail("model", model.clone());
    }
    event.user.clone_from(&outcome.user);
    event.source_ip = Some(record.client_ip.clone());
    event
}
