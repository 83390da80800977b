//! The composition root: one [`build`] turns a loaded configuration and what the process
//! provides ([`Process`]) into the running gateway's [`AppState`]. `airgate serve` and the
//! tests both build through it, so a test gateway is the gateway users run (same compile, same
//! checks, same start of the health probes); a configuration reload compiles through the same
//! [`compile`] and swaps the result in.
//!
//! This module sits on top: it uses `config`, `gateway`, `apis`, `routing`, `server` and
//! `telemetry`, and none of them uses it.

pub mod compile;
pub mod reload;
pub mod signature;
pub mod specs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use compile::{check_secrets, compile, compile_guard, needs_models, CompileContext};

use crate::access::{IpNet, RateLimiter};
use crate::body::BodyBudget;
use crate::cache::wordnet::WordNet;
use crate::cache::Embedder;
use crate::config::{self, ConfigIssue, Enforcement, LoadedConfig};
use crate::gateway::Snapshot;
use crate::routing::BackendTrust;
use crate::server::{AppState, ListenerStats};
use crate::shutdown::Shutdown;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::audit::AuditLog;
use crate::telemetry::Metrics;
use signature::{BundleKey, SignatureError};

/// The models the semantic cache shares across every gateway and every snapshot: loaded once
/// per process, never per compile.
#[derive(Clone, Default)]
pub struct Models {
    pub embedder: Option<Arc<Embedder>>,
    pub wordnet: Option<Arc<WordNet>>,
}

impl Models {
    /// Loads the embedding model and WordNet when `config` enables the semantic cache.
    pub fn load_for(
        config: &LoadedConfig,
        model_dir: &Path,
        wordnet_dir: &Path,
        workers: usize,
        batch: usize,
    ) -> anyhow::Result<Self> {
        if !needs_models(config) {
            return Ok(Self::default());
        }
        Self::load(model_dir, wordnet_dir, workers, batch)
            .map_err(|e| anyhow::anyhow!("semanticCache is enabled: {e}"))
    }

    /// Cluster mode, where no resource is known at start: loads the models when their folders
    /// are there (the image ships them), else none, and a gateway that enables the semantic
    /// cache is refused with the fetch hint.
    pub fn load_if_present(
        model_dir: &Path,
        wordnet_dir: &Path,
        workers: usize,
        batch: usize,
    ) -> anyhow::Result<Self> {
        if !model_dir.join("model.safetensors").is_file() || !wordnet_dir.is_dir() {
            tracing::info!(model_dir = %model_dir.display(), "no embedding model: a gateway enabling semanticCache will be refused");
            return Ok(Self::default());
        }
        Self::load(model_dir, wordnet_dir, workers, batch)
    }

    fn load(
        model_dir: &Path,
        wordnet_dir: &Path,
        workers: usize,
        batch: usize,
    ) -> anyhow::Result<Self> {
        let embedder = Embedder::load(model_dir, workers.max(1), batch)?;
        tracing::info!(model_dir = %model_dir.display(), "embedding model loaded");
        let wordnet = WordNet::load(wordnet_dir)?;
        tracing::info!(wordnet_dir = %wordnet_dir.display(), "WordNet loaded");
        Ok(Self {
            embedder: Some(Arc::new(embedder)),
            wordnet: Some(Arc::new(wordnet)),
        })
    }
}

/// Puts `snapshot` in service: starts its health probes (a child of `shutdown`), swaps it in,
/// and stops the probes of the snapshot it replaces (requests still on that one finish with
/// it). `probes` becomes the new snapshot's; the replaced snapshot is returned. A reload, a
/// rollback and a cluster change all go through here.
pub fn put_in_service(
    state: &AppState,
    snapshot: Arc<Snapshot>,
    shutdown: &CancellationToken,
    probes: &mut CancellationToken,
) -> Arc<Snapshot> {
    let next = shutdown.child_token();
    snapshot.start(&state.metrics, &next);
    let replaced = state.snapshot.swap(snapshot);
    std::mem::replace(probes, next).cancel();
    replaced
}

