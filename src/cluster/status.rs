//! `status` of each watched resource: conditions `Accepted` and `Programmed` with the
//! resource's `observedGeneration`, written by the leader only, through the status subresource,
//! as a JSON merge patch of `status` (other fields of the object are left alone), and only when
//! they differ from what the object already carries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::objects::{ObjectKey, Watched};
use super::watch::Store;

/// How often the leader compares every status with what it should be, besides on changes.
const RESYNC: Duration = Duration::from_secs(10);
/// A written status the watch has not shown back yet is not written again for this long.
const ECHO_WAIT: Duration = Duration::from_secs(10);
/// The API server's limit on a condition's message.
const MAX_MESSAGE: usize = 32_768;

/// One condition, before its times are set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What the gateway concluded about one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub watched: Arc<Watched>,
    pub generation: Option<i64>,
    pub conditions: Vec<Condition>,
}

pub type Verdicts = BTreeMap<ObjectKey, Verdict>;

/// The `status` the object should carry: `current` is the status it carries, whose
/// `lastTransitionTime`s are kept for conditions whose status did not change.
pub fn desired_status(verdict: &Verdict, current: Option<&Value>, now: &str) -> Value {
    let previous = |kind: &str| {
        current
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c.get("type") == Some(&json!(kind))))
    };
    let conditions: Vec<Value> = verdict
        .conditions
        .iter()
        .map(|condition| {
            let status = if condition.status { "True" } else { "False" };
            let since = previous(condition.kind)
                .filter(|c| c.get("status") == Some(&json!(status)))
                .and_then(|c| c.get("lastTransitionTime"))
                .cloned()
                .unwrap_or_else(|| json!(now));
            let mut message = condition.message.clone();
            if message.len() > MAX_MESSAGE {
                let mut end = MAX_MESSAGE;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            json!({
                "type": condition.kind,
                "status": status,
                "reason": condition.reason,
                "message": message,
                "observedGeneration": verdict.generation,
                "lastTransitionTime": since,
            })
        })
        .collect();
    json!({
        "observedGeneration": verdict.generation,
        "conditions": conditions,
    })
}

/// Whether `current` already says what `desired` does (the fields written).
fn carries(current: Option<&Value>, desired: &Value) -> bool {
    let Some(current) = current else {
        return false;
    };
    ["observedGeneration", "conditions"]
        .iter()
        .all(|field| current.get(field) == desired.get(field))
}

/// `now` as the API server writes times: RFC 3339, whole seconds, UTC.
fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Writes status while `leader` says so, until `shutdown`.
pub async fn run_writer(
    client: Client,
    store: Arc<Mutex<Store>>,
    mut verdicts: watch::Receiver<Arc<Verdicts>>,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    // what was written, and when: the watch shows a write back a moment later
    let mut written: HashMap<ObjectKey, (Value, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = verdicts.changed() => if changed.is_err() { return },
            changed = leader.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(RESYNC) => {}
        }
        if !*leader.borrow_and_update() {
            written.clear();
            continue;
        }
        let verdicts = Arc::clone(&verdicts.borrow_and_update());
        for (key, verdict) in verdicts.iter() {
            let Some(object) = store.lock().object(key) else {
                continue; // deleted meanwhile
            };
            let current = object.data.get("status").filter(|s| s.is_object());
            let desired = desired_status(verdict, current, &now());
            if carries(current, &desired) {
                continue;
            }
            let recently = written.get(key).is_some_and(|(value, at)| {
                carries(Some(value), &desired) && at.elapsed() < ECHO_WAIT
            });
            if recently {
                continue;
            }
            match patch(&client, key, verdict, &desired).await {
                Ok(()) => {
                    written.insert(key.clone(), (desired, Instant::now()));
                }
                Err(error) => {
                    tracing::warn!(resource = %key, error = %error, "writing status failed; retried at the next change or resync");
                }
            }
        }
    }
}

async fn patch(
    client: &Client,
    key: &ObjectKey,
    verdict: &Verdict,
    status: &Value,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &key.namespace, &verdict.watched.resource);
    api.patch_status(
        &key.name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    tracing::debug!(resource = %key, "status written");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn verdict(accepted: bool) -> Verdict {
        Verdict {
            watched: Arc::new(Watched::all().remove(0)),
            generation: Some(4),
            conditions: vec![Condition {
                kind: "Accepted",
                status: accepted,
                reason: if accepted { "Accepted" } else { "Invalid" },
                message: "m".into(),
            }],
        }
    }

    #[test]
    fn a_transition_time_moves_only_when_the_status_changes() {
        let first = desired_status(&verdict(true), None, "t1");
        assert!(!carries(None, &first));
        let same = desired_status(&verdict(true), Some(&first), "t2");
        assert_eq!(same, first, "unchanged: nothing to write");
        assert!(carries(Some(&first), &same));
        let flipped = desired_status(&verdict(false), Some(&first), "t3");
        assert_eq!(flipped["conditions"][0]["lastTransitionTime"], "t3");
        assert_eq!(flipped["conditions"][0]["observedGeneration"], 4);
        assert!(!carries(Some(&first), &flipped));
    }
}
