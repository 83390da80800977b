//! Prometheus metrics, named by Prometheus conventions (base units, `_total`, `_seconds`).
//! Labels are bounded: model names are only those configured (others become `other`), and no
//! user identity is ever a label.

use std::sync::Arc;

use crate::access::{FailurePolicy, RedisFailure, RedisOptions};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Request-duration buckets in seconds, from sub-millisecond proxying to long generations.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_attempts: IntCounterVec,
    failovers: IntCounterVec,
    backend_up: IntGaugeVec,
    stream_terminations: IntCounterVec,
    guard_events: IntCounterVec,
    auth_failures: IntCounterVec,
    rate_limited: IntCounterVec,
    rate_limit_store_errors: IntCounterVec,
}

impl Metrics {
    pub fn try_new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("airgate_requests_total", "Requests answered, by outcome."),
            &["gateway", "route", "model", "backend", "status_class"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "airgate_request_duration_seconds",
                "Time from request to response head (streams: to the first byte).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["gateway", "route"],
        )?;
        let upstream_attempts = IntCounterVec::new(
            Opts::new(
                "airgate_upstream_attempts_total",
                "Attempts at backends, by outcome.",
            ),
            &["gateway", "backend", "outcome"],
        )?;
        let failovers = IntCounterVec::new(
            Opts::new(
                "airgate_failovers_total",
                "Attempts that failed and moved on to the next candidate backend.",
            ),
            &["gateway", "backend", "reason"],
        )?;
        let backend_up = IntGaugeVec::new(
            Opts::new(
                "airgate_backend_up",
                "1 when the backend passes its active health probe.",
            ),
            &["gateway", "backend"],
        )?;
        let stream_terminations = IntCounterVec::new(
            Opts::new(
                "airgate_stream_terminations_total",
                "Streams the gateway ended with an error event, by reason.",
            ),
            &["gateway", "reason"],
        )?;
        let guard_events = IntCounterVec::new(
            Opts::new(
                "airgate_guard_events_total",
                "Content-guard matches and refusals, by stage (prompt/response), rule and action (block, redact, audit, fail_closed_*).",
            ),
            &["gateway", "stage", "rule", "action"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "airgate_auth_failures_total",
                "Requests refused by authentication, by reason.",
            ),
            &["gateway", "route", "reason"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "airgate_rate_limited_total",
                "Requests refused by a rate limit or token budget, by limit (global, user, ip, header, tokens).",
            ),
            &["gateway", "route", "limit"],
        )?;
        let rate_limit_store_errors = IntCounterVec::new(
            Opts::new(
                "airgate_rate_limit_store_errors_total",
                "Rate-limit decisions made without Redis (error, timeout, skipped while it recovers).",
            ),
            &["kind"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("airgate_build_info", "Build information; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_attempts.clone()))?;
        registry.register(Box::new(failovers.clone()))?;
        registry.register(Box::new(backend_up.clone()))?;
        registry.register(Box::new(stream_terminations.clone()))?;
        registry.register(Box::new(guard_events.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(rate_limit_store_errors.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Self {
            registry,
            requests,
            request_duration,
            upstream_attempts,
            failovers,
            backend_up,
            stream_terminations,
            guard_events,
            auth_failures,
            rate_limited,
            rate_limit_store_errors,
        })
    }

    /// Counts an answered request; its duration is observed when latency metrics are on.
    pub fn observe_request(&self, labels: &RequestLabels<'_>, status: u16, seconds: Option<f64>) {
        let class = status_class(status);
        self.requests
            .with_label_values(&[
                labels.gateway,
                labels.route,
                labels.model,
                labels.backend,
                class,
            ])
            .inc();
        if let Some(seconds) = seconds {
            self.request_duration
                .with_label_values(&[labels.gateway, labels.route])
                .observe(seconds);
        }
    }

    pub fn upstream_attempt(&self, gateway: &str, backend: &str, outcome: &str) {
        self.upstream_attempts
            .with_label_values(&[gateway, backend, outcome])
            .inc();
    }

    pub fn failover(&self, gateway: &str, backend: &str, reason: &str) {
        self.failovers
            .with_label_values(&[gateway, backend, reason])
            .inc();
    }

    pub fn set_backend_up(&self, gateway: &str, backend: &str, up: bool) {
        self.backend_up
            .with_label_values(&[gateway, backend])
            .set(i64::from(up));
    }

    pub fn stream_terminated(&self, gateway: &str, reason: &str) {
        self.stream_terminations
            .with_label_values(&[gateway, reason])
            .inc();
    }

    pub fn guard_event(&self, gateway: &str, stage: &str, rule: &str, action: &str) {
        self.guard_events
            .with_label_values(&[gateway, stage, rule, action])
            .inc();
    }

    pub fn auth_failure(&self, gateway: &str, route: &str, reason: &str) {
        self.auth_failures
            .with_label_values(&[gateway, route, reason])
            .inc();
    }

    pub fn rate_limited(&self, gateway: &str, route: &str, limit: &str) {
        self.rate_limited
            .with_label_values(&[gateway, route, limit])
            .inc();
    }

    /// Redis options whose failures are counted in `airgate_rate_limit_store_errors_total`.
    pub fn redis_options(&self, policy: FailurePolicy) -> RedisOptions {
        let counter = self.rate_limit_store_errors.clone();
        let mut options = RedisOptions::new(policy);
        options.on_error = Some(Arc::new(move |failure: RedisFailure| {
            counter.with_label_values(&[failure.label()]).inc();
        }));
        options
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The bounded labels of one answered request.
pub struct RequestLabels<'a> {
    pub gateway: &'a str,
    pub route: &'a str,
    pub model: &'a str,
    pub backend: &'a str,
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_their_labels() {
        let m = Metrics::try_new().unwrap();
        let labels = RequestLabels {
            gateway: "ns/gw",
            route: "chat_completions",
            model: "m",
            backend: "b",
        };
        m.observe_request(&labels, 503, Some(0.01));
        let text = m.render();
        assert!(text.contains(
            "airgate_requests_total{backend=\"b\",gateway=\"ns/gw\",model=\"m\",route=\"chat_completions\",status_class=\"5xx\"} 1"
        ));
        assert!(text.contains("airgate_build_info{version="));
    }
}
