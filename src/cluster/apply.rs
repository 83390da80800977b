//! Turning what the watchers saw into the snapshot in service, through the same compile and
//! swap as a folder reload, with one difference: errors are isolated per resource. An invalid
//! `AIGateway` or `API` is left out (or, if an earlier version of it served, that version
//! serves on) and every other resource is applied.
//!
//! Each round: every object is validated alone as `airgate validate` would; resources defined
//! twice (the same kind and `namespace/name` in both groups) and a second gateway annotated as
//! the default are refused as conflicts, the oldest winning; the Secrets the accepted ones name
//! are written to the secrets folder; everything compiles resource by resource; the snapshot
//! is swapped in; and a verdict per resource goes to the status writer.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::objects::{self, ObjectKey, Watched};
use super::secrets::SecretFiles;
use super::status::{Condition, Verdict, Verdicts};
use super::watch::{Seen, Store};
use crate::app::compile::{compile_isolated, Isolated, PartId};
use crate::app::{CompileContext, Models};
use crate::config::{ConfigIssue, LoadedConfig, DEFAULT_GATEWAY_ANNOTATION};
use crate::routing::BackendTrust;
use crate::server::AppState;
use crate::telemetry::audit::AuditEvent;

/// Changes arriving together (a `kubectl apply -f folder/`) are applied as one.
const SETTLE: Duration = Duration::from_millis(100);

/// The audit records' and logs' name for where the configuration came from.
const SOURCE: &str = "kubernetes";

/// How one resource fared before compiling.
#[derive(Debug, Clone)]
enum Admission {
    Accepted(LoadedConfig),
    Invalid(Vec<ConfigIssue>),
    Conflicted(String),
}

/// One watched object, validated.
struct Candidate {
    watched: Arc<Watched>,
    key: ObjectKey,
    part: PartId,
    generation: Option<i64>,
    /// `creationTimestamp`, for which of two conflicting resources is older.
    created: String,
    document: Value,
    admission: Admission,
}

/// What one round will compile.
struct Plan {
    candidates: Vec<Candidate>,
    /// What each accepted resource's compile reads (its document and the Secrets it names),
    /// as a digest: the same inputs compile to the same part.
    inputs: HashMap<PartId, String>,
    config: LoadedConfig,
    /// Refused before compiling: their last good compiled version serves on.
    keep: Vec<PartId>,
    secrets: SecretFiles,
}

/// Each object's document and what validating it gave, so that an event that leaves the
/// document as it was (a status write, the leader's own included) is not validated again.
#[derive(Default)]
struct Admissions(HashMap<ObjectKey, (Value, Admission)>);

impl Admissions {
    fn admit(&mut self, key: &ObjectKey, watched: &Watched, document: &Value) -> Admission {
        if let Some((seen, admission)) = self.0.get(key) {
            if seen == document {
                return admission.clone();
            }
        }
        let admission = match objects::load(key, watched, document) {
            Ok(loaded) => Admission::Accepted(loaded),
            Err(issues) => Admission::Invalid(issues),
        };
        self.0
            .insert(key.clone(), (document.clone(), admission.clone()));
        admission
    }

    /// Forgets objects no longer seen.
    fn retain(&mut self, seen: &Seen) {
        let keys: BTreeSet<&ObjectKey> = seen.resources.iter().map(|(_, key, _)| key).collect();
        self.0.retain(|key, _| keys.contains(key));
    }
}

