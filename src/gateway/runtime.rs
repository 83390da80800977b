//! What the loaded configuration compiles into ([`crate::app::compile`]): one [`Gateway`] per
//! `AIGateway` resource, held in an immutable [`Snapshot`] that is swapped whole (never
//! mutated) when configuration changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cache_stage::CachePolicy;
use super::content_filter::GuardPolicy;
use crate::access::settings::GatewayLimits;
use crate::access::JwtVerifier;
use crate::apis::ApiRoute;
use crate::config::RoutingSpec;
use crate::routing::{health, Backend};
use crate::telemetry::Metrics;

/// Annotation that picks the gateway served at `/v1` when several are loaded.
pub const DEFAULT_ANNOTATION: &str = "airgate.io/default";

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub stream_idle_timeout: Duration,
    /// Whole non-streamed answers, per attempt.
    pub response_timeout: Duration,
    pub max_body_bytes: u64,
    pub body_read_timeout: Duration,
    pub max_attempts: usize,
}

impl From<&RoutingSpec> for GatewaySettings {
    fn from(spec: &RoutingSpec) -> Self {
        Self {
            stream_idle_timeout: spec.stream_idle_timeout.0,
            response_timeout: spec.response_timeout.0,
            max_body_bytes: spec.max_body_size.0,
            body_read_timeout: spec.body_read_timeout.0,
            max_attempts: spec.max_attempts.map_or(usize::MAX, |n| n as usize),
        }
    }
}

#[derive(Debug)]
pub struct Gateway {
    /// `namespace/name`, the gateway's label in metrics and logs.
    pub id: String,
    pub backends: Vec<Arc<Backend>>,
    pub settings: GatewaySettings,
    /// Every configured model name; anything else is `other` in metric labels.
    pub models: BTreeSet<String>,
    pub metrics: MetricsFlags,
    /// The content guard, when `contentGuard` is enabled.
    pub guard: Option<GuardPolicy>,
    /// Verifies callers' JWTs, when `authentication.jwt` is configured.
    pub verifier: Option<Arc<JwtVerifier>>,
    /// `rateLimit`: global and per-user request limits, per-user token budget.
    pub limits: GatewayLimits,
    /// The semantic cache, when `semanticCache` is enabled.
    pub cache: Option<CachePolicy>,
    /// The lowest configured priority: only these backends' answers are cached.
    pub primary_priority: u32,
}

/// What `spec.metrics` switches on for this gateway's request metrics.
#[derive(Debug, Clone, Copy)]
pub struct MetricsFlags {
    pub enabled: bool,
    pub model_name: bool,
    pub token_count: bool,
    pub latency: bool,
}

impl Gateway {
    /// A model name safe to use as a metric label.
    pub fn model_label<'a>(&self, model: &'a str) -> &'a str {
        if !self.metrics.model_name {
            ""
        } else if model == crate::routing::balancer::AUTO_MODEL || self.models.contains(model) {
            model
        } else {
            "other"
        }
    }
}

/// What this snapshot's answers were: counted by the records layer for every request that
/// started on it, for the rollback check of a reload (`app::reload`).
#[derive(Debug, Default)]
pub struct AnswerCounts {
    answered: std::sync::atomic::AtomicU64,
    /// 5xx answers, the gateway's own 502/503/504 included (client errors are not counted).
    server_errors: std::sync::atomic::AtomicU64,
}

impl AnswerCounts {
    pub fn record(&self, status: u16) {
        use std::sync::atomic::Ordering::Relaxed;
        self.answered.fetch_add(1, Relaxed);
        if status >= 500 {
            self.server_errors.fetch_add(1, Relaxed);
        }
    }

    /// (answered, 5xx) so far.
    pub fn read(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.answered.load(Relaxed),
            self.server_errors.load(Relaxed),
        )
    }
}

/// Everything a request needs from configuration, swapped atomically as a whole.
#[derive(Debug)]
pub struct Snapshot {
    by_id: HashMap<String, Arc<Gateway>>,
    /// The gateway served at `/v1`.
    pub default: Option<Arc<Gateway>>,
    /// `API` routes.
    pub apis: Vec<Arc<ApiRoute>>,
    /// The client towards `API` services.
    pub api_client: reqwest::Client,
    /// The answers given on this snapshot.
    pub answers: Arc<AnswerCounts>,
}

impl Snapshot {
    /// A snapshot of compiled parts ([`crate::app::compile`]). The gateway served at `/v1` is
    /// the one marked default, else the only one.
    pub fn assemble(
        by_id: HashMap<String, Arc<Gateway>>,
        marked_default: Option<Arc<Gateway>>,
        apis: Vec<Arc<ApiRoute>>,
        api_client: reqwest::Client,
    ) -> Self {
        let default = marked_default.or_else(|| {
            if by_id.len() == 1 {
                by_id.values().next().cloned()
            } else {
                None
            }
        });
        Snapshot {
            by_id,
            default,
            apis,
            api_client,
            answers: Arc::default(),
        }
    }

    /// Puts the snapshot in service: publishes its backends' probe verdicts (up, unless a
    /// backend carried over from the previous configuration was down) and starts their health
    /// probes, which stop with `shutdown`.
    pub fn start(&self, metrics: &Arc<Metrics>, shutdown: &CancellationToken) {
        for gateway in self.by_id.values() {
            for backend in &gateway.backends {
                metrics.set_backend_up(&gateway.id, &backend.name, backend.probe_healthy());
            }
            health::spawn_probes(&gateway.id, &gateway.backends, metrics, shutdown);
        }
    }

    pub fn gateway(&self, namespace: &str, name: &str) -> Option<Arc<Gateway>> {
        self.by_id.get(&format!("{namespace}/{name}")).cloned()
    }

    /// The gateway whose id (`namespace/name`) is `id`.
    pub fn gateway_by_id(&self, id: &str) -> Option<&Arc<Gateway>> {
        self.by_id.get(id)
    }

    /// Every gateway, in no particular order.
    pub fn gateways(&self) -> impl Iterator<Item = &Arc<Gateway>> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.apis.is_empty()
    }
}
