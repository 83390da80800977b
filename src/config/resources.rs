//! The custom resources AirGate reads: `AIGateway` and `API`
//! (`hub.traefik.io/v1alpha1` or `airgate.io/v1alpha1`).
//!
//! Every struct rejects unknown fields so that typos such as
//! `similarityTreshold` are reported instead of silently ignored.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::units::{ByteSize, Duration};

/// API versions AirGate accepts for its kinds.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["hub.traefik.io/v1alpha1", "airgate.io/v1alpha1"];

/// The `kind` of an AI gateway resource.
pub const KIND_AI_GATEWAY: &str = "AIGateway";

/// The `kind` of an API resource.
pub const KIND_API: &str = "API";

/// Annotation marking the gateway used when a request does not select one.
pub const DEFAULT_GATEWAY_ANNOTATION: &str = "airgate.io/default";

/// Namespace used when `metadata.namespace` is absent.
pub const DEFAULT_NAMESPACE: &str = "default";

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------

/// Kubernetes-style object metadata (the subset AirGate uses).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// The namespace, `"default"` when absent.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace(), self.name)
    }
}

// ---------------------------------------------------------------------------
// AIGateway
// ---------------------------------------------------------------------------

/// An `AIGateway` resource.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiGateway {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: AiGatewaySpec,
}

impl AiGateway {
    /// `"AIGateway namespace/name"`, as used in diagnostics.
    pub fn display_name(&self) -> String {
        resource_label(KIND_AI_GATEWAY, &self.metadata)
    }

    /// `namespace/name`: the compiled gateway's id.
    pub fn id(&self) -> String {
        self.metadata.id()
    }

    /// Whether the gateway carries `airgate.io/default: "true"`.
    pub fn is_default(&self) -> bool {
        self.metadata
            .annotations
            .get(DEFAULT_GATEWAY_ANNOTATION)
            .is_some_and(|v| v == "true")
    }
}

/// `AIGateway.spec`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiGatewaySpec {
    pub backends: Vec<BackendSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_guard: Option<ContentGuardSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_cache: Option<SemanticCacheSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<AiRateLimitSpec>,
    /// JWT authentication of callers (AirGate extension, same shape as `API`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,
    /// AirGate extension: routing and resilience tuning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingSpec>,
}

fn default_priority() -> u32 {
    1
}

fn default_backend_timeout() -> Duration {
    Duration::from_secs(30)
}

/// One upstream OpenAI-compatible backend.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendSpec {
    pub name: String,
    /// Base URL, `http://` or `https://` with a host.
    pub url: String,
    /// Models served by this backend (at least one).
    pub models: Vec<String>,
    /// Lower is tried first. Default 1.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Request timeout. Default 30s.
    #[serde(default = "default_backend_timeout")]
    pub timeout: Duration,
    #[serde(default)]
    pub requires_approval: bool,
    /// Extra headers sent to this backend.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    /// A `tokenizer.json` (Hugging Face tokenizers format) for this backend's models, used to
    /// count tokens when the backend reports no usage (extension; else estimated from length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// TLS towards this backend (extension; `https://` URLs only). Each field overrides the one
    /// of `spec.routing.tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTlsSpec>,
}

/// TLS towards backends (AirGate extension). The backend's certificate is always verified:
/// there is no setting that turns verification off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendTlsSpec {
    /// Secret whose `ca.crt` (PEM) holds the CAs the backend's certificate must chain to. They
    /// replace the built-in public roots for this backend; `--backend-ca` is trusted as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_name: Option<String>,
    /// A `kubernetes.io/tls` secret (`tls.crt`, `tls.key`): the client certificate presented to
    /// backends that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_name: Option<String>,
    /// The name the backend's certificate must be valid for, instead of the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(2)
}

/// Active health checking of a backend.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// Path to probe. When absent, `/health` is probed, and `/v1/models`
    /// when `/health` answers 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default = "default_health_interval")]
    pub interval: Duration,
    #[serde(default = "default_health_timeout")]
    pub timeout: Duration,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for HealthCheckSpec {
    fn default() -> Self {
        HealthCheckSpec {
            path: None,
            interval: default_health_interval(),
            timeout: default_health_timeout(),
            enabled: true,
        }
    }
}