impl Plan {
    /// `pinned_default`: `--default-gateway`, the only gateway that may serve `/v1`.
    fn new(seen: &Seen, admissions: &mut Admissions, pinned_default: Option<&str>) -> Self {
        admissions.retain(seen);
        let mut candidates: Vec<Candidate> = seen
            .resources
            .iter()
            .map(|(watched, key, object)| {
                let document = objects::document(watched, object);
                let admission = admissions.admit(key, watched, &document);
                Candidate {
                    part: (watched.part, key.id()),
                    watched: Arc::clone(watched),
                    key: key.clone(),
                    generation: object.metadata.generation,
                    created: object
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default(),
                    document,
                    admission,
                }
            })
            .collect();
        refuse_conflicts(&mut candidates, pinned_default);
        let mut config = LoadedConfig::default();
        let mut wanted = BTreeSet::new();
        let mut digest = Sha256::new();
        let served: BTreeSet<PartId> = candidates
            .iter()
            .filter(|c| matches!(c.admission, Admission::Accepted(_)))
            .map(|c| c.part.clone())
            .collect();
        let mut keep = Vec::new();
        let mut named = HashMap::new();
        for candidate in &candidates {
            match &candidate.admission {
                Admission::Accepted(loaded) => {
                    config.gateways.extend(loaded.gateways.iter().cloned());
                    config.apis.extend(loaded.apis.iter().cloned());
                    let names: Vec<(String, String)> = objects::secret_names(&candidate.document)
                        .into_iter()
                        .map(|name| (candidate.key.namespace.clone(), name))
                        .collect();
                    wanted.extend(names.iter().cloned());
                    named.insert(candidate.part.clone(), names);
                    digest.update(candidate.document.to_string());
                }
                _ if !served.contains(&candidate.part) => {
                    keep.push(candidate.part.clone());
                    digest.update(format!("keep {:?}", candidate.part));
                }
                _ => {}
            }
        }
        let secrets = SecretFiles::select(&wanted, &seen.secrets);
        digest.update(secrets.digest());
        config.digest = hex::encode(digest.finalize());
        let inputs = candidates
            .iter()
            .filter_map(|c| {
                let names = named.get(&c.part)?;
                let inputs = format!("{}:{}", c.document, secrets.digest_of(names));
                Some((c.part.clone(), hex::encode(Sha256::digest(inputs))))
            })
            .collect();
        Plan {
            candidates,
            inputs,
            config,
            keep,
            secrets,
        }
    }
}

/// The same kind and `namespace/name` in both groups, two default gateways, or two `API`s
/// with the same `pathPrefix`: the oldest wins (then the group name decides), the others are
/// refused.
///
/// With `--default-gateway` (`pinned`), that gateway is the default, annotated or not, and
/// any other annotated as the default is refused.
fn refuse_conflicts(candidates: &mut [Candidate], pinned: Option<&str>) {
    candidates.sort_by(|a, b| (&a.created, &a.key).cmp(&(&b.created, &b.key)));
    let mut winners: HashMap<PartId, ObjectKey> = HashMap::new();
    let mut default: Option<ObjectKey> = None;
    let mut prefixes: HashMap<String, ObjectKey> = HashMap::new();
    for candidate in candidates.iter_mut() {
        let Admission::Accepted(loaded) = &candidate.admission else {
            continue;
        };
        if let Some(winner) = winners.get(&candidate.part) {
            candidate.admission = Admission::Conflicted(format!(
                "{} {} is also defined in group {}, which is older and is the one served",
                candidate.key.kind,
                candidate.key.id(),
                winner.group
            ));
            continue;
        }
        // a path prefix is global to the listener: a later API claiming one in service would
        // take its traffic (a tenant's hijack), so the older keeps it
        let claimed = loaded
            .apis
            .iter()
            .find_map(|a| a.resource.spec.path_prefix.clone());
        if let Some(prefix) = &claimed {
            if let Some(owner) = prefixes.get(prefix) {
                candidate.admission = Admission::Conflicted(format!(
                    "spec.pathPrefix: {prefix} is already served by {owner}, which is older"
                ));
                continue;
            }
        }
        let marked_default = loaded.gateways.iter().any(|g| g.resource.is_default());
        if let Some(pinned) = pinned {
            let is_pinned = !loaded.gateways.is_empty() && candidate.key.id() == pinned;
            if marked_default && !is_pinned {
                candidate.admission = Admission::Conflicted(format!(
                    "metadata.annotations[\"{DEFAULT_GATEWAY_ANNOTATION}\"]: --default-gateway pins {pinned} as the default"
                ));
                continue;
            }
            if is_pinned {
                pin_as_default(&mut candidate.admission);
            }
        } else if marked_default {
            if let Some(first) = &default {
                candidate.admission = Admission::Conflicted(format!(
                    "metadata.annotations[\"{DEFAULT_GATEWAY_ANNOTATION}\"]: only one AIGateway may be the default; {first} is older and is the default"
                ));
                continue;
            }
            default = Some(candidate.key.clone());
        }
        if let Some(prefix) = claimed {
            prefixes.insert(prefix, candidate.key.clone());
        }
        winners.insert(candidate.part.clone(), candidate.key.clone());
    }
}

