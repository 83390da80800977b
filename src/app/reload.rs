//! Live configuration: `--config` is read again when it changes (a file, or a folder such as
//! a mounted ConfigMap whose `..data` symlink the kubelet swaps) and on SIGHUP, and the new
//! snapshot is swapped in only if all of it compiles.
//!
//! - **Off the request path.** Reading, validating and compiling happen on a blocking thread;
//!   requests go on with the snapshot they loaded, streams included, until the swap, and new
//!   requests get the new one.
//! - **Last known good.** A change that does not load or compile is refused whole: the error is
//!   logged as `airgate validate` prints it, audited as `config_rejected`, counted
//!   (`airgate_config_reloads_total{result="failure"}`), and the previous snapshot serves on.
//! - **What survives.** Rate-limit buckets, token reservations and the audit chain belong to
//!   the process, not to a snapshot. A backend whose name and URL did not change keeps its
//!   health and outstanding count; a gateway whose `semanticCache` did not change keeps its
//!   cache. The embedding model is loaded once per process.
//! - **Triggers.** `notify` reports changes to the path (for a file: to its folder, so that an
//!   editor's rename-over or a symlink swap is seen); a poll every second is the fallback when
//!   the platform has no watcher, and SIGHUP forces a reload. The same bytes are no change: the
//!   loader's digest decides.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{compile, CompileContext, Models, Signing};
use crate::config::{ConfigIssue, LoadedConfig};
use crate::gateway::Snapshot;
use crate::routing::BackendTrust;
use crate::server::AppState;
use crate::telemetry::audit::AuditEvent;

/// How long changes settle before a reload: a ConfigMap update or an editor's save is several
/// file-system events.
const SETTLE: Duration = Duration::from_millis(200);
/// The fallback poll, and the longest a change waits when no event reports it.
const POLL: Duration = Duration::from_secs(1);

/// `--rollback-*`: a reloaded configuration whose answers fail is replaced by the one before.
#[derive(Debug, Clone, Copy)]
pub struct RollbackPolicy {
    /// How long a new configuration is watched after it went into service.
    pub window: Duration,
    /// Answers needed before its error share counts.
    pub min_requests: u64,
    /// The 5xx share above which it is rolled back; 0 turns rollback off.
    pub error_ratio: f64,
}

impl Default for RollbackPolicy {
    /// The seed's alert: more than 5 % 5xx (its Prometheus rule), over a minute.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            min_requests: 20,
            error_ratio: 0.05,
        }
    }
}

/// A reloaded configuration still being watched, and what to go back to.
struct Probation {
    since: Instant,
    previous: Arc<Snapshot>,
    previous_generation: u64,
    previous_key: String,
    /// The previous configuration's 5xx share over its last window.
    previous_ratio: f64,
}

/// errors / answered, 0 without answers.
fn share(answered: u64, errors: u64) -> f64 {
    if answered == 0 {
        0.0
    } else {
        errors as f64 / answered as f64
    }
}

/// What a reload came to.
#[derive(Debug)]
pub enum Reloaded {
    /// The new configuration serves, as this generation.
    Applied { generation: u64 },
    /// The bytes did not change.
    Unchanged,
    /// Refused; the previous snapshot serves on.
    Rejected(Vec<ConfigIssue>),
}

/// Reloads one `--config` path into a running gateway.
pub struct Reloader {
    path: PathBuf,
    secrets_dir: PathBuf,
    backend_trust: BackendTrust,
    models: Models,
    state: Arc<AppState>,
    /// The process's shutdown: the parent of every snapshot's probe token.
    shutdown: CancellationToken,
    /// Stops the health probes of the snapshot in service.
    probes: CancellationToken,
    /// The key and signature a signed configuration is checked with.
    signing: Option<Signing>,
    generation: u64,
    /// [`change_key`] of the configuration in service.
    digest: String,
    /// [`change_key`] of the bytes last refused: refused once, not again at every poll.
    refused_digest: Option<String>,
    rollback: RollbackPolicy,
    probation: Option<Probation>,
    /// The serving snapshot's (answered, 5xx) counts, sampled each second over the last
    /// window: its error share when a reload replaces it.
    history: VecDeque<(Instant, (u64, u64))>,
}

/// What a change is recognised by: the configuration's digest (the loader's, without parsing)
/// and, when it is signed, the signature file's bytes (a new signature for the same bytes is a
/// change too). `None` when nothing can be read.
pub fn change_key(path: &Path, signing: Option<&Signing>) -> Option<String> {
    use sha2::{Digest, Sha256};
    let digest = crate::config::digest_path(path)?;
    Some(match signing {
        None => digest,
        Some(signing) => {
            let signature = std::fs::read(&signing.signature).unwrap_or_default();
            format!("{digest}:{}", hex::encode(Sha256::digest(signature)))
        }
    })
}

