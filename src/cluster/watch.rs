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
            complete: self.synced.len() == self.shelves,
        }
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

/// Where one watcher keeps what it sees.
trait Shelf: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    fn shelf(store: &mut Store, id: usize) -> &mut BTreeMap<String, Self>;
}

impl Shelf for DynamicObject {
    fn shelf(store: &mut Store, id: usize) -> &mut BTreeMap<String, Self> {
        // the entry is made with its kind before the watcher starts
        &mut store
            .resources
            .entry(id)
            .or_insert_with(|| (Arc::new(Watched::all().remove(0)), BTreeMap::new()))
            .1
    }
}

impl Shelf for Secret {
    fn shelf(store: &mut Store, id: usize) -> &mut BTreeMap<String, Self> {
        store.secrets.entry(id).or_default()
    }
}

/// Starts every watcher: each watched kind and the Secrets, in each of `namespaces` (every
/// namespace when empty). `changed` is notified after every change to the store.
pub fn spawn_watchers(
    client: &Client,
    kinds: &[Watched],
    namespaces: &[String],
    store: &Arc<Mutex<Store>>,
    changed: &Arc<Notify>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) {
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut next = 0;
    for scope in scopes {
        for watched in kinds {
            let api: Api<DynamicObject> = match scope {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &watched.resource),
                None => Api::all_with(client.clone(), &watched.resource),
            };
            store
                .lock()
                .resources
                .insert(next, (Arc::new(watched.clone()), BTreeMap::new()));
            let label = format!("{} {}", watched.resource.api_version, watched.resource.kind);
            let sinks = (store, changed, metrics);
            spawn_one(
                api,
                watcher::Config::default(),
                next,
                label,
                sinks,
                shutdown,
            );
            next += 1;
        }
        let secrets: Api<Secret> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let config = watcher::Config::default().fields(SECRET_FIELD_SELECTOR);
        let sinks = (store, changed, metrics);
        spawn_one(secrets, config, next, "v1 Secret".into(), sinks, shutdown);
        next += 1;
    }
    store.lock().shelves = next;
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
                    *K::shelf(&mut store, id) = listing.take().unwrap_or_default();
                    if store.synced.insert(id) {
                        tracing::info!(watch = %label, "first list complete");
                    }
                }
                Event::Apply(object) => {
                    K::shelf(&mut store, id).insert(object_id(&object), object);
                }
                Event::Delete(object) => {
                    K::shelf(&mut store, id).remove(&object_id(&object));
                }
            }
            drop(store);
            changed.notify_one();
        }
    });
}
