//! One configured backend and its live state (outstanding requests, passive and active health).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::UpstreamClient;
use crate::config::{BackendSpec, HealthCheckSpec};

/// Passive-health thresholds shared by a gateway's backends.
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    /// Consecutive failures that put a backend in cool-down.
    pub failure_threshold: u32,
    pub cooldown: Duration,
}

#[derive(Debug)]
pub struct Backend {
    pub name: String,
    /// Base URL without a trailing `/` or `/v1`: paths such as `/v1/chat/completions` are appended.
    pub base_url: String,
    pub models: Vec<String>,
    pub priority: u32,
    /// Bounds connecting plus the first response byte.
    pub timeout: Duration,
    pub requires_approval: bool,
    /// Added to every upstream request.
    pub headers: HeaderMap,
    pub health_check: Option<HealthCheckSpec>,
    /// Counts tokens when this backend reports no usage.
    pub tokenizer: Option<Arc<tokenizers::Tokenizer>>,
    /// The client of this backend's TLS configuration, for its requests and its health probes.
    pub client: UpstreamClient,
    /// The proxied endpoints' URLs, parsed once: parsing a URL per request cost ~4% of the
    /// proxy's CPU in profiles.
    endpoint_urls: Vec<(&'static str, reqwest::Url)>,
    settings: HealthSettings,
    /// Shared with the same backend of the next configuration when its URL did not change
    /// ([`Backend::carry_live_state`]): a reload keeps what the gateway learnt about it.
    live: Arc<LiveState>,
}

/// What the gateway learns about a backend while serving: its load and its health.
#[derive(Debug)]
struct LiveState {
    outstanding: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since [`epoch`] until which the backend is skipped; 0 when not cooling down.
    cooldown_until_ms: AtomicU64,
    probe_healthy: AtomicBool,
}

impl Default for LiveState {
    fn default() -> Self {
        Self {
            outstanding: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            cooldown_until_ms: AtomicU64::new(0),
            probe_healthy: AtomicBool::new(true),
        }
    }
}

impl Backend {
    /// Builds a backend from its validated spec. Header names and values were validated by config.
    pub fn try_new(
        spec: &BackendSpec,
        settings: HealthSettings,
        client: UpstreamClient,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("backend {}: header name {name:?}: {e}", spec.name))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| format!("backend {}: header value for {name}: {e}", spec.name))?;
            headers.insert(name, value);
        }
        let tokenizer = match &spec.tokenizer {
            Some(path) => {
                let mut tokenizer = tokenizers::Tokenizer::from_file(path)
                    .map_err(|e| format!("backend {}: tokenizer {path}: {e}", spec.name))?;
                // Counting, not batching: a file's own padding or truncation would distort it.
                tokenizer.with_padding(None);
                let _ = tokenizer.with_truncation(None);
                Some(Arc::new(tokenizer))
            }
            None => None,
        };
        Ok(Self {
            name: spec.name.clone(),
            tokenizer,
            client,
            endpoint_urls: PROXIED_PATHS
                .iter()
                .filter_map(|path| {
                    let url = reqwest::Url::parse(&format!("{}{path}", base_url(&spec.url)));
                    Some((*path, url.ok()?))
                })
                .collect(),
            base_url: base_url(&spec.url),
            models: spec.models.clone(),
            priority: spec.priority,
            timeout: spec.timeout.0,
            requires_approval: spec.requires_approval,
            headers,
            health_check: spec.health_check.clone(),
            settings,
            live: Arc::default(),
        })
    }

    /// Takes over `previous`'s live state (outstanding requests, cool-down, probe verdict)
    /// when both are the same server: same URL. A reload then neither forgets a failing
    /// backend nor unbalances the load with requests still open on the old configuration.
    pub fn carry_live_state(&mut self, previous: &Backend) {
        if self.base_url == previous.base_url {
            self.live = Arc::clone(&previous.live);
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// `url(path)` parsed, from the ones parsed at load for the proxied endpoints.
    pub fn parsed_url(&self, path: &str) -> Result<reqwest::Url, String> {
        match self.endpoint_urls.iter().find(|(p, _)| *p == path) {
            Some((_, url)) => Ok(url.clone()),
            None => reqwest::Url::parse(&self.url(path)).map_err(|e| e.to_string()),
        }
    }

    pub fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }

    /// The model name sent upstream: the requested one, or the backend's first for `auto`.
    pub fn upstream_model<'a>(&'a self, requested: &'a str) -> &'a str {
        if self.serves(requested) {
            requested
        } else {
            self.models.first().map(String::as_str).unwrap_or(requested)
        }
    }

    pub fn outstanding(&self) -> usize {
        self.live.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request as outstanding until the guard is dropped (end of the answer or stream).
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.live.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: Arc::clone(self),
        }
    }

    /// Healthy when not cooling down after failures and not failing its active probe.
    pub fn is_healthy(&self) -> bool {
        self.live.probe_healthy.load(Ordering::Relaxed)
            && self.live.cooldown_until_ms.load(Ordering::Relaxed) <= now_ms()
    }

    pub fn record_success(&self) {
        self.live.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failure; at the threshold the backend is skipped for the cool-down.
    pub fn record_failure(&self) {
        let failures = self
            .live
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if failures >= self.settings.failure_threshold {
            let until = now_ms() + self.settings.cooldown.as_millis() as u64;
            self.live.cooldown_until_ms.store(until, Ordering::Relaxed);
            self.live.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::warn!(backend = %self.name, cooldown = ?self.settings.cooldown, "backend failed repeatedly; cooling down");
        }
    }

    /// Sets the verdict of the active probe; returns whether it changed.
    /// The active probe's last verdict (true until a probe says otherwise).
    pub fn probe_healthy(&self) -> bool {
        self.live.probe_healthy.load(Ordering::Relaxed)
    }

    pub fn set_probe_healthy(&self, healthy: bool) -> bool {
        self.live.probe_healthy.swap(healthy, Ordering::Relaxed) != healthy
    }
}

/// Decrements the backend's outstanding count when dropped.
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend
            .live
            .outstanding
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoints the gateway proxies (their URLs are parsed once per backend).
const PROXIED_PATHS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

fn base_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_string()
}

/// Monotonic milliseconds since the first call; cheap to compare in atomics.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Start at 1 so that 0 always means "not cooling down".
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_url_drops_trailing_slash_and_v1() {
        assert_eq!(base_url("http://a:8000/"), "http://a:8000");
        assert_eq!(base_url("http://a:8000/v1"), "http://a:8000");
        assert_eq!(base_url("http://a:8000/v1/"), "http://a:8000");
        assert_eq!(base_url("http://a:8000/api"), "http://a:8000/api");
    }
}