/// What the process provides beyond the configuration.
pub struct Process {
    pub metrics: Arc<Metrics>,
    /// Ends the background tasks (health probes).
    pub shutdown: CancellationToken,
    /// Kubernetes-style secrets folder (one folder per secret, one file per key).
    pub secrets_dir: PathBuf,
    /// CAs trusted for every backend and `API` service (`--backend-ca`).
    pub backend_trust: BackendTrust,
    pub models: Models,
    pub limiter: RateLimiter,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    pub audit: AuditLog,
    pub access_log: AccessLog,
    /// The public listener's shutdown signals.
    pub public_shutdown: Shutdown,
    pub listener_stats: Arc<ListenerStats>,
    pub body_budget: BodyBudget,
    /// Cluster mode: set once the cluster's first complete list is applied (`/readyz`).
    pub cluster_synced: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// A gateway built and in service.
pub struct Built {
    pub state: Arc<AppState>,
    /// Stops the health probes of the snapshot in service (a child of the process's
    /// shutdown): a reload replaces it.
    pub probes: CancellationToken,
}

/// Compiles the configuration (every problem, or none) and puts it in service: the state
/// every request reads, with the backends' health probes started.
pub fn build(config: &LoadedConfig, process: Process) -> Result<Built, Vec<ConfigIssue>> {
    let ctx = CompileContext {
        secrets_dir: &process.secrets_dir,
        backend_trust: &process.backend_trust,
        embedder: process.models.embedder.as_ref(),
        wordnet: process.models.wordnet.as_ref(),
        previous: None,
        secrets_by_namespace: false,
    };
    let snapshot = compile(config, &ctx)?;
    let probes = process.shutdown.child_token();
    snapshot.start(&process.metrics, &probes);
    let state = Arc::new(
        AppState::new(snapshot, process.metrics, process.audit)
            .with_access(process.limiter, process.trusted_proxies)
            .with_access_log(process.access_log)
            .with_shutdown(process.public_shutdown)
            .with_listener_stats(process.listener_stats)
            .with_body_budget(process.body_budget)
            .with_cluster_synced(process.cluster_synced),
    );
    Ok(Built { state, probes })
}

/// Loads a path and adds the not-enforced warnings. The guard patterns compile with the rest
/// ([`compile`], which reports them with their fields); `validate`, which compiles nothing
/// else, checks them with [`patterns_compile`].
pub fn load(path: &Path) -> Result<LoadedConfig, Vec<ConfigIssue>> {
    config::load_path(path).map(with_unenforced_warnings)
}

/// [`load`] for text read elsewhere (a cluster object's document); `path` names it in issues.
pub fn load_text(path: &Path, text: &str) -> Result<LoadedConfig, Vec<ConfigIssue>> {
    config::parse_str(path, text).map(with_unenforced_warnings)
}

/// The key a signed configuration must verify against, and where its signature is.
#[derive(Clone)]
pub struct Signing {
    pub key: BundleKey,
    /// `--config-signature`, by default `<config>.sig`.
    pub signature: PathBuf,
}

/// Why a configuration was not loaded: its signature, or its content.
#[derive(Debug)]
pub enum Refused {
    Signature(SignatureError),
    Invalid(Vec<ConfigIssue>),
}

impl Refused {
    /// The `reason` of a `config_rejected` audit record.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Signature(_) => "signature",
            Refused::Invalid(_) => "invalid",
        }
    }

    /// As issues, for the log and `validate`'s form.
    pub fn into_issues(self, path: &Path) -> Vec<ConfigIssue> {
        match self {
            Refused::Signature(error) => vec![ConfigIssue::new(path, error.to_string())],
            Refused::Invalid(issues) => issues,
        }
    }
}

/// [`load`], after the signature check when `signing` is set: the bytes that verified are the
/// bytes parsed (the file is not read a second time, so it cannot change in between).
pub fn load_checked(path: &Path, signing: Option<&Signing>) -> Result<LoadedConfig, Refused> {
    let Some(signing) = signing else {
        return load(path).map_err(Refused::Invalid);
    };
    let bytes = signing
        .key
        .check(path, &signing.signature)
        .map_err(Refused::Signature)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Refused::Invalid(vec![ConfigIssue::new(
            path,
            "the configuration is not UTF-8 text",
        )])
    })?;
    config::parse_str(path, &text)
        .map(with_unenforced_warnings)
        .map_err(Refused::Invalid)
}

/// `loaded`, when every guard pattern compiles; for `validate`, which compiles nothing else
/// (`serve` and a reload get the same issues from [`compile`]).
pub fn patterns_compile(loaded: LoadedConfig) -> Result<LoadedConfig, Vec<ConfigIssue>> {
    let pattern_errors = compile::pattern_issues(&loaded);
    if pattern_errors.is_empty() {
        Ok(loaded)
    } else {
        Err(pattern_errors)
    }
}

/// `loaded`, when every `API`'s OpenAPI spec that `validate` can read parses and compiles (a
/// relative `path` must be readable), with a warning for each absolute `path` missing here;
/// for `validate` (`serve` and a reload get the same errors from [`compile`]). No `url` is
/// fetched.
pub fn specs_compile(mut loaded: LoadedConfig) -> Result<LoadedConfig, Vec<ConfigIssue>> {
    let (errors, warnings) = specs::spec_issues(&loaded);
    if errors.is_empty() {
        loaded.warnings.extend(warnings);
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// Adds a warning for each configured feature this version does not enforce.
fn with_unenforced_warnings(mut loaded: LoadedConfig) -> LoadedConfig {
    let unenforced = config::unenforced_warnings(&loaded, &enforcement());
    loaded.warnings.extend(unenforced);
    loaded
}

/// What this version enforces; everything else that is configured is reported as not enforced.
pub fn enforcement() -> Enforcement {
    Enforcement {
        content_guard: true,
        ai_rate_limit: true,
        ai_auth: true,
        semantic_cache: true,
        tracing: true,
        token_metrics: true,
        api_routes: true,
        api_auth: true,
        api_rate_limit: true,
        api_cors: true,
        api_access_control: true,
        api_openapi: true,
    }
}