/// Marks an accepted gateway as the default (`--default-gateway`), as its annotation would.
fn pin_as_default(admission: &mut Admission) {
    if let Admission::Accepted(loaded) = admission {
        for gateway in &mut loaded.gateways {
            gateway
                .resource
                .metadata
                .annotations
                .insert(DEFAULT_GATEWAY_ANNOTATION.to_string(), "true".to_string());
        }
    }
}

/// What the applier needs from the process.
pub struct ApplierParts {
    pub state: Arc<AppState>,
    pub store: Arc<Mutex<Store>>,
    pub secrets_dir: PathBuf,
    pub backend_trust: BackendTrust,
    pub models: Models,
    pub shutdown: CancellationToken,
    /// Stops the probes of the snapshot in service.
    pub probes: CancellationToken,
    /// Set after the first complete list is applied: `/readyz`.
    pub synced: Arc<AtomicBool>,
    pub verdicts: watch::Sender<Arc<Verdicts>>,
    /// `--default-gateway`: `namespace/name` of the only gateway that may serve `/v1`.
    pub default_gateway: Option<String>,
}

/// Applies the store's contents whenever they change.
pub struct Applier {
    parts: ApplierParts,
    generation: u64,
    /// The digest of the plan in service.
    applied: Option<String>,
    /// The problem last audited per resource: a problem is audited once, not every round.
    audited: HashMap<ObjectKey, String>,
    admissions: Admissions,
    /// The inputs each part in service was compiled from ([`Plan::inputs`]): a resource whose
    /// inputs are the same is taken over, not compiled again.
    served_inputs: HashMap<PartId, String>,
}

impl Applier {
    pub fn new(parts: ApplierParts) -> Self {
        Self {
            parts,
            generation: 0,
            applied: None,
            audited: HashMap::new(),
            admissions: Admissions::default(),
            served_inputs: HashMap::new(),
        }
    }

