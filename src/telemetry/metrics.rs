//! Prometheus metrics, named by Prometheus conventions (base units, `_total`, `_seconds`).
//! Labels are bounded: model names are only those configured (others become `other`), and no
//! user identity is ever a label.

use std::sync::Arc;

use crate::access::{FailurePolicy, RedisFailure, RedisOptions};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Request-duration buckets in seconds, from sub-millisecond proxying to long generations.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// OpenTelemetry GenAI semantic-convention buckets (gen_ai.client.token.usage).
const GENAI_TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// gen_ai.client.operation.duration.
const GENAI_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// gen_ai.server.time_to_first_token.
const GENAI_TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// gen_ai.server.time_per_output_token.
const GENAI_TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// Creates a metric and registers it in one step, so each is written once.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn register<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: M,
    ) -> Result<M, prometheus::Error> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn counters(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn gauges(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn histograms(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> Result<HistogramVec, prometheus::Error> {
        self.register(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )?)
    }
}

pub struct Metrics {
    registry: Registry,
    cache_requests: IntCounterVec,
    cache_lookup: HistogramVec,
    cache_embed: HistogramVec,
    cache_search: HistogramVec,
    cache_entries: IntGaugeVec,
    cache_bytes: IntGaugeVec,
    cache_evictions: IntGaugeVec,
    cache_rejected: IntGaugeVec,
    cache_rejected_by: IntCounterVec,
    tokens: IntCounterVec,
    time_to_first_token: HistogramVec,
    time_per_output_token: HistogramVec,
    genai_token_usage: HistogramVec,
    genai_operation_duration: HistogramVec,
    genai_ttft: HistogramVec,
    genai_tpot: HistogramVec,
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
    openapi_violations: IntCounterVec,
    process: ProcessMetrics,
}

/// Counts kept by other parts of the process (the listener, the log writers) as atomics, copied
/// into the registry at each scrape ([`Metrics::sync_process`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessCounts {
    pub connections_open: u64,
    pub connections_refused: u64,
    pub audit_dropped: u64,
    pub audit_sink_errors: u64,
    pub access_log_dropped: u64,
}

struct ProcessMetrics {
    config_reloads: IntCounterVec,
    config_generation: IntGauge,
    config_last_reload_success: IntGauge,
    connections_open: IntGauge,
    connections_refused: IntCounter,
    audit_dropped: IntCounter,
    audit_sink_errors: IntCounter,
    access_log_dropped: IntCounter,
    cache_warmup: Gauge,
    cluster_leader: IntGauge,
    cluster_refused: IntGauge,
    cluster_watch_errors: IntCounterVec,
}

impl ProcessMetrics {
    fn try_new(r: &Registrar<'_>) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| r.register(IntGauge::new(name, help)?);
        let counter = |name: &str, help: &str| r.register(IntCounter::new(name, help)?);
        Ok(Self {
            config_reloads: r.counters(
                "airgate_config_reloads_total",
                "Configuration reloads, by result (success, failure, rolled_back).",
                &["result"],
            )?,
            cluster_leader: gauge(
                "airgate_cluster_leader",
                "Cluster mode: 1 while this replica holds the leader Lease (and writes status).",
            )?,
            cluster_refused: gauge(
                "airgate_cluster_resources_refused",
                "Cluster mode: AIGateway and API resources not accepted or not programmed.",
            )?,
            cluster_watch_errors: r.counters(
                "airgate_cluster_watch_errors_total",
                "Cluster mode: watch failures (each is followed by a re-list), by watched kind.",
                &["resource"],
            )?,
            config_generation: gauge(
                "airgate_config_generation",
                "The generation of the configuration in service; 1 at start, +1 per applied change.",
            )?,
            config_last_reload_success: gauge(
                "airgate_config_last_reload_success",
                "1 when the last reload was applied (or none was tried), 0 when it was refused.",
            )?,
            connections_open: gauge(
                "airgate_connections_open",
                "Connections open on the public listener.",
            )?,
            connections_refused: counter(
                "airgate_connections_refused_total",
                "Connections closed at once because the public listener had --max-connections open.",
            )?,
            audit_dropped: counter(
                "airgate_audit_dropped_total",
                "Audit records dropped because the audit queue was full (the sink is slow or down).",
            )?,
            audit_sink_errors: counter(
                "airgate_audit_sink_errors_total",
                "Audit sink failures: failed connects or TLS handshakes to the collector, failed writes.",
            )?,
            access_log_dropped: counter(
                "airgate_access_log_dropped_total",
                "Access-log lines dropped because the access-log queue was full.",
            )?,
            cache_warmup: r.register(Gauge::new(
                "airgate_cache_warmup_seconds",
                "Time the embedding model took to warm up at start (before /readyz said ready).",
            )?)?,
        })
    }
}

