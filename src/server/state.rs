//! State shared by every request: the configuration snapshot (swapped atomically) and metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{ListenerStats, Shutdown};
use crate::access::{IpNet, RateLimiter};
use crate::body::BodyBudget;
use crate::gateway::Snapshot;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::metrics::ProcessCounts;
use crate::telemetry::Metrics;

pub struct AppState {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub audit: AuditLog,
    pub access_log: AccessLog,
    /// Rate limits and token budgets, in memory or shared through Redis.
    pub limiter: RateLimiter,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// The public listener's shutdown: draining makes `/readyz` 503; a cut ends open streams
    /// and requests.
    pub shutdown: Shutdown,
    /// The public listener's connection counts, for the metrics.
    pub listener_stats: Arc<ListenerStats>,
    /// Bytes of request bodies buffered at once, process-wide.
    pub body_budget: BodyBudget,
    /// Set while the embedding model warms up at start: `/readyz` waits for it.
    pub warming_up: Arc<AtomicBool>,
    /// Cluster mode: set once the first complete list of the cluster's resources is applied.
    /// `None` for a `--config` folder or file.
    pub cluster_synced: Option<Arc<AtomicBool>>,
}

impl AppState {
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>, audit: AuditLog) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            audit,
            access_log: AccessLog::disabled(),
            limiter: RateLimiter::memory(),
            trusted_proxies: Vec::new(),
            shutdown: Shutdown::default(),
            listener_stats: Arc::default(),
            body_budget: BodyBudget::default(),
            warming_up: Arc::default(),
            cluster_synced: None,
        }
    }

    /// Cluster mode: ready once `synced` is set, with routes or without (an empty cluster is a
    /// configuration too, and a rollout must not wait for the first resource).
    pub fn with_cluster_synced(mut self, synced: Option<Arc<AtomicBool>>) -> Self {
        self.cluster_synced = synced;
        self
    }

    /// Sets the process-wide memory budget for buffered request bodies.
    pub fn with_body_budget(mut self, budget: BodyBudget) -> Self {
        self.body_budget = budget;
        self
    }

    /// Shares the public listener's connection counts with the metrics.
    pub fn with_listener_stats(mut self, stats: Arc<ListenerStats>) -> Self {
        self.listener_stats = stats;
        self
    }

    /// The counts other parts of the process keep, for a scrape.
    pub fn process_counts(&self) -> ProcessCounts {
        ProcessCounts {
            connections_open: self.listener_stats.open(),
            connections_refused: self.listener_stats.refused(),
            audit_dropped: self.audit.dropped(),
            audit_sink_errors: self.audit.sink_errors(),
            access_log_dropped: self.access_log.dropped(),
        }
    }

    /// Shares the public listener's shutdown signals with the request paths.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn with_access_log(mut self, access_log: AccessLog) -> Self {
        self.access_log = access_log;
        self
    }

    /// Replaces the in-memory limiter and sets the trusted proxies.
    pub fn with_access(mut self, limiter: RateLimiter, trusted_proxies: Vec<IpNet>) -> Self {
        self.limiter = limiter;
        self.trusted_proxies = trusted_proxies;
        self
    }

    /// Ready once a configuration with at least one gateway is serving (in cluster mode: once
    /// the cluster's first complete list is applied) and the embedding model, when one is used,
    /// has warmed up.
    pub fn is_ready(&self) -> bool {
        let configured = match &self.cluster_synced {
            Some(synced) => synced.load(Ordering::Acquire),
            None => !self.snapshot.load().is_empty(),
        };
        configured && !self.warming_up.load(Ordering::Acquire)
    }
}
