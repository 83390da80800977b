//! What a route tells the records layer about the request it answered ([`Outcome`]), and the
//! one function that writes a request's records from it ([`finish`]): the request metrics, the
//! span's status, the audit records and the access-log line, for AI routes, `API` routes, paths
//! nothing serves (404) and requests refused before any route (smuggling defences) alike.
//!
//! A route describes; it does not write. It puts an [`Outcome`] on its response as an
//! extension, and the public router's outermost layer ([`crate::server::middleware`]) takes it
//! off and calls [`finish`], once, with the facts every request has (id, method, path, client
//! address, headers, status, duration). A response without an `Outcome` is logged as answered
//! by nobody (`backend: "none"`), with no metrics: it was not routed.

use std::net::IpAddr;
use std::time::Instant;

use http::HeaderMap;

use super::access_log::{AccessLog, AccessRecord, DeferredLine};
use super::audit::{AuditEvent, AuditLog};
use super::metrics::RequestLabels;
use super::tracing::spans;
use super::Metrics;

/// A route's account of one request.
#[derive(Clone, Default)]
pub struct Outcome {
    /// The route's part of the access-log line (gateway, backend, model, tokens, ...); the
    /// layer fills in the request's own facts.
    pub record: AccessRecord,
    /// The request-metric labels, when the route counts requests.
    pub metrics: Option<MetricLabels>,
    /// Audit records the request owes (`request_served`, `request_interrupted`).
    pub audit: Vec<AuditEvent>,
    /// The request's span, whose status is set from the response.
    pub span: Option<tracing::Span>,
    /// A relayed stream completes the line (and the audit records) when it ends.
    pub stream_line: Option<DeferredLine>,
}

/// Owned [`RequestLabels`], and whether the latency is observed.
#[derive(Clone, Default)]
pub struct MetricLabels {
    pub gateway: String,
    pub route: &'static str,
    pub model: String,
    pub latency: bool,
}

/// What every request has, whichever route answered it.
pub struct RequestFacts<'a> {
    pub request_id: &'a str,
    pub method: &'a http::Method,
    pub path: &'a str,
    pub client_ip: IpAddr,
    /// The request's headers, for the access log's header rules; `None` when it is off.
    pub headers: Option<HeaderMap>,
    pub started: Instant,
}

/// Where the records go.
#[derive(Clone, Copy)]
pub struct Sinks<'a> {
    pub metrics: &'a Metrics,
    pub audit: &'a AuditLog,
    pub access_log: &'a AccessLog,
}

/// Writes the records of one request, once.
pub fn finish(sinks: Sinks<'_>, facts: RequestFacts<'_>, status: u16, outcome: Option<Outcome>) {
    let Outcome {
        mut record,
        metrics,
        audit,
        span,
        stream_line,
    } = outcome.unwrap_or_else(|| Outcome {
        record: AccessRecord {
            backend: "none".into(),
            ..AccessRecord::default()
        },
        ..Outcome::default()
    });
    if let Some(span) = &span {
        spans::record_http_status(span, status, false);
        span.record(spans::AIRGATE_BACKEND, record.backend.as_str());
    }
    if let Some(labels) = &metrics {
        let seconds = labels
            .latency
            .then(|| facts.started.elapsed().as_secs_f64());
        let labels = RequestLabels {
            gateway: &labels.gateway,
            route: labels.route,
            model: &labels.model,
            backend: &record.backend,
        };
        sinks.metrics.observe_request(&labels, status, seconds);
    }
    record.request_id = facts.request_id.to_string();
    record.method = facts.method.to_string();
    record.path = facts.path.to_string();
    record.status = status;
    record.duration_ms = facts.started.elapsed().as_secs_f64() * 1000.0;
    record.client_ip = facts.client_ip.to_string();
    let headers = facts.headers.unwrap_or_default();
    match stream_line {
        Some(line) => {
            // one audit record at most waits for a stream: `request_served`
            let audit = audit
                .into_iter()
                .next()
                .map(|event| (sinks.audit.clone(), event));
            line.hand_over(sinks.access_log, record, headers, facts.started, audit);
        }
        None => {
            for event in audit {
                sinks.audit.record(event);
            }
            sinks.access_log.write(record, &headers);
        }
    }
}
