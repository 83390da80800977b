//! Test fixtures: an AirGate on 127.0.0.1:0 built from YAML, and a builder for that YAML.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod process;
pub mod quality;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use airgate::access::RateLimiter;
use airgate::app;
use airgate::config;
use airgate::server::{self, AppState, ServerLimits};
use airgate::telemetry::audit::{AuditLog, AuditTarget};
use airgate::telemetry::Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How to start a test gateway besides its YAML.
#[derive(Default)]
pub struct GatewayOptions {
    pub limits: ServerLimits,
    pub secrets_dir: Option<std::path::PathBuf>,
    pub limiter: Option<RateLimiter>,
    pub embedder: Option<Arc<airgate::cache::Embedder>>,
    /// Writes the access log there, with these header rules.
    pub access_log: Option<(
        std::path::PathBuf,
        airgate::telemetry::access_log::HeaderRules,
    )>,
    /// TLS on the public listener, and CAs trusted for backends (see the TLS section below).
    pub tls: TlsOptions,
    /// The memory budget for buffered request bodies (the default when absent).
    pub body_budget: Option<airgate::body::BodyBudget>,
}

/// A running gateway; shuts down on drop.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: CancellationToken,
    /// The public listener's shutdown (drained on drop).
    pub public_shutdown: server::Shutdown,
    audit_dir: tempfile::TempDir,
}

impl TestGateway {
    pub async fn start(yaml: &str) -> Self {
        Self::start_with(yaml, GatewayOptions::default()).await
    }

    pub async fn start_with_limits(yaml: &str, limits: ServerLimits) -> Self {
        Self::start_with(
            yaml,
            GatewayOptions {
                limits,
                ..GatewayOptions::default()
            },
        )
        .await
    }

    pub async fn start_with(yaml: &str, options: GatewayOptions) -> Self {
        let GatewayOptions {
            limits,
            secrets_dir,
            limiter,
            embedder,
            access_log,
            tls,
            body_budget,
        } = options;
        let loaded = config::parse_str(Path::new("test.yaml"), yaml)
            .unwrap_or_else(|errors| panic!("test config invalid: {errors:?}"));
        let shutdown = CancellationToken::new();
        let audit_dir = tempfile::tempdir().unwrap();
        let audit =
            AuditLog::start(&AuditTarget::File(audit_dir.path().join("audit.jsonl"))).unwrap();
        let access_log = match access_log {
            Some((path, rules)) => airgate::telemetry::access_log::AccessLog::start(
                &airgate::telemetry::access_log::AccessTarget::File(path),
                rules,
            )
            .unwrap(),
            None => airgate::telemetry::access_log::AccessLog::disabled(),
        };
        let public_shutdown = server::Shutdown::default();
        let process = app::Process {
            metrics: Arc::new(Metrics::try_new().unwrap()),
            shutdown: shutdown.clone(),
            secrets_dir: secrets_dir
                .unwrap_or_else(|| std::env::temp_dir().join("airgate-no-secrets")),
            backend_trust: tls.backend_trust,
            // The cache's word check comes with the model, as in `serve`.
            models: app::Models {
                wordnet: embedder.as_ref().map(|_| wordnet()),
                embedder,
            },
            limiter: limiter.unwrap_or_else(RateLimiter::memory),
            trusted_proxies: Vec::new(),
            audit,
            access_log,
            public_shutdown: public_shutdown.clone(),
            listener_stats: Arc::clone(&limits.stats),
            body_budget: body_budget.unwrap_or_default(),
            cluster_synced: None,
        };
        let state = app::build(&loaded, process)
            .unwrap_or_else(|issues| panic!("test config does not compile: {issues:?}"))
            .state;
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let server_tls = tls
            .server
            .map(|settings| airgate::server::tls::ServerTls::start(&settings, &shutdown).unwrap());
        tokio::spawn(server::serve_with_tls(
            public,
            server::public_router(Arc::clone(&state)),
            limits.clone(),
            server_tls,
            public_shutdown.clone(),
        ));
        let admin_shutdown = server::Shutdown::default();
        tokio::spawn(server::serve(
            admin,
            server::admin_router(Arc::clone(&state)),
            limits,
            admin_shutdown.clone(),
        ));
        let drain_admin = admin_shutdown;
        let on_shutdown = shutdown.clone();
        tokio::spawn(async move {
            on_shutdown.cancelled().await;
            drain_admin.drain();
        });
        Self {
            addr,
            admin_addr,
            state,
            shutdown,
            public_shutdown,
            audit_dir,
        }
    }