/// AirGate extension: routing, body limits and circuit breaking.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RoutingSpec {
    /// Abort a stream when the backend sends nothing for this long. Default 30s.
    pub stream_idle_timeout: Duration,
    /// A non-streamed answer must arrive whole within this, counted from when the request is
    /// sent to a backend (per attempt; a backend trickling bytes cannot hold a request longer).
    /// Streams are bounded by `streamIdleTimeout` instead. Default 300s.
    pub response_timeout: Duration,
    /// Largest accepted request body. Default 10 MiB.
    pub max_body_size: ByteSize,
    /// Time allowed to read the request body. Default 30s.
    pub body_read_timeout: Duration,
    /// Consecutive failures before a backend is put in cooldown. Default 3.
    pub failure_threshold: u32,
    /// How long a failed backend is skipped. Default 10s.
    pub cooldown: Duration,
    /// Maximum backends tried per request; all candidates when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// TLS towards this gateway's `https://` backends; a backend's own `tls` fields override
    /// these one by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTlsSpec>,
}

impl Default for RoutingSpec {
    fn default() -> Self {
        RoutingSpec {
            stream_idle_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(300),
            max_body_size: ByteSize::mib(10),
            body_read_timeout: Duration::from_secs(30),
            failure_threshold: 3,
            cooldown: Duration::from_secs(10),
            max_attempts: None,
            tls: None,
        }
    }
}

/// Prompt / response content filtering.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContentGuardSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_true")]
    pub scan_prompts: bool,
    #[serde(default = "default_true")]
    pub scan_responses: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_patterns: Vec<PatternSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_patterns: Vec<PatternSpec>,
    /// Maximum characters of a streamed response held back for scanning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_holdback_chars: Option<usize>,
    /// AirGate extension: match regex patterns against the prompt's confusables skeleton too
    /// (non-ASCII look-alikes such as Cyrillic `о` read as ASCII `o`), as the built-in
    /// detectors always are. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_confusables: Option<bool>,
}

/// One content-guard pattern: exactly one of `regex` or `detector`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatternSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Regular expression (compiled by the content-guard module, not here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// AirGate extension: name of a built-in detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    pub action: PatternAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_level: Option<AuditLevel>,
}

/// What to do when a pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatternAction {
    Block,
    Redact,
    Audit,
    Allow,
}

/// Severity recorded in the audit log.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    Low,
    Medium,
    High,
    Critical,
}

/// Semantic response cache.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SemanticCacheSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Entry lifetime; an integer is seconds (`ttl: 3600`).
    pub ttl: Duration,
    /// Minimum similarity for a hit, in (0, 1].
    pub similarity_threshold: f32,
    pub max_cache_size: ByteSize,
    #[serde(default)]
    pub eviction_policy: EvictionPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<CacheScope>,
}

/// Cache eviction policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EvictionPolicy {
    #[default]
    Lru,
}

/// Who shares cache entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    Gateway,
    User,
}

/// `AIGateway.spec.rateLimit`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiRateLimitSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<LimitSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user: Option<LimitSpec>,
}

/// `limit` requests (and optionally `tokens` tokens) per `period`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitSpec {
    pub limit: u64,
    pub period: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Completion tokens reserved for a request that sets no `max_tokens` (extension; default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_tokens: Option<u64>,
}

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_true")]
    pub include_model_name: bool,
    #[serde(default = "default_true")]
    pub include_token_count: bool,
    #[serde(default = "default_true")]
    pub include_latency: bool,
}

fn default_sample_rate() -> f64 {
    1.0
}

/// Distributed tracing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Fraction of requests traced, in [0, 1]. Default 1.0.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

// ---------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------

/// An `API` resource.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Api {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ApiSpec,
}

impl Api {
    /// `"API namespace/name"`, as used in diagnostics.
    pub fn display_name(&self) -> String {
        resource_label(KIND_API, &self.metadata)
    }

