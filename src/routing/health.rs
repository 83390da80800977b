//! Active health: each backend is probed on its interval. The probe asks `/health` (vLLM has it);
//! a backend that answers 404 there (llama.cpp's server) is probed on `/v1/models` from then on.
//! A configured `healthCheck.path` is used as it is.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Backend, UpstreamClient};
use crate::telemetry::Metrics;

const DEFAULT_PATH: &str = "/health";
const FALLBACK_PATH: &str = "/v1/models";

/// Starts one probe task per backend whose health check is enabled; they end with `shutdown`.
pub fn spawn_probes(
    gateway: &str,
    backends: &[Arc<Backend>],
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) {
    for backend in backends {
        let check = backend.health_check.clone().unwrap_or_default();
        if !check.enabled {
            continue;
        }
        let task = ProbeTask {
            gateway: gateway.to_string(),
            backend: Arc::clone(backend),
            // The backend's own client: a probe sees the TLS its requests see.
            client: backend.client.clone(),
            metrics: Arc::clone(metrics),
            path: check.path.clone(),
            interval: check.interval.0,
            timeout: check.timeout.0,
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = task.run() => {}
            }
        });
    }
}

struct ProbeTask {
    gateway: String,
    backend: Arc<Backend>,
    client: UpstreamClient,
    metrics: Arc<Metrics>,
    path: Option<String>,
    interval: Duration,
    timeout: Duration,
}

impl ProbeTask {
    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let healthy = self.probe_once().await;
            self.metrics
                .set_backend_up(&self.gateway, &self.backend.name, healthy);
            if self.backend.set_probe_healthy(healthy) {
                if healthy {
                    tracing::info!(backend = %self.backend.name, "backend passed its health probe");
                } else {
                    tracing::warn!(backend = %self.backend.name, "backend failed its health probe");
                }
            }
        }
    }

    async fn probe_once(&mut self) -> bool {
        let path = self
            .path
            .clone()
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        match self
            .client
            .probe(&self.backend.url(&path), self.timeout)
            .await
        {
            Ok(status) if (200..300).contains(&status) => true,
            Ok(404) if self.path.is_none() => {
                // No /health route: remember and use /v1/models, which every OpenAI server has.
                self.path = Some(FALLBACK_PATH.to_string());
                let url = self.backend.url(FALLBACK_PATH);
                matches!(self.client.probe(&url, self.timeout).await, Ok(s) if (200..300).contains(&s))
            }
            _ => false,
        }
    }
}