/// What a [`Reloader`] is made of: the compile inputs `serve` used, the state it built, and
/// the digest of the configuration it loaded.
pub struct ReloadParts {
    pub path: PathBuf,
    pub secrets_dir: PathBuf,
    pub backend_trust: BackendTrust,
    pub models: Models,
    pub state: Arc<AppState>,
    pub shutdown: CancellationToken,
    /// Stops the probes [`super::build`] started.
    pub probes: CancellationToken,
    pub loaded: LoadedConfig,
    pub signing: Option<Signing>,
    pub rollback: RollbackPolicy,
}

impl Reloader {
    /// Generation 1 is the configuration `serve` started with.
    pub fn new(parts: ReloadParts) -> Self {
        let digest = change_key(&parts.path, parts.signing.as_ref()).unwrap_or_default();
        let reloader = Self {
            path: parts.path,
            secrets_dir: parts.secrets_dir,
            backend_trust: parts.backend_trust,
            models: parts.models,
            state: parts.state,
            shutdown: parts.shutdown,
            probes: parts.probes,
            generation: 1,
            digest,
            refused_digest: None,
            signing: parts.signing,
            rollback: parts.rollback,
            probation: None,
            history: VecDeque::new(),
        };
        reloader.state.metrics.config_generation(1);
        reloader.state.metrics.config_loaded_at_start();
        reloader.audit_applied(&parts.loaded);
        reloader
    }

