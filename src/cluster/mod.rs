//! Cluster mode (`airgate serve --kubernetes`): the configuration is the cluster's `AIGateway`
//! and `API` resources, in both groups, and the Secrets they name, watched with kube-rs.
//!
//! ```text
//! watchers (watch.rs) ──► Store ──► Applier (apply.rs) ──► snapshot swap (as a folder reload)
//!                                        │
//!                                        └─► verdicts ──► status writer (status.rs), leader only
//! Lease (leader.rs) ────────────────────────────────────────┘
//! ```
//!
//! Every replica watches, compiles and serves the same; only the one holding the Lease writes
//! status. Like the rest of `app`, this module sits on top: nothing below uses it.

pub mod apply;
pub mod leader;
pub mod objects;
pub mod secrets;
pub mod status;
pub mod watch;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kube::Client;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use apply::{Applier, ApplierParts};
use leader::LeaseSettings;
use objects::Watched;
use watch::Watchers;

/// Marks a secrets folder as cluster mode's own: it removes what no resource names, so it
/// refuses a folder that holds anything else.
const OWNED_MARKER: &str = ".airgate-cluster-secrets";

/// The cluster-mode flags.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    pub lease: LeaseSettings,
    /// How often kinds the API server did not serve are looked for again.
    pub rediscovery: Duration,
    /// `--default-gateway`: `namespace/name` of the only gateway that may serve `/v1`.
    pub default_gateway: Option<String>,
}

/// A client from `kube::Config::infer` (the pod's service account, else `KUBECONFIG` or
/// `~/.kube/config`), and the namespace of its context.
pub async fn connect() -> anyhow::Result<(Client, String)> {
    let config = kube::Config::infer().await.context(
        "--kubernetes: no cluster credentials (neither a service account nor a kubeconfig)",
    )?;
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).context("--kubernetes: building the API client")?;
    Ok((client, namespace))
}

/// The lease's namespace: the flag, else `POD_NAMESPACE`, else the kubeconfig context's.
pub fn lease_namespace(flag: Option<&str>, context_namespace: &str) -> String {
    flag.map(str::to_string)
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| context_namespace.to_string())
}

/// This replica's identity in the lease: `POD_NAME`, else the host name.
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("airgate-{}", std::process::id()))
}

/// Makes `dir` cluster mode's own: created if missing, refused if it holds files it did not
/// write (a mounted folder of secrets would otherwise be emptied).
pub fn claim_secrets_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--secrets-dir {}: cannot create it", dir.display()))?;
    let marker = dir.join(OWNED_MARKER);
    if marker.exists() {
        return Ok(());
    }
    let foreign = std::fs::read_dir(dir)
        .with_context(|| format!("--secrets-dir {}", dir.display()))?
        .filter_map(Result::ok)
        .any(|e| !e.file_name().to_string_lossy().starts_with('.'));
    if foreign {
        anyhow::bail!(
            "--secrets-dir {}: not empty; with --kubernetes the gateway writes the watched Secrets there and removes what no resource names, so give it an empty, memory-backed folder (an emptyDir with medium: Memory)",
            dir.display()
        );
    }
    std::fs::write(&marker, b"")
        .with_context(|| format!("--secrets-dir {}: not writable", dir.display()))?;
    Ok(())
}

/// Whether the API server serves a watched kind: `Ok(false)` when its group or kind is not
/// installed, `Err` when the server could not be asked.
async fn is_served(client: &Client, watched: &Watched) -> Result<bool, kube::Error> {
    match client
        .list_api_group_resources(&watched.resource.api_version)
        .await
    {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == watched.resource.plural)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Watches each watched kind the API server serves. At start an unreachable server is retried
/// until it answers, so that readiness waits for a real first list; afterwards the kinds not
/// served (a group whose CRDs are not installed yet) are looked for again every
/// `rediscovery`, and watched once they appear.
async fn watch_served_kinds(watchers: &Watchers, rediscovery: Duration) {
    let shutdown = watchers.shutdown.clone();
    let mut missing = Vec::new();
    for watched in Watched::all() {
        loop {
            match is_served(&watchers.client, &watched).await {
                Ok(true) => watchers.watch_kind(&watched),
                Ok(false) => {
                    tracing::warn!(api_version = %watched.resource.api_version, kind = %watched.resource.kind, "the API server does not serve this kind; looked for again every {rediscovery:?}");
                    missing.push(watched);
                }
                Err(error) => {
                    tracing::warn!(api_version = %watched.resource.api_version, error = %error, "API discovery failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            }
            break;
        }
    }
    watchers.watch_secrets();
    watchers.store.lock().mark_started();
    watchers.changed.notify_one();
    while !missing.is_empty() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(rediscovery) => {}
        }
        let mut still_missing = Vec::new();
        for watched in missing {
            if matches!(is_served(&watchers.client, &watched).await, Ok(true)) {
                tracing::info!(api_version = %watched.resource.api_version, kind = %watched.resource.kind, "the API server now serves this kind; watching it");
                watchers.watch_kind(&watched);
                watchers.changed.notify_one();
            } else {
                still_missing.push(watched);
            }
        }
        missing = still_missing;
    }
}

/// Starts watching, applying, electing and writing status, until `shutdown`. The task ends
/// once the lease is released.
pub fn start(
    client: Client,
    settings: ClusterSettings,
    parts: StartParts,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let store = Arc::new(Mutex::new(watch::Store::default()));
        let changed = Arc::new(Notify::new());
        let (verdicts_tx, verdicts_rx) = tokio::sync::watch::channel(Arc::default());
        let metrics = Arc::clone(&parts.state.metrics);
        let applier = Applier::new(ApplierParts {
            state: parts.state,
            store: Arc::clone(&store),
            secrets_dir: parts.secrets_dir,
            backend_trust: parts.backend_trust,
            models: parts.models,
            shutdown: shutdown.clone(),
            probes: parts.probes,
            synced: parts.synced,
            verdicts: verdicts_tx,
            default_gateway: settings.default_gateway.clone(),
        });
        let watchers = Watchers {
            client: client.clone(),
            namespaces: settings.namespaces,
            store: Arc::clone(&store),
            changed: Arc::clone(&changed),
            metrics: Arc::clone(&metrics),
            shutdown: shutdown.clone(),
        };
        let rediscovery = settings.rediscovery;
        tokio::spawn(async move { watch_served_kinds(&watchers, rediscovery).await });
        let (leading, election) =
            leader::spawn(client.clone(), settings.lease, metrics, shutdown.clone());
        tokio::spawn(status::run_writer(
            client,
            Arc::clone(&store),
            verdicts_rx,
            leading,
            shutdown.clone(),
        ));
        applier.run(changed).await;
        let _ = election.await;
    })
}

/// What [`start`] takes from `serve`.
pub struct StartParts {
    pub state: Arc<crate::server::AppState>,
    pub secrets_dir: std::path::PathBuf,
    pub backend_trust: crate::routing::BackendTrust,
    pub models: crate::app::Models,
    pub probes: CancellationToken,
    pub synced: Arc<AtomicBool>,
}