    /// The audit events written so far, once at least `at_least` of type `kind` are there
    /// (waits briefly for the writer).
    pub async fn audit_events_of(&self, kind: &str, at_least: usize) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        for _ in 0..100 {
            events = self.audit_events(0).await;
            if events.iter().filter(|e| e["event"] == kind).count() >= at_least {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        events
    }

    /// The audit events written so far (waits briefly for the writer).
    pub async fn audit_events(&self, at_least: usize) -> Vec<serde_json::Value> {
        let path = self.audit_dir.path().join("audit.jsonl");
        let mut events = Vec::new();
        for _ in 0..50 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            events = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if events.len() >= at_least {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        events
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
        self.public_shutdown.drain();
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
    tokenizer: Option<String>,
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
            tokenizer: None,
        }
    }
    pub fn tokenizer(mut self, path: &str) -> Self {
        self.tokenizer = Some(path.into());
        self
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
        if let Some(tokenizer) = &self.tokenizer {
            out.push_str(&format!("      tokenizer: {tokenizer}\n"));
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

/// A backend that answers every chat completion with scripted deltas: streamed one event per
/// delta, or joined into one message when not streamed. For tests that need exact chunking.
pub struct ScriptedBackend {
    pub url: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl ScriptedBackend {
    /// Streams exactly `sse` (already framed as SSE) for every chat completion.
    pub async fn raw_stream(sse: &'static str) -> Self {
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(
                move || async move { ([("content-type", "text/event-stream")], sse) },
            ),
        );
        Self::serve(app).await
    }

    /// Answers every chat completion with exactly `body` (not re-encoded) and `content_type`:
    /// a hostile or broken backend's bytes.
    pub async fn raw(content_type: &'static str, body: &'static str) -> Self {
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move || async move { ([("content-type", content_type)], body) }),
        );
        Self::serve(app).await
    }

    pub async fn serve(app: axum::Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self { url, _shutdown: tx }
    }

    /// Each item is a `delta` object, e.g. `{"content": "conf"}`.
    pub async fn start(deltas: Vec<serde_json::Value>) -> Self {
        use axum::response::IntoResponse;
        let deltas = Arc::new(deltas);
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let deltas = Arc::clone(&deltas);
                async move {
                    let base = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]});
                    if body["stream"].as_bool() == Some(true) {
                        let mut out = String::new();
                        let mut push = |choice: serde_json::Value| {
                            let mut chunk = base.clone();
                            chunk["choices"] = serde_json::json!([choice]);
                            out.push_str(&format!("data: {chunk}\n\n"));
                        };
                        push(serde_json::json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}));
                        for delta in deltas.iter() {
                            push(serde_json::json!({"index": 0, "delta": delta, "finish_reason": null}));
                        }
                        push(serde_json::json!({"index": 0, "delta": {}, "finish_reason": "stop"}));
                        out.push_str("data: [DONE]\n\n");
                        ([("content-type", "text/event-stream")], out).into_response()
                    } else {
                        let content: String = deltas.iter().filter_map(|d| d["content"].as_str()).collect();
                        let args: String = deltas.iter().filter_map(|d| d.pointer("/tool_calls/0/function/arguments").and_then(|a| a.as_str())).collect();
                        let mut message = serde_json::json!({"role": "assistant", "content": content});
                        if !args.is_empty() {
                            message["tool_calls"] = serde_json::json!([{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": args}}]);
                        }
                        axum::Json(serde_json::json!({
                            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                        }))
                        .into_response()
                    }
                }
            }),
        );
        Self::serve(app).await
    }
}

/// Streams a chat completion and returns (the joined content, the last finish_reason, whether
/// `[DONE]` came).
pub async fn stream_text(response: reqwest::Response) -> (String, Option<String>, bool) {
    let data = sse_data(response).await;
    let mut text = String::new();
    let mut finish = None;
    let mut done = false;
    for d in data {
        if d == "[DONE]" {
            done = true;
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&d).unwrap();
        for choice in v["choices"].as_array().into_iter().flatten() {
            if let Some(c) = choice["delta"]["content"].as_str() {
                text.push_str(c);
            }
            if let Some(args) = choice
                .pointer("/delta/tool_calls/0/function/arguments")
                .and_then(|a| a.as_str())
            {
                text.push_str(args);
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
    }
    (text, finish, done)
}

/// An HTTP service that answers every request with what it received, as JSON:
/// `{"method", "path", "query", "headers": {name: value}, "body"}`.
pub async fn echo_service() -> ScriptedBackend {
    use axum::extract::Request;
    let app = axum::Router::new().fallback(|request: Request| async move {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::Value::from(v.to_str().unwrap_or("")),
                )
            })
            .collect();
        axum::Json(serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
    });
    ScriptedBackend::serve(app).await
}