    /// Applies after every change (settled), until `shutdown`.
    pub async fn run(mut self, changed: Arc<Notify>) {
        let shutdown = self.parts.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = changed.notified() => {}
            }
            tokio::time::sleep(SETTLE).await;
            self.apply_once().await;
        }
        // the keys are in memory; a copy left in the folder outlives the process for nothing
        // (a pod's emptyDir goes with the pod, a folder on a workstation does not)
        let dir = self.parts.secrets_dir.clone();
        let removed = tokio::task::spawn_blocking(move || SecretFiles::default().write(&dir)).await;
        if !matches!(removed, Ok(Ok(()))) {
            tracing::warn!("removing the written Secrets at shutdown failed");
        }
    }

    /// One round; nothing until every watcher has its first complete list.
    pub async fn apply_once(&mut self) {
        let seen = self.parts.store.lock().seen();
        if !seen.complete && self.generation == 0 {
            return;
        }
        let pinned = self.parts.default_gateway.as_deref();
        let plan = Plan::new(&seen, &mut self.admissions, pinned);
        if self.applied.as_deref() == Some(plan.config.digest.as_str()) {
            // nothing to compile; generations may have moved (a status-only or no-op change)
            self.refresh_generations(&plan);
            return;
        }
        match self.compile(&plan).await {
            Ok(Isolated {
                snapshot,
                failed,
                kept,
            }) => {
                self.remember_inputs(&plan, &failed, &kept);
                self.swap(&plan, snapshot);
                self.publish(&plan, &failed, &kept);
            }
            Err(issues) => {
                for issue in &issues {
                    tracing::error!(problem = %issue, "cluster configuration not applied; the previous one serves on");
                }
                self.parts.state.metrics.config_reload("failure");
            }
        }
    }

    /// What each part now in service was compiled from: the new inputs of those that
    /// compiled, the old ones of those kept.
    fn remember_inputs(
        &mut self,
        plan: &Plan,
        failed: &[(PartId, Vec<ConfigIssue>)],
        kept: &[PartId],
    ) {
        let failed: HashSet<&PartId> = failed.iter().map(|(id, _)| id).collect();
        let mut served: HashMap<PartId, String> = plan
            .inputs
            .iter()
            .filter(|(id, _)| !failed.contains(id))
            .map(|(id, inputs)| (id.clone(), inputs.clone()))
            .collect();
        for id in kept {
            if let Some(inputs) = self.served_inputs.get(id) {
                served.insert(id.clone(), inputs.clone());
            }
        }
        self.served_inputs = served;
    }

    /// Writes the named Secrets, then compiles resource by resource, on a blocking thread;
    /// resources whose inputs are those their part in service was compiled from are taken
    /// over.
    async fn compile(&self, plan: &Plan) -> Result<Isolated, Vec<ConfigIssue>> {
        let (config, keep, secrets) =
            (plan.config.clone(), plan.keep.clone(), plan.secrets.clone());
        let unchanged: HashSet<PartId> = plan
            .inputs
            .iter()
            .filter(|(id, inputs)| self.served_inputs.get(*id) == Some(*inputs))
            .map(|(id, _)| id.clone())
            .collect();
        let dir = self.parts.secrets_dir.clone();
        let trust = self.parts.backend_trust.clone();
        let models = self.parts.models.clone();
        let previous = self.parts.state.snapshot.load_full();
        let compiled = tokio::task::spawn_blocking(move || {
            secrets.write(&dir).map_err(|error| {
                vec![ConfigIssue::new(
                    &dir,
                    format!("writing the cluster's secrets failed: {error}"),
                )]
            })?;
            let ctx = CompileContext {
                secrets_dir: &dir,
                backend_trust: &trust,
                embedder: models.embedder.as_ref(),
                wordnet: models.wordnet.as_ref(),
                previous: Some(&previous),
                secrets_by_namespace: true,
            };
            compile_isolated(&config, &keep, &unchanged, &ctx)
        })
        .await;
        compiled.unwrap_or_else(|error| {
            Err(vec![ConfigIssue::new(
                SOURCE,
                format!("compiling the configuration failed: {error}"),
            )])
        })
    }

    fn swap(&mut self, plan: &Plan, snapshot: crate::gateway::Snapshot) {
        let state = &self.parts.state;
        let (gateways, apis) = (snapshot.len(), snapshot.apis.len());
        crate::app::put_in_service(
            state,
            Arc::new(snapshot),
            &self.parts.shutdown,
            &mut self.parts.probes,
        );
        self.generation += 1;
        self.applied = Some(plan.config.digest.clone());
        tracing::info!(
            generation = self.generation,
            gateways,
            apis,
            refused = plan.keep.len(),
            "cluster configuration applied"
        );
        state.metrics.config_reload("success");
        state.metrics.config_generation(self.generation);
        state.audit.record(
            AuditEvent::new("config_applied", "", "", "success", SOURCE.to_string())
                .detail("generation", self.generation)
                .detail("sha256", plan.config.digest.clone())
                .detail("gateways", gateways)
                .detail("apis", apis),
        );
        if !self.parts.synced.swap(true, Ordering::AcqRel) {
            tracing::info!("the cluster's first complete list is applied: ready");
        }
    }

    /// Same inputs as the configuration in service: the conditions stand, only the
    /// generations they were observed at move.
    fn refresh_generations(&self, plan: &Plan) {
        let before = self.parts.verdicts.borrow().clone();
        let mut verdicts = Verdicts::new();
        for candidate in &plan.candidates {
            if let Some(verdict) = before.get(&candidate.key) {
                verdicts.insert(
                    candidate.key.clone(),
                    Verdict {
                        generation: candidate.generation,
                        ..verdict.clone()
                    },
                );
            }
        }
        if verdicts != *before {
            let _ = self.parts.verdicts.send(Arc::new(verdicts));
        }
    }

    /// The verdict of every resource after a compile (its `failed` and `kept` parts), to the
    /// status writer; refusals to the log and audit, once per problem.
    fn publish(&mut self, plan: &Plan, failed: &[(PartId, Vec<ConfigIssue>)], kept: &[PartId]) {
        let failed: HashMap<&PartId, &Vec<ConfigIssue>> =
            failed.iter().map(|(id, issues)| (id, issues)).collect();
        let kept: BTreeSet<&PartId> = kept.iter().collect();
        let mut verdicts = Verdicts::new();
        let mut problems = HashMap::new();
        for candidate in &plan.candidates {
            let kept = kept.contains(&candidate.part);
            let (accepted, programmed, problem) =
                conditions(candidate, failed.get(&candidate.part).copied(), kept);
            if let Some(problem) = problem {
                problems.insert(candidate.key.clone(), problem);
            }
            verdicts.insert(
                candidate.key.clone(),
                Verdict {
                    watched: Arc::clone(&candidate.watched),
                    generation: candidate.generation,
                    conditions: vec![accepted, programmed],
                },
            );
        }
        for (key, problem) in &problems {
            if self.audited.get(key) != Some(problem) {
                tracing::error!(resource = %key, problem = %problem, "resource refused; the others serve");
                self.parts.state.audit.record(
                    AuditEvent::new("config_rejected", "", "", "failure", SOURCE.to_string())
                        .detail("resource", key.to_string())
                        .detail("reason", "invalid")
                        .detail("first_problem", problem.clone())
                        .detail("generation_serving", self.generation),
                );
            }
        }
        self.parts.state.metrics.cluster_refused(problems.len());
        self.audited = problems;
        let _ = self.parts.verdicts.send(Arc::new(verdicts));
    }
}

