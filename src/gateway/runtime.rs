//! What the loaded configuration compiles into: one [`Gateway`] per `AIGateway` resource, held in
//! an immutable [`Snapshot`] that is swapped whole (never mutated) when configuration changes.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cache_stage::CachePolicy;
use super::content_filter::GuardPolicy;
use crate::access::settings::{load_verifier, GatewayLimits};
use crate::access::JwtVerifier;
use crate::apis::ApiRoute;
use crate::cache::wordnet::{WordNet, WORDNET_FETCH_HINT};
use crate::cache::{CacheSettings, Embedder, SemanticCache, FETCH_HINT};
use crate::config::{
    AiGateway, AuditLevel as ConfigAuditLevel, CacheScope, ConfigIssue, ContentGuardSpec,
    LoadedConfig, MetricsSpec, PatternAction, PatternSpec, RoutingSpec,
};
use crate::guard::{self, GuardLimits, PatternError, PatternSet, RuleSpec};
use crate::routing::{health, Backend, BackendTrust, HealthSettings, UpstreamClients};
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

/// What compiling a snapshot needs besides the resources.
pub struct BuildContext<'a> {
    pub metrics: &'a Arc<Metrics>,
    pub shutdown: &'a CancellationToken,
    /// Kubernetes-style secrets folder (one folder per secret, one file per key).
    pub secrets_dir: &'a Path,
    /// CAs trusted for every backend and `API` service (`--backend-ca`).
    pub backend_trust: &'a BackendTrust,
    /// The embedding model, loaded when some gateway enables the semantic cache.
    pub embedder: Option<Arc<Embedder>>,
    /// WordNet for the cache's word check, loaded with the embedding model.
    pub wordnet: Option<Arc<WordNet>>,
}

/// What `spec.metrics` switches on for this gateway's request metrics.
#[derive(Debug, Clone, Copy)]
pub struct MetricsFlags {
    pub enabled: bool,
    pub model_name: bool,
    pub token_count: bool,
    pub latency: bool,
}

/// Reads every secret the resources name from `secrets_dir` as `serve` would (JWT keys,
/// backend CA and client certificates, `API` JWT keys) and reports each one that is missing or
/// unusable, all of them, without starting anything. For `airgate validate --secrets-dir`.
pub fn check_secrets(
    config: &LoadedConfig,
    secrets_dir: &Path,
    trust: &BackendTrust,
) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let mut clients = UpstreamClients::new(trust, secrets_dir);
    for located in &config.gateways {
        let resource = &located.resource;
        let issue = |message: String| {
            ConfigIssue::at(&located.source, message).with_resource(resource.display_name())
        };
        if let Err(e) = load_verifier(resource.spec.authentication.as_ref(), secrets_dir) {
            issues.push(issue(e.to_string()).with_field("spec.authentication.jwt"));
        }
        let defaults = resource.spec.routing.as_ref().and_then(|r| r.tls.as_ref());
        for (index, backend) in resource.spec.backends.iter().enumerate() {
            if let Err(e) = clients.for_backend(index, backend, defaults) {
                issues.push(issue(e.to_string()));
            }
        }
    }
    for located in &config.apis {
        if let Err(e) = ApiRoute::try_new(&located.resource, secrets_dir) {
            issues.push(
                ConfigIssue::at(&located.source, e).with_resource(located.resource.display_name()),
            );
        }
    }
    issues
}

impl Gateway {
    /// Compiles one `AIGateway`; its backends' HTTP clients come from `clients`, shared across
    /// the snapshot by TLS configuration. Errors start with the field path at fault.
    pub fn try_new(
        resource: &AiGateway,
        secrets_dir: &Path,
        embedder: Option<&Arc<Embedder>>,
        wordnet: Option<&Arc<WordNet>>,
        clients: &mut UpstreamClients<'_>,
    ) -> Result<Self, String> {
        let routing = resource.spec.routing.clone().unwrap_or_default();
        let health = HealthSettings {
            failure_threshold: routing.failure_threshold.max(1),
            cooldown: routing.cooldown.0,
        };
        let backends = resource
            .spec
            .backends
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let client = clients
                    .for_backend(index, spec, routing.tls.as_ref())
                    .map_err(|e| e.to_string())?;
                Backend::try_new(spec, health, client).map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let models = backends
            .iter()
            .flat_map(|b| b.models.iter().cloned())
            .collect();
        let metrics = resource.spec.metrics.clone().unwrap_or(MetricsSpec {
            enabled: true,
            include_model_name: true,
            include_token_count: true,
            include_latency: true,
        });
        let guard = compile_guard(resource.spec.content_guard.as_ref()).map_err(|errors| {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("spec.contentGuard: {}", list.join("; "))
        })?;
        let verifier = load_verifier(resource.spec.authentication.as_ref(), secrets_dir)
            .map_err(|e| format!("spec.authentication.jwt: {e}"))?;
        let limits = GatewayLimits::from_spec(resource.spec.rate_limit.as_ref());
        let cache = match resource.spec.semantic_cache.as_ref().filter(|c| c.enabled) {
            None => None,
            Some(spec) => {
                let embedder = embedder.ok_or_else(|| {
                    format!("semanticCache is enabled but the embedding model is not loaded; {FETCH_HINT}")
                })?;
                // Fail closed: without WordNet, verification would let antonyms and swapped
                // entities through (docs/cache.md).
                let wordnet = wordnet.ok_or_else(|| {
                    format!(
                        "semanticCache is enabled but WordNet is not loaded; {WORDNET_FETCH_HINT}"
                    )
                })?;
                let settings = CacheSettings {
                    ttl: spec.ttl.0,
                    similarity_threshold: spec.similarity_threshold,
                    max_bytes: spec.max_cache_size.0,
                    verify: true,
                };
                Some(CachePolicy {
                    cache: Arc::new(SemanticCache::with_words(
                        settings,
                        Arc::clone(embedder),
                        Some(Arc::clone(wordnet)),
                    )),
                    per_user: spec.scope == Some(CacheScope::User),
                })
            }
        };
        let primary_priority = resource
            .spec
            .backends
            .iter()
            .map(|b| b.priority)
            .min()
            .unwrap_or(1);
        Ok(Self {
            id: format!(
                "{}/{}",
                resource.metadata.namespace(),
                resource.metadata.name
            ),
            backends,
            settings: GatewaySettings::from(&routing),
            models,
            guard,
            verifier,
            limits,
            cache,
            primary_priority,
            metrics: MetricsFlags {
                enabled: metrics.enabled,
                model_name: metrics.include_model_name,
                token_count: metrics.include_token_count,
                latency: metrics.include_latency,
            },
        })
    }

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
}