    /// Reads, validates and compiles the path again; swaps the result in if all of it compiles.
    /// Unless `forced` (SIGHUP: secrets may have changed beside it), the same bytes are no
    /// change.
    pub async fn reload(&mut self, forced: bool) -> Reloaded {
        let (path, signing) = (self.path.clone(), self.signing.clone());
        // the change key first (no parsing): a poll of unchanged bytes costs one read
        let Ok((key, path, signing)) = tokio::task::spawn_blocking(move || {
            (change_key(&path, signing.as_ref()), path, signing)
        })
        .await
        else {
            return Reloaded::Unchanged;
        };
        if key.as_deref().is_some_and(|key| !forced && self.seen(key)) {
            return Reloaded::Unchanged;
        }
        let loaded =
            tokio::task::spawn_blocking(move || super::load_checked(&path, signing.as_ref()))
                .await
                .unwrap_or_else(|error| {
                    Err(super::Refused::Invalid(vec![ConfigIssue::new(
                        &self.path,
                        format!("reading the configuration failed: {error}"),
                    )]))
                });
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(refused) => {
                let reason = refused.reason();
                return self.reject(refused.into_issues(&self.path), reason, key);
            }
        };
        match self.compile(&loaded).await {
            Ok(snapshot) => self.apply(snapshot, &loaded, key),
            Err(issues) => self.reject(issues, "invalid", key),
        }
    }

    /// Once a second: samples the serving snapshot's answers, and rolls a configuration on
    /// probation back when its 5xx share is over the threshold and over the previous one's.
    pub fn watch_answers(&mut self) {
        let now = Instant::now();
        let counts = self.state.snapshot.load().answers.read();
        self.history.push_back((now, counts));
        while self
            .history
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > self.rollback.window)
        {
            self.history.pop_front();
        }
        let Some(probation) = &self.probation else {
            return;
        };
        let (answered, errors) = counts;
        let ratio = share(answered, errors);
        if answered >= self.rollback.min_requests
            && ratio > self.rollback.error_ratio
            && ratio > probation.previous_ratio
        {
            self.roll_back(counts);
        } else if probation.since.elapsed() >= self.rollback.window {
            self.probation = None;
        }
    }

    /// The 5xx share of `snapshot` over the sampled window (its last answers).
    fn recent_share(&self, snapshot: &Snapshot) -> f64 {
        let (answered, errors) = snapshot.answers.read();
        let (before_answered, before_errors) =
            self.history.front().map_or((0, 0), |(_, counts)| *counts);
        share(
            answered.saturating_sub(before_answered),
            errors.saturating_sub(before_errors),
        )
    }

    fn roll_back(&mut self, (answered, errors): (u64, u64)) {
        let Some(probation) = self.probation.take() else {
            return;
        };
        super::put_in_service(
            &self.state,
            Arc::clone(&probation.previous),
            &self.shutdown,
            &mut self.probes,
        );
        let failed = std::mem::replace(&mut self.generation, probation.previous_generation);
        // the failed bytes are not applied again by the next poll; a new change is
        self.refused_digest = Some(std::mem::replace(&mut self.digest, probation.previous_key));
        self.history.clear();
        let ratio = share(answered, errors);
        tracing::error!(
            failed_generation = failed,
            restored_generation = self.generation,
            error_ratio = ratio,
            previous_error_ratio = probation.previous_ratio,
            answered,
            "the reloaded configuration's answers failed; rolled back to the previous one"
        );
        self.state.metrics.config_reload("rolled_back");
        self.state.metrics.config_generation(self.generation);
        self.state.audit.record(
            AuditEvent::new(
                "config_rolled_back",
                "",
                "",
                "success",
                self.path.display().to_string(),
            )
            .detail("failed_generation", failed)
            .detail("restored_generation", self.generation)
            .detail("error_ratio", ratio)
            .detail("previous_error_ratio", probation.previous_ratio)
            .detail("threshold", self.rollback.error_ratio)
            .detail("answered", answered)
            .detail("server_errors", errors),
        );
    }

    /// The bytes are those in service, or those last refused.
    fn seen(&self, digest: &str) -> bool {
        digest == self.digest || self.refused_digest.as_deref() == Some(digest)
    }

    /// Compiles on a blocking thread (secrets, certificates, tokenizers are read from disk),
    /// against the snapshot in service so that what it learnt carries over.
    async fn compile(
        &self,
        loaded: &LoadedConfig,
    ) -> Result<crate::gateway::Snapshot, Vec<ConfigIssue>> {
        let (loaded, secrets_dir, trust, models) = (
            loaded.clone(),
            self.secrets_dir.clone(),
            self.backend_trust.clone(),
            self.models.clone(),
        );
        let previous = self.state.snapshot.load_full();
        let compiled = tokio::task::spawn_blocking(move || {
            let ctx = CompileContext {
                secrets_dir: &secrets_dir,
                backend_trust: &trust,
                embedder: models.embedder.as_ref(),
                wordnet: models.wordnet.as_ref(),
                previous: Some(&previous),
                secrets_by_namespace: false,
            };
            compile(&loaded, &ctx)
        })
        .await;
        compiled.unwrap_or_else(|error| {
            Err(vec![ConfigIssue::new(
                &self.path,
                format!("compiling the configuration failed: {error}"),
            )])
        })
    }

    fn apply(
        &mut self,
        snapshot: crate::gateway::Snapshot,
        loaded: &LoadedConfig,
        key: Option<String>,
    ) -> Reloaded {
        // the old snapshot's probes stop; requests still on it finish with it
        let previous = super::put_in_service(
            &self.state,
            Arc::new(snapshot),
            &self.shutdown,
            &mut self.probes,
        );
        if self.rollback.error_ratio > 0.0 {
            self.probation = Some(Probation {
                since: Instant::now(),
                previous_ratio: self.recent_share(&previous),
                previous,
                previous_generation: self.generation,
                previous_key: self.digest.clone(),
            });
        }
        self.history.clear();
        self.generation += 1;
        self.digest = key.unwrap_or_default();
        self.refused_digest = None;
        for warning in &loaded.warnings {
            tracing::warn!(warning = %warning, "configuration warning");
        }
        tracing::info!(
            generation = self.generation,
            gateways = loaded.gateways.len(),
            apis = loaded.apis.len(),
            "configuration reloaded"
        );
        self.state.metrics.config_reload("success");
        self.state.metrics.config_generation(self.generation);
        self.audit_applied(loaded);
        Reloaded::Applied {
            generation: self.generation,
        }
    }

    /// Refuses a change; its bytes' `digest`, when they could be read, is remembered so that
    /// the same bytes are refused once, not at every poll.
    fn reject(
        &mut self,
        issues: Vec<ConfigIssue>,
        reason: &'static str,
        key: Option<String>,
    ) -> Reloaded {
        self.refused_digest = key;
        for issue in &issues {
            tracing::error!(problem = %issue, "configuration change refused; the previous configuration serves on");
        }
        self.state.metrics.config_reload("failure");
        let first = issues.first().map(ToString::to_string).unwrap_or_default();
        self.state.audit.record(
            AuditEvent::new(
                "config_rejected",
                "",
                "",
                "failure",
                self.path.display().to_string(),
            )
            .detail("reason", reason)
            .detail("problems", issues.len())
            .detail("first_problem", first)
            .detail("generation_serving", self.generation),
        );
        Reloaded::Rejected(issues)
    }

    fn audit_applied(&self, loaded: &LoadedConfig) {
        self.state.audit.record(
            AuditEvent::new(
                "config_applied",
                "",
                "",
                "success",
                self.path.display().to_string(),
            )
            .detail("generation", self.generation)
            .detail("sha256", loaded.digest.clone())
            .detail("gateways", loaded.gateways.len())
            .detail("apis", loaded.apis.len())
            .detail(
                "signing_key_sha256",
                self.signing
                    .as_ref()
                    .map(|s| serde_json::Value::from(s.key.fingerprint()))
                    .unwrap_or(serde_json::Value::Null),
            ),
        );
    }
}

