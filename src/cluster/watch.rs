//! Watching the cluster: one kube-rs watcher per watched kind and namespace (and one for the
//! Secrets of each namespace), each filling its own shelf of a shared [`Store`].
//!
//! A watcher that breaks (410 Gone, a reset connection, an API server restart) re-lists after
//! a backoff. While it re-lists, its shelf keeps what it had: the new list replaces the shelf
//! whole at `InitDone`, so served configuration never disappears in between, and objects
//! deleted while the watch was down leave with the new list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::objects::{ObjectKey, Watched};
use crate::telemetry::Metrics;

/// Secret types never read: Helm's release records (large, and never a gateway's key) and
/// legacy service-account tokens.
const SECRET_FIELD_SELECTOR: &str =
    "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token";

/// What the watchers have seen, shelf by shelf.
#[derive(Default)]
pub struct Store {
    resources: BTreeMap<usize, (Arc<Watched>, BTreeMap<String, DynamicObject>)>,
    secrets: BTreeMap<usize, BTreeMap<String, Secret>>,
    /// Shelves whose first list is complete.
    synced: BTreeSet<usize>,
    shelves: usize,
    /// Every watcher of the start is started: until then a complete set of shelves is only
    /// the part started so far.
    started: bool,
}

/// A copy of the store, for one compile.
#[derive(Clone, Default)]
pub struct Seen {
    pub resources: Vec<(Arc<Watched>, ObjectKey, DynamicObject)>,
    /// `namespace/name` → Secret.
    pub secrets: BTreeMap<String, Secret>,
    /// Every shelf has had its first complete list.
    pub complete: bool,
}

impl Store {
    pub fn seen(&self) -> Seen {
        let resources = self
            .resources
            .values()
            .flat_map(|(watched, objects)| {
                objects
                    .values()
                    .map(|o| (Arc::clone(watched), ObjectKey::of(watched, o), o.clone()))
            })
            .collect();
        let secrets = self
            .secrets
            .values()
            .flat_map(|shelf| shelf.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        Seen {
            resources,
            secrets,
            complete: self.started && self.synced.len() == self.shelves,
        }
    }

    /// The watchers of the start are all started.
    pub fn mark_started(&mut self) {
        self.started = true;
    }

    /// The object at `key` as last seen (its status included), for the status writer.
    pub fn object(&self, key: &ObjectKey) -> Option<DynamicObject> {
        self.resources
            .values()
            .filter(|(watched, _)| {
                watched.resource.group == key.group && watched.resource.kind == key.kind
            })
            .find_map(|(_, objects)| objects.get(&key.id()).cloned())
    }
}

/// `namespace/name` of an object.
fn object_id<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Where one watcher keeps what it sees: its shelf, made when the watcher was started.
trait Shelf: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    fn shelf(store: &mut Store, id: usize) -> Option<&mut BTreeMap<String, Self>>;
}

impl Shelf for DynamicObject {
    fn shelf(store: &mut Store, id: usize) -> Option<&mut BTreeMap<String, Self>> {
        store.resources.get_mut(&id).map(|(_, objects)| objects)
    }
}

impl Shelf for Secret {
    fn shelf(store: &mut Store, id: usize) -> Option<&mut BTreeMap<String, Self>> {
        store.secrets.get_mut(&id)
    }
}

/// Starts watchers, each on a new shelf of the store: every namespace, or each of
/// `namespaces`.
pub struct Watchers {
    pub client: Client,
    pub namespaces: Vec<String>,
    pub store: Arc<Mutex<Store>>,
    /// Notified after every change to the store.
    pub changed: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

impl Watchers {
    fn scopes(&self) -> Vec<Option<String>> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        }
    }

    /// Watches one kind of one group.
    pub fn watch_kind(&self, watched: &Watched) {
        for scope in self.scopes() {
            let api: Api<DynamicObject> = match &scope {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &watched.resource),
                None => Api::all_with(self.client.clone(), &watched.resource),
            };
            let id = {
                let mut store = self.store.lock();
                let id = store.shelves;
                store.shelves += 1;
                let shelf = (Arc::new(watched.clone()), BTreeMap::new());
                store.resources.insert(id, shelf);
                id
            };
            let label = format!("{} {}", watched.resource.api_version, watched.resource.kind);
            self.spawn(api, watcher::Config::default(), id, label);
        }
    }

    /// Watches the Secrets.
    pub fn watch_secrets(&self) {
        for scope in self.scopes() {
            let api: Api<Secret> = match &scope {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            let id = {
                let mut store = self.store.lock();
                let id = store.shelves;
                store.shelves += 1;
                store.secrets.insert(id, BTreeMap::new());
                id
            };
            let config = watcher::Config::default().fields(SECRET_FIELD_SELECTOR);
            self.spawn(api, config, id, "v1 Secret".into());
        }
    }

    fn spawn<K: Shelf>(&self, api: Api<K>, config: watcher::Config, id: usize, label: String) {
        let sinks = (&self.store, &self.changed, &self.metrics);
        spawn_one(api, config, id, label, sinks, &self.shutdown);
    }
}

/// Where a watcher reports: the store, its change signal, the metrics.
type Sinks<'a> = (&'a Arc<Mutex<Store>>, &'a Arc<Notify>, &'a Arc<Metrics>);

fn spawn_one<K: Shelf>(
    api: Api<K>,
    config: watcher::Config,
    id: usize,
    label: String,
    (store, changed, metrics): Sinks<'_>,
    shutdown: &CancellationToken,
) {
    let (store, changed, shutdown) = (Arc::clone(store), Arc::clone(changed), shutdown.clone());
    let metrics = Arc::clone(metrics);
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        // objects of a list in progress: they replace the shelf when the list is complete
        let mut listing: Option<BTreeMap<String, K>> = None;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = stream.next() => event,
            };
            let Some(event) = event else { return };
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    metrics.cluster_watch_error(&label);
                    tracing::warn!(watch = %label, error = %error, "watch failed; re-listing after a backoff, the configuration in service stays");
                    continue;
                }
            };
            let mut store = store.lock();
            match event {
                Event::Init => {
                    listing = Some(BTreeMap::new());
                    continue;
                }
                Event::InitApply(object) => {
                    listing
                        .get_or_insert_with(BTreeMap::new)
                        .insert(object_id(&object), object);
                    continue;
                }
                Event::InitDone => {
                    if let Some(shelf) = K::shelf(&mut store, id) {
                        *shelf = listing.take().unwrap_or_default();
                    }
                    if store.synced.insert(id) {
                        tracing::info!(watch = %label, "first list complete");
                    }
                }
                Event::Apply(object) => {
                    if let Some(shelf) = K::shelf(&mut store, id) {
                        shelf.insert(object_id(&object), object);
                    }
                }
                Event::Delete(object) => {
                    if let Some(shelf) = K::shelf(&mut store, id) {
                        shelf.remove(&object_id(&object));
                    }
                }
            }
            drop(store);
            changed.notify_one();
        }
    });
}
