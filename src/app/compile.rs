//! Compiling validated resources into a [`Snapshot`]: every `AIGateway` into a [`Gateway`] and
//! every `API` into an [`ApiRoute`], with their secrets, TLS clients, guard patterns, caches and
//! OpenAPI specs (obtained by [`super::specs`]).
//!
//! Compiling has no side effects (no probe starts, no metric is set: [`Snapshot::start`] does
//! that once a snapshot is chosen), so a reload can compile a candidate off the request path
//! and throw it away. It does not stop at the first problem: every problem of every resource is
//! collected as a [`ConfigIssue`] naming the file, the document and the field, the type
//! `airgate validate` prints.
//!
//! It lives above `config` and `gateway` (not in `config`, which the compiled types depend on):
//! the module map has no cycle between top-level modules.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::access::settings::{load_verifier, GatewayLimits};
use crate::apis::ApiRoute;
use crate::cache::wordnet::{WordNet, WORDNET_FETCH_HINT};
use crate::cache::{CacheSettings, Embedder, SemanticCache, FETCH_HINT};
use crate::config::{
    AiGateway, AuditLevel as ConfigAuditLevel, CacheScope, ConfigIssue, ContentGuardSpec,
    LoadedConfig, Located, MetricsSpec, PatternAction, PatternSpec,
};
use crate::gateway::cache_stage::CachePolicy;
use crate::gateway::content_filter::GuardPolicy;
use crate::gateway::runtime::{GatewaySettings, MetricsFlags, DEFAULT_ANNOTATION};
use crate::gateway::{Gateway, Snapshot};
use crate::guard::{self, GuardLimits, PatternError, PatternSet, RuleSpec};
use crate::routing::{Backend, BackendTrust, HealthSettings, UpstreamClients};

use super::specs;

/// What compiling needs besides the resources.
pub struct CompileContext<'a> {
    /// Kubernetes-style secrets folder (one folder per secret, one file per key).
    pub secrets_dir: &'a Path,
    /// CAs trusted for every backend and `API` service (`--backend-ca`).
    pub backend_trust: &'a BackendTrust,
    /// The embedding model, loaded once per process when some gateway enables the cache.
    pub embedder: Option<&'a Arc<Embedder>>,
    /// WordNet for the cache's word check, loaded with the embedding model.
    pub wordnet: Option<&'a Arc<WordNet>>,
    /// The snapshot in service, on a reload: what it learnt carries over (backend health and
    /// load for an unchanged URL, cache entries for unchanged cache settings).
    pub previous: Option<&'a Snapshot>,
    /// Cluster mode: a resource reads the Secrets of its own namespace, written to
    /// `secrets_dir/<namespace>/`; a folder configuration has one flat `secrets_dir`.
    pub secrets_by_namespace: bool,
}

impl CompileContext<'_> {
    /// The folder the secrets of a resource in `namespace` are read from.
    pub fn secrets_for(&self, namespace: &str) -> PathBuf {
        if self.secrets_by_namespace {
            self.secrets_dir.join(namespace)
        } else {
            self.secrets_dir.to_path_buf()
        }
    }
}

/// A problem of one resource, before it is placed in its file and document.
struct FieldIssue {
    field: Option<String>,
    message: String,
}

impl FieldIssue {
    fn at(field: impl Into<String>, message: impl ToString) -> Self {
        Self {
            field: Some(field.into()),
            message: message.to_string(),
        }
    }

    /// A message that names its own field (TLS and backend errors start with it).
    fn message(message: impl ToString) -> Self {
        Self {
            field: None,
            message: message.to_string(),
        }
    }

    fn located<T: ResourceName>(self, located: &Located<T>) -> ConfigIssue {
        let issue = ConfigIssue::at(&located.source, self.message)
            .with_resource(located.resource.display_name());
        match self.field {
            Some(field) => issue.with_field(field),
            None => issue,
        }
    }
}

/// Resources that name themselves in an issue (`AIGateway ns/name`).
trait ResourceName {
    fn display_name(&self) -> String;
}