/// Raises a counter to a monotonic source's value.
fn catch_up(counter: &IntCounter, value: u64) {
    counter.inc_by(value.saturating_sub(counter.get()));
}

impl Metrics {
    pub fn try_new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let gateway = &["gateway"];
        let build_info = r.gauges(
            "airgate_build_info",
            "Build information; always 1.",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let cache_stage_buckets = &[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        ];
        let genai_labels = &[
            "gen_ai_operation_name",
            "gen_ai_request_model",
            "gen_ai_system",
        ];
        Ok(Self {
            requests: r.counters(
                "airgate_requests_total",
                "Requests answered, by outcome.",
                &["gateway", "route", "model", "backend", "status_class"],
            )?,
            request_duration: r.histograms(
                "airgate_request_duration_seconds",
                "Time from request to response head (streams: to the first byte).",
                DURATION_BUCKETS,
                &["gateway", "route"],
            )?,
            upstream_attempts: r.counters(
                "airgate_upstream_attempts_total",
                "Attempts at backends, by outcome.",
                &["gateway", "backend", "outcome"],
            )?,
            failovers: r.counters(
                "airgate_failovers_total",
                "Attempts that failed and moved on to the next candidate backend.",
                &["gateway", "backend", "reason"],
            )?,
            backend_up: r.gauges(
                "airgate_backend_up",
                "1 when the backend passes its active health probe.",
                &["gateway", "backend"],
            )?,
            stream_terminations: r.counters(
                "airgate_stream_terminations_total",
                "Streams the gateway ended with an error event, by reason.",
                &["gateway", "reason"],
            )?,
            guard_events: r.counters(
                "airgate_guard_events_total",
                "Content-guard matches and refusals, by stage (prompt/response), rule and action (block, redact, audit, fail_closed_*).",
                &["gateway", "stage", "rule", "action"],
            )?,
            auth_failures: r.counters(
                "airgate_auth_failures_total",
                "Requests refused by authentication, by reason.",
                &["gateway", "route", "reason"],
            )?,
            rate_limited: r.counters(
                "airgate_rate_limited_total",
                "Requests refused by a rate limit or token budget, by limit (global, user, ip, header, tokens).",
                &["gateway", "route", "limit"],
            )?,
            rate_limit_store_errors: r.counters(
                "airgate_rate_limit_store_errors_total",
                "Rate-limit decisions made without Redis (error, timeout, skipped while it recovers).",
                &["kind"],
            )?,
            openapi_violations: r.counters(
                "airgate_openapi_violations_total",
                "API requests that do not follow the API's OpenAPI spec, by kind (unknown_path, method_not_allowed, unsupported_media_type, missing_body, invalid_json, schema, spec_unavailable) and action (refused, reported).",
                &["api", "kind", "action"],
            )?,
            cache_requests: r.counters(
                "airgate_cache_requests_total",
                "Semantic-cache outcomes of chat completions (hit, miss, bypass).",
                &["gateway", "result"],
            )?,
            cache_lookup: r.histograms(
                "airgate_cache_lookup_seconds",
                "Semantic-cache lookup time: embedding plus index search.",
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
                gateway,
            )?,
            cache_embed: r.histograms(
                "airgate_cache_embed_seconds",
                "Semantic cache: time to embed the prompt (queue wait included).",
                cache_stage_buckets,
                gateway,
            )?,
            cache_search: r.histograms(
                "airgate_cache_search_seconds",
                "Semantic cache: time to search the scope's index and verify candidates.",
                cache_stage_buckets,
                gateway,
            )?,
            cache_entries: r.gauges(
                "airgate_cache_entries",
                "Entries in the semantic cache.",
                gateway,
            )?,
            cache_bytes: r.gauges(
                "airgate_cache_bytes",
                "Bytes of entries and vectors in the semantic cache.",
                gateway,
            )?,
            cache_evictions: r.gauges(
                "airgate_cache_evictions",
                "Entries evicted (LRU by bytes) since start, as last seen at a lookup.",
                gateway,
            )?,
            cache_rejected: r.gauges(
                "airgate_cache_verification_rejections",
                "Candidates above the threshold that verification turned down since start.",
                gateway,
            )?,
            cache_rejected_by: r.counters(
                "airgate_cache_rejections_total",
                "Semantic cache: candidates above the threshold that verification turned down, by reason (what a hit would have got wrong).",
                &["gateway", "reason"],
            )?,
            tokens: r.counters(
                "airgate_tokens_total",
                "Tokens by model and type (prompt, completion); estimated=true when the backend reported no usage.",
                &["gateway", "model", "type", "estimated"],
            )?,
            time_to_first_token: r.histograms(
                "airgate_time_to_first_token_seconds",
                "Streams: time from the request to the first generated token reaching the client.",
                GENAI_TTFT_BUCKETS,
                &["gateway", "model"],
            )?,
            time_per_output_token: r.histograms(
                "airgate_time_per_output_token_seconds",
                "Streams: time per completion token after the first.",
                GENAI_TPOT_BUCKETS,
                &["gateway", "model"],
            )?,
            genai_token_usage: r.histograms(
                "gen_ai_client_token_usage",
                "OpenTelemetry GenAI: tokens per operation, by gen_ai_token_type (input, output).",
                GENAI_TOKEN_BUCKETS,
                &[
                    "gen_ai_operation_name",
                    "gen_ai_request_model",
                    "gen_ai_system",
                    "gen_ai_token_type",
                ],
            )?,
            genai_operation_duration: r.histograms(
                "gen_ai_client_operation_duration_seconds",
                "OpenTelemetry GenAI: operation duration as the client sees it.",
                GENAI_DURATION_BUCKETS,
                genai_labels,
            )?,
            genai_ttft: r.histograms(
                "gen_ai_server_time_to_first_token_seconds",
                "OpenTelemetry GenAI: time to the first token of a streamed answer.",
                GENAI_TTFT_BUCKETS,
                genai_labels,
            )?,
            genai_tpot: r.histograms(
                "gen_ai_server_time_per_output_token_seconds",
                "OpenTelemetry GenAI: time per output token after the first.",
                GENAI_TPOT_BUCKETS,
                genai_labels,
            )?,
            process: ProcessMetrics::try_new(&r)?,
            registry,
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

    /// Drops the gauge series of gateways and backends the configuration in service no longer
    /// has. A gauge keeps its last value until told otherwise: a removed backend that was down
    /// would read `airgate_backend_up 0` (and page someone) forever, and a removed cache its
    /// last size. Counters stay, as totals of what happened. `backend` answers whether a
    /// gateway (by id) still has a backend of that name, `cached` whether a gateway still
    /// exists with a cache.
    pub fn retain_gauges(
        &self,
        backend: impl Fn(&str, &str) -> bool,
        cached: impl Fn(&str) -> bool,
    ) {
        for labels in series(&self.backend_up, &["gateway", "backend"]) {
            if let [gateway, name] = labels.as_slice() {
                if !backend(gateway, name) {
                    let _ = self.backend_up.remove_label_values(&[gateway, name]);
                }
            }
        }
        for gauges in [
            &self.cache_entries,
            &self.cache_bytes,
            &self.cache_evictions,
            &self.cache_rejected,
        ] {
            for labels in series(gauges, &["gateway"]) {
                if let [gateway] = labels.as_slice() {
                    if !cached(gateway) {
                        let _ = gauges.remove_label_values(&[gateway]);
                    }
                }
            }
        }
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

    /// An `API` request that departs from its OpenAPI spec: refused (`enforce`) or let through
    /// (`report`). The labels are the API's id and two fixed words, never a request's values.
    pub fn openapi_violation(&self, api: &str, kind: &str, action: &str) {
        self.openapi_violations
            .with_label_values(&[api, kind, action])
            .inc();
    }

    pub fn cache_request(&self, gateway: &str, result: &str) {
        self.cache_requests
            .with_label_values(&[gateway, result])
            .inc();
    }

    pub fn cache_lookup_seconds(&self, gateway: &str, seconds: f64) {
        self.cache_lookup
            .with_label_values(&[gateway])
            .observe(seconds);
    }

    /// Embedding and search times of one lookup, when they happened.
    pub fn cache_stage_seconds(
        &self,
        gateway: &str,
        embed: Option<std::time::Duration>,
        search: Option<std::time::Duration>,
    ) {
        if let Some(d) = embed {
            self.cache_embed
                .with_label_values(&[gateway])
                .observe(d.as_secs_f64());
        }
        if let Some(d) = search {
            self.cache_search
                .with_label_values(&[gateway])
                .observe(d.as_secs_f64());
        }
    }

    pub fn cache_stats(&self, gateway: &str, stats: &crate::cache::CacheStats) {
        let set = |g: &IntGaugeVec, v: u64| {
            g.with_label_values(&[gateway])
                .set(i64::try_from(v).unwrap_or(i64::MAX))
        };
        set(&self.cache_entries, stats.entries as u64);
        set(&self.cache_bytes, stats.bytes);
        set(&self.cache_evictions, stats.evictions);
        set(&self.cache_rejected, stats.rejected);
        for (reason, count) in crate::cache::REJECTION_REASONS
            .iter()
            .zip(stats.rejected_by)
            .filter(|(_, count)| *count > 0)
        {
            catch_up(
                &self.cache_rejected_by.with_label_values(&[gateway, reason]),
                count,
            );
        }
    }

    /// Records one answered generation: its tokens, and its timings where known.
    pub fn observe_generation(&self, g: &Generation<'_>) {
        let estimated = if g.estimated { "true" } else { "false" };
        if let Some(tokens) = g.tokens {
            self.tokens
                .with_label_values(&[g.gateway, g.model, "prompt", estimated])
                .inc_by(tokens.0);
            self.tokens
                .with_label_values(&[g.gateway, g.model, "completion", estimated])
                .inc_by(tokens.1);
            for (kind, count) in [("input", tokens.0), ("output", tokens.1)] {
                self.genai_token_usage
                    .with_label_values(&[g.operation, g.model, GENAI_SYSTEM, kind])
                    .observe(count as f64);
            }
        }
        let genai = [g.operation, g.model, GENAI_SYSTEM];
        if let Some(duration) = g.duration {
            self.genai_operation_duration
                .with_label_values(&genai)
                .observe(duration);
        }
        if let Some(ttft) = g.time_to_first_token {
            self.time_to_first_token
                .with_label_values(&[g.gateway, g.model])
                .observe(ttft);
            self.genai_ttft.with_label_values(&genai).observe(ttft);
        }
        if let Some(tpot) = g.time_per_output_token {
            self.time_per_output_token
                .with_label_values(&[g.gateway, g.model])
                .observe(tpot);
            self.genai_tpot.with_label_values(&genai).observe(tpot);
        }
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

    /// The embedding model's warm-up at start took `seconds`.
    pub fn cache_warmed_up(&self, seconds: f64) {
        self.process.cache_warmup.set(seconds);
    }

    /// Copies the process counts into the registry (before a scrape).
    pub fn sync_process(&self, counts: ProcessCounts) {
        let p = &self.process;
        p.connections_open
            .set(i64::try_from(counts.connections_open).unwrap_or(i64::MAX));
        catch_up(&p.connections_refused, counts.connections_refused);
        catch_up(&p.audit_dropped, counts.audit_dropped);
        catch_up(&p.audit_sink_errors, counts.audit_sink_errors);
        catch_up(&p.access_log_dropped, counts.access_log_dropped);
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `gen_ai.system` of the GenAI conventions: AirGate proxies OpenAI-compatible servers.
const GENAI_SYSTEM: &str = "openai";

/// One answered generation, for token and latency metrics. `None` parts are switched off by
/// `includeTokenCount` / `includeLatency`, or unknown.
pub struct Generation<'a> {
    pub gateway: &'a str,
    pub model: &'a str,
    /// `chat`, `text_completion` or `embeddings` (gen_ai.operation.name).
    pub operation: &'a str,
    /// (prompt, completion).
    pub tokens: Option<(u64, u64)>,
    pub estimated: bool,
    pub duration: Option<f64>,
    pub time_to_first_token: Option<f64>,
    pub time_per_output_token: Option<f64>,
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

impl Metrics {
    /// A configuration reload's result (`success`, `failure`, `rolled_back`).
    pub fn config_reload(&self, result: &str) {
        self.process
            .config_reloads
            .with_label_values(&[result])
            .inc();
        self.process
            .config_last_reload_success
            .set(i64::from(result != "failure"));
    }

    /// The configuration `serve` started with is in service: the last "reload" succeeded.
    pub fn config_loaded_at_start(&self) {
        self.process.config_last_reload_success.set(1);
    }

    /// Cluster mode: whether this replica leads.
    pub fn cluster_leader(&self, leading: bool) {
        self.process.cluster_leader.set(i64::from(leading));
    }

    /// Cluster mode: how many resources are refused (not accepted or not programmed).
    pub fn cluster_refused(&self, refused: usize) {
        self.process
            .cluster_refused
            .set(i64::try_from(refused).unwrap_or(i64::MAX));
    }

    /// Cluster mode: a watch of `resource` (`apiVersion Kind`) failed.
    pub fn cluster_watch_error(&self, resource: &str) {
        self.process
            .cluster_watch_errors
            .with_label_values(&[resource])
            .inc();
    }

    /// The generation of the configuration now in service.
    pub fn config_generation(&self, generation: u64) {
        self.process
            .config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }
}

/// The values of `names`, in that order, of each series a gauge family has now (the
/// exposition sorts a series' labels by name, so they are looked up by name).
fn series(gauges: &IntGaugeVec, names: &[&str]) -> Vec<Vec<String>> {
    use prometheus::core::Collector;
    gauges
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|metric| {
            let labels = metric.get_label();
            names
                .iter()
                .filter_map(|name| {
                    labels
                        .iter()
                        .find(|pair| pair.get_name() == *name)
                        .map(|pair| pair.get_value().to_string())
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn process_counts_are_exported_and_counters_only_rise() {
        let m = Metrics::try_new().unwrap();
        let mut counts = ProcessCounts {
            connections_open: 3,
            connections_refused: 2,
            audit_dropped: 7,
            audit_sink_errors: 1,
            access_log_dropped: 4,
        };
        m.sync_process(counts);
        m.sync_process(counts);
        let text = m.render();
        for line in [
            "airgate_connections_open 3",
            "airgate_connections_refused_total 2",
            "airgate_audit_dropped_total 7",
            "airgate_audit_sink_errors_total 1",
            "airgate_access_log_dropped_total 4",
        ] {
            assert!(text.contains(line), "missing {line:?}");
        }
        counts.connections_open = 1;
        counts.audit_dropped = 9;
        m.sync_process(counts);
        let text = m.render();
        assert!(text.contains("airgate_connections_open 1"));
        assert!(text.contains("airgate_audit_dropped_total 9"));
    }

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

    #[test]
    fn gauges_of_what_the_configuration_no_longer_has_are_dropped() {
        let m = Metrics::try_new().unwrap();
        m.set_backend_up("ns/kept", "a", true);
        m.set_backend_up("ns/kept", "removed", false);
        m.set_backend_up("ns/gone", "a", false);
        let stats = crate::cache::CacheStats::default();
        m.cache_stats("ns/kept", &stats);
        m.cache_stats("ns/gone", &stats);
        m.cache_stats("ns/uncached", &stats);
        m.retain_gauges(
            |gateway, backend| matches!(gateway, "ns/kept" | "ns/uncached") && backend == "a",
            |gateway| gateway == "ns/kept",
        );
        let text = m.render();
        assert!(text.contains("airgate_backend_up{backend=\"a\",gateway=\"ns/kept\"} 1"));
        assert!(!text.contains("backend=\"removed\""), "{text}");
        assert!(!text.contains("ns/gone"), "{text}");
        assert!(text.contains("airgate_cache_entries{gateway=\"ns/kept\"} 0"));
        assert!(!text.contains("airgate_cache_entries{gateway=\"ns/uncached\"}"));
    }
}