    /// `namespace/name`: the compiled route's id.
    pub fn id(&self) -> String {
        self.metadata.id()
    }
}

/// `API.spec`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_api_spec: Option<OpenApiSpecRef>,
    pub service: ServiceRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<ApiRateLimitSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_control: Option<AccessControlSpec>,
    /// Extra path prefix the API is served at, besides `/apis/{namespace}/{name}` (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Time allowed for the service's response head (extension; default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Where the OpenAPI document lives, and what is done with it at run time.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenApiSpecRef {
    /// A file: absolute, or relative to the configuration file that names it. Read first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Fetched once per configuration load (5s timeout), when `path` is absent or cannot be
    /// read; the last spec fetched is kept when a later fetch fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `enforce` (default): requests that do not follow the spec are refused; `report`: they
    /// are counted and logged, and pass; `off`: the spec is not read (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<OpenApiValidation>,
}

impl OpenApiSpecRef {
    /// `validation`, `enforce` when absent.
    pub fn validation(&self) -> OpenApiValidation {
        self.validation.unwrap_or_default()
    }
}

/// `API.spec.openApiSpec.validation`. (The variants have plain comments: a doc comment would
/// make schemars render a `oneOf` with descriptions, which is not a structural CRD schema.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OpenApiValidation {
    // Refuse requests that do not follow the spec (404, 405, 415, 400); 503 while the spec
    // cannot be obtained.
    #[default]
    Enforce,
    // Count and log what enforcement would refuse, and let every request through.
    Report,
    // Do not read the spec. In a manifest applied with kubectl write it `"off"`: YAML 1.1
    // (Kubernetes' parser) reads a bare `off` as `false`.
    Off,
}

/// The Kubernetes service behind an API.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub port: ServicePort,
    /// Base URL of the service, overriding the cluster DNS name
    /// `http://{name}.{namespace}.svc:{port}` (extension; for running outside a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A service port, by number or by name (exactly one).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// CORS policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

fn default_strategy() -> String {
    "ip".to_string()
}

/// `API.spec.rateLimit`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiRateLimitSpec {
    pub limit: u64,
    pub period: Duration,
    /// `ip` (default), `user`, or `header:NAME`.
    #[serde(default = "default_strategy")]
    pub strategy: String,
}

impl ApiRateLimitSpec {
    /// The parsed `strategy`, `None` when it is not valid.
    pub fn strategy(&self) -> Option<RateLimitStrategy> {
        RateLimitStrategy::parse(&self.strategy)
    }
}

/// Parsed form of `API.spec.rateLimit.strategy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitStrategy {
    /// Per client IP address.
    Ip,
    /// Per authenticated user.
    User,
    /// Per value of the named request header.
    Header(String),
}

impl RateLimitStrategy {
    /// Parses `ip`, `user` or `header:NAME` (NAME a valid HTTP header name).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ip" => Some(RateLimitStrategy::Ip),
            "user" => Some(RateLimitStrategy::User),
            _ => s
                .strip_prefix("header:")
                .filter(|name| crate::config::validate::is_header_name(name))
                .map(|name| RateLimitStrategy::Header(name.to_string())),
        }
    }
}

/// `API.spec.authentication`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
}

/// JWT validation settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtSpec {
    /// Name of the secret holding the signing key.
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Claim holding the user id (for per-user rate limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_claim: Option<String>,
    /// File in the secret holding the HMAC key (extension; default `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Clock-skew allowance for `exp` and `nbf` (extension; default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway: Option<Duration>,
    /// Claim that approves a request for `requiresApproval` backends (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpec>,
}

/// `API.spec.accessControl`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessControlSpec {
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
}

/// A named access rule (Traefik rule syntax).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    pub rule: String,
}

/// `"{kind} {namespace}/{name}"`.
pub(crate) fn resource_label(kind: &str, meta: &ObjectMeta) -> String {
    format!("{kind} {}/{}", meta.namespace(), meta.name)
}

/// A verified token approves `requiresApproval` backends when its top-level claim `claim` equals
/// `value`, or is an array containing it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSpec {
    pub claim: String,
    pub value: serde_json::Value,
}