impl ResourceName for AiGateway {
    fn display_name(&self) -> String {
        AiGateway::display_name(self)
    }
}

impl ResourceName for crate::config::Api {
    fn display_name(&self) -> String {
        crate::config::Api::display_name(self)
    }
}

/// Compiles every resource; all of them or the list of every problem.
pub fn compile(
    config: &LoadedConfig,
    ctx: &CompileContext<'_>,
) -> Result<Snapshot, Vec<ConfigIssue>> {
    let mut parts = Parts::compile(config, ctx, &HashSet::new());
    let mut issues = std::mem::take(&mut parts.process_issues);
    issues.extend(parts.failed.drain(..).flat_map(|(_, issues)| issues));
    match parts.api_client.take() {
        Some(api_client) if issues.is_empty() => Ok(Snapshot::assemble(
            parts.gateways,
            parts.marked_default,
            parts.apis,
            api_client,
        )),
        _ => Err(issues),
    }
}

/// Which kind of resource a compiled part came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartKind {
    Gateway,
    Api,
}

/// A resource by kind and `namespace/name` (the id its compiled part has).
pub type PartId = (PartKind, String);

/// What compiling resource by resource came to (cluster mode): a resource that does not compile
/// is left out, or, when it served before, its last good compiled version serves on.
pub struct Isolated {
    pub snapshot: Snapshot,
    /// Every problem of each resource that did not compile.
    pub failed: Vec<(PartId, Vec<ConfigIssue>)>,
    /// Resources served by the version the previous snapshot had: those that failed and those
    /// the caller asked to keep (invalid before compiling).
    pub kept: Vec<PartId>,
}

/// Compiles each resource on its own. Those that fail, and those of `keep` (refused before
/// compiling), keep the compiled version of `ctx.previous` when it has one; the rest serve as
/// they compiled. Those of `unchanged` (the same inputs as their part in `ctx.previous`: the
/// same document and secrets) are not compiled again: their part is taken over. `Err` only
/// when the process itself cannot build the `API` client.
pub fn compile_isolated(
    config: &LoadedConfig,
    keep: &[PartId],
    unchanged: &HashSet<PartId>,
    ctx: &CompileContext<'_>,
) -> Result<Isolated, Vec<ConfigIssue>> {
    let mut parts = Parts::compile(config, ctx, unchanged);
    let Some(api_client) = parts.api_client.take() else {
        return Err(parts.process_issues);
    };
    let mut kept = Vec::new();
    let to_keep = parts.failed.iter().map(|(id, _)| id).chain(keep);
    for (kind, id) in to_keep {
        let Some(previous) = ctx.previous else {
            continue;
        };
        let found = match kind {
            PartKind::Gateway => previous.gateway_by_id(id).map(|gateway| {
                let was_default = previous
                    .default
                    .as_ref()
                    .is_some_and(|d| Arc::ptr_eq(d, gateway));
                if was_default && parts.marked_default.is_none() {
                    parts.marked_default = Some(Arc::clone(gateway));
                }
                parts.gateways.insert(id.clone(), Arc::clone(gateway));
            }),
            PartKind::Api => previous.apis.iter().find(|a| a.id == *id).map(|api| {
                parts.apis.push(Arc::clone(api));
            }),
        };
        if found.is_some() {
            kept.push((*kind, id.clone()));
        }
    }
    Ok(Isolated {
        snapshot: Snapshot::assemble(parts.gateways, parts.marked_default, parts.apis, api_client),
        failed: parts.failed,
        kept,
    })
}

/// Each resource compiled on its own, the failures with their issues.
struct Parts {
    gateways: HashMap<String, Arc<Gateway>>,
    marked_default: Option<Arc<Gateway>>,
    apis: Vec<Arc<ApiRoute>>,
    api_client: Option<reqwest::Client>,
    /// Problems of the process, not of a resource (the default client's TLS setup).
    process_issues: Vec<ConfigIssue>,
    failed: Vec<(PartId, Vec<ConfigIssue>)>,
}