/// Reloads on every change to the path and on SIGHUP, until `shutdown`.
pub fn spawn_watch(
    mut reloader: Reloader,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (wake, mut woken) = mpsc::channel::<()>(1);
    // set by SIGHUP: the next reload is forced (a full channel must not lose it)
    let forced = Arc::new(AtomicBool::new(false));
    let signature = reloader.signing.as_ref().map(|s| s.signature.clone());
    let watcher = watch(&reloader.path, signature.as_deref(), wake.clone());
    spawn_sighup(wake, Arc::clone(&forced), shutdown.clone());
    tokio::spawn(async move {
        // dropped with the task: the watcher stops with it
        let _watcher = watcher;
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = poll.tick() => {}
                Some(()) = woken.recv() => tokio::time::sleep(SETTLE).await,
            }
            while woken.try_recv().is_ok() {}
            reloader.watch_answers();
            reloader.reload(forced.swap(false, Ordering::AcqRel)).await;
        }
    })
}

/// A file-system watcher on the path (a file's folder, so that a rename over it or a symlink
/// swap is seen); `None` when the platform has none, and the poll does the work. For a file,
/// only events about it or about `..`-entries (a ConfigMap's swap) wake the reloader: other
/// files in its folder, such as logs, do not. Access events (open, read, close without a
/// write) never do.
fn watch(
    path: &Path,
    signature: Option<&Path>,
    wake: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (target, name) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else {
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        (folder, path.file_name().map(ToOwned::to_owned))
    };
    let signature = signature.and_then(Path::file_name).map(ToOwned::to_owned);
    let concerns = move |event: &notify::Event| match &name {
        // Opening and reading are not changes, and the reloader's own reading of the files
        // would otherwise wake it again: a reload every SETTLE, forever.
        _ if matches!(event.kind, notify::EventKind::Access(_)) => false,
        None => true,
        Some(name) => event.paths.iter().any(|p| {
            p.file_name().is_some_and(|f| {
                f == name.as_os_str()
                    || signature.as_deref() == Some(f)
                    || f.to_string_lossy().starts_with("..")
            })
        }),
    };
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| concerns(&e)) {
            // full means a reload is already due
            let _ = wake.try_send(());
        }
    };
    let watcher = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher.watch(&target, RecursiveMode::Recursive)?;
        Ok(watcher)
    });
    match watcher {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(path = %target.display(), error = %error, "cannot watch the configuration; polling it every second instead");
            None
        }
    }
}

/// SIGHUP forces a reload, of the same bytes too: the secrets they name may have changed.
fn spawn_sighup(wake: mpsc::Sender<()>, forced: Arc<AtomicBool>, shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; configuration changes are still watched");
            return;
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = hangup.recv() => {
                        if received.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP: reloading the configuration");
                        forced.store(true, Ordering::Release);
                        let _ = wake.try_send(());
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (wake, forced, shutdown);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Whether the watcher wakes within a settle's time after `act`.
    async fn wakes_after(path: &Path, act: impl FnOnce()) -> bool {
        let (wake, mut woken) = mpsc::channel::<()>(1);
        let _watcher = watch(path, None, wake).expect("inotify is available");
        act();
        tokio::time::timeout(SETTLE * 2, woken.recv()).await.is_ok()
    }

    #[tokio::test]
    async fn reading_the_configuration_does_not_wake_the_reloader_and_writing_it_does() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("gateway.yaml");
        std::fs::write(&file, "kind: API\n").unwrap();
        // the reloader's own reading (open, read, close) once woke it again, forever
        for watched in [folder.path(), file.as_path()] {
            let read = wakes_after(watched, || {
                std::fs::read(&file).unwrap();
                std::fs::read_dir(folder.path()).unwrap().for_each(drop);
            });
            assert!(
                !read.await,
                "reading {} woke the reloader",
                watched.display()
            );
            let written = wakes_after(watched, || std::fs::write(&file, "kind: API\n").unwrap());
            assert!(
                written.await,
                "writing {} did not wake it",
                watched.display()
            );
        }
    }
}