/// `Accepted` and `Programmed` of one resource, and its problem when it has one.
fn conditions(
    candidate: &Candidate,
    failed: Option<&Vec<ConfigIssue>>,
    kept: bool,
) -> (Condition, Condition, Option<String>) {
    let serves_on = if kept {
        "; its last accepted version serves on"
    } else {
        "; it is not served"
    };
    match (&candidate.admission, failed) {
        (Admission::Accepted(_), None) => (
            condition("Accepted", true, "Accepted", "the resource is valid".into()),
            condition(
                "Programmed",
                true,
                "Programmed",
                // not the configuration's generation: it moves with every other resource's
                // change, and would rewrite every status each time
                "the resource is compiled and serving".into(),
            ),
            None,
        ),
        (Admission::Accepted(_), Some(issues)) => {
            let problem = describe(issues);
            (
                condition("Accepted", true, "Accepted", "the resource is valid".into()),
                condition(
                    "Programmed",
                    false,
                    "Invalid",
                    format!("{problem}{serves_on}"),
                ),
                Some(problem),
            )
        }
        (Admission::Invalid(issues), _) => {
            let problem = describe(issues);
            (
                condition("Accepted", false, "Invalid", problem.clone()),
                condition(
                    "Programmed",
                    false,
                    "Invalid",
                    format!("not accepted{serves_on}"),
                ),
                Some(problem),
            )
        }
        (Admission::Conflicted(message), _) => (
            condition("Accepted", false, "Conflicted", message.clone()),
            condition(
                "Programmed",
                false,
                "Conflicted",
                format!("not accepted{serves_on}"),
            ),
            Some(message.clone()),
        ),
    }
}