impl Parts {
    /// Every resource compiled, but those of `unchanged`, whose part in `ctx.previous` is
    /// taken over.
    fn compile(
        config: &LoadedConfig,
        ctx: &CompileContext<'_>,
        unchanged: &HashSet<PartId>,
    ) -> Self {
        let previous_api = |id: &String| {
            unchanged
                .contains(&(PartKind::Api, id.clone()))
                .then(|| ctx.previous?.apis.iter().find(|a| a.id == *id).cloned())
                .flatten()
        };
        let previous_gateway = |id: &String| {
            unchanged
                .contains(&(PartKind::Gateway, id.clone()))
                .then(|| ctx.previous?.gateway_by_id(id).cloned())
                .flatten()
        };
        let mut parts = Parts {
            gateways: HashMap::new(),
            marked_default: None,
            apis: Vec::new(),
            api_client: None,
            process_issues: Vec::new(),
            failed: Vec::new(),
        };
        // one set of clients per secrets folder: a secret name means another secret elsewhere
        let mut clients: HashMap<PathBuf, UpstreamClients<'_>> = HashMap::new();
        let default_dir = ctx.secrets_dir.to_path_buf();
        let default_clients = clients
            .entry(default_dir.clone())
            .or_insert_with(|| UpstreamClients::new(ctx.backend_trust, &default_dir));
        match default_clients.default_client() {
            Ok(client) => parts.api_client = Some(client.inner().clone()),
            Err(error) => {
                let file = config.gateways.first().map(|g| g.source.file.clone());
                parts.process_issues.push(ConfigIssue::new(
                    file.unwrap_or_default(),
                    error.to_string(),
                ));
            }
        }
        let mut fresh = Vec::new();
        for located in &config.apis {
            match previous_api(&located.resource.id()) {
                Some(route) => parts.apis.push(route),
                None => fresh.push(located),
            }
        }
        // every spec of the configuration at once: the URLs are fetched together
        let specs = specs::policies(&fresh, ctx);
        for (located, spec) in fresh.into_iter().zip(specs) {
            let secrets = ctx.secrets_for(located.resource.metadata.namespace());
            let route = ApiRoute::try_new(&located.resource, &secrets);
            match (route, spec) {
                (Ok(route), Ok(policy)) => parts.apis.push(Arc::new(route.with_openapi(policy))),
                (route, spec) => {
                    let mut issues = Vec::new();
                    if let Err(message) = route {
                        issues.push(FieldIssue::message(message).located(located));
                    }
                    if let Err(problem) = spec {
                        issues
                            .push(FieldIssue::at(problem.field, problem.message).located(located));
                    }
                    parts
                        .failed
                        .push(((PartKind::Api, located.resource.id()), issues));
                }
            }
        }
        for located in &config.gateways {
            let secrets = ctx.secrets_for(located.resource.metadata.namespace());
            let clients = clients
                .entry(secrets.clone())
                .or_insert_with(|| UpstreamClients::new(ctx.backend_trust, &secrets));
            let compiled = match previous_gateway(&located.resource.id()) {
                Some(gateway) => Ok(gateway),
                None => compile_gateway(&located.resource, ctx, &secrets, clients).map(Arc::new),
            };
            match compiled {
                Ok(gateway) => {
                    if is_marked_default(&located.resource) {
                        parts.marked_default = Some(Arc::clone(&gateway));
                    }
                    parts.gateways.insert(gateway.id.clone(), gateway);
                }
                Err(problems) => parts.failed.push((
                    (PartKind::Gateway, located.resource.id()),
                    problems.into_iter().map(|p| p.located(located)).collect(),
                )),
            }
        }
        parts
    }
}

