//! Leader election with a `coordination.k8s.io/v1` `Lease`, as client-go's leaderelection does
//! it: every replica tries every third of the lease's duration (at most 2 s), the holder renewing; another replica takes it over
//! when it has not seen the lease change for a whole duration. Expiry is judged by this
//! replica's own clock from when it last saw the record change, never by comparing its clock
//! with the holder's `renewTime`, so clock skew between nodes cannot make two leaders.
//!
//! Every write is an update carrying the `resourceVersion` that was read, so two replicas that
//! race for an expired lease cannot both win: the API server refuses the second with 409. A
//! leader that cannot renew stops leading before its lease can expire for the others. At
//! shutdown the leader releases the lease, so a follower takes over at once.
//!
//! Only the status writer depends on leading; every replica serves traffic the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;

/// Where the lease is and who this replica is.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// The lease record as last seen, and when this replica saw it change.
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    at: Instant,
}

/// Runs the election until `shutdown`; the receiver says whether this replica leads.
pub fn spawn(
    client: Client,
    settings: LeaseSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let mut elector = Elector {
            api,
            settings,
            observed: Observed {
                record: None,
                at: Instant::now(),
            },
            last_renewed: None,
        };
        // client-go's retry period: a follower notices a released lease within it
        let period = (elector.settings.duration / 3)
            .min(Duration::from_secs(2))
            .max(Duration::from_millis(200));
        loop {
            let leading = elector.try_acquire_or_renew().await;
            if *tx.borrow() != leading {
                tracing::info!(identity = %elector.settings.identity, lease = %elector.settings.name, leading, "leadership changed");
                metrics.cluster_leader(leading);
                let _ = tx.send(leading);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
        }
        if *tx.borrow() {
            metrics.cluster_leader(false);
            let _ = tx.send(false);
            elector.release().await;
        }
    });
    (rx, task)
}

struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Observed,
    /// When this replica last renewed the lease it holds.
    last_renewed: Option<Instant>,
}

impl Elector {
    /// One round: whether this replica leads after it.
    async fn try_acquire_or_renew(&mut self) -> bool {
        match self.round().await {
            Ok(leading) => {
                if leading {
                    self.last_renewed = Some(Instant::now());
                } else {
                    self.last_renewed = None;
                }
                leading
            }
            Err(error) => {
                tracing::warn!(lease = %self.settings.name, error = %error, "lease round failed");
                // keep leading only while the lease cannot have expired for the others:
                // two thirds of its duration since the last renewal
                self.last_renewed
                    .is_some_and(|at| at.elapsed() < self.settings.duration * 2 / 3)
            }
        }
    }

    async fn round(&mut self) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.settings.name).await? else {
            return self.create().await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        if self.observed.record.as_ref() != Some(&record) {
            self.observed = Observed {
                record: Some(record),
                at: Instant::now(),
            };
        }
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mine = holder == Some(self.settings.identity.as_str());
        let duration = spec
            .lease_duration_seconds
            .map_or(self.settings.duration, |s| {
                Duration::from_secs(u64::try_from(s).unwrap_or(0))
            });
        let expired = holder.is_none() || self.observed.at.elapsed() >= duration;
        if !mine && !expired {
            return Ok(false);
        }
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut next = spec.clone();
        if !mine {
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            next.holder_identity = Some(self.settings.identity.clone());
        }
        next.renew_time = Some(now);
        next.lease_duration_seconds = Some(self.duration_seconds());
        let updated = Lease {
            metadata: lease.metadata.clone(),
            spec: Some(next),
        };
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(true),
            // another replica wrote first: it leads
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn create(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.settings.name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the lease up (holder cleared), so that a follower takes over without waiting
    /// for it to expire.
    async fn release(&mut self) {
        let Ok(Some(lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let released = Lease {
            metadata: lease.metadata,
            spec: Some(spec),
        };
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &released)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.settings.name, "lease released"),
            Err(error) => tracing::warn!(error = %error, "releasing the lease failed"),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.settings.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}
