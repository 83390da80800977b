//! What one AI request came to, answered or refused: the response headers it owes
//! (`x-airgate-backend`, rate-limit, cache), and the account of it the records layer writes
//! ([`crate::telemetry::outcome`]: request metrics, span status, audit records, access-log
//! line).
//!
//! The stages fill a [`RequestOutcome`] as they learn things (the user, the model, whether the
//! prompt was scanned, the tokens); [`RequestOutcome::finish`] turns it into the response's
//! [`Outcome`]. A streamed answer's access-log line is completed by its stream, when it ends
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
use crate::telemetry::outcome::{MetricLabels, Outcome};
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

    /// Describes what the request owes (headers, metrics, span status, audit, access-log
    /// line) and puts that [`Outcome`] on its response, for the records layer to write once.
    pub fn finish(
        self,
        ctx: &RequestContext<'_>,
        span: &tracing::Span,
        parts: &http::request::Parts,
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
        if let Some(usage) = self.usage {
            spans::record_usage(span, usage.prompt, usage.completion);
        }
        let record = self.access_record(ctx, parts, status, &backend);
        let mut audit = Vec::new();
        if self.cut_by_shutdown {
            audit.push(interrupted_event(ctx, &record, &self));
        }
        if (200..300).contains(&status) {
            audit.push(served_event(ctx, &record, &self));
        }
        let stream_line = self
            .relays_stream(&response, &backend)
            .then(|| self.access_line.clone());
        let outcome = Outcome {
            metrics: self.metric_labels(ctx),
            record,
            audit,
            span: Some(span.clone()),
            stream_line,
        };
        response.extensions_mut().insert(outcome);
        response
    }

    /// The request metrics' labels, when the gateway's metrics are on.
    fn metric_labels(&self, ctx: &RequestContext<'_>) -> Option<MetricLabels> {
        let flags = ctx.gateway.metrics;
        flags.enabled.then(|| MetricLabels {
            gateway: ctx.gateway.id.clone(),
            route: self.endpoint.route(),
            model: ctx.gateway.model_label(&self.model).to_string(),
            latency: flags.latency,
        })
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