fn is_marked_default(resource: &AiGateway) -> bool {
    resource
        .metadata
        .annotations
        .get(DEFAULT_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// Compiles one `AIGateway`; its backends' HTTP clients come from `clients`, shared across the
/// snapshot by TLS configuration. Every problem of the resource, each with its field.
fn compile_gateway(
    resource: &AiGateway,
    ctx: &CompileContext<'_>,
    secrets_dir: &Path,
    clients: &mut UpstreamClients<'_>,
) -> Result<Gateway, Vec<FieldIssue>> {
    let mut issues = Vec::new();
    let id = resource.id();
    let previous = ctx.previous.and_then(|s| s.gateway_by_id(&id));
    let routing = resource.spec.routing.clone().unwrap_or_default();
    let health = HealthSettings {
        failure_threshold: routing.failure_threshold.max(1),
        cooldown: routing.cooldown.0,
    };
    let mut backends = Vec::new();
    for (index, spec) in resource.spec.backends.iter().enumerate() {
        let backend = clients
            .for_backend(index, spec, routing.tls.as_ref())
            .map_err(FieldIssue::message)
            .and_then(|client| {
                Backend::try_new(spec, health, client)
                    .map_err(|e| FieldIssue::at(format!("spec.backends[{index}]"), e))
            });
        match backend {
            Ok(mut backend) => {
                let same_name = previous
                    .into_iter()
                    .flat_map(|p| p.backends.iter())
                    .find(|p| p.name == backend.name);
                if let Some(before) = same_name {
                    backend.carry_live_state(before);
                }
                backends.push(Arc::new(backend));
            }
            Err(issue) => issues.push(issue),
        }
    }
    let guard = compile_guard(resource.spec.content_guard.as_ref()).unwrap_or_else(|errors| {
        issues.extend(errors.into_iter().map(pattern_issue));
        None
    });
    let verifier = load_verifier(resource.spec.authentication.as_ref(), secrets_dir)
        .unwrap_or_else(|e| {
            issues.push(FieldIssue::at("spec.authentication.jwt", e));
            None
        });
    let previous_cache = previous.and_then(|p| p.cache.as_ref());
    let cache = compile_cache(resource, ctx, previous_cache).unwrap_or_else(|issue| {
        issues.push(issue);
        None
    });
    if !issues.is_empty() {
        return Err(issues);
    }
    let metrics = resource.spec.metrics.clone().unwrap_or(MetricsSpec {
        enabled: true,
        include_model_name: true,
        include_token_count: true,
        include_latency: true,
    });
    Ok(Gateway {
        id,
        models: backends
            .iter()
            .flat_map(|b| b.models.iter().cloned())
            .collect(),
        backends,
        settings: GatewaySettings::from(&routing),
        guard,
        verifier,
        limits: GatewayLimits::from_spec(resource.spec.rate_limit.as_ref()),
        cache,
        primary_priority: resource
            .spec
            .backends
            .iter()
            .map(|b| b.priority)
            .min()
            .unwrap_or(1),
        metrics: MetricsFlags {
            enabled: metrics.enabled,
            model_name: metrics.include_model_name,
            token_count: metrics.include_token_count,
            latency: metrics.include_latency,
        },
    })
}

/// A guard pattern that does not compile, at its place in the list.
fn pattern_issue(error: PatternError) -> FieldIssue {
    FieldIssue::at(
        format!("spec.contentGuard.{}[{}]", error.list, error.index),
        error,
    )
}

/// `semanticCache`, when enabled: a cache of its own over the process's one embedding model;
/// on a reload, the cache in service (entries included) when its settings did not change.
fn compile_cache(
    resource: &AiGateway,
    ctx: &CompileContext<'_>,
    previous: Option<&CachePolicy>,
) -> Result<Option<CachePolicy>, FieldIssue> {
    let Some(spec) = resource.spec.semantic_cache.as_ref().filter(|c| c.enabled) else {
        return Ok(None);
    };
    if let Some(previous) = previous.filter(|p| p.spec == *spec) {
        return Ok(Some(previous.clone()));
    }
    let field = "spec.semanticCache";
    let embedder = ctx.embedder.ok_or_else(|| {
        FieldIssue::at(
            field,
            format!("enabled but the embedding model is not loaded; {FETCH_HINT}"),
        )
    })?;
    // Fail closed: without WordNet, verification would let antonyms and swapped entities
    // through (docs/cache.md).
    let wordnet = ctx.wordnet.ok_or_else(|| {
        FieldIssue::at(
            field,
            format!("enabled but WordNet is not loaded; {WORDNET_FETCH_HINT}"),
        )
    })?;
    let settings = CacheSettings {
        ttl: spec.ttl.0,
        similarity_threshold: spec.similarity_threshold,
        max_bytes: spec.max_cache_size.0,
        verify: true,
    };
    Ok(Some(CachePolicy {
        cache: Arc::new(SemanticCache::with_words(
            settings,
            Arc::clone(embedder),
            Some(Arc::clone(wordnet)),
        )),
        per_user: spec.scope == Some(CacheScope::User),
        spec: spec.clone(),
    }))
}

/// Whether some gateway enables the semantic cache, so that the process must load the
/// embedding model and WordNet (once: every snapshot shares them).
pub fn needs_models(config: &LoadedConfig) -> bool {
    config.gateways.iter().any(|g| {
        g.resource
            .spec
            .semantic_cache
            .as_ref()
            .is_some_and(|c| c.enabled)
    })
}

/// Every guard pattern that does not compile, as issues, for `validate` (which does not
/// compile the rest: no secrets, no models).
pub fn pattern_issues(config: &LoadedConfig) -> Vec<ConfigIssue> {
    config
        .gateways
        .iter()
        .flat_map(|located| {
            let errors = compile_guard(located.resource.spec.content_guard.as_ref()).err();
            errors
                .unwrap_or_default()
                .into_iter()
                .map(move |e| pattern_issue(e).located(located))
        })
        .collect()
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
        if let Err(e) = load_verifier(resource.spec.authentication.as_ref(), secrets_dir) {
            issues.push(FieldIssue::at("spec.authentication.jwt", e).located(located));
        }
        let defaults = resource.spec.routing.as_ref().and_then(|r| r.tls.as_ref());
        for (index, backend) in resource.spec.backends.iter().enumerate() {
            if let Err(e) = clients.for_backend(index, backend, defaults) {
                issues.push(FieldIssue::message(e).located(located));
            }
        }
    }
    for located in &config.apis {
        if let Err(e) = ApiRoute::try_new(&located.resource, secrets_dir) {
            issues.push(FieldIssue::message(e).located(located));
        }
    }
    issues
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

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// One file, three resources, four problems: compiling reports every one, each placed in
    /// its document and field, instead of stopping at the first.
    #[test]
    fn every_problem_of_every_resource_is_reported_with_its_field() {
        let yaml = format!(
            "{}\n---\n{}",
            r#"apiVersion: airgate.io/v1alpha1
kind: AIGateway
metadata: {name: first, namespace: ml}
spec:
  backends:
    - {name: a, url: "http://a:8000", models: [m]}
  authentication:
    jwt: {secretName: missing-jwt, issuer: i, audience: a}
  contentGuard:
    enabled: true
    blockPatterns:
      - {name: ok, regex: "secret", action: block}
      - {name: broken, regex: "(unclosed", action: block}
"#,
            include_str!("../../config/seed/payment-gateway.yaml")
        );
        let loaded =
            crate::config::parse_str(Path::new("gw.yaml"), &yaml).expect("the YAML is valid");
        let secrets = std::env::temp_dir().join("airgate-compile-test-no-secrets");
        let ctx = CompileContext {
            secrets_dir: &secrets,
            backend_trust: &BackendTrust::default(),
            embedder: None,
            wordnet: None,
            previous: None,
            secrets_by_namespace: false,
        };
        let Err(issues) = compile(&loaded, &ctx) else {
            panic!("a configuration with missing secrets compiled");
        };
        let fields: Vec<(Option<usize>, Option<&str>)> = issues
            .iter()
            .map(|i| (i.document, i.field.as_deref()))
            .collect();
        assert!(
            fields.contains(&(Some(1), Some("spec.contentGuard.blockPatterns[1]"))),
            "{issues:?}"
        );
        assert!(
            fields.contains(&(Some(1), Some("spec.authentication.jwt"))),
            "{issues:?}"
        );
        let api = issues
            .iter()
            .find(|i| i.document == Some(2))
            .unwrap_or_else(|| panic!("no issue for the API: {issues:?}"));
        assert!(api.to_string().contains("payment-jwt-secret"), "{api}");
        assert!(issues.iter().all(|i| i.file == Path::new("gw.yaml")));
    }

    /// Compiling resource by resource: an unchanged resource's part is taken over from the
    /// snapshot in service (the same gateway, not a copy), a changed one is compiled anew, and
    /// one that fails keeps its part in service.
    #[tokio::test]
    async fn isolated_compile_takes_over_unchanged_parts_and_keeps_failed_ones() {
        let gateway = |name: &str, url: &str| {
            format!(
                "apiVersion: airgate.io/v1alpha1\nkind: AIGateway\nmetadata: {{name: {name}, namespace: ml}}\nspec:\n  backends:\n    - {{name: a, url: \"{url}\", models: [m]}}\n"
            )
        };
        let load =
            |yaml: String| crate::config::parse_str(Path::new("gw.yaml"), &yaml).expect("valid");
        let secrets = std::env::temp_dir().join("airgate-compile-test-no-secrets");
        let trust = BackendTrust::default();
        let ctx = |previous| CompileContext {
            secrets_dir: &secrets,
            backend_trust: &trust,
            embedder: None,
            wordnet: None,
            previous,
            secrets_by_namespace: true,
        };
        let first = load(format!(
            "{}---\n{}",
            gateway("a", "http://a:1"),
            gateway("b", "http://b:1")
        ));
        let Ok(before) = compile_isolated(&first, &[], &HashSet::new(), &ctx(None)) else {
            panic!("the first compile failed");
        };
        let before = before.snapshot;
        // `a` unchanged; `b` moves to another URL
        let second = load(format!(
            "{}---\n{}",
            gateway("a", "http://a:1"),
            gateway("b", "http://b:2")
        ));
        let unchanged = HashSet::from([(PartKind::Gateway, "ml/a".to_string())]);
        let Ok(after) = compile_isolated(&second, &[], &unchanged, &ctx(Some(&before))) else {
            panic!("the second compile failed");
        };
        let part = |snapshot: &Snapshot, id: &str| {
            snapshot
                .gateway_by_id(id)
                .cloned()
                .unwrap_or_else(|| panic!("{id} not served"))
        };
        assert!(Arc::ptr_eq(
            &part(&before, "ml/a"),
            &part(&after.snapshot, "ml/a")
        ));
        assert!(!Arc::ptr_eq(
            &part(&before, "ml/b"),
            &part(&after.snapshot, "ml/b")
        ));
        assert_eq!(
            part(&after.snapshot, "ml/b").backends[0]
                .base_url
                .trim_end_matches('/'),
            "http://b:2"
        );

        // `b` now fails to compile (its JWT secret is missing): the part in service stays
        let broken = load(format!(
            "{}---\n{}  authentication:\n    jwt: {{secretName: missing, issuer: i, audience: a}}\n",
            gateway("a", "http://a:1"),
            gateway("b", "http://b:3")
        ));
        let Ok(kept) = compile_isolated(&broken, &[], &HashSet::new(), &ctx(Some(&after.snapshot)))
        else {
            panic!("the third compile failed");
        };
        assert_eq!(
            kept.failed.len(),
            1,
            "{:?}",
            kept.failed.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        assert_eq!(kept.kept, vec![(PartKind::Gateway, "ml/b".to_string())]);
        assert_eq!(
            part(&kept.snapshot, "ml/b").backends[0]
                .base_url
                .trim_end_matches('/'),
            "http://b:2"
        );
    }
}