/// `AIRGATE_MODEL_DIR`, or `models/all-MiniLM-L6-v2` (filled by `models/fetch.sh`).
pub fn model_dir() -> std::path::PathBuf {
    std::env::var_os("AIRGATE_MODEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2")
        })
}

/// The embedding model, loaded once per test binary.
/// WordNet for the cache's word check, loaded once per test binary from `models/wordnet`
/// (`models/fetch-wordnet.sh`; `AIRGATE_WORDNET_DIR` overrides).
pub fn wordnet() -> Arc<airgate::cache::wordnet::WordNet> {
    static W: std::sync::OnceLock<Arc<airgate::cache::wordnet::WordNet>> =
        std::sync::OnceLock::new();
    W.get_or_init(|| {
        match airgate::cache::wordnet::WordNet::load(&airgate::cache::wordnet::default_dir()) {
            Ok(w) => Arc::new(w),
            Err(e) => panic!("{e}"),
        }
    })
    .clone()
}

pub fn embedder() -> Arc<airgate::cache::Embedder> {
    static E: std::sync::OnceLock<Arc<airgate::cache::Embedder>> = std::sync::OnceLock::new();
    E.get_or_init(
        || match airgate::cache::Embedder::load(&model_dir(), 1, 16) {
            Ok(e) => Arc::new(e),
            Err(e) => panic!("{e}"),
        },
    )
    .clone()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

// ---------------------------------------------------------------------------
// TLS: options for a gateway with TLS, and a PKI made with rcgen.
// ---------------------------------------------------------------------------

/// TLS for a test gateway: the public listener's settings, and the `--backend-ca` trust.
#[derive(Default)]
pub struct TlsOptions {
    pub server: Option<airgate::server::tls::ServerTlsSettings>,
    pub backend_trust: airgate::routing::BackendTrust,
}

/// A certificate authority that issues server and client certificates.
pub struct TestCa {
    pub cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for these names (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Issued {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        self.issue(params)
    }

    /// A client certificate whose subject CN is `common_name`.
    pub fn client(&self, common_name: &str) -> Issued {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: rcgen::CertificateParams) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

impl Issued {
    /// The PEM identity reqwest takes (certificate and key together).
    pub fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.cert_pem, self.key_pem).as_bytes())
            .unwrap()
    }

    /// Writes `tls.crt` and `tls.key` into `dir` (a `kubernetes.io/tls` secret's layout).
    pub fn write_secret(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("tls.crt"), &self.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &self.key_pem).unwrap();
    }

    /// A rustls server configuration serving this certificate, requiring client certificates
    /// from `client_ca` when given.
    pub fn server_config(
        &self,
        client_ca: Option<&TestCa>,
    ) -> Arc<tokio_rustls::rustls::ServerConfig> {
        use rustls_pki_types::pem::PemObject;
        use tokio_rustls::rustls;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.cert.der().clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let cert = rustls_pki_types::CertificateDer::from(self.der.clone());
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let mut config = builder.with_single_cert(vec![cert], key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// An OpenAI-compatible backend served over HTTPS with `config`: answers every chat
/// completion and `/health`, and counts both.
pub struct HttpsBackend {
    pub url: String,
    pub served: Arc<std::sync::atomic::AtomicUsize>,
    pub probed: Arc<std::sync::atomic::AtomicUsize>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl HttpsBackend {
    pub async fn start(config: Arc<tokio_rustls::rustls::ServerConfig>) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower::ServiceExt;
        let served = Arc::new(AtomicUsize::new(0));
        let probed = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&served);
        let probes = Arc::clone(&probed);
        let app = axum::Router::new()
            .route(
                "/health",
                axum::routing::get(move || {
                    probes.fetch_add(1, Ordering::SeqCst);
                    async { "ok" }
                }),
            )
            .route(
            "/v1/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    axum::Json(serde_json::json!({
                        "id": "chatcmpl-tls", "object": "chat.completion", "created": 1,
                        "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "over tls"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
                    }))
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    _ = &mut rx => return,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => continue,
                    },
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A refused handshake (no or a wrong client certificate) ends here.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            app.clone().oneshot(request.map(axum::body::Body::new))
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            served,
            probed,
            _shutdown: tx,
        }
    }
}
