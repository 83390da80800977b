//! State shared by every request: the configuration snapshot (swapped atomically) and metrics.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::gateway::Snapshot;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::Metrics;

pub struct AppState {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub audit: AuditLog,
}

impl AppState {
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>, audit: AuditLog) -> Arc<Self> {
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            audit,
        })
    }

    /// Ready once a configuration with at least one gateway is serving.
    pub fn is_ready(&self) -> bool {
        !self.snapshot.load().is_empty()
    }
}
