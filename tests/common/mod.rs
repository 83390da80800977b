//! Test fixtures: an AirGate on 127.0.0.1:0 built from YAML, and a builder for that YAML.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use airgate::config;
use airgate::gateway::Snapshot;
use airgate::server::{self, AppState, ServerLimits};
use airgate::telemetry::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running gateway; shuts down on drop.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: CancellationToken,
}

impl TestGateway {
    pub async fn start(yaml: &str) -> Self {
        Self::start_with_limits(yaml, ServerLimits::default()).await
    }

    pub async fn start_with_limits(yaml: &str, limits: ServerLimits) -> Self {
        let loaded = config::parse_str(Path::new("test.yaml"), yaml)
            .unwrap_or_else(|errors| panic!("test config invalid: {errors:?}"));
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::try_new().unwrap());
        let snapshot = Snapshot::build(&loaded, &metrics, &shutdown).unwrap();
        let state = AppState::new(snapshot, metrics);
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        tokio::spawn(server::serve(
            public,
            server::public_router(Arc::clone(&state)),
            limits.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(server::serve(
            admin,
            server::admin_router(Arc::clone(&state)),
            limits,
            shutdown.clone(),
        ));
        Self {
            addr,
            admin_addr,
            state,
            shutdown,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Builds an AIGateway resource, one backend at a time.
pub struct GatewayYaml {
    backends: Vec<String>,
    routing: Vec<String>,
}

pub struct BackendYaml {
    name: String,
    url: String,
    models: Vec<String>,
    priority: u32,
    timeout: String,
    requires_approval: bool,
    headers: Vec<(String, String)>,
    health: Option<String>,
}

impl BackendYaml {
    pub fn new(name: &str, url: &str) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            models: vec!["mock-model".into()],
            priority: 1,
            timeout: "2s".into(),
            requires_approval: false,
            headers: Vec::new(),
            // Probes off unless a test is about them, so request counts stay exact.
            health: Some("enabled: false".into()),
        }
    }
    pub fn models(mut self, models: &[&str]) -> Self {
        self.models = models.iter().map(|m| m.to_string()).collect();
        self
    }
    pub fn priority(mut self, p: u32) -> Self {
        self.priority = p;
        self
    }
    pub fn timeout(mut self, t: &str) -> Self {
        self.timeout = t.into();
        self
    }
    pub fn requires_approval(mut self) -> Self {
        self.requires_approval = true;
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Active health checks with this interval.
    pub fn probed(mut self, interval: &str) -> Self {
        self.health = Some(format!(
            "enabled: true\n        interval: {interval}\n        timeout: 1s"
        ));
        self
    }

    fn render(&self) -> String {
        let mut out = format!(
            "    - name: {}\n      url: {}\n      models: [{}]\n      priority: {}\n      timeout: {}\n      requiresApproval: {}\n",
            self.name,
            self.url,
            self.models.join(", "),
            self.priority,
            self.timeout,
            self.requires_approval
        );
        if !self.headers.is_empty() {
            out.push_str("      headers:\n");
            for (k, v) in &self.headers {
                out.push_str(&format!("        {k}: \"{v}\"\n"));
            }
        }
        if let Some(health) = &self.health {
            out.push_str(&format!("      healthCheck:\n        {health}\n"));
        }
        out
    }
}

impl GatewayYaml {
    pub fn new() -> Self {
        Self {
            backends: Vec::new(),
            routing: Vec::new(),
        }
    }
    pub fn backend(mut self, b: BackendYaml) -> Self {
        self.backends.push(b.render());
        self
    }
    /// A field of `spec.routing`, e.g. `("streamIdleTimeout", "300ms")`.
    pub fn routing(mut self, key: &str, value: &str) -> Self {
        self.routing.push(format!("    {key}: {value}\n"));
        self
    }
    pub fn render(&self) -> String {
        let mut out = String::from(
            "apiVersion: airgate.io/v1alpha1\nkind: AIGateway\nmetadata:\n  name: test-gw\n  namespace: test\nspec:\n  backends:\n",
        );
        for b in &self.backends {
            out.push_str(b);
        }
        if !self.routing.is_empty() {
            out.push_str("  routing:\n");
            for r in &self.routing {
                out.push_str(r);
            }
        }
        out
    }
}

/// A URL where nothing listens (bound then released).
pub async fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}]
    })
}

/// Reads an SSE body to the end and returns its `data:` payloads.
pub async fn sse_data(response: reqwest::Response) -> Vec<String> {
    let text = response.text().await.unwrap_or_default();
    text.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: ").map(str::to_string))
        })
        .collect()
}