fn condition(kind: &'static str, status: bool, reason: &'static str, message: String) -> Condition {
    Condition {
        kind,
        status,
        reason,
        message,
    }
}

/// The first problem as `validate` words it without the file (`field: message`), and how
/// many more there are.
fn describe(issues: &[ConfigIssue]) -> String {
    let Some(first) = issues.first() else {
        return "invalid".into();
    };
    let mut text = match &first.field {
        Some(field) => format!("{field}: {}", first.message),
        None => first.message.clone(),
    };
    if issues.len() > 1 {
        text.push_str(&format!(" (and {} more problems)", issues.len() - 1));
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::app::compile::PartKind;
    use kube::core::DynamicObject;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn plan(seen: &Seen) -> Plan {
        Plan::new(seen, &mut Admissions::default(), None)
    }

    fn seen(objects: &[(usize, &str, &str, Value, Option<&str>)]) -> Seen {
        let kinds = Watched::all();
        let resources = objects
            .iter()
            .map(|(kind, name, created, spec, default)| {
                let watched = Arc::new(kinds[*kind].clone());
                let mut metadata = json!({"name": name, "namespace": "ml", "generation": 1,
                                          "creationTimestamp": created});
                if let Some(value) = default {
                    metadata["annotations"] = json!({DEFAULT_GATEWAY_ANNOTATION: value});
                }
                let object: DynamicObject =
                    serde_json::from_value(json!({"metadata": metadata, "spec": spec})).unwrap();
                let key = ObjectKey::of(&watched, &object);
                (watched, key, object)
            })
            .collect();
        Seen {
            resources,
            secrets: BTreeMap::new(),
            complete: true,
        }
    }

    fn gateway_spec() -> Value {
        json!({"backends": [{"name": "a", "url": "http://a:8000", "models": ["m"]}]})
    }

    #[test]
    fn an_invalid_resource_is_kept_out_and_the_rest_is_planned() {
        let plan = plan(&seen(&[
            (0, "good", "2026-01-01T00:00:00Z", gateway_spec(), None),
            (
                0,
                "bad",
                "2026-01-01T00:00:00Z",
                json!({"backends": "nope"}),
                None,
            ),
        ]));
        assert_eq!(plan.config.gateways.len(), 1);
        assert_eq!(plan.keep, vec![(PartKind::Gateway, "ml/bad".to_string())]);
    }

    #[test]
    fn the_same_name_in_both_groups_and_two_defaults_are_conflicts_the_oldest_wins() {
        // kinds: 0 = hub.traefik.io AIGateway, 2 = airgate.io AIGateway
        let plan = plan(&seen(&[
            (2, "twin", "2026-01-02T00:00:00Z", gateway_spec(), None),
            (0, "twin", "2026-01-01T00:00:00Z", gateway_spec(), None),
            (
                2,
                "first",
                "2026-01-01T00:00:00Z",
                gateway_spec(),
                Some("true"),
            ),
            (
                2,
                "second",
                "2026-01-03T00:00:00Z",
                gateway_spec(),
                Some("true"),
            ),
        ]));
        let refused: Vec<(String, String)> = plan
            .candidates
            .iter()
            .filter_map(|c| match &c.admission {
                Admission::Conflicted(message) => Some((c.key.to_string(), message.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].0.contains("ml/twin (airgate.io)"), "{refused:?}");
        assert!(refused[1].0.contains("ml/second"), "{refused:?}");
        assert!(refused[1]
            .1
            .contains("only one AIGateway may be the default"));
        assert_eq!(plan.config.gateways.len(), 2);
        // the twin's id is served by the older one: only the refused default may keep an
        // earlier version of itself
        assert_eq!(
            plan.keep,
            vec![(PartKind::Gateway, "ml/second".to_string())]
        );
    }
}