impl Snapshot {
    /// Compiles the loaded resources and starts the backends' health probes.
    pub fn build(config: &LoadedConfig, ctx: &BuildContext<'_>) -> Result<Self, String> {
        let (metrics, shutdown) = (ctx.metrics, ctx.shutdown);
        let mut clients = UpstreamClients::new(ctx.backend_trust, ctx.secrets_dir);
        let mut snapshot = Snapshot {
            by_id: HashMap::new(),
            default: None,
            apis: Vec::new(),
            api_client: clients
                .default_client()
                .map_err(|e| e.to_string())?
                .inner()
                .clone(),
        };
        for located in &config.apis {
            let route = ApiRoute::try_new(&located.resource, ctx.secrets_dir).map_err(|e| {
                format!(
                    "{} ({}): {e}",
                    located.source,
                    located.resource.display_name()
                )
            })?;
            snapshot.apis.push(Arc::new(route));
        }
        let mut marked_default = None;
        for located in &config.gateways {
            let resource = &located.resource;
            let gateway = Arc::new(
                Gateway::try_new(
                    resource,
                    ctx.secrets_dir,
                    ctx.embedder.as_ref(),
                    ctx.wordnet.as_ref(),
                    &mut clients,
                )
                .map_err(|e| format!("{} ({}): {e}", located.source, resource.display_name()))?,
            );
            for backend in &gateway.backends {
                metrics.set_backend_up(&gateway.id, &backend.name, true);
            }
            health::spawn_probes(&gateway.id, &gateway.backends, metrics, shutdown);
            let is_marked = resource
                .metadata
                .annotations
                .get(DEFAULT_ANNOTATION)
                .is_some_and(|v| v == "true");
            if is_marked {
                marked_default = Some(Arc::clone(&gateway));
            }
            snapshot.by_id.insert(gateway.id.clone(), gateway);
        }
        snapshot.default = marked_default.or_else(|| {
            if snapshot.by_id.len() == 1 {
                snapshot.by_id.values().next().cloned()
            } else {
                None
            }
        });
        Ok(snapshot)
    }

    pub fn gateway(&self, namespace: &str, name: &str) -> Option<Arc<Gateway>> {
        self.by_id.get(&format!("{namespace}/{name}")).cloned()
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

/// Compiles `contentGuard` into a pattern set; `None` when absent or disabled.
pub fn compile_guard(
    spec: Option<&ContentGuardSpec>,
) -> Result<Option<GuardPolicy>, Vec<PatternError>> {
    let Some(spec) = spec.filter(|s| s.enabled) else {
        return Ok(None);
    };
    let mut limits = GuardLimits::default();
    if let Some(cap) = spec.max_holdback_chars {
        limits.max_holdback_chars = cap;
    }
    let block: Vec<RuleSpec> = spec.block_patterns.iter().map(rule_spec).collect();
    let allow: Vec<RuleSpec> = spec.allow_patterns.iter().map(rule_spec).collect();
    let set = PatternSet::compile(&block, &allow, limits)?
        .match_confusables(spec.match_confusables.unwrap_or(false));
    Ok(Some(GuardPolicy {
        set: Arc::new(set),
        scan_prompts: spec.scan_prompts,
        scan_responses: spec.scan_responses,
        pool: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, usize::from),
        )),
    }))
}

fn rule_spec(spec: &PatternSpec) -> RuleSpec {
    RuleSpec {
        name: spec.name.clone(),
        regex: spec.regex.clone(),
        detector: spec.detector.clone(),
        action: match spec.action {
            PatternAction::Block => guard::Action::Block,
            PatternAction::Redact => guard::Action::Redact,
            PatternAction::Audit => guard::Action::Audit,
            PatternAction::Allow => guard::Action::Allow,
        },
        audit_level: spec.audit_level.map(|level| match level {
            ConfigAuditLevel::Low => guard::AuditLevel::Low,
            ConfigAuditLevel::Medium => guard::AuditLevel::Medium,
            ConfigAuditLevel::High => guard::AuditLevel::High,
            ConfigAuditLevel::Critical => guard::AuditLevel::Critical,
        }),
    }
}
